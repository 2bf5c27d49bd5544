"""What a search box's text asks for, checked before anything reaches the database.

Posts are found by words: runs of letters, marks and digits (what PostgreSQL's 'simple'
configuration and SQLite FTS5's unicode61 tokenizer index), all of which must appear. Nothing
the user types is ever passed as query syntax: quotes, AND/OR/NEAR, `*`, `:`, `-` are either
separators or plain words, so a search for `"a" OR b*` looks for the words a, or and b.
Accounts are found by username prefix (`@` optional), tags by name prefix (`#` optional).
"""

import re
import unicodedata
from dataclasses import dataclass

from microblog.core.errors import Invalid
from microblog.core.text import HASHTAG_MAX_LENGTH, clean_text, hashtag_name

QUERY_MAX_LENGTH = 100
MAX_WORDS = 8
WORD_MAX_LENGTH = 50
USERNAME_PREFIX = re.compile(r"@?([A-Za-z0-9_]{1,50})")

NO_WORDS = "Type a word, a username or a hashtag to search for."
TOO_MANY_WORDS = f"Search for at most {MAX_WORDS} words at a time."
WORD_TOO_LONG = f"Search for words of at most {WORD_MAX_LENGTH} letters and digits."


@dataclass(frozen=True)
class SearchQuery:
    text: str
    words: tuple[str, ...]  # lower-cased; empty: no post search
    username_prefix: str | None
    tag_prefix: str | None

    @property
    def posts_wanted(self) -> bool:
        return bool(self.words)


def _is_word_character(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMN"


def words_of(text: str) -> list[str]:
    """The words of `text` as the indexes see them: maximal runs of letters, marks and digits,
    lower-cased (as both indexes do; no other normalisation, which the indexed text does not
    get either), in order, without repeats."""
    folded = text.lower()
    words: list[str] = []
    current: list[str] = []
    for char in folded + " ":
        if _is_word_character(char):
            current.append(char)
        elif current:
            words.append("".join(current))
            current = []
    return list(dict.fromkeys(words))


def parse(raw: str) -> SearchQuery:
    """The search `raw` asks for; Invalid (about the field `q`) with a message saying what to
    change for text that is too long, holds control characters or has nothing to look for."""
    if len(raw) > QUERY_MAX_LENGTH * 4:
        # Refused before any normalisation work on a 10 kB query.
        raise Invalid(
            f"The search is {len(raw):,} characters long; the limit is {QUERY_MAX_LENGTH}.",
            field="q",
            code="max_length",
        )
    text = clean_text(
        raw, max_length=QUERY_MAX_LENGTH, allow_empty=False, label="search", field="q"
    )
    words = words_of(text)
    if len(words) > MAX_WORDS:
        raise Invalid(TOO_MANY_WORDS, field="q", code="too_many_words")
    if any(len(word) > WORD_MAX_LENGTH for word in words):
        raise Invalid(WORD_TOO_LONG, field="q", code="word_too_long")
    single = text.strip()
    username = USERNAME_PREFIX.fullmatch(single)
    tag_text = single[1:] if single.startswith("#") else single
    tag = hashtag_name(tag_text) if len(tag_text) <= HASHTAG_MAX_LENGTH else None
    if single.startswith("#"):
        username = None  # "#py" asks for tags (and the word), not accounts
    if single.startswith("@"):
        tag = None
    if not words and username is None and tag is None:
        raise Invalid(NO_WORDS, field="q", code="no_words")
    return SearchQuery(
        text=text,
        words=tuple(words),
        username_prefix=username.group(1) if username else None,
        tag_prefix=tag,
    )
