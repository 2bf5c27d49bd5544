"""Validation of user-written text, shared by forms and services (one rule, two doors)."""

from django.core.exceptions import ValidationError

from microblog.core.validators import is_blank, normalize_text, reject_control_characters


def clean_text(value: str, *, max_length: int, allow_empty: bool, label: str) -> str:
    """Trimmed text, or a ValidationError whose message says what to change."""
    if "\x00" in value:
        raise ValidationError("Remove the invisible control characters from the text.")
    text = normalize_text(value)
    if is_blank(text):
        text = ""  # zero-width spaces, fillers, tag characters: nothing a reader would see
    if not text and not allow_empty:
        raise ValidationError(f"Write something: the {label} cannot be empty.", code="required")
    if len(text) > max_length:
        raise ValidationError(
            f"The {label} is {len(text)} characters long; the limit is {max_length}.",
            code="max_length",
        )
    reject_control_characters(text)
    return text
