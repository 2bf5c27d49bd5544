"""Validation of user-written text, shared by forms and services (one rule, two doors), and the
parsing of what a post's text refers to (hashtags, mentions)."""

import re
import unicodedata

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


# --- Hashtags -------------------------------------------------------------------------------
#
# The rule (docs/architecture.md, "Hashtags"): `#` followed by 1 to HASHTAG_MAX_LENGTH tag
# characters (Unicode letters and marks, decimal digits, `_`), at least one of them a letter;
# the `#` starts the text or follows a character that is not a tag character nor one of `#&/@`
# (so "a#b", "##b", "&#39;", "x/#y" are not tags), and the word it stands in holds no "://"
# (an address's "#fragment" is not a tag). A longer run of tag characters is not a tag at all
# (it is never cut). A tag's name is its NFKC case-folded form (`#Café`, `#CAFÉ`, `#ｃａｆé` are
# one tag), which must itself be tag characters within the length.
#
# The same function finds tags for storage (tags.services, at post creation) and for the links of
# a post card (core.jinja.linkify), so a card links exactly the tags stored for its post.

HASHTAG_MAX_LENGTH = 50
_NOT_BEFORE_HASH = frozenset("#&/@")


def is_tag_character(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LM" or category == "Nd" or char == "_"


def hashtag_name(raw: str) -> str | None:
    """The tag's name (NFKC case-folded) for the text after `#`, or None if it is not a tag."""
    if not raw or len(raw) > HASHTAG_MAX_LENGTH or not all(map(is_tag_character, raw)):
        return None
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold())
    if (
        not name
        or len(name) > HASHTAG_MAX_LENGTH
        or not all(map(is_tag_character, name))
        or not any(unicodedata.category(char)[0] == "L" for char in name)
    ):
        return None
    return name


def hashtag_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each hashtag in `text`, `start` at its `#`, in text order."""
    if "#" not in text:
        return []
    spans = []
    length = len(text)
    start = text.find("#")
    while start != -1:
        end = start + 1
        while end < length and is_tag_character(text[end]):
            end += 1
        before = text[start - 1] if start else " "
        if not is_tag_character(before) and before not in _NOT_BEFORE_HASH:
            name = hashtag_name(text[start + 1 : end])
            if name is not None and not _in_address(text, start):
                spans.append((start, end, name))
        start = text.find("#", max(end, start + 1))
    return spans


def _in_address(text: str, index: int) -> bool:
    """Whether the whitespace-delimited word around `index` holds "://" (linkify's addresses
    lie within such words, so a tag and an address never overlap)."""
    word_start = word_end = index
    while word_start and not text[word_start - 1].isspace():
        word_start -= 1
    while word_end < len(text) and not text[word_end].isspace():
        word_end += 1
    return "://" in text[word_start:word_end]


def hashtags(text: str) -> list[str]:
    """The distinct tag names of `text`, in order of first appearance."""
    return list(dict.fromkeys(name for _, _, name in hashtag_spans(text)))


# --- Mentions -------------------------------------------------------------------------------
#
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
