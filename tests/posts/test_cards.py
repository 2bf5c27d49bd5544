"""Post cards cached by content (posts.cards, core.fragments): never stale, never shown to a
reader who may not see the post, the reader's own parts never cached.

Each "changes the card" test renders a page first (so the card is cached), changes the post
through its service, and checks the very next render shows the change: it fails if the value
the change touches were left out of the card's key (posts.cards.card_view).
"""

import os
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from microblog.accounts.models import User
from microblog.accounts.services import user_erase
from microblog.core.fragments import FragmentCache, LocalLRU, RedisStore
from microblog.moderation.services import report_create, review
from microblog.posts import cards
from microblog.posts.models import Post
from microblog.posts.services import post_delete

REDIS_TEST_URL = os.environ.get("FRAGMENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")


def card_html(page: str, post_id: int) -> str:
    """The <article> of one post on a page ("" when the page does not show it), its CSRF
    tokens (masked anew for each request, in the reader's like/repost forms) written as "-"."""
    match = re.search(
        rf'<article class="[^"]*" id="post-{post_id}">.*?</article>', page, flags=re.DOTALL
    )
    if not match:
        return ""
    return re.sub(
        r'name="csrfmiddlewaretoken" value="[^"]*"',
        'name="csrfmiddlewaretoken" value="-"',
        match.group(0),
    )


