"""Prepares a seeded database for the load tests (bench/locustfile.py) and writes a fixture file.

Idempotent: a thread with 200 replies is created once through the services (its root post is
recognised by its text on later runs). The fixture names what the scenarios need:

- `readers`: random seeded users (uniform over the ids) to sign in as;
- `deep_readers`: the users who follow the most accounts (the longest For You feeds), for
  `for_you_deep`;
- `celebrity`: user 1 (the most-followed account) and `thread_id`: the 200-reply thread;
- `max_user_id`, for follows of random accounts, and `dataset`: the counts read from the DB;
- issue 16's scenarios: `notified_readers` (the users with the most notifications, for the
  notifications page), `tag` (the tag on the most posts), `search_word` (the most frequent word
  of 5+ letters in a sample of recent posts: a search with many matches) and `like_posts`
  (recent public root posts, liked then unliked by the `liking` scenario).
- issue 17's scenarios: `api_tokens` (reader username -> an OAuth access token with the `read`
  scope, issued to a "Load test" app registered through the API's service), for the client
  API's home timeline beside the For You page.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_load_medium \\
        .venv/bin/python bench/load_setup.py --out /tmp/load_fixture.json
"""

import argparse
import json
import random
import re
import time
from pathlib import Path

from _common import setup_django

THREAD_MARKER = "Load-test thread: 200 replies (bench/load_setup.py)"
THREAD_REPLIES = 200


def dataset_counts() -> dict[str, int]:
    """Exact counts (COUNT(*) on the big tables takes seconds at 50M rows, and the runs report
    them once)."""
    from django.db import connection

    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for key, table in (
            ("users", "accounts_user"),
            ("follows", "follows_follow"),
            ("posts", "posts_post"),
            ("likes", "interactions_like"),
            ("reposts", "interactions_repost"),
            ("tagged_posts", "tags_posttag"),
            ("notifications", "notifications_notification"),
        ):
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[key] = cursor.fetchone()[0]
    return counts


def ensure_thread(rng: random.Random, max_user_id: int) -> int:
    from microblog.accounts.models import User
    from microblog.posts.models import Post
    from microblog.posts.services import post_create

    root = Post.objects.filter(content=THREAD_MARKER, parent_id=None).order_by("id").first()
    if root is None:
        author = User.objects.get(id=rng.randint(2, max_user_id))
        root = post_create(author=author, content=THREAD_MARKER)
    missing = THREAD_REPLIES - Post.objects.filter(parent_id=root.id).count()
    if missing > 0:
        ids = rng.sample(range(2, max_user_id + 1), missing)
        repliers = {u.id: u for u in User.objects.filter(id__in=ids)}
        for n, uid in enumerate(ids):
            replier = repliers.get(uid)
            if replier is not None:
                post_create(
                    author=replier, content=f"Reply {n} to the load-test thread.", parent_id=root.id
                )
    return int(root.id)


def interactions_fixture(rng: random.Random, readers: int) -> dict[str, object]:
    """What the issue-16 scenarios need, read from the seeded data (nothing written)."""
    from collections import Counter

    from django.db.models import Count

    from microblog.notifications.models import Notification
    from microblog.posts.models import Post
    from microblog.tags.models import PostTag

    notified = list(
        Notification.objects.values("recipient_id")
        .annotate(n=Count("*"))
        .order_by("-n")
        .values_list("recipient__username", flat=True)[:readers]
    )
    top_tag = (
        PostTag.objects.values("tag__name").annotate(n=Count("*")).order_by("-n").first() or {}
    )
    recent = list(
        Post.objects.filter(parent_id=None, is_deleted=False, is_hidden=False, author__isnull=False)
        .order_by("-id")
        .values_list("id", "content")[:5000]
    )
    words: Counter[str] = Counter()
    for _id, content in recent:
        words.update({w.lower() for w in re.findall(r"[^\W\d_]{5,}", content)})
    like_posts = [str(post_id) for post_id, _content in rng.sample(recent, min(500, len(recent)))]
    return {
        "notified_readers": notified,
        "tag": top_tag.get("tag__name", ""),
        "tag_posts": top_tag.get("n", 0),
        "search_word": words.most_common(1)[0][0] if words else "",
        "like_posts": like_posts,
    }


def api_tokens(usernames: list[str]) -> dict[str, str]:
    """One `read` token per reader for the client-API scenarios (stands in for the OAuth code
    flow each app would have gone through once: that flow is not what is measured). Tokens of
    an earlier run are replaced, so the fixture's tokens are the valid ones."""
    import secrets
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    from microblog.accounts.models import User
    from microblog.api.models import ClientApp
    from microblog.api.services import app_register

    name = "Load test (bench/load_setup.py)"
    app = ClientApp.objects.filter(name=name).first()
    if app is None:
        app, _secret = app_register(
            name=name, redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scopes="read"
        )
    AccessToken.objects.filter(application=app).delete()
    users = dict(User.objects.filter(username__in=usernames).values_list("username", "id"))
    expires = timezone.now() + timedelta(days=7)
    tokens = {name: secrets.token_urlsafe(32) for name in usernames if name in users}
    AccessToken.objects.bulk_create(
        AccessToken(user_id=users[name], application=app, token=raw, scope="read", expires=expires)
        for name, raw in tokens.items()
    )
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--deep-readers", type=int, default=200)
    parser.add_argument("--random-seed", type=int, default=4)
    args = parser.parse_args()
    setup_django()
    from django.db.models import Max

    from microblog.accounts.models import User
    from microblog.follows.models import Follow

    started = time.monotonic()
    rng = random.Random(args.random_seed)
    max_user_id = User.objects.aggregate(m=Max("id"))["m"]
    if not max_user_id or max_user_id < 10:
        raise SystemExit("The database holds (almost) no users: run `microblog seed` first.")
    thread_id = ensure_thread(rng, max_user_id)
    wanted = rng.sample(range(2, max_user_id + 1), min(args.readers * 2, max_user_id - 1))
    readers = list(
        User.objects.filter(id__in=wanted, is_active=True)
        .exclude(password="")
        .values_list("username", flat=True)
    )
    rng.shuffle(readers)
    readers = readers[: args.readers]
    deep = list(
        User.objects.filter(is_active=True)
        .order_by("-following_count")
        .values_list("username", flat=True)[: args.deep_readers]
    )
    celebrity = User.objects.get(id=1)
    # The exact count, recomputed from the follows, to check the profile's stored counter.
    followers = Follow.objects.filter(followed_id=1).count()
    fixture = {
        "readers": readers,
        "deep_readers": deep,
        "celebrity": celebrity.username,
        "celebrity_followers": celebrity.followers_count,
        "celebrity_followers_counted": followers,
        "thread_id": str(thread_id),
        "max_user_id": max_user_id,
        "dataset": dataset_counts(),
        **interactions_fixture(rng, args.deep_readers),
        "api_tokens": api_tokens(readers),
    }
    args.out.write_text(json.dumps(fixture))
    print(
        f"fixture {args.out}: {len(readers)} readers, {len(deep)} deep readers, celebrity "
        f"{celebrity.username} ({celebrity.followers_count:,} followers), thread {thread_id}, "
        f"tag #{fixture['tag']} ({fixture['tag_posts']} posts), "
        f"search {fixture['search_word']!r}, "
        f"{len(fixture['notified_readers'])} notified readers, dataset {fixture['dataset']} "
        f"({time.monotonic() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
