"""One error hierarchy: services raise a `ServiceError`; views map it to a response in one place.

A view with a form puts the error on the form (`add_to_form`: on its field, or above the form),
so the page comes back with what the user typed; any other view lets it propagate, and
`core.middleware.ErrorPageMiddleware` answers with the error page (or JSON) of its status.
"""

from collections.abc import Callable

from django import forms
from django.core.exceptions import BadRequest, ValidationError
from django.db import InterfaceError, OperationalError

# The database cannot serve us for now (connection refused or lost, server starting or shutting
# down, too many connections, disk full, deadlock, statement timeout): the transient kind, met
# with a 503 by the pages and with waiting by the worker and the scheduler.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


class ServiceError(Exception):
    """What was asked cannot be done; `message` is safe to show to the user.

    `field`: the form field the error is about (None: the request as a whole); `code`: a
    stable name for programs and tests. `messages`: several sentences when the cause has
    several (a password's weaknesses); `message` joins them."""

    status = 400
    title = "Bad request"
    default_code = "invalid"

    def __init__(
        self, message: str | list[str], *, field: str | None = None, code: str | None = None
    ) -> None:
        self.messages = [message] if isinstance(message, str) else list(message)
        self.message = " ".join(self.messages)
        super().__init__(self.message)
        self.field = field
        self.code = code or self.default_code

    @classmethod
    def from_validation(cls, error: ValidationError, *, field: str | None = None) -> "ServiceError":
        """A Django validator's error (password validation, a RegexValidator) as one of ours."""
        return cls(error.messages, field=field, code=getattr(error, "code", None))

    def as_validation_error(self) -> ValidationError:
        if len(self.messages) == 1:
            return ValidationError(self.messages[0], code=self.code)
        return ValidationError(self.messages)


class Invalid(ServiceError):
    """Bad input: a text too long, a name not allowed, a choice not on the list."""


class NotFound(ServiceError):
    """What the request names does not exist (or is not visible to the requester)."""

    status = 404
    title = "Not found"
    default_code = "not_found"


class NotAllowed(ServiceError):
    """The requester may not do this (not their post, not staff, a block between them)."""

    status = 403
    title = "Not allowed"
    default_code = "not_allowed"


class Conflict(ServiceError):
    """The state of things refuses it: already done, done twice at once, no longer possible."""

    status = 409
    title = "Conflict"
    default_code = "conflict"


class InvalidInput(Invalid, BadRequest):
    """A request parameter that is not what the address allows (a cursor that is not an id).
    Also a BadRequest, so raised outside a view it still gets the 400 page with its message."""


def add_to_form(form: forms.BaseForm, error: ServiceError) -> None:
    """Shows a service's refusal on the form: under its field when the form has one, else above
    the form."""
    field = error.field if error.field in form.fields else None
    form.add_error(field, error.as_validation_error())


def form_clean[T](check: Callable[[T], T], value: T) -> T:
    """Runs a service's check in a form's `clean_<field>`, where Django expects a
    ValidationError: the form then shows the same message the service would give."""
    try:
        return check(value)
    except ServiceError as error:
        raise error.as_validation_error() from None
