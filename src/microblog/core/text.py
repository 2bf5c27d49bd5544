"""Validation of user-written text, shared by forms and services (one rule, two doors), and the
parsing of what a post's text refers to (mentions)."""

import re

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


# `@username` in a post: usernames are 1-50 ASCII letters, digits and underscores. Not inside
# another word or an e-mail address ("bob@example.org", "x@bob"): the `@` must not follow a
# letter, digit, `_`, `.`, `+`, `-`, `/` or another `@` (which also leaves out the "/@name" of an
# address); the name must not run on into a letter (of any script), digit, `_` or `@`, so a
# 51-character name is no mention at all rather than the first 50 of it.
MENTION = re.compile(r"(?<![\w.+\-/@])@([A-Za-z0-9_]{1,50})(?![\w@])")
# Addresses are taken out before looking for mentions ("https://example.org/?to=@bob").
_ADDRESS = re.compile(r"\bhttps?://\S+", re.IGNORECASE)


def mentioned_usernames(text: str) -> list[str]:
    """The usernames `text` mentions, in order of first appearance, each once (compared
    ignoring case; the first spelling is kept). The one parser of mentions: post_create resolves
    these to accounts and the post card links the resolved ones (core.jinja.link_mentions)."""
    seen: dict[str, str] = {}
    for match in MENTION.finditer(_ADDRESS.sub(" ", text)):
        seen.setdefault(match.group(1).lower(), match.group(1))
    return list(seen.values())
