"""Accounts: sign-up, log-in and log-out, settings, account deletion, profiles and the admin.

Requests go through django.test.Client, so URLs, middleware, forms, services and templates are all
exercised; the service tests at the end call `microblog.accounts.services` directly.
"""

import html
import re

import pytest
from django.conf import settings
from django.contrib.auth.hashers import (
    Argon2PasswordHasher,
    check_password,
    identify_hasher,
    make_password,
)
from django.db import IntegrityError, transaction
from django.test import Client

from microblog.accounts.models import User, UserSession
from microblog.accounts.services import (
    user_change_password,
    user_create,
    user_delete,
    user_update_profile,
)
from microblog.core.errors import Conflict, Invalid, NotAllowed
from microblog.follows.models import Follow
from microblog.follows.services import follow_create
from microblog.posts.models import Post
from tests.conftest import PASSWORD, refreshed

NEW_PASSWORD = "a-brand-new-passphrase-42"
LOGIN_FAILED = "Incorrect username or password."

pytestmark = pytest.mark.django_db


# --- helpers -------------------------------------------------------------------------------------


def text(response) -> str:
    return response.content.decode()


def field_errors(response, field: str) -> list[str]:
    """The error messages shown under one form field (rendered by the `field` macro)."""
    block = re.search(
        rf'<div class="field field-error">\s*<label for="id_{field}">.*?</div>',
        text(response),
        re.S,
    )
    if block is None:
        return []
    return [
        html.unescape(m) for m in re.findall(r'<p class="error" role="alert">(.*?)</p>', block[0])
    ]


def alerts(response) -> list[str]:
    """Every error message on the page, field errors and form-wide errors alike."""
    return [html.unescape(m) for m in re.findall(r'role="alert">(.*?)</p>', text(response))]


def flashes(response) -> list[str]:
    return [
        html.unescape(m) for m in re.findall(r'<li class="flash-\w+">(.*?)</li>', text(response))
    ]


def post_count(response) -> int:
    return len(re.findall(r'<article class="post[" ]', text(response)))


def signed_in_user_id(client: Client) -> int | None:
    """The user id stored in the client's session, or None when it is anonymous."""
    if settings.SESSION_COOKIE_NAME not in client.cookies:
        return None
    value = client.session.get("_auth_user_id")
    return int(value) if value is not None else None


def sign_up(client: Client, username: str, password: str = PASSWORD, confirmation=None):
    return client.post(
        "/signup",
        {
            "username": username,
            "password": password,
            "password_confirmation": password if confirmation is None else confirmation,
        },
    )


def log_in(client: Client, username: str, password: str = PASSWORD, **extra: str):
    return client.post("/login", {"username": username, "password": password, **extra})


def counts_match_rows() -> None:
    """Every user's follow counters equal the follow rows that exist."""
    for user in User.objects.all():
        assert user.followers_count == Follow.objects.filter(followed_id=user.id).count(), user
        assert user.following_count == Follow.objects.filter(follower_id=user.id).count(), user


# --- sign-up -------------------------------------------------------------------------------------


def test_sign_up_creates_the_user_signs_in_and_redirects_home(client):
    response = sign_up(client, "newbie")

    assert response.status_code == 302
    assert response.url == "/"
    user = User.objects.get(username="newbie")
    assert signed_in_user_id(client) == user.id

    home = client.get("/")
    assert home.status_code == 200
    assert "Welcome to Microblog, newbie!" in flashes(home)
    # The signed-in navigation (profile link, log-out button) replaces the sign-up link.
    assert 'href="/@newbie"' in text(home)
    assert "Log out" in text(home)
    assert 'href="/signup"' not in text(home)

    # Still signed in on the page after that (the flash message is gone, the user is not).
    again = client.get("/settings")
    assert again.status_code == 200
    assert 'href="/@newbie"' in text(again)


def test_sign_up_stores_the_password_hashed(client):
    sign_up(client, "hashed_one")

    user = User.objects.get(username="hashed_one")
    assert user.password != PASSWORD
    assert PASSWORD not in user.password
    assert identify_hasher(user.password).algorithm  # a recognised hash, not plain text
    assert user.check_password(PASSWORD)
    assert not user.check_password(PASSWORD + "x")


@pytest.mark.parametrize("username", ["a", "Z", "_", "a" * 50, "Alice_Smith_2", "007"])
def test_sign_up_accepts_letters_digits_underscores_up_to_50(client, username):
    response = sign_up(client, username)

    assert response.status_code == 302, alerts(response)
    assert User.objects.filter(username=username).exists()


