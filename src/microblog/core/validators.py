import unicodedata

ALLOWED_CONTROL = {"\n", "\t"}
# Bidirectional overrides can make text display differently from what it says ("Trojan Source").
BIDI_OVERRIDES = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# Characters that show nothing: Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt:
# zero-width spaces and joiners, the BOM, variation selectors, tag characters, the Hangul fillers,
# ...) plus blank-rendering characters that are not in it (U+2800 BRAILLE PATTERN BLANK).
# Text made of only these and whitespace is empty.
_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def is_invisible(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _INVISIBLE_RANGES)


def is_blank(text: str) -> bool:
    """Whether `text` shows nothing: only whitespace and invisible characters."""
    return all(char.isspace() or is_invisible(char) for char in text)


def normalize_text(value: str) -> str:
    """Windows and old-Mac line ends become \\n; surrounding whitespace is trimmed."""
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def has_control_characters(value: str) -> bool:
    """Whether `value` holds control characters other than line breaks and tabs, or
    bidirectional overrides."""
    return any(
        char not in ALLOWED_CONTROL
        and (unicodedata.category(char) in {"Cc", "Cs"} or char in BIDI_OVERRIDES)
        for char in value
    )
