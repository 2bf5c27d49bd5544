"""core.sqlcache: hot queries compiled once give exactly what the ORM gives, and a builder that
breaks the contract is refused instead of replaying the first call's values."""

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db.models import QuerySet
from django.test import Client, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from oauth2_provider.models import AccessToken

from microblog.accounts.backends import _user_by_id
from microblog.accounts.models import User, UserSession
from microblog.accounts.sessions import _live_session
from microblog.accounts.views import _user_by_username, _user_by_username_for
from microblog.api.models import ClientApp
from microblog.api.oauth import _access_token_by_checksum
from microblog.core import sqlcache
from microblog.core.errors import NotAllowed
from microblog.core.idlist import id_list
from microblog.core.pagination import MAX_ID
from microblog.follows.services import follow_create
from microblog.interactions.selectors import _state_rows, _state_rows_with_reposters
from microblog.interactions.services import like_create, repost_create
from microblog.moderation.services import block_create, mute_create, review
from microblog.posts.models import Post
from microblog.posts.selectors import (
    _post,
    _post_for_staff,
    _post_for_user,
    _replies_for_staff,
    _replies_for_users,
    _replies_for_visitors,
)
from microblog.timelines.selectors import (
    _everyone_for_users,
    _everyone_for_visitors,
    _feed_page,
    _feed_page_whole_authors,
    _following_page,
    _profile_for_staff,
    _profile_for_users,
    _profile_for_visitors,
    _pull_page,
    _pull_page_whole_authors,
)


def _posts_of(author_id: int, below: int) -> QuerySet[Post]:
    return (
        Post.objects.select_related("author", "parent__author")
        .filter(author_id=author_id, id__lt=below)
        .order_by("-id")[:3]
    )


def _by_name(username: str) -> QuerySet[User, str]:
    return User.objects.filter(username__iexact=username).values_list("username", flat=True)


def _posts_below(upper: int) -> QuerySet[Post]:
    return Post.objects.filter(id__lt=upper - 1).order_by("-id")  # derived: upper - 1


def _window(upper: int) -> QuerySet[Post]:
    # `upper` is found as itself, but `upper - 1000` would replay the first call's value.
    return Post.objects.filter(id__lt=upper, id__gte=upper - 1000)


def _newest(author_id: int, count: int) -> QuerySet[Post]:
    return Post.objects.filter(author_id=author_id).order_by("-id")[:count]  # count in the SQL


def _with_default(author_id: int, below: int = MAX_ID) -> QuerySet[Post]:
    return Post.objects.filter(author_id=author_id, id__lt=below)


def _recent(author_id: int) -> QuerySet[Post]:
    # Reads the clock: each compilation binds another value, as a derived parameter would.
    return Post.objects.filter(author_id=author_id, created_at__lt=timezone.now())


def _closure_over(author_id: int) -> Any:
    def posts(below: int) -> QuerySet[Post]:
        return Post.objects.filter(author_id=author_id, id__lt=below)

    return posts


# Every hot query, with arguments of the types its callers pass.
HOT_SHAPES = [
    (_live_session, "key", datetime(2026, 1, 1, tzinfo=UTC)),
    (_user_by_id, 1),
    (_user_by_username, "bob"),
    (_feed_page, 1, 1, 1),
    (_feed_page_whole_authors, 1, 1, 1),
    (_pull_page, 1, 1),
    (_pull_page_whole_authors, 1, 1),
    (_following_page, 1, 1),
    (_everyone_for_visitors, 1),
    (_everyone_for_users, 1, 1),
    (_access_token_by_checksum, "checksum"),
    (_profile_for_users, 1, 1, 1),
    (_profile_for_staff, 1, 1, 1),
    (_profile_for_visitors, 1, 1),
    (_user_by_username_for, "bob", 1),
    (_post, 1),
    (_post_for_user, 1, 1),
    (_post_for_staff, 1, 1),
    (_replies_for_users, 1, 1, 1),
    (_replies_for_staff, 1, 1, 1),
    (_replies_for_visitors, 1, 1),
    (_state_rows, 1, "1,2"),
    (_state_rows_with_reposters, 1, "1,2"),
]


