"""Parallel likes on real PostgreSQL: threads, each on its own connection, like and unlike one
post at once (and each likes twice); the post's counts must equal its rows exactly."""

from collections.abc import Callable

import pytest

from microblog.accounts.models import User
from microblog.interactions.models import Like, Repost
from microblog.interactions.services import like_create, like_delete, repost_create
from microblog.posts.models import Post
from tests.timelines.test_concurrency import THREADS, run_threads

pytestmark = pytest.mark.postgres_only


def test_parallel_likes_keep_the_count_exact(
    make_user: Callable[..., User], make_post: Callable[..., Post]
) -> None:
    post = make_post(make_user("author"), "popular")
    likers = [make_user(f"liker{n}") for n in range(THREADS * 3)]

    def like_many(i: int) -> None:
        for liker in likers[i::THREADS]:
            like_create(user=liker, post_id=post.id)
            like_create(user=liker, post_id=post.id)  # a double click
            repost_create(user=liker, post_id=post.id)
        for liker in likers[i::THREADS][::2]:
            like_delete(user=liker, post_id=post.id)

    assert run_threads(THREADS, like_many) == []
    post.refresh_from_db()
    assert post.likes_count == Like.objects.filter(post_id=post.id).count()
    assert post.reposts_count == Repost.objects.filter(post_id=post.id).count() == len(likers)
    unliked = sum(len(likers[i::THREADS][::2]) for i in range(THREADS))
    assert post.likes_count == len(likers) - unliked


def test_the_same_like_at_once_from_every_thread_is_one_like(
    make_user: Callable[..., User], make_post: Callable[..., Post]
) -> None:
    post = make_post(make_user("author"), "clicked many times")
    liker = make_user("eager")

    def like(i: int) -> None:
        like_create(user=liker, post_id=post.id)

    assert run_threads(THREADS, like) == []
    post.refresh_from_db()
    assert post.likes_count == 1 == Like.objects.filter(post_id=post.id).count()