def test_sign_up_trims_surrounding_spaces_from_the_username(client):
    response = sign_up(client, "  carol  ")

    assert response.status_code == 302
    assert User.objects.filter(username="carol").exists()


@pytest.mark.parametrize("taken", ["alice", "Alice", "ALICE", "aLiCe"])
def test_sign_up_refuses_a_username_taken_ignoring_case(client, alice, taken):
    response = sign_up(client, taken)

    assert response.status_code == 400
    assert field_errors(response, "username") == ["That username is taken."]
    assert User.objects.count() == 1
    assert signed_in_user_id(client) is None


@pytest.mark.parametrize(
    "username",
    [
        "al ice",  # space
        "al-ice",  # hyphen
        "alice\U0001f600",  # emoji
        "\U0001f600",
        "a" * 51,  # one too long
        "",  # empty
        "   ",  # only spaces
        "alice!",
        "bob.smith",
        "carol@example",
        "dave\x00",  # NUL
        "eve\u202e",  # bidi override
    ],
)
def test_sign_up_refuses_a_malformed_username_and_creates_nothing(client, username):
    response = sign_up(client, username)

    assert response.status_code == 400
    assert field_errors(response, "username"), text(response)
    assert User.objects.count() == 0
    assert signed_in_user_id(client) is None


def test_sign_up_refuses_mismatched_password_confirmation(client):
    response = sign_up(client, "newbie", PASSWORD, PASSWORD + "-typo")

    assert response.status_code == 400
    assert field_errors(response, "password_confirmation") == ["The two passwords do not match."]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("zq7#Kx", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
        ("48201937465", "This password is entirely numeric."),
        ("newbie6pass", "The password is too similar to the username."),
        ("passNEWBIEword", "The password is too similar to the username."),
    ],
)
def test_sign_up_refuses_a_weak_password(client, password, message):
    response = sign_up(client, "newbie", password)

    assert response.status_code == 400
    assert message in field_errors(response, "password")
    assert not User.objects.exists()
    assert signed_in_user_id(client) is None
    # The password is not echoed back into the page.
    assert password not in text(response)


def test_a_password_containing_the_username_is_refused_even_below_djangos_ratio(client):
    """zed6pass for zed6: Django's similarity ratio (0.67) stays under its 0.7 threshold."""
    response = sign_up(client, "zed6", "zed6pass")
    assert response.status_code == 400
    assert "The password is too similar to the username." in field_errors(response, "password")
    assert not User.objects.exists()


def test_a_51_character_username_is_refused_with_a_message_not_cut_by_the_browser(client):
    page = text(client.get("/signup"))
    username_input = re.search(r'<input[^>]*name="username"[^>]*>', page).group(0)
    assert "maxlength" not in username_input  # a browser would cut the name silently
    assert "autofocus" in username_input  # the page opens ready to type the name

    response = sign_up(client, "a" * 51)
    assert response.status_code == 400
    assert field_errors(response, "username") == ["A username can be at most 50 characters long."]
    assert not User.objects.exists()


def test_sign_up_page_for_a_signed_in_user_goes_home(alice, client_for):
    response = client_for(alice).get("/signup")

    assert response.status_code == 302
    assert response.url == "/"


def test_production_settings_hash_passwords_with_argon2_first(settings):
    assert settings.PRODUCTION_PASSWORD_HASHERS[0] == (
        "django.contrib.auth.hashers.Argon2PasswordHasher"
    )
    encoded = make_password("s3cret-passphrase", hasher=Argon2PasswordHasher())
    assert encoded.startswith("argon2$")
    assert "s3cret-passphrase" not in encoded

    # With the production hasher list in force, the hash verifies (and a wrong password does not).
    settings.PASSWORD_HASHERS = settings.PRODUCTION_PASSWORD_HASHERS
    assert check_password("s3cret-passphrase", encoded)
    assert not check_password("s3cret-passphrasE", encoded)
    assert make_password("anything").startswith("argon2$")


# --- log-in and log-out --------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["alice", "Alice", "ALICE"])
def test_log_in_with_good_credentials_ignores_username_case(client, alice, typed):
    response = log_in(client, typed)

    assert response.status_code == 302
    assert response.url == "/"
    assert signed_in_user_id(client) == alice.id
    home = client.get("/")
    assert "Welcome back, alice." in flashes(home)
    assert 'href="/@alice"' in text(home)


