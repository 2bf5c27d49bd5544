"""`microblog seed`: exact counters, a clean follow graph, stored feeds equal to the pull query."""

import io
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import AnonymousUser
from django.core.management import CommandError, call_command
from django.db.models import F
from django.utils import timezone

from microblog.accounts.models import User
from microblog.follows.models import Follow
from microblog.ops.counters import reconcile
from microblog.posts.models import Post
from microblog.seeding import seeder
from microblog.timelines import fanout
from microblog.timelines.models import FeedEntry
from tests.feeds import feed_ids, pull_ids

COUNTS = {"users": 200, "follows": 3_000, "posts": 600, "top_followers": 150}


def run_seed(**extra: object) -> str:
    out = io.StringIO()
    call_command("seed", **COUNTS, random_seed=7, stdout=out, stderr=io.StringIO(), **extra)
    return out.getvalue()


@pytest.fixture
def seeded(settings, db):
    # Small thresholds, so 200 users have celebrities and capped feeds.
    settings.FANOUT_CELEBRITY_FOLLOWERS = 60
    settings.FEED_MAX_ENTRIES = 40
    return run_seed()


def test_seed_creates_the_requested_counts(seeded):
    assert User.objects.count() == 200
    assert Follow.objects.count() == 3_000
    assert Post.objects.filter(parent__isnull=True).count() == 600
    replies = Post.objects.filter(parent__isnull=False).count()
    assert replies == round(600 * 0.3 / 0.7)
    assert "Seeded in" in seeded


