"""Mentions: `@username` resolved to existing accounts when a post is written, stored, linked on
the card, and notified (issue 16, item 3)."""

import pytest

from microblog.core.jinja import linkify
from microblog.core.text import mentioned_usernames
from microblog.moderation.services import block_create
from microblog.notifications.models import Notification
from microblog.posts.models import MENTIONS_MAX, Mention
from microblog.posts.services import post_create, post_delete


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("hi @bob", ["bob"]),
        ("@bob at the start", ["bob"]),
        ("(@bob) and @carol, then @Dave!", ["bob", "carol", "Dave"]),
        ("@Bob and @bob and @BOB", ["Bob"]),  # once, ignoring case; the first spelling kept
        ("write to bob@example.org", []),  # an e-mail address
        ("first.last@bob.org and x-@bob and a+@bob", []),
        ("inside a word: abc@bob", []),
        ("@@bob", []),
        ("see https://example.org/@bob and https://x.org/?to=@carol", []),
        ("@" + "a" * 50, ["a" * 50]),
        ("@" + "a" * 51, []),  # longer than a username can be: no mention at all
        ("@bob\u00e9", []),  # runs on into a non-ASCII letter
        ("\u00e9@bob", []),  # follows a non-ASCII letter
        ("@bob's post, @carol.", ["bob", "carol"]),
        ("@ alone, @-dash, @", []),
        ("\u0430@bob", []),  # Cyrillic letter before
    ],
)
def test_mentioned_usernames(text: str, names: list[str]) -> None:
    assert mentioned_usernames(text) == names


def test_card_links_only_the_stored_mentions_and_escapes_the_rest() -> None:
    html = str(linkify("hi @Bob and @ghost <b> https://example.org/@bob", "bob"))
    assert '<a class="mention" href="/@bob">@Bob</a>' in html
    assert "@ghost" in html and "/@ghost" not in html
    assert "&lt;b&gt;" in html
    # The address stays one link; the mention inside it is not linked again.
    assert html.count('class="mention"') == 1
    assert str(linkify("hi @bob", "")) == "hi @bob"


def test_post_create_stores_mentions_of_existing_accounts_only(make_user) -> None:
    author, bob, carol = make_user("author"), make_user("Bob"), make_user("carol")
    post = post_create(author=author, content="hi @bob, @CAROL and @nobody_here, bob@example.org")
    assert post.mention_names == "Bob carol"
    assert set(Mention.objects.filter(post=post).values_list("user_id", flat=True)) == {
        bob.id,
        carol.id,
    }
    assert set(
        Notification.objects.filter(post=post, kind="mention").values_list(
            "recipient_id", flat=True
        )
    ) == {bob.id, carol.id}


def test_a_post_with_only_unknown_or_malformed_mentions_stores_none(make_user) -> None:
    author = make_user("author")
    post = post_create(author=author, content="@nobody @" + "x" * 60 + " mail@author.org")
    assert post.mention_names == ""
    assert not Mention.objects.exists()
    assert not Notification.objects.exists()


def test_mentions_are_bounded_per_post(make_user) -> None:
    author = make_user("author")
    people = [make_user(f"p{n}") for n in range(MENTIONS_MAX + 3)]
    content = " ".join(f"@{person.username}" for person in people)
    post = post_create(author=author, content=content)
    assert Mention.objects.filter(post=post).count() == MENTIONS_MAX


def test_the_card_shows_the_mention_as_a_profile_link(make_user, client_for) -> None:
    author, bob = make_user("author"), make_user("bob")
    post = post_create(author=author, content="thanks @BOB, not @ghost")
    page = client_for(bob).get(f"/posts/{post.id}").content.decode()
    assert '<a class="mention" href="/@bob">@BOB</a>' in page
    assert 'href="/@ghost"' not in page


def test_mentioning_oneself_links_but_notifies_nobody(make_user) -> None:
    author = make_user("author")
    post = post_create(author=author, content="note to @author")
    assert post.mention_names == "author"
    assert not Notification.objects.exists()


def test_a_mention_of_an_account_that_blocked_the_author_notifies_nobody(make_user) -> None:
    author, bob = make_user("author"), make_user("bob")
    block_create(blocker=bob, blocked=author)
    post_create(author=author, content="hey @bob")
    assert not Notification.objects.exists()


def test_a_reply_that_mentions_the_parent_author_notifies_once_as_a_reply(make_user) -> None:
    author, bob = make_user("author"), make_user("bob")
    parent = post_create(author=bob, content="a question")
    reply = post_create(author=author, content="@bob the answer", parent_id=parent.id)
    assert list(Notification.objects.values_list("recipient_id", "kind", "post_id")) == [
        (bob.id, "reply", reply.id)
    ]


def test_deleting_a_post_removes_its_mentions_and_their_notifications(make_user) -> None:
    author, bob = make_user("author"), make_user("bob")
    post = post_create(author=author, content="hey @bob")
    post_create(author=bob, content="a reply keeps the post as a placeholder", parent_id=post.id)
    post_delete(post=post, actor=author)
    post.refresh_from_db()
    assert post.is_deleted and post.mention_names == ""
    assert not Mention.objects.filter(post=post).exists()
    assert not Notification.objects.filter(post=post).exists()
