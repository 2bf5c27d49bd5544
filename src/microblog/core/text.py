"""Validation of user-written text, shared by forms and services (one rule, two doors)."""

from microblog.core.errors import Invalid
from microblog.core.validators import has_control_characters, is_blank, normalize_text


def clean_text(
    value: str, *, max_length: int, allow_empty: bool, label: str, field: str | None = None
) -> str:
    """Trimmed text, or `Invalid` (about `field`) whose message says what to change."""
    if "\x00" in value:
        raise Invalid(
            "Remove the invisible control characters from the text.",
            field=field,
            code="control_characters",
        )
    text = normalize_text(value)
    if is_blank(text):
        text = ""  # zero-width spaces, fillers, tag characters: nothing a reader would see
    if not text and not allow_empty:
        raise Invalid(
            f"Write something: the {label} cannot be empty.", field=field, code="required"
        )
    if len(text) > max_length:
        raise Invalid(
            f"The {label} is {len(text)} characters long; the limit is {max_length}.",
            field=field,
            code="max_length",
        )
    if has_control_characters(text):
        raise Invalid(
            "Remove the invisible control characters from the text.",
            field=field,
            code="control_characters",
        )
    return text