def test_follow_graph_is_skewed_without_self_follows(seeded):
    assert not Follow.objects.filter(follower_id=F("followed_id")).exists()
    assert User.objects.get(id=1).followers_count == 150
    counts = sorted(User.objects.values_list("followers_count", flat=True), reverse=True)
    assert counts[1] > 4 * counts[len(counts) // 2]  # a few popular accounts, a long tail


def test_counters_and_celebrity_flags_are_exact(seeded):
    assert reconcile(fix=False).drifts == []
    assert User.objects.filter(is_celebrity=True).exists()


def test_posts_have_time_ids_and_replies_are_newer_than_parents(seeded):
    from microblog.core.ids import id_to_ms

    now = timezone.now()
    for post in Post.objects.all():
        assert abs(id_to_ms(post.id) - post.created_at.timestamp() * 1000) < 1
        assert now - timedelta(days=91) < post.created_at < now
        if post.parent_id is not None:
            assert post.parent_id < post.id


def test_stored_feeds_follow_the_fanout_rules(seeded, settings):
    cap = settings.FEED_MAX_ENTRIES
    cutoff = fanout.active_cutoff()
    capped = 0
    for user in User.objects.all():
        stored = list(
            FeedEntry.objects.filter(user_id=user.id)
            .order_by("-post_id")
            .values_list("post_id", flat=True)
        )
        if user.last_seen_at < cutoff:
            assert stored == [] and user.feed_horizon == 0
            continue
        ordinary = User.objects.filter(
            followers_set__follower_id=user.id, is_celebrity=False
        ).values("id")
        expected = list(
            Post.objects.filter(parent__isnull=True)
            .filter(author_id__in=[user.id, *(u["id"] for u in ordinary)])
            .order_by("-id")
            .values_list("id", flat=True)[:cap]
        )
        assert stored == expected
        assert user.feed_horizon == (expected[-1] if len(expected) == cap else 0)
        capped += len(expected) == cap
    assert capped > 0


def test_for_you_equals_the_pull_query_for_a_sample_of_users(seeded):
    users = list(User.objects.order_by("id")[::10]) + list(
        User.objects.filter(feed_horizon__gt=0)[:5]
    )
    assert any(not fanout.is_active(u) for u in users)
    for user in users:
        assert feed_ids(user) == pull_ids(user)


def test_seeded_users_sign_in_with_the_documented_password(seeded):
    user = User.objects.get(id=42)
    assert authenticate(username=user.username, password=seeder.SEED_PASSWORD) == user
    assert authenticate(username=user.username, password="wrong") is None
    assert len({u.password for u in User.objects.all()[:20]}) == 1  # hashed once


def test_refuses_a_non_empty_database_without_reset(seeded):
    before = list(Follow.objects.values_list("follower_id", "followed_id"))
    contents = list(Post.objects.order_by("id").values_list("author_id", "content"))
    with pytest.raises(CommandError, match="not empty"):
        run_seed()
    assert User.objects.count() == 200
    run_seed(reset=True)  # same random seed: the same data again
    assert list(Follow.objects.values_list("follower_id", "followed_id")) == before
    assert list(Post.objects.order_by("id").values_list("author_id", "content")) == contents
    assert reconcile(fix=False).drifts == []


def test_refuses_impossible_counts(db):
    with pytest.raises(CommandError, match="at most"):
        call_command("seed", users=5, follows=100, posts=1, stderr=io.StringIO())


def test_seeded_hashtags_are_stored_as_post_create_stores_them(seeded):
    """Tags at realistic rates with a long tail, each post's stored tags exactly those its text
    carries, and the search index and trending list filled."""
    from collections import Counter

    from microblog.core.text import hashtags
    from microblog.search import selectors as search
    from microblog.search.query import parse
    from microblog.tags.models import PostTag, Trend

    stored: dict[int, set[str]] = {}
    for post_id, name in PostTag.objects.values_list("post_id", "tag__name"):
        stored.setdefault(post_id, set()).add(name)
    posts = list(Post.objects.values_list("id", "content", "parent_id"))
    for post_id, content, _ in posts:
        assert stored.get(post_id, set()) == set(hashtags(content)), content
    top_level = [p for p in posts if p[2] is None]
    tagged_share = sum(1 for p in top_level if p[0] in stored) / len(top_level)
    assert 0.2 < tagged_share < 0.35
    uses = Counter(name for names in stored.values() for name in names)
    counts = sorted(uses.values(), reverse=True)
    assert counts[0] >= 10 * counts[len(counts) // 2]  # a head and a long tail
    assert "tags" in seeded or "hashtags" in seeded
    assert Trend.objects.exists()
    word = next(iter(uses))
    found = search.posts(parse(word), AnonymousUser())
    assert found.items and all(word in p.content.lower() for p in found.items)


def test_mentions_and_their_notifications_are_what_post_create_writes(seeded):
    """Seeded mentions are stored as post_create stores them, and the notifications are those
    post_create writes: a reply tells its parent's author, a mention the others, never oneself."""
    from microblog.core.text import mentioned_usernames
    from microblog.notifications.models import Notification
    from microblog.posts.models import Mention

    mentions = list(Mention.objects.select_related("post", "user"))
    top_level = [m for m in mentions if m.post.parent_id is None]
    assert top_level and len(mentions) > len(top_level)  # both kinds at realistic rates
    assert len(top_level) < 0.1 * Post.objects.filter(parent__isnull=True).count()
    for mention in mentions:
        assert mention.user.username in mentioned_usernames(mention.post.content)
        assert mention.user.username in mention.post.mention_names.split()
    expected = set()
    for post in Post.objects.select_related("parent"):
        told = {m: "mention" for m in post.mentions.values_list("user_id", flat=True)}
        if post.parent_id is not None:
            told[post.parent.author_id] = "reply"
        told.pop(post.author_id, None)
        expected |= {(recipient, kind, post.id, post.author_id) for recipient, kind in told.items()}
    rows = set(Notification.objects.values_list("recipient_id", "kind", "post_id", "actor_id"))
    assert rows == expected
    # New notifications get ids after the seeded ones.
    post = Post.objects.filter(parent__isnull=True).first()
    from microblog.posts.services import post_create

    reply = post_create(
        author=User.objects.exclude(id=post.author_id).first(), content="hi", parent_id=post.id
    )
    assert Notification.objects.filter(post=reply).exists()


def test_likes_and_reposts_at_their_rates_skewed_and_after_their_posts(seeded):
    from django.db.models import Count

    from microblog.interactions.models import Like, Repost
    from microblog.timelines.models import RepostEntry

    posts = Post.objects.count()
    likes, reposts = Like.objects.count(), Repost.objects.count()
    # Duplicates (same user, same post) are dropped, so a little under the rate.
    assert 0.8 * 3.0 * posts <= likes <= 3.0 * posts
    assert 0.8 * 0.3 * 600 <= reposts <= 0.3 * 600
    assert not Repost.objects.filter(post__parent__isnull=False).exists()  # top-level only
    most = Like.objects.values("post_id").annotate(n=Count("*")).order_by("-n").first()
    assert most is not None and most["n"] >= 10 * likes / posts  # a few posts collect many
    for like in Like.objects.select_related("post")[:50]:
        assert like.created_at > like.post.created_at
    assert RepostEntry.objects.exists()
    assert "likes" in seeded and "reposts" in seeded
