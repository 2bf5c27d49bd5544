"""Writes of hashtags. A post's tags are stored by `post_tags_record`, which only `post_create`
calls, in its transaction; the trending list only by `trending_refresh` (the periodic job).

Nothing else writes these tables: a post's tags never change (posts are not edited), a deleted
post's links go with its row (a database cascade), and a deleted post's placeholder keeps its
links but is on no tag page (timelines.visibility.in_lists)."""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from microblog.core.ids import first_id_at_ms
from microblog.core.text import hashtags
from microblog.posts.models import Post
from microblog.tags.models import PostTag, Tag, Trend
from microblog.timelines import visibility

TRENDING_WINDOW = timedelta(hours=24)
TRENDING_SIZE = 10


def post_tags_record(*, post: Post) -> list[str]:
    """Stores the tags of a new post (called by posts.services.post_create in its transaction,
    after the post row is inserted); returns their names. No query for a post without `#`.

    Lock order: the tag names in sorted order, so two posts creating the same new tags at once
    cannot deadlock on the unique index of names; before the author's row and a reply's parent,
    which post_create locks last (issue 15), so a post waiting here holds no row another waits
    for."""
    names = sorted(hashtags(post.content))
    if not names:
        return []
    # A unique constraint, not check-then-insert: a concurrent post creating the same tag makes
    # this insert wait for it and then skip the name.
    Tag.objects.bulk_create([Tag(name=name) for name in names], ignore_conflicts=True)
    # The links in one statement, from the names (a read of the ids, then an insert, was one
    # more round trip per tagged post: issue 15).
    links, tags = PostTag._meta.db_table, Tag._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {links} (tag_id, post_id) SELECT id, %s FROM {tags} "
            f"WHERE name IN ({', '.join(['%s'] * len(names))})",
            [post.id, *names],
        )
    return names


def trending_refresh(*, now_ms: int | None = None) -> int:
    """Recomputes the trending list: the tags of the last TRENDING_WINDOW's posts that readers
    can see on tag pages (not hidden, not deleted), ranked by distinct authors, then posts, then
    name; replaces the stored list in one transaction. Returns its length."""
    now = timezone.now()
    floor = first_id_at_ms(
        (now_ms if now_ms is not None else int(now.timestamp() * 1000))
        - int(TRENDING_WINDOW.total_seconds() * 1000)
    )
    # One aggregate over the window's links (a range of post ids: ids are times), each probing
    # its post by primary key for who wrote it and whether it is listed.
    ranked = list(
        PostTag.objects.filter(post_id__gte=floor)
        .filter(visibility.trending_post_links())
        .values("tag_id", "tag__name")
        .annotate(
            authors=Count("post__author_id", distinct=True),
            posts=Count("post_id"),
        )
        .order_by("-authors", "-posts", "tag__name")[:TRENDING_SIZE]
    )
    with transaction.atomic():
        Trend.objects.all().delete()
        Trend.objects.bulk_create(
            [
                Trend(
                    rank=rank,
                    tag_id=row["tag_id"],
                    authors=row["authors"],
                    posts=row["posts"],
                    computed_at=now,
                )
                for rank, row in enumerate(ranked, start=1)
            ]
        )
    return len(ranked)
