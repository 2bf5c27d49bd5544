"""Mastodon.py, a real Mastodon client from PyPI, against the live server: an app registers,
a person signs in and approves it through our consent form (a plain HTTP client, no browser),
and the app posts, replies, follows, reads timelines page by page, reads a thread, and loses
access when its token is revoked."""

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from mastodon import Mastodon, MastodonUnauthorizedError

from microblog.accounts.models import User
from microblog.posts.services import post_create
from tests.api.forms import form_fields, input_value
from tests.conftest import PASSWORD

SCOPES = ["read", "write", "follow", "push"]
OOB = "urn:ietf:wg:oauth:2.0:oob"


class Browser(requests.Session):
    """A plain HTTP client keeping cookies like a browser on http://localhost, which counts as a
    secure context (the test settings send Secure cookies, as production does)."""

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["allow_redirects"] = False
        response = super().request(method, url, **kwargs)
        for _hop in range(5):
            for cookie in self.cookies:
                cookie.secure = False
            if not response.is_redirect:
                break
            target = requests.compat.urljoin(url, response.headers["Location"])
            response = super().request("GET", target, allow_redirects=False, timeout=10)
        return response


def sign_in_and_approve(base: str, username: str, auth_url: str) -> str:
    """What the person does in their browser: log in, read the consent page, press Authorize;
    returns the code the out-of-band page shows."""
    browser = Browser()
    _sessions.append(browser)
    consent = browser.get(auth_url, timeout=10)
    # Not signed in: our log-in page, which comes back to the consent page.
    assert consent.url.startswith(f"{base}/login")
    fields = form_fields(consent.text, "/login")
    fields.update(username=username, password=PASSWORD)
    consent = browser.post(f"{base}/login", data=fields, timeout=10)
    assert consent.status_code == 200
    assert "wants to use your account" in consent.text
    fields = form_fields(consent.text, "/oauth/authorize")
    fields["allow"] = "Authorize"
    shown = browser.post(f"{base}/oauth/authorize", data=fields, timeout=10)
    assert shown.status_code == 200, shown.text
    return input_value(shown.text, "oob-code")


# The live server's request threads each hold a database connection until their HTTP
# connection closes: every session is closed when the test ends, before its database goes.
_sessions: list[requests.Session] = []


def one_request_per_connection() -> requests.Session:
    session = requests.Session()
    _sessions.append(session)
    return session


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    yield
    while _sessions:
        _sessions.pop().close()


@pytest.fixture
def connected(live_server: Any, alice: User) -> tuple[Mastodon, str, str]:
    base = live_server.url
    client_id, client_secret = Mastodon.create_app(
        "Journey",
        scopes=SCOPES,
        redirect_uris=OOB,
        api_base_url=base,
        session=one_request_per_connection(),
    )
    app = Mastodon(
        client_id=client_id,
        client_secret=client_secret,
        api_base_url=base,
        session=one_request_per_connection(),
    )
    url = app.auth_request_url(scopes=SCOPES, redirect_uris=OOB, allow_http=True)
    code = sign_in_and_approve(base, "alice", url)
    app.log_in(code=code, redirect_uri=OOB, scopes=SCOPES, allow_http=True)
    return app, client_id, client_secret