def test_same_rows_and_related_objects_as_the_orm(alice, bob, make_post):
    made = [make_post(alice, f"alice {n}") for n in range(5)]
    reply = make_post(alice, "a reply", parent=make_post(bob, "bob's post"))
    for author, below in ((alice, reply.id + 1), (alice, made[3].id), (bob, 2**62), (alice, 1)):
        cached = sqlcache.fetch(_posts_of, author.id, below)
        plain = list(_posts_of(author.id, below))
        assert [p.id for p in cached] == [p.id for p in plain]
        for got, want in zip(cached, plain, strict=True):
            assert got.author.username == want.author.username
            assert got.parent_id == want.parent_id
            assert (got.parent and got.parent.author.username) == (
                want.parent and want.parent.author.username
            )
            assert got.created_at == want.created_at
    assert sqlcache.is_compiled(_posts_of, alice.id, 1)


def test_a_replay_reuses_the_result_columns_converters(alice, bob, make_post, monkeypatch):
    """Django's iterables ask the compiler for every result column's converters on each query;
    a replay answers from those stored at the first one (per connection), and the rows are
    still converted (SQLite stores datetimes as text: the converter makes them datetimes)."""
    from django.db.models.sql.compiler import SQLCompiler

    post = make_post(bob, "hello", parent=make_post(alice, "parent"))
    assert [p.id for p in sqlcache.fetch(_post_for_user, post.id, alice.id)] == [post.id]
    computed = []
    original = SQLCompiler.get_converters

    def counted(self: SQLCompiler, expressions: Any) -> Any:
        computed.append(len(expressions))
        return original(self, expressions)

    monkeypatch.setattr(SQLCompiler, "get_converters", counted)
    for _ in range(3):
        (got,) = sqlcache.fetch(_post_for_user, post.id, alice.id)
        assert got.created_at == post.created_at
        assert got.parent.author.date_joined == alice.date_joined
    assert computed == []


@pytest.mark.django_db(transaction=True)
# A test database in memory is not closed by close_all(): its connection is closed when freed.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_stored_converters_keep_no_thread_s_connection_alive(alice, make_post):
    """The converters stored per connection hold the backend's methods (SQLite's datetime and
    boolean converters are its DatabaseOperations', which hold the connection): keyed by the
    connection in a weak dictionary, those values kept every thread's connection alive for
    good (one per request thread of runserver, per thread a server pool retires)."""
    import gc
    import threading
    import weakref

    from django.db import connections

    post = make_post(alice, "hello")
    sqlcache.fetch(_post_for_user, post.id, alice.id)
    gone: list[Any] = []

    def read() -> None:
        sqlcache.fetch(_post_for_user, post.id, alice.id)
        gone.append(weakref.ref(connections["default"]))
        connections.close_all()

    for _ in range(3):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    gc.collect()
    assert len(gone) == 3
    assert [ref() for ref in gone] == [None, None, None]


def test_values_and_case_insensitive_lookups(alice, make_user):
    make_user("a_b")
    make_user("axb")
    # "a_b" must not match "axb": SQLite's LIKE needs the underscore escaped, and the compiled
    # query escapes every value as the backend does.
    assert sqlcache.fetch(_by_name, "A_B") == ["a_b"]
    assert sqlcache.fetch(_by_name, "ALICE") == ["alice"]
    assert sqlcache.fetch(_by_name, "a%") == []
    assert sqlcache.fetch(_by_name, "nobody") == []
    assert sqlcache.is_compiled(_by_name, "x")


@pytest.mark.parametrize(
    ("build", "args", "why"),
    [
        (_posts_below, (5,), "derived from it"),
        (_window, (5,), "derived from an argument"),
        (_newest, (1, 3), "SQL changes with the values"),
        (_with_default, (1, 5), "default values"),
        (_recent, (1,), "derived from an argument"),
        (lambda below: Post.objects.filter(id__lt=below), (5,), "not a module-level function"),
        (_closure_over(1), (5,), "not a module-level function"),
        (_posts_of, (True, 5), "type bool"),
        (_posts_of, (1.5, 5), "type float"),
    ],
    ids=[
        "derived",
        "derived beside",
        "slice",
        "default",
        "clock",
        "lambda",
        "closure",
        "bool",
        "float",
    ],
)
def test_a_builder_that_breaks_the_contract_is_refused(alice, make_post, build, args, why):
    """In tests and DEBUG a builder that would replay wrong values raises at once."""
    make_post(alice, "one")
    with pytest.raises(sqlcache.ContractError, match=why):
        sqlcache.fetch(build, *args)


