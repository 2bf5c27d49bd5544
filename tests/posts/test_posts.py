"""Posts: the write service (`post_create`, `post_delete`), the compose and delete routes, and the
display helpers every post card uses (relative times, avatar initials)."""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from microblog.core.errors import Invalid, NotAllowed, NotFound
from microblog.core.jinja import initials, reltime
from microblog.follows.services import follow_create
from microblog.posts.models import Post
from microblog.posts.services import post_create, post_delete
from tests.conftest import refreshed

PARENT_MISSING = "The post you are replying to no longer exists."
EMPTY = "Write something: the post cannot be empty."


def text(response) -> str:
    """The page as a user reads it: HTML entities decoded."""
    return html.unescape(response.content.decode())


def textarea_value(response) -> str:
    match = re.search(r"<textarea[^>]*>(.*?)</textarea>", response.content.decode(), re.S)
    assert match, "the page has no compose box"
    return html.unescape(match.group(1)).lstrip("\n")


# --- The service ---------------------------------------------------------------------------------


def test_post_create_stores_trimmed_content_and_counts_the_post(alice):
    post = post_create(author=alice, content="  \r\n hello world \t\n ")
    assert Post.objects.get(id=post.id).content == "hello world"
    assert refreshed(alice).posts_count == 1


def test_post_create_accepts_exactly_200_characters_after_trimming(alice):
    post = post_create(author=alice, content="   " + "a" * 200 + "\n\n")
    assert len(Post.objects.get(id=post.id).content) == 200


def test_post_create_refuses_201_characters_and_writes_nothing(alice):
    with pytest.raises(Invalid) as error:
        post_create(author=alice, content="a" * 201)
    assert error.value.messages == ["The post is 201 characters long; the limit is 200."]
    assert Post.objects.count() == 0
    assert refreshed(alice).posts_count == 0


@pytest.mark.parametrize("content", ["", "   ", "\n\t \r\n"])
def test_post_create_refuses_empty_or_whitespace_only_content(alice, content):
    with pytest.raises(Invalid) as error:
        post_create(author=alice, content=content)
    assert error.value.messages == [EMPTY]
    assert Post.objects.count() == 0
    assert refreshed(alice).posts_count == 0


def test_reply_counts_on_the_parent_and_the_author(alice, bob, make_post):
    parent = make_post(alice, "parent")
    make_post(bob, "first reply", parent=parent)
    make_post(bob, "second reply", parent=parent)
    make_post(alice, "a reply of alice", parent=parent)
    assert Post.objects.get(id=parent.id).replies_count == 3
    assert refreshed(alice).posts_count == 2
    assert refreshed(bob).posts_count == 2


def test_a_reply_reads_its_parent_and_whom_it_notifies_through_compiled_queries(
    alice, bob, make_user, make_post, django_assert_num_queries
):
    """A reply's parent check (exists, may be replied to, its author's block) and the
    notification's rule run compiled (core.sqlcache): building them with the ORM on every post
    was about half of a reply's CPU (docs/benchmarks.md, issue 15 item 4). Pinned: the parent
    read, the post, whom to notify, the notification, the two counters; BEGIN and COMMIT; on
    PostgreSQL the two NOTIFYs after the commit (the reply's, the unread count's)."""
    from microblog.core import sqlcache
    from microblog.posts import services
    from microblog.timelines import visibility
    from tests.conftest import is_postgres

    staff = make_user("staffer", is_staff=True)
    parent = make_post(bob, "parent")
    make_post(alice, "warm-up", parent=parent)
    make_post(staff, "warm-up", parent=parent)
    assert sqlcache.is_compiled(services._reply_parent_for_users, parent.id, alice.id)
    assert sqlcache.is_compiled(services._reply_parent_for_staff, parent.id, staff.id)
    assert sqlcache.is_compiled(visibility._notified_rows, alice.id, bob.id)
    post_create(author=alice, content="hi @bob and @Staffer")
    assert sqlcache.is_compiled(services._accounts_named, "bob", "Staffer")
    with django_assert_num_queries(8 + (2 if is_postgres() else 0)):
        post_create(author=alice, content="a reply", parent_id=parent.id)
    assert Post.objects.get(id=parent.id).replies_count == 3


