"""Bad input never causes a 500.

Every hostile or malformed request gets a clear message (an HTML page, or a JSON error for
`Accept: application/json`), the right status code, and leaves the database as it was. The list of
input classes tried and what the user gets is in docs/hostile-input.md.
"""

import html
import json
import unicodedata
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlencode

import pytest
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microblog.accounts.models import DESCRIPTION_MAX_LENGTH, User
from microblog.accounts.services import user_update_profile
from microblog.follows.models import Follow
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
TOO_LARGE = "Payload too large"

# Control characters, each with the message a user gets for it in a text field.
CONTROL_CASES = [
    pytest.param("\x00", NULL_MESSAGE, id="nul"),
    pytest.param("\x07", CONTROL_MESSAGE, id="bell"),
    pytest.param("\x1b[31m", CONTROL_MESSAGE, id="escape"),
    pytest.param("\u202e", CONTROL_MESSAGE, id="rtl-override"),
    pytest.param("\u2066", CONTROL_MESSAGE, id="bidi-isolate"),
    pytest.param("\x85", CONTROL_MESSAGE, id="c1-next-line"),
]


# --- helpers --------------------------------------------------------------------------------


def counts() -> tuple[int, int, int]:
    return User.objects.count(), Post.objects.count(), Follow.objects.count()


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
    assert response.status_code == status, page_text(response)[:2000]
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


# --- posts: content and parent_id ---------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("", "Write something: the post cannot be empty.", id="empty"),
        pytest.param(" \n\t \r\n ", "Write something: the post cannot be empty.", id="whitespace"),
        pytest.param("x" * 201, "The post is 201 characters long; the limit is 200.", id="201"),
        pytest.param("x" * 5000, "The post is 5000 characters long; the limit is 200.", id="5000"),
        *[
            pytest.param(f"hello {char} world", message, id=f"control-{p.id}")
            for p in CONTROL_CASES
            for char, message in [p.values]
        ],
    ],
)
def test_bad_post_content_is_refused_with_a_message_and_nothing_saved(
    alice: User, unchanged: None, content: str, message: str
) -> None:
    response = signed_in(alice).post("/posts", {"content": content, "parent_id": ""})
    assert_page(response, 400, message)
    assert "Your post was not published" in page_text(response)
    assert refreshed(alice).posts_count == 0


def test_refused_post_keeps_the_text_the_user_wrote(alice: User, unchanged: None) -> None:
    text = "my long thoughts " * 20
    response = signed_in(alice).post("/posts", {"content": text})
    assert response.status_code == 400
    assert text in page_text(response)


@pytest.mark.parametrize(
    "parent_id",
    [
        pytest.param("999999", id="unknown"),
        pytest.param("0", id="zero"),
        pytest.param("-1", id="negative"),
        pytest.param("abc", id="letters"),
        pytest.param("1.5", id="decimal"),
        pytest.param("1e5", id="exponent"),
        pytest.param("9" * 25, id="25-digits"),
        pytest.param(str(1 << 63), id="just-over-64-bit"),
        pytest.param("9" * 19, id="19-nines"),
        pytest.param("\u0661\u0662\u0663", id="arabic-indic-digits"),
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("1\x00", id="nul"),
        pytest.param("'; DROP TABLE posts_post; --", id="sql"),
    ],
)
def test_reply_to_a_missing_or_malformed_parent_is_refused(
    alice: User, unchanged: None, parent_id: str
) -> None:
    response = signed_in(alice).post("/posts", {"content": "a reply", "parent_id": parent_id})
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


@pytest.mark.parametrize(
    "next_url",
    ["https://evil.example/", "//evil.example/", "javascript:alert(1)", "/\x00", "/\r\nX-A: b"],
)
def test_compose_next_never_leaves_the_site_or_breaks_the_redirect(
    alice: User, next_url: str
) -> None:
    response = signed_in(alice).post("/posts", {"content": "hello", "next": next_url})
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("/")
    assert not location.startswith("//")
    assert "\n" not in location and "\r" not in location and "\x00" not in location
    assert "X-A" not in response.headers