def test_without_strict_mode_a_broken_builder_runs_through_the_orm(alice, bob, make_post, caplog):
    """In production such a key is logged once and stays correct (the ORM's answer each time),
    and an unsupported first value does not disable the key for supported ones."""
    posts = [make_post(alice, f"post {n}") for n in range(4)]
    make_post(bob, "bob's")
    with override_settings(SQLCACHE_STRICT=False), caplog.at_level(logging.WARNING):
        for upper in (posts[3].id, posts[2].id + 1, posts[0].id + 2):
            got = [p.id for p in sqlcache.fetch(_posts_below, upper)]
            assert got == [p.id for p in _posts_below(upper)]
        assert not sqlcache.is_compiled(_posts_below, 1)
        assert sqlcache.fetch(_posts_of, alice.id, True) == list(_posts_of(alice.id, True))
        got = [p.id for p in sqlcache.fetch(_posts_of, alice.id, posts[2].id)]
        assert got == [posts[1].id, posts[0].id]
        assert sqlcache.is_compiled(_posts_of, alice.id, 1)
        for author in (alice, bob):
            got = [p.id for p in sqlcache.fetch(_closure_over(author.id), MAX_ID)]
            assert got == [p.id for p in _closure_over(author.id)(MAX_ID)]
    assert "derived from it" in caplog.text
    assert "not a module-level function" in caplog.text
    assert "type bool" in caplog.text


def test_out_of_range_integers_return_what_the_orm_returns(alice, make_post):
    """An id no column can hold finds nothing (it does not reach the database to raise); a bound
    beyond every id leaves the condition out, as Django's lookups do. (Django checks no range on
    a foreign key: there the ORM, and so fetch, passes the value on; callers check ids first.)"""
    post = make_post(alice, "hello")
    for value in (2**63, 2**64, -(2**63) - 1, 10**30):
        assert sqlcache.fetch(_post, value) == []
        assert sqlcache.fetch(_user_by_id, value, using="default") == []
    assert sqlcache.is_compiled(_post, post.id)
    assert [p.id for p in sqlcache.fetch(_posts_of, alice.id, 2**64)] == [post.id]
    assert sqlcache.fetch(_posts_of, alice.id, -(2**64)) == []


def test_a_changed_setting_forgets_compiled_queries(alice):
    sqlcache.fetch(_by_name, "alice")
    assert sqlcache.is_compiled(_by_name, "alice")
    with override_settings(PAGE_SIZE=7):
        assert not sqlcache.is_compiled(_by_name, "alice")


def test_session_and_user_lookups_end_with_logout_and_password_change(alice):
    """The session store and the auth backend read through compiled queries; logging out in one
    client ends that session for every process at once (the database is the only store)."""
    one, two = Client(), Client()
    one.force_login(alice)
    two.force_login(alice)
    assert one.get("/settings").status_code == 200
    key = one.cookies["sessionid"].value
    one.post("/logout")
    assert not UserSession.objects.filter(session_key=key).exists()
    stale = Client()
    stale.cookies["sessionid"] = key
    assert stale.get("/settings").status_code == 302
    assert two.get("/settings").status_code == 200
    alice.set_password("a-new-password-123")
    alice.save()
    assert two.get("/settings").status_code == 302


def test_the_query_count_does_not_change(alice, client_for, django_assert_num_queries):
    """The first request of a process compiles (and, in tests, checks against the ORM) without
    an extra counted query."""
    sqlcache.clear()
    client = client_for(alice)
    # 1 the session with its user (accounts.sessions), 2 the page's posts.
    for _ in range(2):
        with django_assert_num_queries(2):
            assert client.get("/").status_code == 200