def get(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def local_hits() -> Iterator[list[int]]:
    """Counts the post cards served from this process's cache while the test runs."""
    counted: list[int] = []
    cache = cards.fragment_cache()
    original = cache.observe

    def observe(name: str, lookup: Any, fragment_cache: Any) -> None:
        counted.append(lookup.local_hits)
        if original is not None:
            original(name, lookup, fragment_cache)

    cache.observe = observe
    yield counted
    cache.observe = original


def test_a_cached_card_is_served_from_the_cache(alice, bob, make_post, client_for, local_hits):
    post = make_post(bob, "cached once")
    client = client_for(alice)
    first = card_html(get(client, "/@bob"), post.id)
    local_hits.clear()
    second = card_html(get(client, "/@bob"), post.id)
    assert first == second and "cached once" in second
    assert sum(local_hits) >= 1


def test_a_reply_changes_the_count_on_the_next_render(alice, bob, make_post, client_for):
    post = make_post(bob, "count me")
    client = client_for(alice)
    assert "0 replies" in card_html(get(client, "/@bob"), post.id)
    make_post(alice, "a reply", parent=post)
    assert "1 reply<" in card_html(get(client, "/@bob"), post.id)


def test_deleting_a_post_shows_the_placeholder(alice, bob, make_post, client_for):
    post = make_post(bob, "soon gone")
    reply = make_post(alice, "an answer", parent=post)
    client = client_for(alice)
    before = get(client, f"/posts/{reply.id}")
    assert "soon gone" in card_html(before, post.id)
    post_delete(post=post, actor=bob)
    after = card_html(get(client, f"/posts/{reply.id}"), post.id)
    assert "soon gone" not in after
    assert "This post was deleted." in after


def test_hiding_and_restoring_show_on_the_authors_next_render(
    bob, make_user, make_post, client_for
):
    staff = make_user("mod", is_staff=True)
    post = make_post(bob, "borderline")
    client = client_for(bob)  # the author still sees a hidden post, marked
    assert "hidden-mark" not in card_html(get(client, "/@bob"), post.id)
    review(staff=staff, post_id=post.id, action="hide")
    hidden = card_html(get(client, "/@bob"), post.id)
    assert "post-hidden" in hidden and "Hidden by moderators" in hidden
    review(staff=staff, post_id=post.id, action="restore")
    restored = card_html(get(client, "/@bob"), post.id)
    assert "borderline" in restored and "hidden-mark" not in restored


def test_reports_that_hide_a_post_say_it_awaits_review(
    settings, bob, make_user, make_post, client_for
):
    settings.REPORTS_TO_HIDE = 1
    post = make_post(bob, "reported")
    client = client_for(bob)
    assert "hidden-mark" not in card_html(get(client, "/@bob"), post.id)
    report_create(reporter=make_user("reporter"), post_id=post.id, reason="spam")
    assert "Hidden: waiting for review" in card_html(get(client, "/@bob"), post.id)


def test_account_deletion_shows_deleted_user(alice, bob, make_post, client_for):
    post = make_post(bob, "orphan to be")
    client = client_for(alice)
    before = card_html(get(client, "/all"), post.id)
    assert 'href="/@bob"' in before
    user_erase(user=bob)
    after = card_html(get(client, "/all"), post.id)
    assert "orphan to be" in after
    assert "Deleted user" in after and "/@bob" not in after


def test_a_renamed_author_shows_the_new_name(alice, bob, make_post, client_for):
    """There is no rename in the app; the admin (or a shell) could do it, and the card follows."""
    post = make_post(bob, "by whatever name")
    client = client_for(alice)
    assert ">bob</a>" in card_html(get(client, "/all"), post.id)
    User.objects.filter(id=bob.id).update(username="robert")
    after = card_html(get(client, "/all"), post.id)
    assert ">robert</a>" in after and ">bob</a>" not in after


def test_the_replying_to_line_follows_the_parent(alice, bob, make_user, make_post, client_for):
    """Following shows replies with a line about their parent: it changes when the parent is
    deleted or its author's account is."""
    from microblog.follows.services import follow_create

    carol = make_user("carol")
    follow_create(follower=alice, followed=carol)
    client = client_for(alice)

    parent = make_post(bob, "the parent")
    reply = make_post(carol, "the reply", parent=parent)
    assert "Replying to" in card_html(get(client, "/following"), reply.id)
    assert "@bob</a>" in card_html(get(client, "/following"), reply.id)
    user_erase(user=bob)
    assert "a post by a deleted user" in card_html(get(client, "/following"), reply.id)

    other_parent = make_post(alice, "another parent")
    other_reply = make_post(carol, "another reply", parent=other_parent)
    make_post(bob_again := make_user("dave"), "keeps the placeholder", parent=other_parent)
    assert "@" + alice.username in card_html(get(client, "/following"), other_reply.id)
    post_delete(post=Post.objects.get(id=other_parent.id), actor=alice)
    assert "Replying to a deleted post" in card_html(get(client, "/following"), other_reply.id)
    assert bob_again.username  # (a second reply keeps the deleted parent as a placeholder)


def test_the_readers_own_links_are_not_cached(alice, bob, make_post, client_for):
    post = make_post(bob, "one fragment, three readers")
    as_author = card_html(get(client_for(bob), "/all"), post.id)
    as_reader = card_html(get(client_for(alice), "/all"), post.id)
    as_visitor = card_html(get(Client(), "/all"), post.id)
    assert f'href="/posts/{post.id}/delete"' in as_author and "/report" not in as_author
    assert f'href="/posts/{post.id}/report"' in as_reader and "/delete" not in as_reader
    assert "/report" not in as_visitor and "/delete" not in as_visitor
    # Signed-in readers get their like / repost buttons; visitors none.
    assert 'class="interaction-buttons"' in as_author and 'class="interaction-buttons"' in as_reader
    assert "interaction-buttons" not in as_visitor
    # Apart from those links and buttons, the same HTML.
    strip = re.compile(
        r'\s*<a href="/posts/\d+/(delete|report)"[^>]*>[^<]*</a>'
        r'|\s*<span class="interaction-buttons".*?</form>\s*</span>',
        flags=re.DOTALL,
    )
    assert strip.sub("", as_author) == strip.sub("", as_reader) == strip.sub("", as_visitor)


def test_a_hidden_post_cached_for_its_author_is_not_shown_to_others(
    alice, bob, make_user, make_post, client_for
):
    staff = make_user("mod", is_staff=True)
    post = make_post(bob, "hidden but cached")
    review(staff=staff, post_id=post.id, action="hide")
    assert "hidden but cached" in get(client_for(bob), "/@bob")  # cached now
    assert "hidden but cached" not in get(client_for(alice), "/@bob")
    assert "hidden but cached" not in get(Client(), "/@bob")
    assert client_for(alice).get(f"/posts/{post.id}").status_code == 404


def test_the_relative_time_is_computed_on_every_render(alice, bob, make_post, local_hits):
    post = Post.objects.select_related("author").get(id=make_post(bob, "timely").id)
    now = timezone.now()
    (first,) = cards.cards([post], alice, now=now)
    local_hits.clear()
    (later,) = cards.cards([post], alice, now=now + timedelta(hours=3))
    assert local_hits == [1]  # the fragment came from the cache
    assert re.search(r"<time [^>]*>now</time>", first)
    assert re.search(r"<time [^>]*>3h</time>", later)
    assert f'datetime="{post.created_at.isoformat()}"' in later  # the absolute time is cached


def test_every_field_of_the_card_view_changes_the_fragment(bob, make_post):
    """The fragment is made from CardView alone: each field must show, or it is a key that
    caches nothing (and a value shown but left out of the key could go stale)."""
    post = Post.objects.select_related("author").get(id=make_post(bob, "fields").id)
    base = cards.card_view(post)
    variants = {
        "id": base._replace(id=base.id + 1),
        "featured": base._replace(featured=True),
        "deleted": base._replace(deleted=True),
        "reply_count": base._replace(reply_count=7),
        "author": base._replace(author="someone_else"),
        "created_at": base._replace(created_at=base.created_at - timedelta(days=400)),
        "content": base._replace(content="other words"),
        "hidden": base._replace(hidden=True),
        "awaiting_review": base._replace(hidden=True, awaiting_review=True),
        "parent": base._replace(parent=cards.ParentLine(123, True, "carol")),
        "likes_count": base._replace(likes_count=3),
        "reposts_count": base._replace(reposts_count=2),
    }
    # A stored mention shows only where the text names it.
    mentioning = base._replace(content="hi @carol")
    variants["mention_names"] = mentioning._replace(mention_names="carol")
    assert set(variants) == set(cards.CardView._fields)
    rendered = cards.render_fragment(base)
    for name, variant in variants.items():
        if name == "mention_names":
            assert cards.render_fragment(variant) != cards.render_fragment(mentioning), name
            continue
        assert cards.render_fragment(variant) != rendered, name
    parent_variants = [
        cards.ParentLine(123, True, "carol"),
        cards.ParentLine(124, True, "carol"),
        cards.ParentLine(123, False, None),
        cards.ParentLine(123, True, None),
        cards.ParentLine(123, True, "dave"),
    ]
    shown = {cards.render_fragment(base._replace(parent=p)) for p in parent_variants}
    assert len(shown) == len(parent_variants)


def test_the_local_cache_is_bounded() -> None:
    lru = LocalLRU(max_bytes=100)
    for n in range(10):
        lru.put(n, "x" * 30, 30)
    assert lru.bytes <= 100 and len(lru) == 3
    assert lru.get(9) == "x" * 30 and lru.get(0) is None
    lru.put("huge", "y" * 500, 500)  # larger than the whole cache: not kept
    assert lru.get("huge") is None


# --- The shared level (Redis) ------------------------------------------------------------------


def redis_reachable() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@pytest.fixture
def shared_settings(settings: Any) -> Iterator[Any]:
    if not redis_reachable():
        pytest.skip(f"Redis is not reachable at {REDIS_TEST_URL}")
    import redis

    prefix = f"microblog-test:{uuid.uuid4().hex}:"
    settings.REDIS_URL = REDIS_TEST_URL
    settings.FRAGMENT_CACHE_SHARED = "redis"
    settings.FRAGMENT_CACHE_KEY_PREFIX = prefix
    yield settings
    client = redis.Redis.from_url(REDIS_TEST_URL)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def instance(settings: Any) -> FragmentCache:
    """Another app instance's cache: its own process memory, the same Redis."""
    return FragmentCache(
        name="post_card",
        render=cards.render_fragment,
        encode=cards.encode_parts,
        decode=cards.decode_parts,
        size=cards.parts_size,
        version=cards._template_version,
        local=LocalLRU(1 << 20),
        shared=RedisStore(
            settings.REDIS_URL,
            prefix=settings.FRAGMENT_CACHE_KEY_PREFIX,
            ttl_seconds=60,
            retry_seconds=10,
        ),
    )


def test_instances_share_cards_and_never_show_a_stale_one(shared_settings, alice, bob, make_post):
    first, second = instance(shared_settings), instance(shared_settings)
    posts = [make_post(bob, f"shared {n}") for n in range(3)]
    loaded = list(Post.objects.select_related("author").filter(id__in=[p.id for p in posts]))
    views = [cards.card_view(p) for p in loaded]
    rendered = []
    first.render, render = (lambda v: rendered.append(v) or render(v)), first.render
    first.get_many(views)
    assert len(rendered) == 3
    seen: list[Any] = []
    second.observe = lambda name, lookup, cache: seen.append(lookup)
    from_second = second.get_many(views)
    assert seen[-1].shared_hits == 3 and seen[-1].rendered == 0
    assert from_second == first.get_many(views)

    # A reply through "the first instance": the second renders the new count, never the old.
    make_post(alice, "a reply", parent=loaded[0])
    changed = cards.card_view(Post.objects.select_related("author").get(id=loaded[0].id))
    (fragment,) = second.get_many([changed])
    assert "1 reply<" in "".join(fragment)


def test_pages_use_the_shared_level(shared_settings, alice, bob, make_post, client_for):
    posts = [make_post(bob, f"page card {n}") for n in range(3)]
    client = client_for(alice)
    page = get(client, "/@bob")
    cache = cards.fragment_cache()
    cache.clear_local()  # as a fresh process would start
    seen: list[Any] = []
    cache.observe = lambda name, lookup, fragment_cache: seen.append(lookup)
    again = get(client, "/@bob")
    assert [card_html(again, p.id) for p in posts] == [card_html(page, p.id) for p in posts]
    assert seen[0].shared_hits == 3 and seen[0].rendered == 0


def test_a_redis_that_is_down_only_costs_rendering(settings, alice, bob, make_post, client_for):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.FRAGMENT_CACHE_SHARED = "redis"
    settings.FRAGMENT_CACHE_LOCAL_BYTES = 0
    post = make_post(bob, "rendered anyway")
    assert "rendered anyway" in card_html(get(client_for(alice), "/@bob"), post.id)


def test_metrics_report_fragments(alice, bob, make_post, client_for):
    make_post(bob, "counted")
    client = client_for(alice)
    get(client, "/@bob")
    get(client, "/@bob")
    metrics = Client().get("/metrics").content.decode()
    assert re.search(
        r'microblog_fragment_cache_fragments_total\{fragment="post_card",source="local"\} [1-9]',
        metrics,
    )
    assert 'microblog_fragment_cache_local_bytes{fragment="post_card"}' in metrics


# --- The profile header's shared part (accounts.headers) ----------------------------------------


def header_html(page: str) -> str:
    match = re.search(r'<section class="card profile-header">.*?</section>', page, re.DOTALL)
    return match.group(0) if match else ""


def test_the_profile_header_follows_counts_and_bio(alice, bob, make_user, make_post, client_for):
    from microblog.accounts.services import user_update_profile
    from microblog.follows.services import follow_create

    client = client_for(alice)
    before = header_html(get(client, "/@bob"))
    assert "<strong>0</strong> followers" in before and "Follow</button>" in before
    follow_create(follower=alice, followed=bob)
    make_post(bob, "one more post")
    user_update_profile(user=bob, description="a new bio")
    after = header_html(get(client, "/@bob"))
    assert "<strong>1</strong> follower<" in after
    assert "<strong>1</strong> post<" in after
    assert "a new bio" in after
    assert "Unfollow</button>" in after  # the reader's own button, rendered around the cache
    as_bob = header_html(get(client_for(bob), "/@bob"))
    assert "Edit profile" in as_bob and "Unfollow" not in as_bob and "a new bio" in as_bob