# --- bios ---------------------------------------------------------------------------------


@pytest.fixture
def carol(make_user: Callable[..., User]) -> User:
    return make_user("carol", description="old bio")


@pytest.mark.parametrize(
    ("description", "message"),
    [
        pytest.param("b" * 121, "The bio is 121 characters long; the limit is 120.", id="121"),
        pytest.param("b" * 9000, "The bio is 9000 characters long; the limit is 120.", id="9000"),
        *[
            pytest.param(f"my bio {char}!", message, id=f"control-{p.id}")
            for p in CONTROL_CASES
            for char, message in [p.values]
        ],
    ],
)
def test_bad_bio_is_refused_with_a_message_and_nothing_saved(
    carol: User, unchanged: None, description: str, message: str
) -> None:
    user = carol
    response = signed_in(user).post("/settings", {"description": description})
    assert_page(response, 400, message)
    assert refreshed(user).description == "old bio"


@pytest.mark.parametrize("description", ["", "   ", " \r\n\t "])
def test_empty_or_whitespace_bio_clears_the_bio(
    carol: User, unchanged: None, description: str
) -> None:
    user = carol
    response = signed_in(user).post("/settings", {"description": description})
    assert response.status_code == 302
    assert refreshed(user).description == ""


# --- sign-up and log-in -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "message"),
    [
        pytest.param("alice", "That username is taken.", id="taken"),
        pytest.param("ALICE", "That username is taken.", id="taken-other-case"),
        pytest.param("  alice  ", "That username is taken.", id="taken-with-spaces"),
        pytest.param("", "This field is required.", id="empty"),
        pytest.param("   ", "This field is required.", id="whitespace"),
        pytest.param("a b", USERNAME_CHARS, id="space"),
        pytest.param("../etc/passwd", USERNAME_CHARS, id="dot-dot-slash"),
        pytest.param("<script>alert(1)</script>", USERNAME_CHARS, id="script"),
        pytest.param("robert'); DROP TABLE accounts_user; --", USERNAME_CHARS, id="sql"),
        pytest.param("a" * 51, "Ensure this value has at most 50 characters (it has 51).", id="51"),
        pytest.param("\u00e5lice", USERNAME_CHARS, id="unicode-letter"),
        pytest.param("\uff41lice", USERNAME_CHARS, id="fullwidth-letter"),
        pytest.param("\U0001f600", USERNAME_CHARS, id="emoji"),
        pytest.param("bob\x00", NULL_MESSAGE, id="nul"),
        pytest.param("bob\x07", USERNAME_CHARS, id="bell"),
        pytest.param("bob\x1b", USERNAME_CHARS, id="escape"),
        pytest.param("bob\u202e", USERNAME_CHARS, id="rtl-override"),
    ],
)
def test_taken_or_malformed_username_is_refused_at_sign_up(
    alice: User, unchanged: None, username: str, message: str
) -> None:
    client = Client()
    response = client.post(
        "/signup",
        {"username": username, "password": PASSWORD, "password_confirmation": PASSWORD},
    )
    assert_page(response, 400, message)
    assert not is_signed_in(client)


