import unicodedata

from django.core.exceptions import ValidationError

ALLOWED_CONTROL = {"\n", "\t"}
# Bidirectional overrides can make text display differently from what it says ("Trojan Source").
BIDI_OVERRIDES = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def normalize_text(value: str) -> str:
    """Windows and old-Mac line ends become \\n; surrounding whitespace is trimmed."""
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def reject_control_characters(value: str) -> None:
    for char in value:
        if char in ALLOWED_CONTROL:
            continue
        if unicodedata.category(char) in {"Cc", "Cs"} or char in BIDI_OVERRIDES:
            raise ValidationError(
                "Remove the invisible control characters from the text.", code="control_characters"
            )
