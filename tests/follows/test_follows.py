"""Follows: the follow and unfollow requests, the counters they keep, and the people pages.

Requests go through django.test.Client; the service tests at the end call
`microblog.follows.services` directly.
"""

import html
import re

import pytest
from django.conf import settings
from django.db import IntegrityError, transaction
from django.test import Client

from microblog.accounts.models import User
from microblog.accounts.services import user_erase
from microblog.core.errors import ServiceError
from microblog.follows.models import Follow
from microblog.follows.services import follow_create, follow_delete
from tests.conftest import refreshed

pytestmark = pytest.mark.django_db


# --- helpers -------------------------------------------------------------------------------------


def text(response) -> str:
    return response.content.decode()


def flashes(response) -> list[str]:
    return [
        html.unescape(m) for m in re.findall(r'<li class="flash-\w+">(.*?)</li>', text(response))
    ]


def follows(follower: User, followed: User) -> bool:
    return Follow.objects.filter(follower_id=follower.id, followed_id=followed.id).exists()


def counts(user: User) -> tuple[int, int]:
    """(followers, following) as stored on the user."""
    user = refreshed(user)
    return user.followers_count, user.following_count


def counts_match_rows() -> None:
    for user in User.objects.all():
        assert user.followers_count == Follow.objects.filter(followed_id=user.id).count(), user
        assert user.following_count == Follow.objects.filter(follower_id=user.id).count(), user


def people_in(page: str) -> list[str]:
    """Usernames listed on a followers or following page, in order."""
    return re.findall(r'<a class="author" href="/@\w+">(\w+)</a>', page)


def next_cursor(page: str) -> str | None:
    link = re.search(r'<a class="load-more[^"]*" href="\?cursor=(\d+)"', page)
    return link[1] if link else None


def csrf_token(page: str) -> str:
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None, "no CSRF token in the page"
    return token[1]


# --- follow and unfollow requests ----------------------------------------------------------------


def test_follow_creates_the_follow_and_counts_it(alice, bob, client_for):
    client = client_for(alice)

    response = client.post("/@bob/follow")

    assert response.status_code == 302
    assert response.url == "/@bob"
    assert follows(alice, bob)
    assert not follows(bob, alice)
    assert counts(alice) == (0, 1)
    assert counts(bob) == (1, 0)
    page = client.get("/@bob")
    assert "You are now following bob." in flashes(page)
    assert ">Unfollow</button>" in text(page)


def test_unfollow_removes_the_follow_and_the_counts(alice, bob, client_for):
    client = client_for(alice)
    client.post("/@bob/follow")

    response = client.post("/@bob/unfollow")

    assert response.status_code == 302
    assert response.url == "/@bob"
    assert not follows(alice, bob)
    assert counts(alice) == (0, 0)
    assert counts(bob) == (0, 0)
    page = client.get("/@bob")
    assert "You unfollowed bob." in flashes(page)
    assert ">Follow</button>" in text(page)


def test_follow_finds_the_user_ignoring_case(alice, bob, client_for):
    response = client_for(alice).post("/@BOB/follow")

    assert response.status_code == 302
    assert response.url == "/@bob"
    assert follows(alice, bob)


def test_follow_returns_to_a_same_site_next(alice, bob, client_for):
    response = client_for(alice).post("/@bob/follow", {"next": "/all"})

    assert response.status_code == 302
    assert response.url == "/all"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
def test_follow_ignores_an_off_site_next(alice, bob, client_for, target):
    response = client_for(alice).post("/@bob/follow", {"next": target})

    assert response.status_code == 302
    assert response.url == "/@bob"
    assert follows(alice, bob)


@pytest.mark.parametrize("action", ["follow", "unfollow"])
def test_follow_and_unfollow_need_log_in(client, alice, bob, action):
    follow_create(follower=alice, followed=bob)

    response = client.post(f"/@bob/{action}")

    assert response.status_code == 302
    assert response.url.startswith("/login?next=")
    assert Follow.objects.count() == 1
    assert counts(bob) == (1, 0)