def test_log_in_page_renders(client):
    response = client.get("/login?next=/all")

    assert response.status_code == 200
    assert '<input type="hidden" name="next" value="/all">' in text(response)


@pytest.mark.parametrize("target", ["/all", "/@bob", "/posts/123?cursor=5", "/settings"])
def test_log_in_follows_a_same_site_next(client, alice, target):
    response = log_in(client, "alice", next=target)

    assert response.status_code == 302
    assert response.url == target


def test_log_in_takes_next_from_the_query_string_too(client, alice):
    response = client.post("/login?next=/all", {"username": "alice", "password": PASSWORD})

    assert response.status_code == 302
    assert response.url == "/all"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "http://evil.example/login",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "javascript:alert(1)",
        "https:evil.example",
        "ftp://testserver/",
    ],
)
def test_log_in_ignores_an_off_site_next(client, alice, target):
    response = log_in(client, "alice", next=target)

    assert response.status_code == 302
    assert response.url == "/"
    assert signed_in_user_id(client) == alice.id


def test_log_in_page_drops_an_off_site_next_from_the_form(client):
    response = client.get("/login?next=https://evil.example/")

    assert response.status_code == 200
    assert "evil.example" not in text(response)


def test_wrong_password_and_unknown_username_get_the_same_answer(client, alice):
    wrong_password = log_in(client, "alice", "not-the-password")
    unknown_user = log_in(client, "nobody_here", PASSWORD)

    assert wrong_password.status_code == unknown_user.status_code == 400
    assert alerts(wrong_password) == alerts(unknown_user) == [LOGIN_FAILED]
    assert signed_in_user_id(client) is None
    # Nothing in either page reveals whether the account exists.
    for response in (wrong_password, unknown_user):
        lowered = text(response).lower()
        assert "does not exist" not in lowered
        assert "no such" not in lowered


def test_inactive_account_gets_the_same_generic_answer(client, make_user):
    make_user("sleepy", is_active=False)

    response = log_in(client, "sleepy")

    assert response.status_code == 400
    assert alerts(response) == [LOGIN_FAILED]
    assert signed_in_user_id(client) is None


def test_empty_log_in_form_gets_the_generic_answer(client):
    response = client.post("/login", {"username": "", "password": ""})

    assert response.status_code == 400
    assert LOGIN_FAILED in alerts(response)


def test_log_in_changes_the_session_key(client, alice):
    session = client.session  # an anonymous session, stored with a key, before log-in
    session["visited"] = True
    session.save()
    before = session.session_key

    log_in(client, "alice")

    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != before
    assert not UserSession.objects.filter(session_key=before).exists()
    assert signed_in_user_id(client) == alice.id


def test_log_out_by_get_is_refused_with_a_page(alice, client_for):
    client = client_for(alice)

    response = client.get("/logout")

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "Method not allowed" in text(response)
    assert "<html" in text(response)
    assert signed_in_user_id(client) == alice.id


def test_log_out_by_post_signs_out(client, alice):
    log_in(client, "alice")

    response = client.post("/logout")

    assert response.status_code == 302
    assert response.url == "/"
    assert signed_in_user_id(client) is None
    home = client.get("/")
    assert "You have been logged out." in flashes(home)
    assert 'href="/login"' in text(home)
    assert client.get("/settings").status_code == 302


# --- settings: bio -------------------------------------------------------------------------------


def test_settings_needs_log_in(client):
    response = client.get("/settings")

    assert response.status_code == 302
    assert response.url == "/login?next=/settings"


@pytest.mark.parametrize("path", ["/settings", "/settings/password", "/settings/delete"])
def test_settings_posts_need_log_in(client, alice, path):
    before = alice.password

    response = client.post(path, {"description": "hi", "password": PASSWORD})

    assert response.status_code == 302
    assert response.url.startswith("/login?next=")
    assert refreshed(alice).description == ""
    assert alice.password == before


def test_settings_page_shows_the_current_bio(make_user, client_for):
    user = make_user("writer", description="I write things.")

    response = client_for(user).get("/settings")

    assert response.status_code == 200
    assert "I write things." in text(response)


