"""Request parameters of the client API: form, multipart or JSON bodies (apps send all three),
query strings, arrays as `name[]`; every value checked before it reaches a service."""

import json
from typing import Any

from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParserError

from microblog.core.errors import Invalid, InvalidInput
from microblog.core.ids import parse_id

MAX_ARRAY = 40


class Params:
    """Named values from the body (or, for GET, the query string)."""

    def __init__(self, values: dict[str, list[Any]]) -> None:
        self.values = values

    def text(self, name: str, default: str = "") -> str:
        found = self.values.get(name) or self.values.get(f"{name}[]")
        if not found:
            return default
        value = found[0]
        if value is None:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise Invalid(f"{name} must be text")
        return str(value)

    def texts(self, name: str) -> list[str]:
        found = [*self.values.get(name, []), *self.values.get(f"{name}[]", [])]
        if len(found) == 1 and isinstance(found[0], list):
            found = found[0]
        if len(found) > MAX_ARRAY:
            raise Invalid(f"At most {MAX_ARRAY} values of {name}")
        if not all(isinstance(value, str | int) and not isinstance(value, bool) for value in found):
            raise Invalid(f"{name} must be a list of text")
        return [str(value) for value in found]

    def flag(self, name: str) -> bool:
        return self.text(name).strip().lower() in {"1", "true", "on", "yes"}

    def id(self, name: str, *, required: bool = False) -> int | None:
        raw = self.text(name)
        if raw == "":
            if required:
                raise Invalid(f"{name} is required")
            return None
        value = parse_id(raw)
        if value is None:
            raise Invalid(f"{name} must be an id (digits only)")
        return value

    def ids(self, name: str) -> list[int]:
        values = []
        for raw in self.texts(name):
            value = parse_id(raw)
            if value is None:
                raise Invalid(f"{name} must be ids (digits only)")
            values.append(value)
        return values

    def given(self, name: str) -> bool:
        return name in self.values or f"{name}[]" in self.values


def _from_querydict(data: QueryDict) -> dict[str, list[Any]]:
    return {key: data.getlist(key) for key in data}


def query(request: HttpRequest) -> Params:
    return Params(_from_querydict(request.GET))


def body(request: HttpRequest) -> Params:
    """The body of a POST, PUT or PATCH: JSON, urlencoded or multipart (Django parses only a
    POST's form by itself)."""
    content_type = request.content_type or ""
    if content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("The body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidInput("The body must be a JSON object")
        return Params(
            {key: value if isinstance(value, list) else [value] for key, value in data.items()}
        )
    form: QueryDict
    try:
        if request.method == "POST":
            form = request.POST
        elif content_type == "multipart/form-data":
            form, _files = request.parse_file_upload(request.META, request)
        else:
            form = QueryDict(request.body, encoding=request.encoding)
    except (MultiPartParserError, UnicodeDecodeError, ValueError):
        raise InvalidInput("The body could not be read") from None
    values = _from_querydict(form)
    # Apps also put parameters of a POST in its query string.
    for key, found in _from_querydict(request.GET).items():
        values.setdefault(key, found)
    return Params(values)