@pytest.mark.parametrize("action", ["follow", "unfollow"])
def test_follow_and_unfollow_of_an_unknown_user_are_404(alice, client_for, action):
    response = client_for(alice).post(f"/@nobody/{action}")

    assert response.status_code == 404
    assert not Follow.objects.exists()
    assert counts(alice) == (0, 0)


@pytest.mark.parametrize("action", ["follow", "unfollow"])
def test_get_on_follow_and_unfollow_is_405_with_a_page(alice, bob, client_for, action):
    client = client_for(alice)

    response = client.get(f"/@bob/{action}")

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "Method not allowed" in text(response)
    assert "<html" in text(response)
    assert not Follow.objects.exists()


def test_get_on_follow_by_a_visitor_changes_nothing(client, bob):
    response = client.get("/@bob/follow")

    # Either answer keeps GET from changing anything; the page never follows.
    assert response.status_code in {302, 405}
    assert not Follow.objects.exists()


@pytest.mark.parametrize("action", ["follow", "unfollow"])
def test_post_without_csrf_token_is_refused(alice, bob, action):
    if action == "unfollow":
        follow_create(follower=alice, followed=bob)
    before = Follow.objects.count(), counts(alice), counts(bob)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(f"/@bob/{action}")

    assert response.status_code == 403
    assert "Form expired" in text(response)
    assert (Follow.objects.count(), counts(alice), counts(bob)) == before


def test_post_with_a_wrong_csrf_token_is_refused(alice, bob):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/@bob")  # sets the CSRF cookie

    response = client.post("/@bob/follow", {"csrfmiddlewaretoken": "x" * 64})

    assert response.status_code == 403
    assert not Follow.objects.exists()