def test_bio_update_saves_trimmed_text(alice, client_for):
    client = client_for(alice)

    response = client.post("/settings", {"description": "  Hello, I am Alice.  \n"})

    assert response.status_code == 302
    assert response.url == "/settings"
    assert refreshed(alice).description == "Hello, I am Alice."
    assert "Your profile was updated." in flashes(client.get("/settings"))
    assert "Hello, I am Alice." in text(client.get("/@alice"))


def test_bio_of_120_characters_after_trimming_is_accepted(alice, client_for):
    bio = "b" * 120

    response = client_for(alice).post("/settings", {"description": f"   {bio}\r\n  "})

    assert response.status_code == 302
    assert refreshed(alice).description == bio


def test_bio_may_be_cleared(make_user, client_for):
    user = make_user("clearer", description="old bio")

    response = client_for(user).post("/settings", {"description": "   "})

    assert response.status_code == 302
    assert refreshed(user).description == ""


def test_bio_keeps_line_breaks(alice, client_for):
    response = client_for(alice).post("/settings", {"description": "line one\r\nline two"})

    assert response.status_code == 302
    assert refreshed(alice).description == "line one\nline two"


def test_bio_of_121_characters_is_refused_and_nothing_saved(make_user, client_for):
    user = make_user("verbose", description="original bio")

    response = client_for(user).post("/settings", {"description": "c" * 121})

    assert response.status_code == 400
    assert field_errors(response, "description") == [
        "The bio is 121 characters long; the limit is 120."
    ]
    assert refreshed(user).description == "original bio"


@pytest.mark.parametrize(
    "bio",
    ["nul\x00byte", "bell\x07", "escape \x1b[31mred", "bidi \u202egnp.exe", "del\x7f", "\x00"],
)
def test_bio_with_control_characters_is_refused(make_user, client_for, bio):
    user = make_user("tricky", description="original bio")

    response = client_for(user).post("/settings", {"description": bio})

    assert response.status_code == 400
    assert field_errors(response, "description")
    assert refreshed(user).description == "original bio"


# --- settings: password --------------------------------------------------------------------------


def change_password(client: Client, current: str, new: str, confirmation: str | None = None):
    return client.post(
        "/settings/password",
        {
            "current_password": current,
            "new_password": new,
            "new_password_confirmation": new if confirmation is None else confirmation,
        },
    )


def test_password_change_needs_the_current_password(alice, client_for):
    client = client_for(alice)

    response = change_password(client, "not-my-password", NEW_PASSWORD)

    assert response.status_code == 400
    assert field_errors(response, "current_password") == ["Your current password is not correct."]
    user = refreshed(alice)
    assert user.check_password(PASSWORD)
    assert not user.check_password(NEW_PASSWORD)
    assert client.get("/settings").status_code == 200


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("zq7#Kx", "This password is too short. It must contain at least 8 characters."),
        ("iloveyou1", "This password is too common."),
        ("48201937465", "This password is entirely numeric."),
        ("alice123!", "The password is too similar to the username."),
    ],
)
def test_password_change_validates_the_new_password(alice, client_for, new, message):
    response = change_password(client_for(alice), PASSWORD, new)

    assert response.status_code == 400
    assert message in field_errors(response, "new_password")
    assert refreshed(alice).check_password(PASSWORD)