@pytest.mark.parametrize(
    ("password", "confirmation", "message"),
    [
        pytest.param(PASSWORD, PASSWORD + "x", "The two passwords do not match.", id="mismatch"),
        pytest.param(PASSWORD, "", "This field is required.", id="no-confirmation"),
        pytest.param("", "", "This field is required.", id="empty"),
        pytest.param("password", "password", "This password is too common.", id="common"),
        pytest.param("x7", "x7", "This password is too short.", id="short"),
        pytest.param("84920573619", "84920573619", "entirely numeric", id="numeric"),
        pytest.param("newcomer1", "newcomer1", "too similar to the username", id="similar"),
        pytest.param(PASSWORD + "\x00", PASSWORD + "\x00", NULL_MESSAGE, id="nul"),
    ],
)
def test_bad_passwords_are_refused_at_sign_up(
    db: None, unchanged: None, password: str, confirmation: str, message: str
) -> None:
    client = Client()
    response = client.post(
        "/signup",
        {"username": "newcomer", "password": password, "password_confirmation": confirmation},
    )
    assert_page(response, 400, message)
    assert not is_signed_in(client)


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("alice\x00", PASSWORD, id="nul-in-username"),
        pytest.param("alice", PASSWORD + "\x00", id="nul-in-password"),
        pytest.param("\x00", "\x00", id="only-nul"),
        pytest.param("alice\x07", PASSWORD, id="bell-in-username"),
        pytest.param("alice\u202e", PASSWORD, id="rtl-in-username"),
        pytest.param("alice", "\x1b" + PASSWORD, id="escape-in-password"),
        pytest.param("a" * 300, PASSWORD, id="300-char-username"),
        pytest.param("alice", "x" * 10_000, id="10000-char-password"),
        pytest.param("' OR '1'='1", "' OR '1'='1", id="sql"),
        pytest.param("", "", id="empty"),
        pytest.param("nobody", PASSWORD, id="unknown-user"),
    ],
)
def test_malformed_log_in_is_refused_without_signing_in(
    alice: User, unchanged: None, username: str, password: str
) -> None:
    client = Client()
    response = client.post("/login", {"username": username, "password": password})
    assert_page(response, 400, LOGIN_FAILED)
    assert not is_signed_in(client)


def test_login_next_with_markup_is_rendered_escaped(db: None) -> None:
    response = Client().get('/login?next=/"><script>alert(1)</script>')
    assert response.status_code == 200
    assert "<script>alert(1)" not in response.content.decode()


# --- cursors, ids and usernames in addresses ----------------------------------------------

# Each is put into the query string as written (already percent-encoded where needed).
BAD_CURSORS = [
    pytest.param("abc", id="letters"),
    pytest.param("-1", id="negative"),
    pytest.param("1e5", id="exponent"),
    pytest.param("1.5", id="decimal"),
    pytest.param("9" * 30, id="30-digits"),
    pytest.param(str(1 << 63), id="just-over-64-bit"),
    pytest.param("%00", id="nul"),
    pytest.param("1%00", id="digit-nul"),
    pytest.param("%FF", id="invalid-utf8"),
    pytest.param(quote("\u0661\u0662\u0663"), id="arabic-indic-digits"),
    pytest.param(quote("\u00b2"), id="superscript-two"),
    pytest.param("%201", id="leading-space"),
    pytest.param("0x10", id="hex"),
    pytest.param("%27%3B%20DROP%20TABLE%20posts_post%3B%20--", id="sql"),
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


@pytest.fixture
def alice_post(alice: User, make_post: Callable[..., Post]) -> Post:
    return make_post(alice, "a post to page through")


@pytest.mark.parametrize("page", CURSOR_PAGES)
@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_malformed_cursor_is_a_400_page_that_explains(
    alice: User, alice_post: Post, unchanged: None, page: str, cursor: str
) -> None:
    url = page.format(post_id=alice_post.id) + "?cursor=" + cursor
    client = signed_in(alice)
    assert_error_page(client.get(url), 400, BAD_CURSOR)
    assert_error_page(client.get(url, headers={"HX-Request": "true"}), 400, BAD_CURSOR)
    assert_json_error(client.get(url, headers=JSON), 400, BAD_CURSOR)


@pytest.mark.parametrize("page", [p for p in CURSOR_PAGES if p != "/following"])
def test_malformed_cursor_is_a_400_for_visitors_too(
    alice_post: Post, unchanged: None, page: str
) -> None:
    url = page.format(post_id=alice_post.id) + "?cursor=abc"
    assert_error_page(Client().get(url), 400, BAD_CURSOR)


@pytest.mark.parametrize("page", CURSOR_PAGES)
@pytest.mark.parametrize("cursor", ["", "1", "12345", str((1 << 63) - 1)])
def test_unknown_but_well_formed_cursor_is_an_ordinary_page(
    alice: User, alice_post: Post, unchanged: None, page: str, cursor: str
) -> None:
    response = signed_in(alice).get(page.format(post_id=alice_post.id) + "?cursor=" + cursor)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
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
    ],
)
def test_malformed_post_ids_in_the_address_are_404(alice: User, unchanged: None, path: str) -> None:
    client = signed_in(alice)
    assert_error_page(client.get(path), 404, NOT_FOUND)
    assert_json_error(client.get(path, headers=JSON), 404, NOT_FOUND)