def test_the_hot_page_queries_are_compiled_once(alice, bob, make_user, make_post, client_for):
    """Sessions (with their users), users, For You, profiles (for each kind of viewer), the
    profile's user with the viewer's relationship to them and threads really use the compiled
    path, on SQLite as on PostgreSQL."""
    sqlcache.clear()
    staff = make_user("moderator", is_staff=True)
    follow_create(follower=alice, followed=bob)
    post = make_post(bob, "hello")
    make_post(alice, "a reply", parent=post)
    for client in (client_for(alice), client_for(staff), Client()):
        assert client.get("/@bob").status_code == 200
        assert client.get(f"/posts/{post.id}").status_code == 200
    assert client_for(alice).get("/").status_code == 200
    assert client_for(alice).get("/following").status_code == 200
    assert client_for(alice).get("/all").status_code == 200
    assert Client().get("/").status_code == 200
    # The client API: its token read, and For You with the authors whole.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {_api_token(alice)}")
    assert api.get("/api/v1/timelines/home").status_code == 200
    # Below the stored feed's horizon, For You continues with the pull query: compiled too,
    # for the page and for the API.
    User.objects.filter(id=alice.id).update(feed_horizon=post.id + 1)
    assert f'id="post-{post.id}"' in client_for(alice).get("/").content.decode()
    assert api.get("/api/v1/timelines/home").json()[0]["id"] == str(post.id)
    # The user's own read: only for a session row that names no user (the joined read's
    # fallback, accounts.sessions), e.g. one whose column was cleared.
    unjoined = client_for(alice)
    UserSession.objects.filter(session_key=unjoined.cookies["sessionid"].value).update(user_id=None)
    assert unjoined.get("/").status_code == 200
    for build, *args in HOT_SHAPES:
        assert sqlcache.is_compiled(build, *args), build.__name__


def _api_token(user: User) -> str:
    """A valid access token of `user` (scope read), as the token endpoint stores it."""
    import secrets

    from oauth2_provider.models import AccessToken

    from microblog.api.services import app_register

    app, _secret = app_register(
        name="sqlcache test", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scopes="read"
    )
    raw = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=user,
        application=app,
        token=raw,
        scope="read",
        expires=timezone.now() + timedelta(days=1),
    )
    return raw


# The property test: every hot builder, compiled against the ORM, over random arguments.

EDGES = [0, 1, -1, 2**31 - 1, 2**31, 2**53 + 1, MAX_ID, MAX_ID + 1, 2**63 - 1, 2**63, -(2**63)]
EDGES += [-(2**63) - 1, 2**64, 10**30]


def _picture(rows: list[Any]) -> list[Any]:
    """Every field, annotation and related object the rows carry."""

    def one(value: Any) -> Any:
        if isinstance(value, Post | User | UserSession | AccessToken | ClientApp):
            fields = {k: one(v) for k, v in vars(value).items() if k != "_state"}
            related = {k: one(v) for k, v in value._state.fields_cache.items()}
            return (type(value).__name__, fields, related)
        if isinstance(value, dict):
            return {k: one(v) for k, v in value.items()}
        return value

    return [one(row) for row in rows]


def _outcome(run: Any) -> Any:
    try:
        return ("rows", _picture(run()))
    except Exception as error:  # the ORM's own error is the expected answer
        return ("error", type(error).__name__)


@pytest.fixture
def world(make_user, make_post, client_for) -> dict[str, Any]:
    """Users who follow, block and mute each other, hidden posts, replies, a celebrity, live and
    expired sessions, and names with LIKE wildcards."""
    staff = make_user("moderator", is_staff=True)
    users = [make_user(name) for name in ("alice", "bob", "carol", "a_b", "axb", "Dave_%")]
    alice, bob, carol, a_b, axb, dave = users
    for follower, followed in ((alice, bob), (alice, carol), (bob, alice), (carol, a_b)):
        follow_create(follower=follower, followed=followed)
    follow_create(follower=alice, followed=dave)
    mute_create(muter=alice, muted=dave)
    posts = []
    for n, author in enumerate(users * 3):
        posts.append(make_post(author, f"post {n}"))
    for n, parent in enumerate(posts[:8]):
        posts.append(make_post(users[(n + 1) % len(users)], f"reply {n}", parent=parent))
        posts.append(make_post(axb, f"reply by axb {n}", parent=parent))
    block_create(blocker=bob, blocked=axb)
    # Likes and reposts for state_for's queries: the reader's own, and those of accounts heard.
    for n, post in enumerate(posts[:12]):
        with contextlib.suppress(NotAllowed):  # bob blocks axb: refused, as it should be
            like_create(user=users[n % 3], post_id=post.id)
            repost_create(user=users[(n + 1) % 3], post_id=post.id)
    for post in (posts[1], posts[7], posts[-1]):
        review(staff=staff, post_id=post.id, action="hide")
    User.objects.filter(id=carol.id).update(is_celebrity=True)
    client_for(alice)
    client_for(bob)
    expired = UserSession.objects.values_list("session_key", flat=True)[:1].get()
    UserSession.objects.filter(session_key=expired).update(
        expire_date=timezone.now() - timedelta(1)
    )
    user_ids = [u.id for u in (*users, staff)]
    post_ids = [p.id for p in posts]
    _api_token(alice)
    return {
        "user_ids": user_ids,
        "post_ids": post_ids,
        "names": [u.username for u in users],
        "session_keys": list(UserSession.objects.values_list("session_key", flat=True)),
        "token_checksums": list(AccessToken.objects.values_list("token_checksum", flat=True)),
    }


