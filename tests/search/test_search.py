"""Search (/search?q=): posts by words, accounts by username prefix, hashtags by prefix; bad
input, visibility, paging, the rate limit, query counts."""

import re

import pytest

from microblog import ratelimit
from microblog.moderation.services import block_create, mute_create
from microblog.posts.models import Post
from microblog.posts.services import post_delete
from microblog.search.query import QUERY_MAX_LENGTH, parse, words_of


def shown_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'id="post-(\d+)"', response.content.decode())]


def text(response) -> str:
    return response.content.decode()


# --- The query --------------------------------------------------------------------------------


def test_words_are_lowered_and_split_on_anything_but_letters_marks_and_digits() -> None:
    assert words_of('"Hello" AND wörld* OR x:y -z NEAR(a b) hello') == [
        "hello",
        "and",
        "wörld",
        "or",
        "x",
        "y",
        "z",
        "near",
        "a",
        "b",
    ]


def test_a_query_asks_for_accounts_tags_and_words() -> None:
    query = parse("Ali")
    assert (query.words, query.username_prefix, query.tag_prefix) == (("ali",), "Ali", "ali")
    query = parse("@ali")
    assert (query.words, query.username_prefix, query.tag_prefix) == (("ali",), "ali", None)
    query = parse("#Py")
    assert (query.words, query.username_prefix, query.tag_prefix) == (("py",), None, "py")
    query = parse("two words")
    assert (query.words, query.username_prefix, query.tag_prefix) == (("two", "words"), None, None)


# --- Results ----------------------------------------------------------------------------------


def test_posts_with_every_word_newest_first_replies_included(alice, bob, make_post, client):
    first = make_post(alice, "The quick brown fox")
    make_post(alice, "a quick note")
    reply = make_post(bob, "Brown and QUICK, like the fox", parent=first)
    make_post(bob, "unrelated")
    response = client.get("/search", {"q": "quick brown"})
    assert response.status_code == 200
    assert shown_ids(response) == [reply.id, first.id]


def test_a_hashtag_is_found_as_a_word_and_as_a_tag(alice, make_post, client):
    post = make_post(alice, "Reading about #Databases today")
    response = client.get("/search", {"q": "#data"})
    assert shown_ids(response) == []  # "data" is not a word of the post
    assert '<a class="hashtag" href="/tags/databases">#databases</a>' in text(response)
    assert shown_ids(client.get("/search", {"q": "databases"})) == [post.id]


def test_accounts_by_username_prefix_any_case(make_user, client, db):
    make_user("alice_smith")
    make_user("Alicia")
    make_user("bob")
    page = text(client.get("/search", {"q": "@ALI"}))
    assert "@alice_smith" in page and "@Alicia" in page and "@bob" not in page
    # LIKE wildcards are plain characters: "_" matches only an underscore.
    page = text(client.get("/search", {"q": "alice_"}))
    assert "@alice_smith" in page and "@Alicia" not in page


def test_search_leaves_out_hidden_deleted_blocked_and_muted(
    alice, bob, make_user, make_post, client_for
):
    carol = make_user("carol")
    dave = make_user("dave")
    visible = make_post(bob, "needle visible")
    hidden = make_post(bob, "needle hidden")
    Post.objects.filter(id=hidden.id).update(is_hidden=True)
    deleted = make_post(bob, "needle deleted")
    post_delete(post=deleted, actor=bob)
    root = make_post(bob, "needle placeholder")
    make_post(carol, "a reply keeps it", parent=root)
    post_delete(post=Post.objects.get(id=root.id), actor=bob)
    make_post(carol, "needle muted")
    make_post(dave, "needle blocked")
    mute_create(muter=alice, muted=carol)
    block_create(blocker=alice, blocked=dave)
    response = client_for(alice).get("/search", {"q": "needle dave"})
    assert shown_ids(response) == []
    response = client_for(alice).get("/search", {"q": "needle"})
    assert shown_ids(response) == [visible.id]
    # The blocked account is not listed either.
    assert "@dave" not in text(client_for(alice).get("/search", {"q": "dav"}))


def test_search_results_are_cursor_paged_and_keep_the_query(alice, make_post, client, settings):
    settings.PAGE_SIZE = 3
    posts = [make_post(alice, f"paging needle {n}") for n in range(7)]
    seen: list[int] = []
    url = "/search?q=needle"
    while True:
        response = client.get(url)
        assert response.status_code == 200
        seen += shown_ids(response)
        more = re.search(r'class="load-more[^"]*" href="([^"]+)"', text(response))
        if not more:
            break
        url = "/search" + more.group(1).replace("&amp;", "&")
        assert "q=needle" in url
    assert seen == [p.id for p in reversed(posts)]


def test_the_htmx_load_more_gets_the_fragment(alice, make_post, client, settings):
    settings.PAGE_SIZE = 2
    for n in range(3):
        make_post(alice, f"fragment word {n}")
    first = client.get("/search", {"q": "fragment"})
    cursor = re.search(r"cursor=(\d+)", text(first)).group(1)
    more = client.get(
        "/search", {"q": "fragment", "cursor": cursor}, headers={"HX-Request": "true"}
    )
    assert "<html" not in text(more)
    assert len(shown_ids(more)) == 1