def test_reply_to_a_missing_post_is_refused_and_writes_nothing(alice):
    with pytest.raises(NotFound) as error:
        post_create(author=alice, content="hello?", parent_id=123456789)
    assert error.value.messages == [PARENT_MISSING]
    assert Post.objects.count() == 0
    assert refreshed(alice).posts_count == 0


def test_reply_to_a_deleted_post_is_refused_and_writes_nothing(alice, bob, make_post):
    parent = make_post(alice, "soon gone")
    post_delete(post=parent, actor=alice)
    with pytest.raises(NotFound) as error:
        post_create(author=bob, content="too late", parent_id=parent.id)
    assert error.value.messages == [PARENT_MISSING]
    assert Post.objects.count() == 0
    assert refreshed(bob).posts_count == 0


def test_post_delete_restores_the_counters(alice, bob, make_post):
    parent = make_post(alice, "parent")
    reply = make_post(bob, "reply", parent=parent)
    make_post(bob, "another reply", parent=parent)

    post_delete(post=reply, actor=bob)

    assert not Post.objects.filter(id=reply.id).exists()
    assert Post.objects.get(id=parent.id).replies_count == 1
    assert refreshed(bob).posts_count == 1
    assert refreshed(alice).posts_count == 1


def test_deleting_the_same_post_twice_changes_the_counters_once(alice, make_post):
    parent = make_post(alice, "parent")
    reply = make_post(alice, "reply", parent=parent)
    post_delete(post=reply, actor=alice)
    post_delete(post=reply, actor=alice)  # e.g. a double-clicked button: a no-op the second time
    assert Post.objects.get(id=parent.id).replies_count == 0
    assert refreshed(alice).posts_count == 1


def test_post_delete_by_another_user_is_refused(alice, bob, make_post):
    post = make_post(alice, "mine")
    with pytest.raises(NotAllowed):
        post_delete(post=post, actor=bob)
    assert Post.objects.filter(id=post.id).exists()
    assert refreshed(alice).posts_count == 1


def test_staff_may_delete_any_post_through_the_service(alice, make_user, make_post):
    moderator = make_user("moderator", is_staff=True)
    post = make_post(alice, "spam")
    post_delete(post=post, actor=moderator)
    assert not Post.objects.filter(id=post.id).exists()
    assert refreshed(alice).posts_count == 0


# --- Compose route -------------------------------------------------------------------------------


def test_compose_needs_log_in(client, alice):
    response = client.post("/posts", {"content": "anonymous?"})
    assert response.status_code == 302
    assert response["Location"] == "/login?next=/posts"
    assert Post.objects.count() == 0


def test_compose_publishes_and_shows_the_post_on_the_home_page(alice, client_for):
    client = client_for(alice)
    response = client.post("/posts", {"content": "  my first post  "})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert Post.objects.get().content == "my first post"
    assert refreshed(alice).posts_count == 1

    page = text(client.get("/"))
    assert "Your post was published." in page
    assert "my first post" in page


def test_compose_returns_to_the_page_it_was_sent_from(alice, client_for):
    response = client_for(alice).post("/posts", {"content": "hi", "next": "/all"})
    assert response["Location"] == "/all"


def test_compose_ignores_a_next_address_on_another_site(alice, client_for):
    response = client_for(alice).post(
        "/posts", {"content": "hi", "next": "https://evil.example/phish"}
    )
    assert response["Location"] == "/"
    assert Post.objects.count() == 1


def test_compose_accepts_200_characters(alice, client_for):
    response = client_for(alice).post("/posts", {"content": "b" * 200})
    assert response.status_code == 302
    assert Post.objects.get().content == "b" * 200


def test_compose_refuses_201_characters_and_keeps_the_text(alice, client_for):
    too_long = "c" * 201
    response = client_for(alice).post("/posts", {"content": too_long})
    assert response.status_code == 400
    page = text(response)
    assert "Your post was not published" in page
    assert "The post is 201 characters long; the limit is 200." in page
    assert textarea_value(response) == too_long
    assert Post.objects.count() == 0
    assert refreshed(alice).posts_count == 0


@pytest.mark.parametrize("content", ["", "    ", "\r\n\t"])
def test_compose_refuses_empty_content(alice, client_for, content):
    response = client_for(alice).post("/posts", {"content": content})
    assert response.status_code == 400
    assert EMPTY in text(response)
    assert Post.objects.count() == 0