def test_compiled_hot_queries_agree_with_the_orm(world):
    """For every hot query: the compiled path returns exactly what the ORM returns (same rows,
    fields, related objects and annotations, or the same error), for existing ids, unknown ids,
    zero, negative and out-of-range integers, names differing in case or with LIKE wildcards,
    live, expired and malformed session keys, and any time."""
    ints = st.one_of(
        st.sampled_from(world["user_ids"] + world["post_ids"] + EDGES),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.integers(min_value=-3, max_value=max(world["post_ids"]) + 3),
    )
    user_ids = st.one_of(st.sampled_from(world["user_ids"]), ints)
    post_ids = st.one_of(st.sampled_from(world["post_ids"]), ints)
    # A page's ids as state_for binds them (core.idlist): none, a few, more than a page.
    id_lists = st.lists(
        st.one_of(
            st.sampled_from(world["post_ids"]),
            st.integers(min_value=0, max_value=2**63 - 1),
        ),
        max_size=70,
    ).map(id_list)
    names = st.one_of(
        st.sampled_from(world["names"]).map(lambda n: n.swapcase()),
        st.sampled_from(world["names"]),
        st.text(alphabet="aAbBxX_%\\ıé \x00", max_size=8),
    )
    keys = st.one_of(st.sampled_from(world["session_keys"]), st.text(max_size=40))
    times = st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
    now = st.just(timezone.now())
    arguments = {
        _live_session: st.tuples(keys, st.one_of(now, times)),
        _user_by_id: st.tuples(user_ids),
        _user_by_username: st.tuples(names),
        _feed_page: st.tuples(user_ids, post_ids, st.one_of(st.just(0), post_ids)),
        _feed_page_whole_authors: st.tuples(user_ids, post_ids, st.one_of(st.just(0), post_ids)),
        _pull_page: st.tuples(user_ids, post_ids),
        _pull_page_whole_authors: st.tuples(user_ids, post_ids),
        _following_page: st.tuples(user_ids, post_ids),
        _everyone_for_visitors: st.tuples(post_ids),
        _everyone_for_users: st.tuples(post_ids, user_ids),
        _access_token_by_checksum: st.tuples(
            st.one_of(st.sampled_from(world["token_checksums"]), st.text(max_size=70))
        ),
        _profile_for_users: st.tuples(user_ids, post_ids, user_ids),
        _profile_for_staff: st.tuples(user_ids, post_ids, user_ids),
        _profile_for_visitors: st.tuples(user_ids, post_ids),
        _user_by_username_for: st.tuples(names, user_ids),
        _post: st.tuples(post_ids),
        _post_for_user: st.tuples(post_ids, user_ids),
        _post_for_staff: st.tuples(post_ids, user_ids),
        _replies_for_users: st.tuples(post_ids, st.one_of(st.just(0), post_ids), user_ids),
        _replies_for_staff: st.tuples(post_ids, st.one_of(st.just(0), post_ids), user_ids),
        _replies_for_visitors: st.tuples(post_ids, st.one_of(st.just(0), post_ids)),
        _state_rows: st.tuples(user_ids, id_lists),
        _state_rows_with_reposters: st.tuples(user_ids, id_lists),
    }
    sqlcache.clear()
    found_rows: dict[str, int] = {}
    for build, strategy in arguments.items():
        _agrees_with_the_orm(build, strategy, found_rows)
        shape = next(example for example in HOT_SHAPES if example[0] is build)
        assert sqlcache.is_compiled(*shape), build.__name__
    # The comparison meant something: nearly every query found rows for some arguments.
    assert len(found_rows) >= 18, found_rows


def _agrees_with_the_orm(build: Any, strategy: Any, found_rows: dict[str, int]) -> None:
    @hypothesis_settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(args=strategy)
    def agrees(args: tuple[Any, ...]) -> None:
        compiled = _outcome(lambda: sqlcache.fetch(build, *args))
        assert compiled == _outcome(lambda: list(build(*args))), args
        if compiled[0] == "rows" and compiled[1]:
            found_rows[build.__name__] = found_rows.get(build.__name__, 0) + 1

    agrees()