def test_password_change_needs_matching_confirmation(alice, client_for):
    response = change_password(client_for(alice), PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x")

    assert response.status_code == 400
    assert "The two new passwords do not match." in alerts(response)
    assert refreshed(alice).check_password(PASSWORD)


def test_password_change_keeps_this_session_and_ends_the_others(client, alice):
    this = Client()
    other = Client()
    assert log_in(this, "alice").status_code == 302
    assert log_in(other, "alice").status_code == 302
    assert other.get("/settings").status_code == 200

    response = change_password(this, PASSWORD, NEW_PASSWORD)

    assert response.status_code == 302
    assert response.url == "/settings"
    page = this.get("/settings")
    assert page.status_code == 200
    assert "Your password was changed. Other sessions were signed out." in flashes(page)
    assert signed_in_user_id(this) == alice.id

    signed_out = other.get("/settings")
    assert signed_out.status_code == 302
    assert signed_out.url == "/login?next=/settings"
    assert 'href="/login"' in text(other.get("/"))

    # The new password works; the old one no longer does.
    assert log_in(Client(), "alice", NEW_PASSWORD).status_code == 302
    assert log_in(Client(), "alice", PASSWORD).status_code == 400


# --- deleting an account -------------------------------------------------------------------------


def delete_account(client: Client, password: str):
    return client.post("/settings/delete", {"password": password})


@pytest.fixture
def social_graph(make_user, make_post):
    """`victim` follows a, b and c and is followed by d and e; the others follow each other too,
    and there are posts and replies both ways."""
    users = {name: make_user(name) for name in ["victim", "a", "b", "c", "d", "e", "f"]}
    edges = [
        ("victim", "a"),
        ("victim", "b"),
        ("victim", "c"),
        ("d", "victim"),
        ("e", "victim"),
        ("a", "d"),
        ("d", "b"),
        ("f", "a"),
        ("e", "f"),
    ]
    for follower, followed in edges:
        assert follow_create(follower=users[follower], followed=users[followed])
    victim = users["victim"]
    own = make_post(victim, "a post by the victim")
    d_post = make_post(users["d"], "d starts a thread")
    victim_reply = make_post(victim, "the victim replies to d", parent=d_post)
    d_reply = make_post(users["d"], "d replies to the victim", parent=own)
    return {
        "users": users,
        "own": own,
        "d_post": d_post,
        "victim_reply": victim_reply,
        "d_reply": d_reply,
    }


def test_counts_before_deletion_are_as_set_up(social_graph):
    victim = refreshed(social_graph["users"]["victim"])
    assert (victim.following_count, victim.followers_count, victim.posts_count) == (3, 2, 2)
    counts_match_rows()


def test_delete_account_with_wrong_password_keeps_everything(social_graph, client_for):
    victim = social_graph["users"]["victim"]
    client = client_for(victim)
    follows_before = Follow.objects.count()

    response = delete_account(client, "not-my-password")

    assert response.status_code == 400
    assert field_errors(response, "password") == [
        "That password is not correct, so the account was not deleted."
    ]
    assert User.objects.filter(id=victim.id).exists()
    assert Follow.objects.count() == follows_before
    assert Post.objects.filter(author_id=victim.id).count() == 2
    assert (refreshed(victim).following_count, victim.followers_count) == (3, 2)
    counts_match_rows()
    assert signed_in_user_id(client) == victim.id


def test_delete_account_with_empty_password_keeps_everything(social_graph, client_for):
    victim = social_graph["users"]["victim"]

    response = delete_account(client_for(victim), "")

    assert response.status_code == 400
    assert User.objects.filter(id=victim.id).exists()


def test_delete_account_removes_the_user_and_signs_out(social_graph, client_for):
    victim = social_graph["users"]["victim"]
    client = client_for(victim)

    response = delete_account(client, PASSWORD)

    assert response.status_code == 302
    assert response.url == "/"
    assert not User.objects.filter(id=victim.id).exists()
    assert signed_in_user_id(client) is None
    home = client.get("/")
    assert "Your account was deleted. Your posts remain, unsigned." in flashes(home)
    assert 'href="/login"' in text(home)
    assert client.get("/@victim").status_code == 404
    assert log_in(Client(), "victim").status_code == 400


def test_delete_account_signs_out_other_sessions(social_graph):
    this, other = Client(), Client()
    log_in(this, "victim")
    log_in(other, "victim")

    delete_account(this, PASSWORD)

    response = other.get("/settings")
    assert response.status_code == 302
    assert response.url.startswith("/login")


def test_delete_account_keeps_posts_as_by_deleted_user(social_graph, client_for):
    victim = social_graph["users"]["victim"]
    own, d_post = social_graph["own"], social_graph["d_post"]
    victim_reply, d_reply = social_graph["victim_reply"], social_graph["d_reply"]

    delete_account(client_for(victim), PASSWORD)

    for post in (own, victim_reply):
        kept = Post.objects.get(id=post.id)
        assert kept.author_id is None
        assert kept.content == post.content
    assert Post.objects.get(id=d_reply.id).author_id == social_graph["users"]["d"].id
    assert Post.objects.get(id=d_post.id).replies_count == 1
    assert Post.objects.get(id=own.id).replies_count == 1

    visitor = Client()
    everyone = text(visitor.get("/all"))
    assert "a post by the victim" in everyone
    assert "Deleted user" in everyone
    assert "@victim" not in everyone

    # The deleted user's own post, as the root of its thread, with d's reply under it.
    thread = visitor.get(f"/posts/{own.id}")
    assert thread.status_code == 200
    assert "Deleted user" in text(thread)
    assert "a post by the victim" in text(thread)
    assert "d replies to the victim" in text(thread)

    # The deleted user's reply inside d's thread.
    thread = visitor.get(f"/posts/{d_post.id}")
    assert thread.status_code == 200
    assert "the victim replies to d" in text(thread)
    assert "Deleted user" in text(thread)

    # d's reply says whom it answered without naming the deleted account.
    reply_page = visitor.get(f"/posts/{d_reply.id}")
    assert reply_page.status_code == 200
    assert "Deleted user" in text(reply_page)
    assert "victim</a>" not in text(reply_page)


def test_delete_account_removes_follows_and_corrects_every_count(social_graph, client_for):
    users = social_graph["users"]

    delete_account(client_for(users["victim"]), PASSWORD)

    assert not Follow.objects.filter(follower_id=users["victim"].id).exists()
    assert not Follow.objects.filter(followed_id=users["victim"].id).exists()
    # Follows between other people stay.
    assert Follow.objects.count() == 4
    expected = {  # name: (followers, following)
        "a": (1, 1),  # was followed by victim and f
        "b": (1, 0),  # was followed by victim and d
        "c": (0, 0),  # was followed by victim only
        "d": (1, 1),  # followed victim and b
        "e": (0, 1),  # followed victim and f
        "f": (1, 1),
    }
    for name, (followers, following) in expected.items():
        user = refreshed(users[name])
        assert (user.followers_count, user.following_count) == (followers, following), name
    counts_match_rows()


def test_delete_account_counts_show_on_profiles(social_graph, client_for):
    users = social_graph["users"]
    delete_account(client_for(users["victim"]), PASSWORD)

    page = text(Client().get("/@c"))
    assert re.search(r"<strong>0</strong> followers</a>", page)
    page = text(Client().get("/@e"))
    assert re.search(r"<strong>1</strong> following</a>", page)


# --- profiles ------------------------------------------------------------------------------------


def test_profile_is_found_ignoring_case(make_user):
    make_user("MixedCase", description="Case is just style.")

    for path in ("/@MixedCase", "/@mixedcase", "/@MIXEDCASE"):
        response = Client().get(path)
        assert response.status_code == 200, path
        assert "<h1>MixedCase</h1>" in text(response)


@pytest.mark.parametrize("path", ["/@nobody", "/@a_b_c", "/@" + "x" * 50, "/@" + "x" * 51, "/@"])
def test_unknown_profile_is_404(client, alice, path):
    response = client.get(path)

    assert response.status_code == 404
    assert "Page not found" in text(response)


def test_profile_shows_bio_and_exact_counts(make_user, make_post):
    alice = make_user("alice", description="Painter <b>and</b> climber")
    bob, carol, dave = make_user("bob"), make_user("carol"), make_user("dave")
    first = make_post(alice, "alice one")
    make_post(alice, "alice two")
    make_post(alice, "alice replies", parent=first)
    make_post(bob, "not alice")
    follow_create(follower=bob, followed=alice)
    follow_create(follower=alice, followed=carol)
    follow_create(follower=alice, followed=dave)

    page = text(Client().get("/@alice"))

    assert "Painter &lt;b&gt;and&lt;/b&gt; climber" in page
    assert Post.objects.filter(author=alice).count() == 3
    assert "<strong>3</strong> posts</li>" in page
    assert "<strong>1</strong> follower</a>" in page
    assert "<strong>2</strong> following</a>" in page


def test_profile_counts_use_singular_and_zero(make_user, make_post):
    loner = make_user("loner")
    make_post(loner, "only one")

    page = text(Client().get("/@loner"))

    assert "<strong>1</strong> post</li>" in page
    assert "<strong>0</strong> followers</a>" in page
    assert "<strong>0</strong> following</a>" in page


def test_profile_of_another_user_has_a_follow_button(alice, bob, client_for):
    page = text(client_for(alice).get("/@bob"))

    assert 'action="/@bob/follow"' in page
    assert ">Follow</button>" in page
    assert "Edit profile" not in page


def test_profile_of_a_followed_user_has_an_unfollow_button(alice, bob, client_for):
    follow_create(follower=alice, followed=bob)

    page = text(client_for(alice).get("/@bob"))

    assert 'action="/@bob/unfollow"' in page
    assert ">Unfollow</button>" in page
    assert 'action="/@bob/follow"' not in page


def test_own_profile_has_edit_profile_and_no_follow_button(alice, client_for):
    page = text(client_for(alice).get("/@alice"))

    assert 'href="/settings">Edit profile</a>' in page
    assert 'action="/@alice/follow"' not in page


def test_profile_for_a_visitor_links_follow_to_log_in(alice):
    page = text(Client().get("/@alice"))

    assert 'href="/login?next=/%40alice">Follow</a>' in page
    assert "Edit profile" not in page


def marker(number: int) -> str:
    return f"entry-{number:03d}-end"


def markers_in(page: str) -> list[str]:
    return re.findall(r"entry-\d{3}-end", page)


def test_profile_lists_only_top_level_posts_newest_first(alice, bob, make_post):
    first = make_post(alice, marker(1))
    make_post(alice, marker(2))
    make_post(bob, marker(900))  # someone else's
    make_post(alice, marker(901), parent=first)  # a reply
    make_post(alice, marker(3))

    page = text(Client().get("/@alice"))

    assert markers_in(page) == [marker(3), marker(2), marker(1)]


def test_profile_paginates_with_a_cursor(alice, bob, make_post, client_for):
    size = settings.PAGE_SIZE
    total = size + 5
    posts = []
    for number in range(total):
        posts.append(make_post(alice, marker(number)))
        if number % 5 == 0:
            make_post(alice, f"reply {number}", parent=posts[-1])  # never listed
    newest_first = [marker(n) for n in reversed(range(total))]

    first = client_for(bob).get("/@alice")
    page = text(first)
    assert post_count(first) == size
    assert markers_in(page) == newest_first[:size]
    link = re.search(r'<a class="load-more[^"]*" href="\?cursor=(\d+)"', page)
    assert link is not None
    assert int(link[1]) == posts[total - size].id  # the last post shown

    second = client_for(bob).get(f"/@alice?cursor={link[1]}")
    assert second.status_code == 200
    assert markers_in(text(second)) == newest_first[size:]
    assert "load-more" not in text(second)
    assert "<h1>alice</h1>" in text(second)  # a full page when opened as a plain link


def test_profile_htmx_request_returns_only_the_posts(alice, make_post):
    size = settings.PAGE_SIZE
    posts = [make_post(alice, marker(n)) for n in range(size + 3)]
    cursor = posts[3].id

    response = Client().get(f"/@alice?cursor={cursor}", headers={"HX-Request": "true"})

    assert response.status_code == 200
    page = text(response)
    assert markers_in(page) == [marker(2), marker(1), marker(0)]
    assert "<html" not in page
    assert "profile-header" not in page
    assert "<h1>" not in page
    assert "HX-Request" in response["Vary"]

    first = Client().get("/@alice", headers={"HX-Request": "true"})
    assert post_count(first) == size
    assert "<html" not in text(first)
    assert f'hx-get="?cursor={posts[3].id}"' in text(first)


def test_profile_with_a_bad_cursor_is_400(alice):
    response = Client().get("/@alice?cursor=abc")

    assert response.status_code == 400


def test_profile_of_a_user_without_posts(alice):
    response = Client().get("/@alice")

    assert response.status_code == 200
    assert "No posts yet." in text(response)
    assert post_count(response) == 0


# --- admin ---------------------------------------------------------------------------------------


def test_admin_redirects_a_visitor_to_the_admin_log_in(client):
    response = client.get("/admin/")

    assert response.status_code == 302
    assert response.url == "/admin/login/?next=/admin/"


def test_admin_refuses_a_user_who_is_not_staff(alice, client_for):
    client = client_for(alice)

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")
    # The admin's log-in is the app's (issue 10): a signed-in user who is not staff is told so.
    refusal = client.get(response.url)
    assert refusal.status_code == 403
    assert "Only staff can open the admin." in text(refusal)
    for path in ("/admin/accounts/user/", "/admin/posts/post/"):
        refused = client.get(path)
        assert refused.status_code == 302, path
        assert refused.url.startswith("/admin/login/")


def test_admin_works_for_staff(make_user, client_for):
    staff = make_user("moderator", is_staff=True)

    response = client_for(staff).get("/admin/")

    assert response.status_code == 200
    assert "Site administration" in text(response)


def test_staff_log_in_to_the_admin_through_the_apps_log_in(make_user):
    """The admin's log-in form is the app's /login (issue 10: the admin's own had no limit)."""
    make_user("moderator", is_staff=True)
    client = Client()

    response = client.post(
        "/admin/login/?next=/admin/", {"username": "moderator", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response.url == "/login?next=/admin/"
    assert "_auth_user_id" not in client.session  # nothing posted to the admin is checked

    response = client.post(response.url, {"username": "moderator", "password": PASSWORD})
    assert response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_superuser_can_open_the_user_and_post_changelists(alice, bob, make_post, client_for):
    admin_user = User.objects.create_superuser(username="root", password=PASSWORD)
    post = make_post(alice, "a post the admin sees")
    make_post(bob, "a reply the admin sees", parent=post)
    client = client_for(admin_user)

    users = client.get("/admin/accounts/user/")
    assert users.status_code == 200
    assert "alice" in text(users) and "bob" in text(users)

    posts = client.get("/admin/posts/post/")
    assert posts.status_code == 200
    assert "a post the admin sees" in text(posts)

    assert client.get(f"/admin/accounts/user/{alice.id}/change/").status_code == 200
    assert client.get(f"/admin/posts/post/{post.id}/change/").status_code == 200
    assert client.get("/admin/accounts/user/?q=ali").status_code == 200
    assert client.get("/admin/posts/post/?q=admin").status_code == 200


def test_admin_deleting_a_user_corrects_counts(social_graph, client_for):
    admin_user = User.objects.create_superuser(username="root", password=PASSWORD)
    victim = social_graph["users"]["victim"]
    client = client_for(admin_user)

    confirm = client.get(f"/admin/accounts/user/{victim.id}/delete/")
    assert confirm.status_code == 200
    response = client.post(f"/admin/accounts/user/{victim.id}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not User.objects.filter(id=victim.id).exists()
    assert Post.objects.filter(id=social_graph["own"].id, author__isnull=True).exists()
    counts_match_rows()


# --- services ------------------------------------------------------------------------------------


def test_user_create_service_creates_a_hashed_user():
    user = user_create(username="service_user", password=PASSWORD)

    assert user.pk is not None
    assert user.password != PASSWORD
    assert refreshed(user).check_password(PASSWORD)


@pytest.mark.parametrize("taken", ["alice", "ALICE", " Alice "])
def test_user_create_service_refuses_a_taken_name(alice, taken):
    with pytest.raises(Conflict) as caught:
        user_create(username=taken, password=PASSWORD)

    assert caught.value.code == "unique"
    assert User.objects.count() == 1


@pytest.mark.parametrize("name", ["", "a b", "a-b", "\U0001f600", "x" * 51, "\u0661\u0662"])
def test_user_create_service_refuses_a_malformed_name(name):
    with pytest.raises(Invalid):
        user_create(username=name, password=PASSWORD)

    assert not User.objects.exists()


@pytest.mark.parametrize("password", ["zq7#Kx", "password123", "48201937465", "weakling1x"])
def test_user_create_service_refuses_a_weak_password(password):
    with pytest.raises(Invalid):
        user_create(username="weakling", password=password)

    assert not User.objects.exists()


def test_database_refuses_usernames_differing_only_in_case(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username="ALICE", password=PASSWORD)

    assert User.objects.count() == 1


def test_user_update_profile_service_validates_the_bio(alice):
    assert user_update_profile(user=alice, description="  hi  ").description == "hi"
    assert refreshed(alice).description == "hi"

    for bad in ("x" * 121, "nul\x00", "bell\x07"):
        with pytest.raises(Invalid):
            user_update_profile(user=alice, description=bad)
        assert refreshed(alice).description == "hi"


def test_user_change_password_service(alice):
    with pytest.raises(NotAllowed):
        user_change_password(user=alice, current_password="wrong", new_password=NEW_PASSWORD)
    assert refreshed(alice).check_password(PASSWORD)

    with pytest.raises(Invalid):
        user_change_password(user=alice, current_password=PASSWORD, new_password="short")
    assert refreshed(alice).check_password(PASSWORD)

    user_change_password(user=alice, current_password=PASSWORD, new_password=NEW_PASSWORD)
    assert refreshed(alice).check_password(NEW_PASSWORD)


def test_user_delete_service(social_graph):
    victim = social_graph["users"]["victim"]

    with pytest.raises(NotAllowed):
        user_delete(user=victim, password="wrong")
    assert User.objects.filter(id=victim.id).exists()

    user_delete(user=victim, password=PASSWORD)
    assert not User.objects.filter(id=victim.id).exists()
    assert Post.objects.filter(author__isnull=True).count() == 2
    counts_match_rows()