@pytest.mark.parametrize("suffix", ["", "/delete"])
def test_unknown_post_id_is_404(alice: User, unchanged: None, suffix: str) -> None:
    client = signed_in(alice)
    assert_error_page(client.get(f"/posts/{(1 << 63) - 1}{suffix}"), 404, NOT_FOUND)
    assert_error_page(client.post(f"/posts/123456789{suffix}"), 404 if suffix else 405, "")


@pytest.mark.parametrize(
    "username",
    [
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
    ],
)
@pytest.mark.parametrize("suffix", ["", "/followers", "/following"])
def test_unknown_or_malformed_usernames_in_the_address_are_404(
    alice: User, unchanged: None, username: str, suffix: str
) -> None:
    assert_error_page(Client().get(f"/@{username}{suffix}"), 404, NOT_FOUND)
    assert_error_page(signed_in(alice).get(f"/@{username}{suffix}"), 404, NOT_FOUND)


@pytest.mark.parametrize("action", ["follow", "unfollow"])
@pytest.mark.parametrize("username", ["nobody", "%00", quote("\u00e5lice"), "a" * 51])
def test_following_an_unknown_or_malformed_username_is_404(
    alice: User, unchanged: None, action: str, username: str
) -> None:
    response = signed_in(alice).post(f"/@{username}/{action}")
    assert_error_page(response, 404, NOT_FOUND)
    assert refreshed(alice).following_count == 0


def test_following_yourself_is_refused_with_a_message(alice: User, unchanged: None) -> None:
    response = signed_in(alice).post("/@alice/follow", follow=True)
    assert response.status_code == 200
    assert "You can't follow yourself." in page_text(response)
    assert refreshed(alice).following_count == 0


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/posts/1/nope",
        "/.env",
        "/wp-login.php",
        "/%00",
        "/@",
        "/@alice/posts",
        "/settings/" + "x" * 300,
        "/" + quote("\u00e5"),
    ],
)
def test_unknown_routes_get_our_404_page_with_a_link_home(db: None, path: str) -> None:
    assert_error_page(Client().get(path), 404, NOT_FOUND)
    assert_json_error(Client().get(path, headers=JSON), 404, NOT_FOUND)


# --- CSRF ---------------------------------------------------------------------------------

POST_FORMS = [
    pytest.param("/signup", False, {"username": "newcomer", "password": PASSWORD}, id="signup"),
    pytest.param("/login", False, {"username": "alice", "password": PASSWORD}, id="login"),
    pytest.param("/logout", True, {}, id="logout"),
    pytest.param("/settings", True, {"description": "changed"}, id="settings"),
    pytest.param(
        "/settings/password",
        True,
        {
            "current_password": PASSWORD,
            "new_password": "another-long-passphrase",
            "new_password_confirmation": "another-long-passphrase",
        },
        id="password",
    ),
    pytest.param("/settings/delete", True, {"password": PASSWORD}, id="delete-account"),
    pytest.param("/posts", True, {"content": "hello"}, id="compose"),
    pytest.param("/posts/{post_id}/delete", True, {}, id="delete-post"),
    pytest.param("/@bob/follow", True, {}, id="follow"),
    pytest.param("/@bob/unfollow", True, {}, id="unfollow"),
]