def test_compose_keeps_special_characters_of_a_refused_post(alice, client_for):
    kept = '<b>"Fish & chips"</b> ' + "x" * 200
    response = client_for(alice).post("/posts", {"content": kept})
    assert response.status_code == 400
    assert "<b>" not in response.content.decode().split("<textarea", 1)[1].split("</textarea>")[0]
    assert textarea_value(response) == kept


def test_compose_reply_goes_back_to_the_thread(alice, bob, make_post, client_for):
    parent = make_post(alice, "what do you think?")
    client = client_for(bob)
    response = client.post("/posts", {"content": "I agree", "parent_id": str(parent.id)})
    assert response.status_code == 302
    assert response["Location"] == f"/posts/{parent.id}"
    reply = Post.objects.get(content="I agree")
    assert reply.parent_id == parent.id
    assert reply.author_id == bob.id
    assert Post.objects.get(id=parent.id).replies_count == 1

    page = text(client.get(response["Location"]))
    assert "Your reply was posted." in page
    assert "I agree" in page
    assert "1 reply" in page


def test_compose_reply_to_a_missing_post_is_refused(alice, client_for):
    client = client_for(alice)
    response = client.post("/posts", {"content": "hello?", "parent_id": "987654321"})
    assert response.status_code == 400
    page = text(response)
    assert PARENT_MISSING in page
    assert textarea_value(response) == "hello?"
    assert Post.objects.count() == 0
    assert refreshed(alice).posts_count == 0


def test_compose_reply_to_a_deleted_post_is_refused(alice, bob, make_post, client_for):
    parent = make_post(alice, "deleted soon")
    post_delete(post=parent, actor=alice)
    response = client_for(bob).post("/posts", {"content": "late reply", "parent_id": parent.id})
    assert response.status_code == 400
    assert PARENT_MISSING in text(response)
    assert Post.objects.count() == 0
    assert refreshed(bob).posts_count == 0


@pytest.mark.parametrize("parent_id", ["abc", "0", "-3", "1.5", "9" * 25])
def test_compose_reply_with_a_malformed_parent_id_says_why(alice, client_for, parent_id):
    """A tampered or stale hidden field gets the same clear message, never a bare 400 or a 500."""
    response = client_for(alice).post("/posts", {"content": "hi", "parent_id": parent_id})
    assert response.status_code == 400
    assert PARENT_MISSING in text(response)
    assert Post.objects.count() == 0


def test_refused_reply_shows_the_post_being_replied_to(alice, bob, make_post, client_for):
    parent = make_post(alice, "the original question")
    response = client_for(bob).post("/posts", {"content": " ", "parent_id": parent.id})
    assert response.status_code == 400
    page = text(response)
    assert "Your reply was not posted" in page
    assert "the original question" in page
    assert f'value="{parent.id}"' in page  # the retry still replies to the same post


def test_compose_only_accepts_post(alice, client_for):
    response = client_for(alice).get("/posts")
    assert response.status_code == 405


# --- Delete route --------------------------------------------------------------------------------


def test_delete_asks_for_confirmation_first(alice, make_post, client_for):
    post = make_post(alice, "think twice")
    response = client_for(alice).get(f"/posts/{post.id}/delete")
    assert response.status_code == 200
    page = text(response)
    assert "Delete this post?" in page
    assert "think twice" in page
    assert Post.objects.filter(id=post.id).exists()


def test_delete_post_removes_the_post(alice, make_post, client_for):
    post = make_post(alice, "regrettable")
    client = client_for(alice)
    response = client.post(f"/posts/{post.id}/delete")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not Post.objects.filter(id=post.id).exists()
    assert refreshed(alice).posts_count == 0
    page = text(client.get("/"))
    assert "Your post was deleted." in page
    assert "regrettable" not in page


def test_deleting_a_reply_returns_to_the_parent_and_updates_its_count(
    alice, bob, make_post, client_for
):
    parent = make_post(alice, "parent")
    reply = make_post(bob, "oops", parent=parent)
    client = client_for(bob)
    response = client.post(f"/posts/{reply.id}/delete")
    assert response["Location"] == f"/posts/{parent.id}"
    assert Post.objects.get(id=parent.id).replies_count == 0
    assert refreshed(bob).posts_count == 0
    page = text(client.get(response["Location"]))
    assert "0 replies" in page
    assert "oops" not in page


