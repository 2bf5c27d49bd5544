"""One error hierarchy for bad input, mapped to responses in one place (core.views)."""

from django.core.exceptions import BadRequest
from django.db import InterfaceError, OperationalError

# The database cannot serve us for now (connection refused or lost, server starting or shutting
# down, too many connections, disk full, deadlock, statement timeout): the transient kind, met
# with a 503 by the pages and with waiting by the worker and the scheduler.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


class InvalidInput(BadRequest):
    """Bad input that gets a 400 page (or JSON error) with this message shown to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServiceError(Exception):
    """A write that cannot be done as asked; the message is safe to show to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