@pytest.mark.parametrize(("path", "as_alice", "data"), POST_FORMS)
def test_post_without_csrf_token_is_a_403_that_explains_and_changes_nothing(
    alice: User,
    bob: User,
    alice_post: Post,
    path: str,
    as_alice: bool,
    data: dict[str, str],
) -> None:
    Follow.objects.create(follower=alice, followed=bob)
    before = counts()
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
    alice = refreshed(alice)
    assert alice.description == ""
    assert alice.check_password(PASSWORD)


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
    ("delete", "/posts/{post_id}", "GET"),
    ("put", "/posts/{post_id}", "GET"),
    ("post", "/posts/{post_id}", "GET"),
    ("delete", "/posts/{post_id}/delete", "GET, POST"),
    ("put", "/posts/{post_id}/delete", "GET, POST"),
    ("post", "/", "GET"),
    ("delete", "/", "GET"),
    ("post", "/following", "GET"),
    ("post", "/all", "GET"),
    ("delete", "/@alice", "GET"),
    ("post", "/@alice", "GET"),
    ("put", "/@alice/followers", "GET"),
    ("post", "/@alice/following", "GET"),
    ("post", "/up", "GET"),
]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [pytest.param(*case, id=f"{case[0].upper()} {case[1]}") for case in WRONG_METHODS],
)
def test_wrong_method_is_a_405_that_explains_with_an_allow_header(
    alice: User, bob: User, alice_post: Post, method: str, path: str, allow: str
) -> None:
    Follow.objects.create(follower=alice, followed=bob)
    before = counts()
    client = signed_in(alice)
    url = path.format(post_id=alice_post.id)

    response = getattr(client, method)(url)
    assert_error_page(response, 405, f"This address does not accept {method.upper()} requests.")
    assert response["Allow"] == allow
    json_response = getattr(client, method)(url, headers=JSON)
    assert_json_error(json_response, 405, f"does not accept {method.upper()} requests")
    assert json_response["Allow"] == allow

    assert counts() == before
    assert is_signed_in(client)


# --- other people's things ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_deleting_someone_elses_post_is_a_403_and_the_post_stays(
    alice: User, bob: User, alice_post: Post, unchanged: None, method: str
) -> None:
    response = getattr(signed_in(bob), method)(f"/posts/{alice_post.id}/delete")
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


@pytest.mark.parametrize(
    ("path", "data", "message"),
    [
        (
            "/settings/password",
            {
                "current_password": "wrong",
                "new_password": "another-long-passphrase",
                "new_password_confirmation": "another-long-passphrase",
            },
            "Your current password is not correct.",
        ),
        (
            "/settings/password",
            {
                "current_password": PASSWORD,
                "new_password": "another-long-passphrase",
                "new_password_confirmation": "another-long-passphrase!",
            },
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
                "new_password": "another-long-passphrase\x00",
                "new_password_confirmation": "another-long-passphrase\x00",
            },
            NULL_MESSAGE,
        ),
        ("/settings/password", {}, "This field is required."),
        (
            "/settings/delete",
            {"password": "wrong"},
            "That password is not correct, so the account was not deleted.",
        ),
        ("/settings/delete", {"password": PASSWORD + "\x00"}, NULL_MESSAGE),
        ("/settings/delete", {}, "This field is required."),
    ],
)
def test_bad_password_forms_in_settings_are_refused_and_change_nothing(
    alice: User, unchanged: None, path: str, data: dict[str, str], message: str
) -> None:
    client = signed_in(alice)
    assert_page(client.post(path, data), 400, message)
    assert refreshed(alice).check_password(PASSWORD)
    assert is_signed_in(client)


# --- markup and SQL-like text -------------------------------------------------------------

SCRIPT = "<script>alert('x')</script><img src=x onerror=alert(1)>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
SQL = "'; DROP TABLE posts_post; --"


