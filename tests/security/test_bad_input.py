"""Bad input never causes a 500.

Every hostile or malformed request gets a clear message (an HTML page, or a JSON error for
`Accept: application/json`), the right status code, and leaves the database as it was. The list of
input classes tried and what the user gets is in docs/hostile-input.md.

Cases of one kind run as subtests of one test: every test here is transactional (see conftest), and
emptying the database after each of ~350 separate tests took minutes on PostgreSQL.
"""

import html
import json
import unicodedata
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlencode

import pytest
from django.http import HttpResponse
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microblog.accounts.models import DESCRIPTION_MAX_LENGTH, User
from microblog.accounts.services import user_update_profile
from microblog.core.errors import Invalid
from microblog.core.validators import is_blank
from microblog.follows.models import Follow
from microblog.moderation.models import Block, ModerationAction, Mute, Report
from microblog.posts.models import CONTENT_MAX_LENGTH, Post
from microblog.posts.services import post_create
from tests.conftest import PASSWORD, refreshed

JSON = {"Accept": "application/json"}
FORM_URLENCODED = "application/x-www-form-urlencoded"

CONTROL_MESSAGE = "Remove the invisible control characters from the text."
NULL_MESSAGE = "Null characters are not allowed."
BAD_CURSOR = "That page link is not valid. Go back to the first page and try again."
NOT_FOUND = "That page does not exist, or it was deleted."
PARENT_MISSING = "The post you are replying to no longer exists."
USERNAME_CHARS = "A username may contain only letters, digits and underscores."
LOGIN_FAILED = "Incorrect username or password."
CSRF_MESSAGE = "its security token was missing or expired"
REQUIRED = "This field is required."

# Control characters in a text field, each with the message the user gets.
CONTROL_CASES = [
    ("\x00", NULL_MESSAGE),
    ("\x07", CONTROL_MESSAGE),  # bell
    ("\x1b[31m", CONTROL_MESSAGE),  # terminal escape
    ("\u202e", CONTROL_MESSAGE),  # right-to-left override ("Trojan Source")
    ("\u2066", CONTROL_MESSAGE),  # bidi isolate
    ("\x85", CONTROL_MESSAGE),  # C1 "next line"
]


# --- helpers --------------------------------------------------------------------------------


def counts() -> tuple[int, int, int, int]:
    """Rows that a refused request must not add or remove (moderation rows: reports, blocks,
    mutes and audit log entries, together)."""
    moderation = sum(model.objects.count() for model in (Report, Block, Mute, ModerationAction))
    return User.objects.count(), Post.objects.count(), Follow.objects.count(), moderation


@pytest.fixture
def unchanged(db: None) -> Iterator[None]:
    """Fails the test if any User, Post or Follow row was added or removed during it."""
    before = counts()
    yield
    assert counts() == before, "the database changed"


def page_text(response: HttpResponse) -> str:
    """The page as the user reads it: HTML entities decoded."""
    return html.unescape(response.content.decode())


def assert_page(response: HttpResponse, status: int, message: str) -> None:
    assert response.status_code == status, page_text(response)[-3000:]
    assert response["Content-Type"].startswith("text/html")
    assert message in page_text(response)