@pytest.mark.parametrize("method", ["get", "post"])
def test_deleting_another_users_post_is_refused(alice, bob, make_post, client_for, method):
    post = make_post(alice, "alice's words")
    response = getattr(client_for(bob), method)(f"/posts/{post.id}/delete")
    assert response.status_code == 403
    assert "You can only delete your own posts." in text(response)
    assert Post.objects.filter(id=post.id).exists()
    assert refreshed(alice).posts_count == 1


def test_delete_needs_log_in(client, alice, make_post):
    post = make_post(alice)
    response = client.post(f"/posts/{post.id}/delete")
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")
    assert Post.objects.filter(id=post.id).exists()


def test_deleting_a_missing_post_is_404(alice, client_for):
    assert client_for(alice).post("/posts/42/delete").status_code == 404


def test_only_the_author_sees_a_delete_link(alice, bob, make_post, client_for):
    post = make_post(alice, "hello")
    assert f"/posts/{post.id}/delete" in client_for(alice).get(f"/posts/{post.id}").text
    assert f"/posts/{post.id}/delete" not in client_for(bob).get(f"/posts/{post.id}").text


def test_replies_stay_and_say_their_parent_was_deleted(
    alice, bob, make_user, make_post, client_for
):
    carol = make_user("carol")
    follow_create(follower=carol, followed=bob)
    parent = make_post(alice, "the deleted original")
    reply = make_post(bob, "a reply that stays", parent=parent)

    client_for(alice).post(f"/posts/{parent.id}/delete")

    assert Post.objects.get(id=reply.id).parent_id == parent.id
    feed = text(client_for(carol).get("/following"))
    assert "a reply that stays" in feed
    assert "Replying to a deleted post" in feed
    assert "the deleted original" not in feed

    thread = text(client_for(carol).get(f"/posts/{reply.id}"))
    assert "This post was deleted." in thread  # its placeholder, above the reply
    assert "the deleted original" not in thread
    assert "a reply that stays" in thread


def test_reply_to_a_live_post_names_its_author(alice, bob, make_user, make_post, client_for):
    carol = make_user("carol")
    follow_create(follower=carol, followed=bob)
    parent = make_post(alice, "original")
    make_post(bob, "a reply", parent=parent)
    feed = text(client_for(carol).get("/following"))
    assert "Replying to" in feed
    assert f'href="/posts/{parent.id}">@alice</a>' in feed
    assert "deleted post" not in feed


# --- Display helpers -----------------------------------------------------------------------------

NOW = datetime(2025, 6, 15, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (timedelta(0), "now"),
        (timedelta(seconds=44), "now"),
        (timedelta(seconds=45), "1m"),
        (timedelta(seconds=119), "1m"),
        (timedelta(minutes=2), "2m"),
        (timedelta(minutes=59, seconds=59), "59m"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=23, minutes=59), "23h"),
        (timedelta(days=1), "1d"),
        (timedelta(days=6, hours=23), "6d"),
        (timedelta(days=7), "Jun 8"),
        (timedelta(days=160), "Jan 6"),
        (timedelta(days=400), "May 11, 2024"),
    ],
)
def test_reltime_shows_twitter_style_relative_times(ago, shown):
    assert reltime(NOW - ago, now=NOW) == shown


def test_reltime_shows_now_for_a_time_slightly_in_the_future():
    """Clocks of two servers differ a little; a post is never shown as written "in -1m"."""
    assert reltime(NOW + timedelta(seconds=5), now=NOW) == "now"


def test_reltime_counts_from_the_current_time_by_default():
    assert reltime(datetime.now(UTC) - timedelta(hours=3)) == "3h"


@pytest.mark.parametrize(
    ("username", "shown"),
    [
        ("alice_smith", "AS"),
        ("bob", "B"),
        ("alice_smith_jones", "AS"),
        ("zoe9", "Z"),
        ("_bob", "B"),
        ("bob_", "B"),
        ("__ann__lee", "AL"),
        ("42", "4"),
        ("", "?"),
        (None, "?"),
    ],
)
def test_initials_for_avatars(username, shown):
    assert initials(username) == shown


# --- links in posts -------------------------------------------------------------------------


def post_html(client, post) -> str:
    """The raw HTML of the post's text paragraph on its own page."""
    page = client.get(f"/posts/{post.id}").content.decode()
    found = re.search(rf'id="post-{post.id}">.*?<p class="post-content">(.*?)</p>', page, re.S)
    assert found, page
    return found.group(1)