def test_the_mastodon_py_journey(connected: tuple[Mastodon, str, str], bob: User) -> None:
    """The journey of the issue: post, reply, follow, home and public timelines with fetch_next,
    favourite and reblog, context, revoke and 401."""
    app, _client_id, _client_secret = connected
    me = app.account_verify_credentials()
    assert me.username == "alice"

    first = app.status_post("Hello from Mastodon.py")
    assert first.content == "<p>Hello from Mastodon.py</p>"
    reply = app.status_post("A reply", in_reply_to_id=first.id)
    assert reply.in_reply_to_id == first.id
    assert reply.in_reply_to_account_id == me.id

    # Bob has written 25 posts; following him puts them in alice's home timeline.
    bob_posts = [post_create(author=bob, content=f"bob {n}") for n in range(25)]
    relationship = app.account_follow(bob.id)
    assert relationship.following is True

    page = app.timeline_home(limit=10)
    seen = [str(status.id) for status in page]
    while (page := app.fetch_next(page)) is not None and len(page) > 0:
        seen += [str(status.id) for status in page]
    expected = [str(i) for i in sorted([p.id for p in bob_posts] + [int(first.id)], reverse=True)]
    assert seen == expected  # every post once, newest first, the reply not in For You

    public = app.timeline_public(limit=20)
    more = app.fetch_next(public)
    assert more is not None
    assert len(public) == 20
    assert {s.id for s in public}.isdisjoint({s.id for s in more})

    # Likes and reposts: favourite, see who favourited, the favourites list, and the flag on a
    # re-fetch; a reblog comes back as Mastodon's wrapper around the post.
    liked = bob_posts[3]
    assert app.status_favourite(liked.id).favourited is True
    assert [a.username for a in app.status_favourited_by(liked.id)] == ["alice"]
    assert [str(s.id) for s in app.favourites()] == [str(liked.id)]
    again = app.status(liked.id)
    assert again.favourited is True and again.favourites_count == 1
    wrapper = app.status_reblog(bob_posts[4].id)
    assert str(wrapper.reblog.id) == str(bob_posts[4].id)
    assert wrapper.account.id == me.id
    assert str(wrapper.id) != str(bob_posts[4].id) and wrapper.content == ""
    assert app.status(bob_posts[4].id).reblogged is True

    context = app.status_context(reply.id)
    assert [s.id for s in context.ancestors] == [first.id]
    assert [s.id for s in app.status_context(first.id).descendants] == [reply.id]

    token = app.access_token
    app.revoke_access_token(allow_http=True)
    stale = Mastodon(
        access_token=token, api_base_url=app.api_base_url, session=one_request_per_connection()
    )
    with pytest.raises(MastodonUnauthorizedError):
        stale.account_verify_credentials()


def test_notifications_search_and_hashtags_through_mastodon_py(
    connected: tuple[Mastodon, str, str], bob: User, settings: Any, db_job_backend: Any
) -> None:
    """Bob follows alice and mentions her: her app's notifications() tells of both; search_v2()
    finds bob, his post and its tag; timeline_hashtag() pages the tag with fetch_next."""
    settings.NOTIFICATIONS_GROUP_DELAY_SECONDS = 0
    app, _client_id, _client_secret = connected
    from microblog.follows.services import follow_create

    follow_create(follower=bob, followed=User.objects.get(username="alice"))
    db_job_backend()  # the job that folds new followers into their notification
    mention = post_create(author=bob, content="Hello @alice, see #mastodonpy")
    notifications = app.notifications()
    assert [(n.type, n.account.acct) for n in notifications] == [
        ("mention", "bob"),
        ("follow", "bob"),
    ]
    assert str(notifications[0].status.id) == str(mention.id)
    assert [n.type for n in app.notifications(types=["follow"])] == ["follow"]
    app.notifications_dismiss(notifications[1].id)
    assert [n.type for n in app.notifications()] == ["mention"]

    found = app.search_v2("bob")
    assert [a.acct for a in found.accounts] == ["bob"]
    assert [str(s.id) for s in app.search_v2("mastodonpy").statuses] == [str(mention.id)]
    assert [t.name for t in app.search_v2("#mastodon").hashtags] == ["mastodonpy"]

    tagged = [post_create(author=bob, content=f"#mastodonpy {n}") for n in range(5)]
    page = app.timeline_hashtag("mastodonpy", limit=4)
    seen = [str(status.id) for status in page]
    while (page := app.fetch_next(page)) is not None and len(page) > 0:
        seen += [str(status.id) for status in page]
    assert seen == [str(p.id) for p in [*reversed(tagged), mention]]