def test_post_with_the_token_from_the_page_is_accepted(alice, bob):
    """The positive control for the CSRF tests: the form's own token works."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    token = csrf_token(text(client.get("/@bob")))

    response = client.post("/@bob/follow", {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert follows(alice, bob)

    token = csrf_token(text(client.get("/@bob")))
    response = client.post("/@bob/unfollow", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert not follows(alice, bob)


def test_self_follow_is_refused_with_a_message(alice, client_for):
    client = client_for(alice)

    response = client.post("/@alice/follow")

    assert response.status_code == 302
    assert response.url == "/@alice"
    assert not Follow.objects.exists()
    assert counts(alice) == (0, 0)
    page = client.get(response.url)
    assert "You can't follow yourself." in flashes(page)


def test_self_follow_with_other_case_is_refused(alice, client_for):
    client_for(alice).post("/@ALICE/follow")

    assert not Follow.objects.exists()
    assert counts(alice) == (0, 0)


def test_double_follow_is_idempotent(alice, bob, client_for):
    client = client_for(alice)

    first = client.post("/@bob/follow")
    client.get("/@bob")  # reads the first flash message
    second = client.post("/@bob/follow")

    assert first.status_code == second.status_code == 302
    assert Follow.objects.filter(follower_id=alice.id, followed_id=bob.id).count() == 1
    assert counts(alice) == (0, 1)
    assert counts(bob) == (1, 0)
    assert "You are now following bob." not in flashes(client.get("/@bob"))


def test_unfollow_of_a_user_not_followed_changes_nothing(alice, bob, make_user, client_for):
    carol = make_user("carol")
    follow_create(follower=alice, followed=carol)
    follow_create(follower=bob, followed=alice)
    client = client_for(alice)

    response = client.post("/@bob/unfollow")

    assert response.status_code == 302
    assert Follow.objects.count() == 2
    assert counts(alice) == (1, 1)
    assert counts(bob) == (0, 1)
    assert counts(carol) == (1, 0)
    assert "You unfollowed bob." not in flashes(client.get("/@bob"))


def test_counts_stay_exact_after_a_sequence_of_follows(make_user, client_for):
    users = {name: make_user(name) for name in ["ann", "ben", "cat", "dan"]}
    clients = {name: client_for(user) for name, user in users.items()}
    sequence = [
        ("ann", "follow", "ben"),
        ("ann", "follow", "ben"),
        ("ann", "follow", "cat"),
        ("ben", "follow", "ann"),
        ("cat", "follow", "ann"),
        ("ann", "unfollow", "ben"),
        ("ann", "unfollow", "ben"),
        ("dan", "unfollow", "ann"),
        ("dan", "follow", "ann"),
        ("ann", "follow", "ben"),
        ("ann", "follow", "ann"),
        ("cat", "unfollow", "ann"),
        ("cat", "follow", "ann"),
        ("ben", "follow", "cat"),
        ("ben", "unfollow", "cat"),
        ("dan", "follow", "ben"),
    ]
    for actor, action, target in sequence:
        response = clients[actor].post(f"/@{target}/{action}")
        assert response.status_code == 302, (actor, action, target)

    expected_edges = {
        ("ann", "ben"),
        ("ann", "cat"),
        ("ben", "ann"),
        ("cat", "ann"),
        ("dan", "ann"),
        ("dan", "ben"),
    }
    edges = {
        (f.follower.username, f.followed.username)
        for f in Follow.objects.select_related("follower", "followed")
    }
    assert edges == expected_edges
    assert counts(users["ann"]) == (3, 2)
    assert counts(users["ben"]) == (2, 1)
    assert counts(users["cat"]) == (1, 1)
    assert counts(users["dan"]) == (0, 2)
    counts_match_rows()

    page = text(Client().get("/@ann"))
    assert "<strong>3</strong> followers</a>" in page
    assert "<strong>2</strong> following</a>" in page


def test_mutual_follows_count_both_ways(alice, bob, client_for):
    client_for(alice).post("/@bob/follow")
    client_for(bob).post("/@alice/follow")

    assert counts(alice) == (1, 1)
    assert counts(bob) == (1, 1)


# --- followers and following pages ---------------------------------------------------------------


def test_followers_page_lists_the_followers(make_user):
    star = make_user("star")
    fans = [make_user(f"fan{n}") for n in range(3)]
    for fan in fans:
        follow_create(follower=fan, followed=star)
    other = make_user("other")
    follow_create(follower=star, followed=other)  # star's own follow is not a follower

    response = Client().get("/@star/followers")

    assert response.status_code == 200
    # Newest accounts first.
    assert people_in(text(response)) == ["fan2", "fan1", "fan0"]
    assert "3 followers" in text(response)
    assert next_cursor(text(response)) is None


def test_following_page_lists_the_followed(make_user):
    reader = make_user("reader")
    authors = [make_user(f"author{n}") for n in range(3)]
    for author in authors:
        follow_create(follower=reader, followed=author)
    follow_create(follower=make_user("fan"), followed=reader)  # a follower, not followed

    response = Client().get("/@reader/following")

    assert response.status_code == 200
    assert people_in(text(response)) == ["author2", "author1", "author0"]
    assert "Following 3 accounts" in text(response)


def test_people_pages_show_bios(make_user):
    star = make_user("star")
    fan = make_user("fan", description="Loves <script>stars</script>")
    follow_create(follower=fan, followed=star)

    page = text(Client().get("/@star/followers"))

    assert "Loves &lt;script&gt;stars&lt;/script&gt;" in page
    assert "<script>stars" not in page


def test_people_pages_say_when_empty(alice):
    for path in ("/@alice/followers", "/@alice/following"):
        response = Client().get(path)
        assert response.status_code == 200
        assert "Nobody yet." in text(response)
        assert people_in(text(response)) == []


def test_people_pages_find_the_user_ignoring_case(alice, bob):
    follow_create(follower=bob, followed=alice)

    response = Client().get("/@ALICE/followers")

    assert response.status_code == 200
    assert people_in(text(response)) == ["bob"]


@pytest.mark.parametrize("path", ["/@nobody/followers", "/@nobody/following"])
def test_people_pages_of_an_unknown_user_are_404(client, alice, path):
    response = client.get(path)

    assert response.status_code == 404
    assert "Page not found" in text(response)


@pytest.mark.parametrize("which", ["followers", "following"])
def test_people_pages_paginate_with_a_cursor(make_user, which):
    size = settings.PAGE_SIZE
    total = size + 5
    center = make_user("center")
    others = [make_user(f"person{n:02d}") for n in range(total)]
    for other in others:
        if which == "followers":
            follow_create(follower=other, followed=center)
        else:
            follow_create(follower=center, followed=other)
    newest_first = [u.username for u in reversed(others)]
    client = Client()

    first = text(client.get(f"/@center/{which}"))
    assert people_in(first) == newest_first[:size]
    cursor = next_cursor(first)
    assert cursor == str(others[total - size].id)  # the last person shown

    second_response = client.get(f"/@center/{which}?cursor={cursor}")
    assert second_response.status_code == 200
    second = text(second_response)
    assert people_in(second) == newest_first[size:]
    assert next_cursor(second) is None
    assert "<html" in second  # a full page when opened as a plain link

    # htmx asks for the same cursor and gets only the list items.
    fragment = client.get(f"/@center/{which}?cursor={cursor}", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert people_in(text(fragment)) == newest_first[size:]
    assert "<html" not in text(fragment)
    assert "<h1" not in text(fragment)

    assert set(people_in(first)) | set(people_in(second)) == {u.username for u in others}
    assert not set(people_in(first)) & set(people_in(second))


def test_people_page_of_exactly_one_page_has_no_next_link(make_user):
    size = settings.PAGE_SIZE
    star = make_user("star")
    for n in range(size):
        follow_create(follower=make_user(f"fan{n:02d}"), followed=star)

    page = text(Client().get("/@star/followers"))

    assert len(people_in(page)) == size
    assert next_cursor(page) is None


def test_people_page_with_a_bad_cursor_is_400(alice):
    response = Client().get("/@alice/followers?cursor=-1")

    assert response.status_code == 400


def test_people_pages_drop_a_deleted_account(make_user):
    star = make_user("star")
    fan, gone = make_user("fan"), make_user("gone")
    follow_create(follower=fan, followed=star)
    follow_create(follower=gone, followed=star)
    follow_create(follower=star, followed=gone)
    user_erase(user=gone)

    assert people_in(text(Client().get("/@star/followers"))) == ["fan"]
    assert people_in(text(Client().get("/@star/following"))) == []
    assert counts(star) == (1, 0)


# --- services ------------------------------------------------------------------------------------


def test_follow_create_service_reports_whether_it_created(alice, bob):
    assert follow_create(follower=alice, followed=bob) is True
    assert follow_create(follower=alice, followed=bob) is False

    assert Follow.objects.count() == 1
    assert counts(alice) == (0, 1)
    assert counts(bob) == (1, 0)


def test_follow_create_service_refuses_self_follow(alice):
    with pytest.raises(ServiceError) as caught:
        follow_create(follower=alice, followed=alice)

    assert caught.value.message == "You can't follow yourself."
    assert not Follow.objects.exists()
    assert counts(alice) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_follow_create_service_refuses_a_deleted_account(alice, make_user):
    """The account went away between loading the profile and the follow (a race). Foreign keys
    are checked at commit, so this needs real commits, as in production."""
    gone = make_user("gone")
    User.objects.filter(id=gone.id).delete()

    with pytest.raises(ServiceError):
        follow_create(follower=alice, followed=gone)

    assert not Follow.objects.exists()
    assert counts(alice) == (0, 0)


def test_follow_delete_service_reports_whether_it_deleted(alice, bob):
    assert follow_delete(follower=alice, followed=bob) is False
    follow_create(follower=alice, followed=bob)

    assert follow_delete(follower=alice, followed=bob) is True
    assert follow_delete(follower=alice, followed=bob) is False
    assert counts(alice) == (0, 0)
    assert counts(bob) == (0, 0)


def test_database_refuses_a_self_follow_row(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        Follow.objects.create(follower_id=alice.id, followed_id=alice.id)


def test_database_refuses_a_duplicate_follow_row(alice, bob):
    Follow.objects.create(follower_id=alice.id, followed_id=bob.id)

    with pytest.raises(IntegrityError), transaction.atomic():
        Follow.objects.create(follower_id=alice.id, followed_id=bob.id)
