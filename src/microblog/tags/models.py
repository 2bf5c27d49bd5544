"""Hashtags: each tag once (`Tag`), the posts that carry it (`PostTag`), and the trending list
the periodic job stores (`Trend`). Written only by tags.services."""

from django.db import models

from microblog.core.text import HASHTAG_MAX_LENGTH
from microblog.posts.models import Post


class Tag(models.Model):
    # The NFKC case-folded name (core.text.hashtag_name): one row per tag however it is written.
    name = models.CharField(max_length=HASHTAG_MAX_LENGTH, unique=True)

    class Meta:
        indexes = [
            # Search: tags by prefix (`LIKE 'py%'` can use a B-tree only with a pattern
            # operator class under a non-C collation; SQLite ignores the operator class).
            models.Index(
                fields=["name"], name="tags_name_prefix_idx", opclasses=["varchar_pattern_ops"]
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.name}"


class PostTag(models.Model):
    """A post carries a tag. The key starts with the tag, so a tag page is one backward range
    scan of it (`WHERE tag_id = ? AND post_id < ? ORDER BY post_id DESC`)."""

    pk = models.CompositePrimaryKey("tag_id", "post_id")
    tag = models.ForeignKey(
        Tag, on_delete=models.DB_CASCADE, related_name="post_links", db_index=False
    )
    # Removed with its post by the database (no query of Django's collector per delete).
    post = models.ForeignKey(
        Post, on_delete=models.DB_CASCADE, related_name="tag_links", db_index=False
    )

    class Meta:
        indexes = [
            # Post deletes (the cascade) and trending: the last day's posts are a range of ids,
            # whose tags this index holds without reading the table.
            models.Index(fields=["post", "tag"], name="tags_posttag_post_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.post_id} #{self.tag_id}"


class Trend(models.Model):
    """One line of the trending list, as the `tags_trending` job last computed it."""

    rank = models.PositiveSmallIntegerField(primary_key=True)
    tag = models.ForeignKey(Tag, on_delete=models.DB_CASCADE, related_name="+", db_index=False)
    # Distinct authors who used the tag in the window (the ranking: one account posting a tag
    # a hundred times is one voice), and the posts that carry it.
    authors = models.PositiveIntegerField()
    posts = models.PositiveIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return f"{self.rank}. {self.tag_id}"