def assert_json_error(response: HttpResponse, status: int, message: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["error"]["status"] == status
    assert message in body["error"]["message"]


def assert_error_page(response: HttpResponse, status: int, message: str) -> None:
    """One of the app's own error pages: the message, and a way back home."""
    assert_page(response, status, message)
    assert 'href="/"' in response.content.decode()


def signed_in(user: User, **kwargs: object) -> Client:
    client = Client(**kwargs)  # type: ignore[arg-type]
    client.force_login(user)
    return client


def is_signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def alice_post(alice: User, make_post: Callable[..., Post]) -> Post:
    return make_post(alice, "a post to page through")


# --- posts: content and parent_id ---------------------------------------------------------

BAD_CONTENT = [
    ("", "Write something: the post cannot be empty."),
    (" \n\t \r\n ", "Write something: the post cannot be empty."),
    ("x" * 201, "The post is 201 characters long; the limit is 200."),
    ("x" * 5000, "The post is 5000 characters long; the limit is 200."),
    *[(f"hello {char} world", message) for char, message in CONTROL_CASES],
]


def test_bad_post_content_is_refused_with_a_message_and_nothing_saved(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for content, message in BAD_CONTENT:
        with subtests.test(content=content[:20]):
            response = client.post("/posts", {"content": content, "parent_id": ""})
            assert_page(response, 400, message)
            assert "Your post was not published" in page_text(response)
    assert refreshed(alice).posts_count == 0


def test_refused_post_keeps_the_text_the_user_wrote(alice: User, unchanged: None) -> None:
    text = "my long thoughts " * 20
    response = signed_in(alice).post("/posts", {"content": text})
    assert response.status_code == 400
    assert text in page_text(response)


BAD_PARENT_IDS = [
    "999999",  # no such post
    "0",
    "-1",
    "abc",
    "1.5",
    "1e5",
    "9" * 25,
    "9" * 19,  # 19 digits, over the 64-bit range
    str(1 << 63),
    "\u0661\u0662\u0663",  # Arabic-Indic digits
    "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
    "1\x00",
    "'; DROP TABLE posts_post; --",
]


def test_reply_to_a_missing_or_malformed_parent_is_refused(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for parent_id in BAD_PARENT_IDS:
        with subtests.test(parent_id=parent_id):
            response = client.post("/posts", {"content": "a reply", "parent_id": parent_id})
            assert_page(response, 400, PARENT_MISSING)
            assert "a reply" in page_text(response)  # the text is kept


def test_reply_to_a_deleted_post_is_refused(alice: User, make_post: Callable[..., Post]) -> None:
    post = make_post(alice, "soon gone")
    post_id = post.id
    post.delete()
    before = counts()
    response = signed_in(alice).post("/posts", {"content": "too late", "parent_id": str(post_id)})
    assert_page(response, 400, PARENT_MISSING)
    assert counts() == before


def test_empty_parent_id_publishes_a_top_level_post(alice: User) -> None:
    response = signed_in(alice).post("/posts", {"content": "top level", "parent_id": ""})
    assert response.status_code == 302
    post = Post.objects.get()
    assert (post.content, post.parent_id, post.author_id) == ("top level", None, alice.id)


def test_author_fields_smuggled_into_compose_are_ignored(alice: User, bob: User) -> None:
    response = signed_in(alice).post(
        "/posts", {"content": "mine", "author": bob.id, "author_id": bob.id, "id": 5}
    )
    assert response.status_code == 302
    post = Post.objects.get()
    assert post.author_id == alice.id
    assert post.id != 5
    assert refreshed(bob).posts_count == 0


def test_compose_next_never_leaves_the_site_or_breaks_the_redirect(
    alice: User, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for next_url in [
        "https://evil.example/",
        "//evil.example/",
        "javascript:alert(1)",
        "/\x00",
        "/\r\nX-A: b",
    ]:
        with subtests.test(next=next_url):
            response = client.post("/posts", {"content": "hello", "next": next_url})
            assert response.status_code == 302
            location = response["Location"]
            assert location.startswith("/")
            assert not location.startswith("//")
            assert not any(char in location for char in "\r\n\x00")
            assert "X-A" not in response.headers


# --- bios ---------------------------------------------------------------------------------


@pytest.fixture
def carol(make_user: Callable[..., User]) -> User:
    return make_user("carol", description="old bio")


BAD_BIOS = [
    ("b" * 121, "The bio is 121 characters long; the limit is 120."),
    ("b" * 9000, "The bio is 9000 characters long; the limit is 120."),
    *[(f"my bio {char}!", message) for char, message in CONTROL_CASES],
]


def test_bad_bio_is_refused_with_a_message_and_nothing_saved(
    carol: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(carol)
    for description, message in BAD_BIOS:
        with subtests.test(description=description[:20]):
            assert_page(client.post("/settings", {"description": description}), 400, message)
            assert refreshed(carol).description == "old bio"


def test_empty_or_whitespace_bio_clears_the_bio(
    carol: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(carol)
    for description in ["", "   ", " \r\n\t "]:
        with subtests.test(description=description):
            User.objects.filter(id=carol.id).update(description="old bio")
            assert client.post("/settings", {"description": description}).status_code == 302
            assert refreshed(carol).description == ""


# --- sign-up and log-in -------------------------------------------------------------------

BAD_USERNAMES = [
    ("alice", "That username is taken."),
    ("ALICE", "That username is taken."),
    ("  alice  ", "That username is taken."),
    ("", REQUIRED),
    ("   ", REQUIRED),
    ("a b", USERNAME_CHARS),
    ("../etc/passwd", USERNAME_CHARS),
    ("<script>alert(1)</script>", USERNAME_CHARS),
    ("robert'); DROP TABLE accounts_user; --", USERNAME_CHARS),
    ("a" * 51, "A username can be at most 50 characters long."),
    ("\u00e5lice", USERNAME_CHARS),  # a letter, but not ASCII
    ("\uff41lice", USERNAME_CHARS),  # fullwidth "a"
    ("\U0001f600", USERNAME_CHARS),  # emoji
    ("bob\x00", NULL_MESSAGE),
    ("bob\x07", USERNAME_CHARS),
    ("bob\x1b", USERNAME_CHARS),
    ("bob\u202e", USERNAME_CHARS),
]


def test_taken_or_malformed_username_is_refused_at_sign_up(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    for username, message in BAD_USERNAMES:
        with subtests.test(username=username):
            client = Client()
            response = client.post(
                "/signup",
                {"username": username, "password": PASSWORD, "password_confirmation": PASSWORD},
            )
            assert_page(response, 400, message)
            assert not is_signed_in(client)


BAD_SIGNUP_PASSWORDS = [
    (PASSWORD, PASSWORD + "x", "The two passwords do not match."),
    (PASSWORD, "", REQUIRED),
    ("", "", REQUIRED),
    ("password", "password", "This password is too common."),
    ("x7", "x7", "This password is too short."),
    ("84920573619", "84920573619", "entirely numeric"),
    ("newcomer1", "newcomer1", "too similar to the username"),
    (PASSWORD + "\x00", PASSWORD + "\x00", NULL_MESSAGE),
]


def test_bad_passwords_are_refused_at_sign_up(
    db: None, unchanged: None, subtests: pytest.Subtests
) -> None:
    for password, confirmation, message in BAD_SIGNUP_PASSWORDS:
        with subtests.test(password=password, confirmation=confirmation):
            client = Client()
            response = client.post(
                "/signup",
                {
                    "username": "newcomer",
                    "password": password,
                    "password_confirmation": confirmation,
                },
            )
            assert_page(response, 400, message)
            assert not is_signed_in(client)


BAD_LOGINS = [
    ("alice\x00", PASSWORD),
    ("alice", PASSWORD + "\x00"),
    ("\x00", "\x00"),
    ("alice\x07", PASSWORD),
    ("alice\u202e", PASSWORD),
    ("alice", "\x1b" + PASSWORD),
    ("a" * 300, PASSWORD),
    ("alice", "x" * 10_000),
    ("' OR '1'='1", "' OR '1'='1"),
    ("", ""),
    ("nobody", PASSWORD),
]


def test_malformed_log_in_is_refused_without_signing_in(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    for username, password in BAD_LOGINS:
        with subtests.test(username=username[:20], password=password[:30]):
            client = Client()
            response = client.post("/login", {"username": username, "password": password})
            assert_page(response, 400, LOGIN_FAILED)
            assert not is_signed_in(client)


def test_login_next_with_markup_is_rendered_escaped(db: None) -> None:
    response = Client().get('/login?next=/"><script>alert(1)</script>')
    assert response.status_code == 200
    assert "<script>alert(1)" not in response.content.decode()


# --- cursors, ids and usernames in addresses ----------------------------------------------

# Put into the query string as written (already percent-encoded where needed).
BAD_CURSORS = [
    "abc",
    "-1",
    "1e5",
    "1.5",
    "9" * 30,
    str(1 << 63),  # just over the 64-bit range
    "%00",
    "1%00",
    "%FF",  # not UTF-8
    quote("\u0661\u0662\u0663"),  # Arabic-Indic digits
    quote("\u00b2"),  # superscript two
    "%201",  # leading space
    "0x10",
    quote("'; DROP TABLE posts_post; --"),
]

CURSOR_PAGES = [
    "/",
    "/following",
    "/all",
    "/@alice",
    "/@alice/followers",
    "/@alice/following",
    "/posts/{post_id}",
]


def test_malformed_cursor_is_a_400_page_that_explains(
    alice: User, alice_post: Post, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for page in CURSOR_PAGES:
        for cursor in BAD_CURSORS:
            with subtests.test(page=page, cursor=cursor):
                url = page.format(post_id=alice_post.id) + "?cursor=" + cursor
                assert_error_page(client.get(url), 400, BAD_CURSOR)
                htmx = client.get(url, headers={"HX-Request": "true"})
                assert_error_page(htmx, 400, BAD_CURSOR)
                assert_json_error(client.get(url, headers=JSON), 400, BAD_CURSOR)


def test_malformed_cursor_is_a_400_for_visitors_too(
    alice_post: Post, unchanged: None, subtests: pytest.Subtests
) -> None:
    for page in CURSOR_PAGES:
        if page == "/following":
            continue  # signed-in only
        with subtests.test(page=page):
            url = page.format(post_id=alice_post.id) + "?cursor=abc"
            assert_error_page(Client().get(url), 400, BAD_CURSOR)


def test_unknown_but_well_formed_cursor_is_an_ordinary_page(
    alice: User, alice_post: Post, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for page in CURSOR_PAGES:
        for cursor in ["", "1", "12345", str((1 << 63) - 1)]:
            with subtests.test(page=page, cursor=cursor):
                url = page.format(post_id=alice_post.id) + "?cursor=" + cursor
                assert client.get(url).status_code == 200


BAD_POST_PATHS = [
    "/posts/" + "9" * 20,
    "/posts/" + "1" * 40,
    "/posts/" + str(1 << 63),
    "/posts/0",
    "/posts/-1",
    "/posts/abc",
    "/posts/1e5",
    "/posts/" + quote("\u0661\u0662\u0663"),
    "/posts/1%00",
    "/posts/%FF",
    "/posts/" + "9" * 20 + "/delete",
    "/posts/" + str(1 << 63) + "/delete",
    "/posts/0/delete",
    f"/posts/{(1 << 63) - 1}",  # well formed, no such post
    f"/posts/{(1 << 63) - 1}/delete",
]


def test_malformed_or_unknown_post_ids_in_the_address_are_404(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for path in BAD_POST_PATHS:
        with subtests.test(path=path):
            assert_error_page(client.get(path), 404, NOT_FOUND)
            assert_json_error(client.get(path, headers=JSON), 404, NOT_FOUND)
    assert_error_page(client.post("/posts/123456789/delete"), 404, NOT_FOUND)


BAD_USERNAMES_IN_PATH = [
    "nobody",
    "%00",
    "alice%00",
    quote("\u00e5lice"),
    quote("\U0001f600"),
    "a" * 51,
    "..%2F..%2Fetc%2Fpasswd",
    "%3Cscript%3E",
    "alice%20",
    "alice'--",
]


def test_unknown_or_malformed_usernames_in_the_address_are_404(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    for client in [Client(), signed_in(alice)]:
        for username in BAD_USERNAMES_IN_PATH:
            for suffix in ["", "/followers", "/following"]:
                with subtests.test(path=f"/@{username}{suffix}"):
                    assert_error_page(client.get(f"/@{username}{suffix}"), 404, NOT_FOUND)


def test_following_an_unknown_or_malformed_username_is_404(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for username in ["nobody", "%00", quote("\u00e5lice"), "a" * 51]:
        for action in ["follow", "unfollow"]:
            with subtests.test(username=username, action=action):
                assert_error_page(client.post(f"/@{username}/{action}"), 404, NOT_FOUND)
    assert refreshed(alice).following_count == 0


def test_following_yourself_is_refused_with_a_message(alice: User, unchanged: None) -> None:
    response = signed_in(alice).post("/@alice/follow", follow=True)
    assert response.status_code == 200
    assert "You can't follow yourself." in page_text(response)
    assert refreshed(alice).following_count == 0


UNKNOWN_ROUTES = [
    "/nope",
    "/posts/1/nope",
    "/.env",
    "/wp-login.php",
    "/%00",
    "/@",
    "/@alice/posts",
    "/settings/" + "x" * 300,
    "/" + quote("\u00e5"),
]


def test_unknown_routes_get_our_404_page_with_a_link_home(
    db: None, subtests: pytest.Subtests
) -> None:
    for path in UNKNOWN_ROUTES:
        with subtests.test(path=path):
            assert_error_page(Client().get(path), 404, NOT_FOUND)
            assert_json_error(Client().get(path, headers=JSON), 404, NOT_FOUND)


# --- CSRF ---------------------------------------------------------------------------------

# (path, signed in as alice?, form data that would change something if accepted)
POST_FORMS = [
    ("/signup", False, {"username": "newcomer", "password": PASSWORD}),
    ("/login", False, {"username": "alice", "password": PASSWORD}),
    ("/logout", True, {}),
    ("/settings", True, {"description": "changed"}),
    (
        "/settings/password",
        True,
        {
            "current_password": PASSWORD,
            "new_password": "another-long-passphrase",
            "new_password_confirmation": "another-long-passphrase",
        },
    ),
    ("/settings/delete", True, {"password": PASSWORD}),
    ("/posts", True, {"content": "hello"}),
    ("/posts/{post_id}/delete", True, {}),
    ("/@bob/follow", True, {}),
    ("/@bob/unfollow", True, {}),
    ("/posts/{post_id}/report", True, {"reason": "spam"}),
    ("/@bob/block", True, {}),
    ("/@bob/unblock", True, {}),
    ("/@bob/mute", True, {}),
    ("/@bob/unmute", True, {}),
    ("/staff/moderation/posts/{post_id}/hide", True, {}),
]


def test_post_without_csrf_token_is_a_403_that_explains_and_changes_nothing(
    alice: User, bob: User, alice_post: Post, subtests: pytest.Subtests
) -> None:
    Follow.objects.create(follower=alice, followed=bob)
    before = counts()
    for path, as_alice, data in POST_FORMS:
        with subtests.test(path=path):
            client = Client(enforce_csrf_checks=True)
            if as_alice:
                client.force_login(alice)
            url = path.format(post_id=alice_post.id)

            response = client.post(url, data)
            assert_error_page(response, 403, CSRF_MESSAGE)
            assert "Form expired" in page_text(response)
            assert_json_error(client.post(url, data, headers=JSON), 403, CSRF_MESSAGE)

            assert counts() == before
            assert is_signed_in(client) == as_alice
            user = refreshed(alice)
            assert user.description == ""
            assert user.check_password(PASSWORD)


# --- wrong HTTP methods -------------------------------------------------------------------

WRONG_METHODS = [
    ("get", "/logout", "POST"),
    ("put", "/logout", "POST"),
    ("get", "/posts", "POST"),
    ("delete", "/posts", "POST"),
    ("get", "/@bob/follow", "POST"),
    ("get", "/@bob/unfollow", "POST"),
    ("get", "/settings/password", "POST"),
    ("get", "/settings/delete", "POST"),
    ("put", "/settings", "GET, POST"),
    ("delete", "/settings", "GET, POST"),
    ("patch", "/settings", "GET, POST"),
    ("put", "/signup", "GET, POST"),
    ("patch", "/login", "GET, POST"),
    ("delete", "/posts/{post_id}", "GET, HEAD"),
    ("put", "/posts/{post_id}", "GET, HEAD"),
    ("post", "/posts/{post_id}", "GET, HEAD"),
    ("delete", "/posts/{post_id}/delete", "GET, POST"),
    ("put", "/posts/{post_id}/delete", "GET, POST"),
    ("post", "/", "GET, HEAD"),
    ("delete", "/", "GET, HEAD"),
    ("post", "/following", "GET, HEAD"),
    ("post", "/all", "GET, HEAD"),
    ("delete", "/@alice", "GET, HEAD"),
    ("post", "/@alice", "GET, HEAD"),
    ("put", "/@alice/followers", "GET, HEAD"),
    ("post", "/@alice/following", "GET, HEAD"),
    ("post", "/up", "GET, HEAD"),
    ("put", "/posts/{post_id}/report", "GET, POST"),
    ("put", "/@bob/block", "GET, POST"),
    ("get", "/@bob/unblock", "POST"),
    ("get", "/@bob/mute", "POST"),
    ("get", "/@bob/unmute", "POST"),
]


def test_wrong_method_is_a_405_that_explains_with_an_allow_header(
    alice: User, bob: User, alice_post: Post, subtests: pytest.Subtests
) -> None:
    Follow.objects.create(follower=alice, followed=bob)
    before = counts()
    client = signed_in(alice)
    for method, path, allow in WRONG_METHODS:
        with subtests.test(request=f"{method.upper()} {path}"):
            url = path.format(post_id=alice_post.id)
            send = getattr(client, method)
            message = f"This address does not accept {method.upper()} requests."

            response = send(url)
            assert_error_page(response, 405, message)
            assert response["Allow"] == allow
            json_response = send(url, headers=JSON)
            assert_json_error(json_response, 405, message)
            assert json_response["Allow"] == allow

            assert counts() == before
            assert is_signed_in(client)


def test_pages_that_refuse_writes_still_answer_head_requests(
    alice: User, alice_post: Post, subtests: pytest.Subtests
) -> None:
    """HEAD (link checkers, monitors) gets the page's status without a body."""
    for path in [f"/posts/{alice_post.id}", "/@alice", "/@alice/followers", "/@alice/following"]:
        with subtests.test(path=path):
            response = Client().head(path)
            assert response.status_code == 200
            assert response.content == b""


# --- other people's things ----------------------------------------------------------------


def test_deleting_someone_elses_post_is_a_403_and_the_post_stays(
    alice: User, bob: User, alice_post: Post, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(bob)
    for method in ["get", "post"]:
        with subtests.test(method=method):
            response = getattr(client, method)(f"/posts/{alice_post.id}/delete")
            assert_page(response, 403, "You can only delete your own posts.")
            assert Post.objects.filter(id=alice_post.id).exists()
            assert refreshed(alice).posts_count == 1


def test_visitor_deleting_a_post_is_sent_to_log_in(alice_post: Post, unchanged: None) -> None:
    response = Client().post(f"/posts/{alice_post.id}/delete")
    assert response.status_code == 302
    assert response["Location"].startswith("/login")


def test_profile_fields_smuggled_into_settings_change_only_the_signed_in_user(
    alice: User, bob: User, unchanged: None
) -> None:
    bob.description = "bob's bio"
    bob.save()
    response = signed_in(alice).post(
        "/settings",
        {
            "description": "alice's new bio",
            "username": "bob",
            "user_id": str(bob.id),
            "id": str(bob.id),
            "is_staff": "on",
            "is_superuser": "on",
            "posts_count": "1000",
        },
    )
    assert response.status_code == 302
    alice, bob = refreshed(alice), refreshed(bob)
    assert (alice.username, alice.description) == ("alice", "alice's new bio")
    assert (bob.username, bob.description) == ("bob", "bob's bio")
    assert not alice.is_staff and not alice.is_superuser
    assert alice.posts_count == 0


def test_password_change_with_a_smuggled_username_changes_only_the_signed_in_user(
    alice: User, bob: User
) -> None:
    response = signed_in(alice).post(
        "/settings/password",
        {
            "username": "bob",
            "user_id": str(bob.id),
            "current_password": PASSWORD,
            "new_password": "another-long-passphrase",
            "new_password_confirmation": "another-long-passphrase",
        },
    )
    assert response.status_code == 302
    assert refreshed(alice).check_password("another-long-passphrase")
    assert refreshed(bob).check_password(PASSWORD)


def test_account_deletion_with_a_smuggled_username_deletes_only_the_signed_in_user(
    alice: User, bob: User
) -> None:
    response = signed_in(bob).post(
        "/settings/delete", {"password": PASSWORD, "username": "alice", "user_id": str(alice.id)}
    )
    assert response.status_code == 302
    assert User.objects.filter(id=alice.id).exists()
    assert not User.objects.filter(id=bob.id).exists()


NEW = "another-long-passphrase"
BAD_SETTINGS_FORMS = [
    (
        "/settings/password",
        {"current_password": "wrong", "new_password": NEW, "new_password_confirmation": NEW},
        "Your current password is not correct.",
    ),
    (
        "/settings/password",
        {"current_password": PASSWORD, "new_password": NEW, "new_password_confirmation": NEW + "!"},
        "The two new passwords do not match.",
    ),
    (
        "/settings/password",
        {
            "current_password": PASSWORD,
            "new_password": "password",
            "new_password_confirmation": "password",
        },
        "This password is too common.",
    ),
    (
        "/settings/password",
        {
            "current_password": PASSWORD + "\x00",
            "new_password": NEW + "\x00",
            "new_password_confirmation": NEW + "\x00",
        },
        NULL_MESSAGE,
    ),
    ("/settings/password", {}, REQUIRED),
    (
        "/settings/delete",
        {"password": "wrong"},
        "That password is not correct, so the account was not deleted.",
    ),
    ("/settings/delete", {"password": PASSWORD + "\x00"}, NULL_MESSAGE),
    ("/settings/delete", {}, REQUIRED),
]


def test_bad_password_forms_in_settings_are_refused_and_change_nothing(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for path, data, message in BAD_SETTINGS_FORMS:
        with subtests.test(path=path, message=message):
            assert_page(client.post(path, data), 400, message)
            assert refreshed(alice).check_password(PASSWORD)
            assert is_signed_in(client)


# --- markup and SQL-like text -------------------------------------------------------------

SCRIPT = "<script>alert('x')</script><img src=x onerror=alert(1)>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
SQL = "'; DROP TABLE posts_post; --"


def test_markup_in_posts_is_stored_as_text_and_shown_escaped_everywhere(
    alice: User, bob: User, subtests: pytest.Subtests
) -> None:
    Follow.objects.create(follower=bob, followed=alice)
    client = signed_in(alice)
    assert client.post("/posts", {"content": SCRIPT}).status_code == 302
    post = Post.objects.get()
    assert post.content == SCRIPT
    assert client.post("/posts", {"content": SCRIPT, "parent_id": post.id}).status_code == 302

    # Pages that must show the post; the personal feeds may or may not show it yet, but whatever
    # they show is escaped.
    shown = ["/all", "/@alice", f"/posts/{post.id}"]
    viewers = [("visitor", Client(), ["/"]), ("alice", client, []), ("bob", signed_in(bob), [])]
    for name, viewer, extra in viewers:
        for page in ["/", "/following", "/all", "/@alice", f"/posts/{post.id}"]:
            with subtests.test(viewer=name, page=page):
                response = viewer.get(page, follow=True)
                body = response.content.decode()
                assert response.status_code == 200
                assert "<script>alert" not in body and "<img src=x" not in body
                if page in shown + extra:
                    assert ESCAPED_SCRIPT in body


def test_markup_in_bios_is_stored_as_text_and_shown_escaped(alice: User) -> None:
    script = SCRIPT[: DESCRIPTION_MAX_LENGTH - 1]
    assert signed_in(alice).post("/settings", {"description": script}).status_code == 302
    assert refreshed(alice).description == script
    for viewer in [Client(), signed_in(alice)]:
        body = viewer.get("/@alice").content.decode()
        assert "<script>alert" not in body and "<img src=x" not in body
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in body
    settings_page = signed_in(alice).get("/settings").content.decode()
    assert "<script>alert" not in settings_page
    assert script in html.unescape(settings_page)


def test_refused_post_with_markup_is_shown_back_escaped(alice: User, unchanged: None) -> None:
    content = SCRIPT * 5  # over the length limit
    response = signed_in(alice).post("/posts", {"content": content})
    assert response.status_code == 400
    body = response.content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(" in body
    assert content in html.unescape(body)  # kept for the user to shorten


def test_sql_like_text_is_stored_verbatim_and_tables_survive(alice: User) -> None:
    client = signed_in(alice)
    assert client.post("/posts", {"content": SQL}).status_code == 302
    assert client.post("/settings", {"description": SQL}).status_code == 302
    assert Post.objects.get().content == SQL
    assert refreshed(alice).description == SQL
    assert Client().post("/login", {"username": SQL, "password": SQL}).status_code == 400
    # Every table is still there and readable.
    assert counts() == (1, 1, 0, 0)
    assert SQL in html.unescape(Client().get("/all").content.decode())


# --- huge and malformed bodies ------------------------------------------------------------

# (path, field, signed in as alice?)
BIG_BODY_FORMS = [
    ("/posts", "content", True),
    ("/settings", "description", True),
    ("/signup", "username", False),
    ("/login", "password", False),
]


def test_body_over_the_upload_limit_is_a_413_that_explains(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    for path, field, as_alice in BIG_BODY_FORMS:
        for enforce_csrf in [False, True]:
            with subtests.test(path=path, enforce_csrf=enforce_csrf):
                client = Client(enforce_csrf_checks=enforce_csrf)
                if as_alice:
                    client.force_login(alice)
                data = {field: "x" * 200_000}
                if enforce_csrf:
                    # A browser's form: the CSRF cookie from the page and its token in the body,
                    # so the CSRF check itself has to read the oversized body.
                    page = client.get("/settings" if as_alice else "/login")
                    assert page.status_code == 200
                    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value

                response = client.post(path, data)
                assert_error_page(response, 413, "Payload too large")
                assert "too large to accept" in page_text(response)
                json_response = client.post(path, data, headers=JSON)
                assert_json_error(json_response, 413, "too large to accept")
                assert refreshed(alice).description == ""


def test_body_just_under_the_upload_limit_gets_the_usual_length_message(
    alice: User, unchanged: None
) -> None:
    response = signed_in(alice).post("/posts", {"content": "x" * 60_000})
    assert_page(response, 400, "The post is 60000 characters long; the limit is 200.")


def test_too_many_form_fields_is_a_400_that_explains(alice: User, unchanged: None) -> None:
    data = {f"field{i}": "x" for i in range(1500)} | {"content": "hello"}
    body = urlencode(data)
    assert len(body) < 64 * 1024  # too many fields, not too many bytes
    response = signed_in(alice).post("/posts", body, content_type=FORM_URLENCODED)
    assert_error_page(response, 400, "The request could not be understood.")


GARBLED_BODIES = [
    (b"content=%FF%FE%00", FORM_URLENCODED, NULL_MESSAGE),
    (b"\xff\xfe\x00\x01", FORM_URLENCODED, "Write something: the post cannot be empty."),
    (
        b"--broken\r\nContent-Disposition: form-data\r\n",
        "multipart/form-data; boundary=b",
        "Write something: the post cannot be empty.",
    ),
    (
        b"--b\r\nnonsense\r\n--b--",
        "multipart/form-data; boundary=b",
        "Write something: the post cannot be empty.",
    ),
    (b"not a boundary", "multipart/form-data", "The request could not be understood."),
    (b'{"content": "hello"}', "application/json", "Write something: the post cannot be empty."),
]


def test_garbled_bodies_get_a_400_with_a_message(
    alice: User, unchanged: None, subtests: pytest.Subtests
) -> None:
    client = signed_in(alice)
    for body, content_type, message in GARBLED_BODIES:
        with subtests.test(body=body, content_type=content_type):
            assert_page(client.post("/posts", body, content_type=content_type), 400, message)


# --- the app's own 500 page ---------------------------------------------------------------


@pytest.mark.urls("tests.security.urls_failing_view")
def test_a_bug_shows_our_500_page(db: None) -> None:
    client = Client(raise_request_exception=False)
    response = client.get("/test-only/explode")
    assert_error_page(response, 500, "That was our fault, not yours.")
    assert "a bug, raised on purpose" not in response.content.decode()

    json_response = client.get("/test-only/explode", headers=JSON)
    assert_json_error(json_response, 500, "Something went wrong on our side.")
    assert "a bug, raised on purpose" not in json_response.content.decode()


@pytest.mark.urls("tests.security.urls_failing_view")
def test_the_test_urlconf_still_serves_the_app(db: None) -> None:
    assert Client().get("/all").status_code == 200
    assert_error_page(Client().get("/nope"), 404, NOT_FOUND)


# --- property tests: any text through the services and the form --------------------------

BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
TEXTS = st.one_of(
    st.text(),
    st.text(min_size=CONTENT_MAX_LENGTH - 5, max_size=CONTENT_MAX_LENGTH + 5),
    st.text(alphabet=st.sampled_from("ab <>'\";\\\n\r\t\x00\x07\x1b\x7f\x85\u00a0\u202e\u2066")),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "So"])),
)


def is_invisible_control(char: str) -> bool:
    if char in "\n\t":
        return False
    return unicodedata.category(char) in {"Cc", "Cs"} or char in BIDI_CONTROLS


def trimmed(value: str) -> str:
    """What is stored: the text trimmed, or nothing when only invisible characters are left
    (those are pinned one by one in tests/security/test_security_review.py)."""
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    return "" if is_blank(text) else text


def acceptable(value: str, max_length: int, allow_empty: bool) -> bool:
    text = trimmed(value)
    return (
        "\x00" not in value
        and (allow_empty or text != "")
        and len(text) <= max_length
        and not any(is_invisible_control(c) for c in text)
    )


PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY_SETTINGS
@given(content=TEXTS)
def test_post_create_stores_clean_text_or_refuses_and_saves_nothing(
    alice: User, content: str
) -> None:
    before = counts()
    try:
        post = post_create(author=alice, content=content)
    except Invalid as error:
        assert counts() == before
        assert error.messages and all(error.messages)
        assert not acceptable(content, CONTENT_MAX_LENGTH, allow_empty=False), error.messages
    else:
        assert acceptable(content, CONTENT_MAX_LENGTH, allow_empty=False)
        stored = Post.objects.get(id=post.id).content
        assert stored == trimmed(content)
        assert 1 <= len(stored) <= CONTENT_MAX_LENGTH
        assert not any(is_invisible_control(c) for c in stored)
        assert counts() == (before[0], before[1] + 1, *before[2:])


@PROPERTY_SETTINGS
@given(description=TEXTS)
def test_user_update_profile_stores_clean_text_or_refuses_and_saves_nothing(
    alice: User, description: str
) -> None:
    User.objects.filter(id=alice.id).update(description="previous")
    user = refreshed(alice)
    try:
        user_update_profile(user=user, description=description)
    except Invalid as error:
        assert error.messages and all(error.messages)
        assert refreshed(alice).description == "previous"
        assert not acceptable(description, DESCRIPTION_MAX_LENGTH, allow_empty=True)
    else:
        assert acceptable(description, DESCRIPTION_MAX_LENGTH, allow_empty=True)
        stored = refreshed(alice).description
        assert stored == trimmed(description)
        assert len(stored) <= DESCRIPTION_MAX_LENGTH
        assert not any(is_invisible_control(c) for c in stored)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=TEXTS, parent_id=st.one_of(st.just(""), st.text(max_size=25)))
def test_any_compose_form_input_is_published_or_refused_never_a_500(
    alice: User, content: str, parent_id: str
) -> None:
    client = signed_in(alice, raise_request_exception=False)
    before = counts()
    response = client.post("/posts", {"content": content, "parent_id": parent_id})
    assert response.status_code in {302, 400}, response.status_code
    if response.status_code == 302:
        assert counts()[1] == before[1] + 1
        assert Post.objects.order_by("-id")[0].content == trimmed(content)
    else:
        assert counts() == before
        assert 'role="alert"' in response.content.decode()


def test_a_host_header_not_in_allowed_hosts_gets_a_400_page(db):
    """Refused before any middleware sets request.user; the error page still renders."""
    client = Client(raise_request_exception=False)
    response = client.get("/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert "Bad request" in response.content.decode()