def test_nothing_found_says_so(client, db):
    response = client.get("/search", {"q": "zzzz"})
    assert response.status_code == 200
    assert "No posts contain all of these words." in text(response)


def test_an_empty_search_shows_the_form_and_trending(client, db):
    response = client.get("/search")
    assert response.status_code == 200
    assert 'role="search"' in text(response)
    assert "Trending" in text(response)


# --- Bad input --------------------------------------------------------------------------------

SYNTAX = [
    '"unbalanced',
    '""',
    "a AND b OR NOT c",
    "NEAR(a b, 2)",
    "a*",
    "*",
    "content:a",
    "-a",
    "a & b | !c <-> d",
    "'; DROP TABLE posts_post; --",
    "a:* & b:*",
    "(",
    ")",
    "^a",
    "{a b}",
    "\\",
    "%_%",
]


@pytest.mark.parametrize("q", SYNTAX)
def test_query_syntax_is_never_syntax(q, alice, make_post, client):
    """SQL and FTS syntax is searched as words (or refused with a message), never a 500."""
    post = make_post(alice, "a b c d content drop table posts_post")
    response = client.get("/search", {"q": q})
    assert response.status_code in (200, 400), q
    if response.status_code == 400:
        assert "Type a word" in text(response)
    elif q == "a AND b OR NOT c":
        assert shown_ids(response) == []  # "and", "or", "not" are words the post lacks
    elif q == "content:a":
        assert shown_ids(response) == [post.id]


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("x" * 10_000, "the limit is 100"),
        ("word " * 30, "the limit is 100"),
        ("a\x00b", "control characters"),
        ("a\u202eb", "control characters"),
        ("\u200b\u200b", "cannot be empty"),
        ("!!! ???", "Type a word"),
        ("a b c d e f g h i", "at most 8 words"),
        ("a" * 51, "words of at most 50"),
    ],
)
def test_bad_queries_are_a_400_with_a_message_and_the_typed_text(q, message, client, db):
    response = client.get("/search", {"q": q})
    assert response.status_code == 400
    page = text(response)
    assert message in page
    assert 'aria-invalid="true"' in page


@pytest.mark.parametrize(
    "q",
    [
        "日本語",
        "é\u0301",
        "\U0001f600",
        "\uff46\uff55\uff4c\uff4c",
        "İstanbul",
        "straße",
        "\ufdd0",
        "a\u0000"[:1],
    ],
)
def test_odd_unicode_never_fails(q, alice, make_post, client):
    make_post(alice, "日本語 İstanbul straße \uff46\uff55\uff4c\uff4c")
    response = client.get("/search", {"q": q})
    assert response.status_code in (200, 400)


def test_undecodable_bytes_in_q_are_not_a_500(client, db):
    assert client.get("/search?q=%FF%FE").status_code in (200, 400)
    assert client.get("/search?q=%ED%A0%80").status_code in (200, 400)


def test_a_bad_cursor_is_a_400(client, db):
    assert client.get("/search", {"q": "a", "cursor": "x"}).status_code == 400


def test_the_query_length_limit_is_exact(client, db):
    exact = "ab " * 33 + "a"
    assert len(exact) == QUERY_MAX_LENGTH
    assert client.get("/search", {"q": exact}).status_code == 200
    assert client.get("/search", {"q": exact + "b"}).status_code == 400


# --- Rate limit and query counts --------------------------------------------------------------


def test_search_is_rate_limited_per_user(alice, client_for, settings, monkeypatch):
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_STORE = "database"
    settings.RATELIMIT_RULES = {**settings.RATELIMIT_RULES, "searches": "3/1m"}
    monkeypatch.setattr(ratelimit, "clock", lambda: 1_800_000_000.0)  # inside one window
    client = client_for(alice)
    for _ in range(3):
        assert client.get("/search", {"q": "hello"}).status_code == 200
    refused = client.get("/search", {"q": "hello"})
    assert refused.status_code == 429
    assert "You are searching too fast" in text(refused)
    assert "Retry-After" in refused


def test_the_search_page_costs_the_same_with_5_and_20_results(
    alice, bob, make_user, make_post, client_for, django_assert_num_queries
):
    make_user("counted_one")
    client = client_for(alice)
    made = 0
    for wanted in (5, 20):
        while made < wanted:
            parent = make_post(bob, "root") if made % 2 else None
            make_post(bob, f"counted #counted {made}", parent=parent)
            made += 1
        # Queries: 1 the session with the signed-in user, 2 the posts with authors, parents and
        # parents' authors (the match, blocks and mutes in one statement), 3 accounts by
        # prefix, 4 tags by prefix.
        with django_assert_num_queries(4):
            response = client.get("/search", {"q": "counted"})
        assert len(shown_ids(response)) == wanted
        assert "@counted_one" in text(response)
