"""The hashtag rule (core.text.hashtags) and the card's links (core.jinja.linkify)."""

import re
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microblog.core.jinja import linkify, tag_path
from microblog.core.text import HASHTAG_MAX_LENGTH, hashtag_name, hashtags


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#Python is #great", ["python", "great"]),
        ("#python #PYTHON #Python", ["python"]),  # case-insensitive: one tag
        ("#Café #CAFÉ #ｃａｆé", ["café"]),  # NFKC + casefold
        ("#straße", ["strasse"]),  # full case folding
        ("#हिन्दी and #日本語", ["हिन्दी", "日本語"]),  # letters and marks of any script
        ("#snake_case #a1", ["snake_case", "a1"]),
        ("(#tag), #tag. #tag!", ["tag"]),  # punctuation around
        ("first\n#second", ["second"]),
    ],
)
def test_tags_are_found_and_normalised(text: str, expected: list[str]) -> None:
    assert hashtags(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a#b",  # inside a word
        "##double",
        "&#39;",
        "x/#y",
        "mail@#host",
        "#123",  # no letter
        "#_",
        "#",
        "# spaced",
        "https://example.org/page#section",  # an address's fragment
        "see https://example.org/#top",
        "#http://example.org",
        "#" + "a" * (HASHTAG_MAX_LENGTH + 1),  # too long: not a tag at all, never cut
        "#\u200b",  # an invisible character only
    ],
)
def test_not_tags(text: str) -> None:
    assert hashtags(text) == []


def test_the_length_limit_is_exact() -> None:
    assert hashtags("#" + "a" * HASHTAG_MAX_LENGTH) == ["a" * HASHTAG_MAX_LENGTH]
    assert hashtag_name("a" * (HASHTAG_MAX_LENGTH + 1)) is None
    assert hashtag_name("x" * 300) is None


def test_a_tag_ends_at_the_first_character_that_is_not_a_tag_character() -> None:
    assert hashtags("#tag-two #tag's #tag\x00x") == ["tag"]


def test_card_links_the_tags_to_their_pages_and_shows_them_as_written() -> None:
    html = str(linkify("Learning #Python <b> at https://example.org/#frag today #Café"))
    assert '<a class="hashtag" href="/tags/python">#Python</a>' in html
    assert '<a class="hashtag" href="/tags/caf%C3%A9">#Café</a>' in html
    assert "&lt;b&gt;" in html
    assert 'href="https://example.org/#frag"' in html
    assert html.count('class="hashtag"') == 2


def test_tag_path_matches_reverse() -> None:
    from django.urls import reverse

    assert tag_path("python") == reverse("tag", args=["python"])
    assert tag_path("café") == reverse("tag", args=["café"])


PIECES = st.sampled_from([*"#aZé_1 .,/@&:-\n", "ß", "\uff43", "日", "\u0301", "https://x.o/"])
TEXT = st.lists(PIECES, max_size=40).map("".join)


@given(TEXT)
def test_a_card_links_exactly_the_tags_stored_for_its_text(text: str) -> None:
    """What linkify links (rendering) and what hashtags() returns (storage) agree for any text,
    so a card links exactly its post's stored tags."""
    html = str(linkify(text))
    linked = [unquote(m) for m in re.findall(r'class="hashtag" href="/tags/([^"]+)"', html)]
    assert list(dict.fromkeys(linked)) == hashtags(text)


def test_a_card_links_both_the_tags_and_the_stored_mentions_of_one_text() -> None:
    """The two rules share one pass over the text (core.jinja.link_words): a post with an
    address, a tag and a mention links each once, in place, and loses no character."""
    html = str(
        linkify("@bob likes #Python, see https://example.org/#x and @carol#tag #a@bob", "bob")
    )
    assert html.startswith('<a class="mention" href="/@bob">@bob</a> likes ')
    assert '<a class="hashtag" href="/tags/python">#Python</a>,' in html
    assert 'href="https://example.org/#x"' in html
    assert "@carol" in html and "/@carol" not in html  # not a stored mention
    assert html.count('class="mention"') == 1  # "#a@bob": the tag a, and no mention inside it
    assert html.count('class="hashtag"') == 2  # "@carol#tag" holds no tag
    assert re.sub(r"<[^>]+>", "", html).replace("example.org/#x", "") == (
        "@bob likes #Python, see  and @carol#tag #a@bob"
    )


@given(TEXT)
def test_linking_tags_and_mentions_keeps_every_character(text: str) -> None:
    """Whatever the text, the card shows it all (escaped), whatever is linked."""
    from html import unescape

    html = str(linkify(text, "a Z"))
    shown = unescape(re.sub(r"<[^>]+>", "", html))
    if "://" not in text:  # addresses are shown shortened
        assert shown == text