def test_http_and_https_addresses_become_shortened_nofollow_links(client, alice, make_post):
    long_path = "/a-rather-long-path/that-goes/on-and-on?page=2&sort=new"
    post = make_post(alice, f"Read https://example.org{long_path}. And (http://example.com/x)!")

    body = post_html(client, post)

    full = f"https://example.org{long_path}".replace("&", "&amp;")
    assert (
        f'Read <a href="{full}" title="{full}" rel="nofollow noopener ugc">'
        "example.org/a-rather-long-pat\u2026</a>. And "
        '(<a href="http://example.com/x" title="http://example.com/x" '
        'rel="nofollow noopener ugc">example.com/x</a>)!'
    ) == body


@pytest.mark.parametrize(
    "content",
    [
        "javascript:alert(1)",
        "JavaScript://%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "xhttp://example.org",
        "see ftp://example.org",
        "http://",
        'http://example.org/"onmouseover="alert(1)',
        "https://example.org/<script>alert(1)</script>",
        "https://exa<b>mple.org/",
        "http://'><img src=x onerror=alert(1)>",
    ],
)
def test_links_never_carry_markup_or_another_scheme(client, alice, make_post, content):
    post = make_post(alice, content)
    body = post_html(client, post)
    # Whatever was linked, the text reads exactly as typed...
    assert html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\u2026", "") in content
    # ...every tag is one of our links, and every link an http(s) address with no quote in it.
    assert re.sub(
        r'<a href="https?://[^"<>]*" title="[^"<>]*" rel="nofollow noopener ugc">', "", body
    ).count("<") == body.count("</a>")
    for href in re.findall(r'href="([^"]*)"', body):
        assert href.lower().startswith(("http://", "https://")), href
        assert "<" not in html.unescape(href) or "&lt;" not in href
    assert "<script" not in body and "<img" not in body and "<b>" not in body


def test_a_post_without_an_address_has_no_link(client, alice, make_post):
    post = make_post(alice, "no links <a href=x>here</a>")
    assert post_html(client, post) == "no links &lt;a href=x&gt;here&lt;/a&gt;"


# --- 404 pages in development -------------------------------------------------------------


def test_a_deleted_or_hidden_post_shows_our_404_page_under_debug_too(
    client, alice, bob, make_post, settings, client_for
):
    """`make run` sets DEBUG=1: an expected 404 is our page, not Django's technical one that
    lists every URL pattern."""
    from microblog.moderation.services import review

    staff = refreshed(alice)
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    hidden = make_post(bob, "hidden")
    review(staff=staff, post_id=hidden.id, action="hide")
    gone = make_post(bob, "gone")
    post_delete(post=gone, actor=bob)
    settings.DEBUG = True
    for path in (f"/posts/{gone.id}", f"/posts/{hidden.id}", "/@nobody"):
        response = client.get(path)
        assert response.status_code == 404, path
        page = response.content.decode()
        assert "That page does not exist, or it was deleted." in page, path
        assert "URLconf" not in page and "Using the URLconf" not in page, path


# --- The admin -------------------------------------------------------------------------------


def test_the_post_admin_shows_a_post_read_only_and_changes_nothing(
    alice, bob, make_post, make_user, client_for
):
    """Author, parent and text are what counters, feed entries and threads were computed from:
    the admin shows them and saves no change to them (a change page posted by hand included)."""
    root = make_user("root", is_staff=True, is_superuser=True)
    parent = make_post(bob, "bob's post")
    post = make_post(alice, "alice's reply", parent=parent)
    client = client_for(root)
    page = client.get(f"/admin/posts/post/{post.id}/change/")
    assert page.status_code == 200
    assert "alice's reply" in text(page)
    assert 'name="content"' not in page.content.decode()
    assert 'name="author"' not in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    response = client.post(
        f"/admin/posts/post/{post.id}/change/",
        {"author": bob.id, "parent": "", "content": "words alice never wrote", "_save": "Save"},
    )
    assert response.status_code == 403
    post.refresh_from_db()
    assert (post.author_id, post.parent_id, post.content) == (alice.id, parent.id, "alice's reply")
    assert refreshed(alice).posts_count == 1 and refreshed(bob).posts_count == 1
    assert Post.objects.get(id=parent.id).replies_count == 1