def test_markup_in_posts_is_stored_as_text_and_shown_escaped_everywhere(
    alice: User, bob: User
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
    for viewer, extra in [(Client(), ["/"]), (signed_in(alice), []), (signed_in(bob), [])]:
        for page in ["/", "/following", "/all", "/@alice", f"/posts/{post.id}"]:
            response = viewer.get(page, follow=True)
            body = response.content.decode()
            assert response.status_code == 200, page
            assert "<script>alert" not in body and "<img src=x" not in body, page
            if page in shown + extra:
                assert ESCAPED_SCRIPT in body, page


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
    assert counts() == (1, 1, 0)
    assert SQL in html.unescape(Client().get("/all").content.decode())


# --- huge and malformed bodies ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field", "as_alice"),
    [
        ("/posts", "content", True),
        ("/settings", "description", True),
        ("/signup", "username", False),
        ("/login", "password", False),
    ],
)
@pytest.mark.parametrize("enforce_csrf", [False, True])
def test_body_over_the_upload_limit_is_a_413_that_explains(
    alice: User,
    unchanged: None,
    path: str,
    field: str,
    as_alice: bool,
    enforce_csrf: bool,
) -> None:
    client = Client(enforce_csrf_checks=enforce_csrf)
    if as_alice:
        client.force_login(alice)
    data = {field: "x" * 200_000}
    if enforce_csrf:
        # A real browser's form: the CSRF cookie from the page and its token in the body, so the
        # CSRF check itself has to read the oversized body.
        assert client.get("/settings" if as_alice else "/login").status_code == 200
        data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value

    response = client.post(path, data)
    assert_error_page(response, 413, TOO_LARGE)
    assert "too large" in page_text(response)
    assert_json_error(client.post(path, data, headers=JSON), 413, "too large")
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


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"content=%FF%FE%00", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00\x01", "application/x-www-form-urlencoded"),
        (b"--broken\r\nContent-Disposition: form-data\r\n", "multipart/form-data; boundary=b"),
        (b"--b\r\nnonsense\r\n--b--", "multipart/form-data; boundary=b"),
        (b"not a boundary", "multipart/form-data"),
        (b'{"content": "hello"}', "application/json"),
    ],
)
def test_garbled_bodies_never_cause_a_500(
    alice: User, unchanged: None, body: bytes, content_type: str
) -> None:
    client = signed_in(alice, raise_request_exception=False)
    response = client.post("/posts", body, content_type=content_type)
    assert response.status_code == 400
    assert "<h1>" in response.content.decode()


# --- the app's own 500 page ---------------------------------------------------------------


@pytest.mark.urls("tests.urls_failing_view")
def test_a_bug_shows_our_500_page(db: None) -> None:
    client = Client(raise_request_exception=False)
    response = client.get("/test-only/explode")
    assert_error_page(response, 500, "That was our fault, not yours.")
    assert "a bug, raised on purpose" not in response.content.decode()

    json_response = client.get("/test-only/explode", headers=JSON)
    assert_json_error(json_response, 500, "Something went wrong on our side.")
    assert "a bug, raised on purpose" not in json_response.content.decode()


@pytest.mark.urls("tests.urls_failing_view")
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
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


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
    except ValidationError as error:
        assert counts() == before
        assert error.messages and all(error.messages)
        assert not acceptable(content, CONTENT_MAX_LENGTH, allow_empty=False), error.messages
    else:
        assert acceptable(content, CONTENT_MAX_LENGTH, allow_empty=False)
        stored = Post.objects.get(id=post.id).content
        assert stored == trimmed(content)
        assert 1 <= len(stored) <= CONTENT_MAX_LENGTH
        assert not any(is_invisible_control(c) for c in stored)
        assert counts() == (before[0], before[1] + 1, before[2])


@PROPERTY_SETTINGS
@given(description=TEXTS)
def test_user_update_profile_stores_clean_text_or_refuses_and_saves_nothing(
    alice: User, description: str
) -> None:
    User.objects.filter(id=alice.id).update(description="previous")
    user = refreshed(alice)
    try:
        user_update_profile(user=user, description=description)
    except ValidationError as error:
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
