"""Hashtags stored at post creation, tag pages (/tags/<name>), trending (a periodic job)."""

import re
import time

import pytest

from microblog import jobs
from microblog.accounts.services import user_delete
from microblog.moderation.services import block_create, mute_create
from microblog.ops import scheduler
from microblog.posts.models import Post
from microblog.posts.services import post_delete
from microblog.tags.models import PostTag, Tag, Trend
from microblog.tags.services import trending_refresh
from tests.conftest import PASSWORD


def shown_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'id="post-(\d+)"', response.content.decode())]


def stored_tags(post: Post) -> set[str]:
    return set(PostTag.objects.filter(post_id=post.id).values_list("tag__name", flat=True))


# --- Storage ----------------------------------------------------------------------------------


def test_a_post_stores_its_tags_once_each_and_a_reply_too(alice, bob, make_post):
    post = make_post(alice, "Loving #Python and #Django, #python again")
    assert stored_tags(post) == {"python", "django"}
    reply = make_post(bob, "#PYTHON forever", parent=post)
    assert stored_tags(reply) == {"python"}
    assert Tag.objects.filter(name="python").count() == 1  # the unique name
    assert PostTag.objects.count() == 3


def test_a_post_without_tags_writes_none(alice, make_post, django_assert_num_queries):
    make_post(alice, "warm-up #first")
    plain = make_post(alice, "no tags here, only a # sign and a#b")
    assert stored_tags(plain) == set()
    assert Tag.objects.count() == 1


def test_a_tagged_post_stores_its_tags_in_two_statements(
    alice, make_post, django_assert_num_queries
):
    """The new names, then the links from the names in one INSERT ... SELECT (issue 15)."""
    from microblog.tags.services import post_tags_record

    make_post(alice, "#one exists already")
    post = make_post(alice, "written without tags")
    post.content = "#One and #two, #one again"
    with django_assert_num_queries(2):
        assert post_tags_record(post=post) == ["one", "two"]
    assert stored_tags(post) == {"one", "two"}
    assert Tag.objects.count() == 2


def test_a_refused_post_stores_no_tags(alice, bob, make_post):
    from microblog.core.errors import NotFound
    from microblog.posts.services import post_create

    with pytest.raises(NotFound):
        post_create(author=alice, content="reply #orphan", parent_id=12345)
    assert not Tag.objects.exists()
    assert not PostTag.objects.exists()


def test_deleting_a_post_removes_its_links_and_a_placeholder_leaves_tag_pages(
    alice, bob, make_post, client
):
    gone = make_post(alice, "bye #topic")
    kept = make_post(alice, "thread root #topic")
    make_post(bob, "a reply keeps the root as a placeholder", parent=kept)
    post_delete(post=gone, actor=alice)
    assert not PostTag.objects.filter(post_id=gone.id).exists()  # the database cascade
    post_delete(post=Post.objects.get(id=kept.id), actor=alice)
    response = client.get("/tags/topic")
    assert response.status_code == 200
    assert shown_ids(response) == []


# --- The tag page -----------------------------------------------------------------------------


def test_the_tag_page_lists_tagged_posts_newest_first_with_links(alice, bob, make_post, client):
    first = make_post(alice, "first #news")
    make_post(alice, "not tagged")
    reply = make_post(bob, "a reply about #News", parent=first)
    response = client.get("/tags/news")
    assert response.status_code == 200
    assert shown_ids(response) == [reply.id, first.id]
    page = response.content.decode()
    assert '<a class="hashtag" href="/tags/news">#News</a>' in page
    assert '<h1 class="page-title">#news</h1>' in page


def test_the_tag_page_is_cursor_paged(alice, make_post, client, settings):
    settings.PAGE_SIZE = 3
    posts = [make_post(alice, f"post {n} #paged") for n in range(7)]
    newest_first = [p.id for p in reversed(posts)]
    seen: list[int] = []
    url = "/tags/paged"
    while True:
        response = client.get(url)
        assert response.status_code == 200
        seen += shown_ids(response)
        more = re.search(r'href="(\?cursor=\d+)"', response.content.decode())
        if not more:
            break
        url = "/tags/paged" + more.group(1)
    assert seen == newest_first


def test_the_tag_page_leaves_out_hidden_blocked_and_muted_posts(
    alice, bob, make_user, make_post, client_for, client
):
    carol = make_user("carol")
    dave = make_user("dave")
    visible = make_post(bob, "fine #mod")
    hidden = make_post(carol, "hidden #mod")
    Post.objects.filter(id=hidden.id).update(is_hidden=True)
    by_blocked = make_post(dave, "dave #mod")
    by_muted = make_post(carol, "carol #mod")
    own_hidden = make_post(alice, "mine #mod")
    Post.objects.filter(id=own_hidden.id).update(is_hidden=True)
    block_create(blocker=alice, blocked=dave)
    mute_create(muter=alice, muted=carol)
    assert shown_ids(client_for(alice).get("/tags/mod")) == [own_hidden.id, visible.id]
    # A visitor sees every visible post, and no hidden one.
    assert shown_ids(client.get("/tags/mod")) == [by_muted.id, by_blocked.id, visible.id]


def test_posts_of_a_deleted_account_stay_as_by_a_deleted_user(alice, bob, make_post, client):
    post = make_post(bob, "orphaned #legacy")
    user_delete(user=bob, password=PASSWORD)
    response = client.get("/tags/legacy")
    assert shown_ids(response) == [post.id]
    assert "Deleted user" in response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/tags/" + "a" * 300,  # a tag of 300 characters
        "/tags/" + "é" * 51,
        "/tags/%00",  # NUL
        "/tags/abc%00def",
        "/tags/%E2%80%AE",  # a bidirectional override
        "/tags/%E2%80%8B",  # a zero-width space
        "/tags/%ED%A0%80",  # a lone surrogate's UTF-8 (not valid UTF-8)
        "/tags/%FF",
        "/tags/123",  # no letter
        "/tags/a-b",
        "/tags/%23%23x",
        "/tags/%F0%9F%98%80",  # an emoji
    ],
)
def test_a_bad_tag_is_a_clear_404_not_a_500(path, client, db):
    response = client.get(path)
    assert response.status_code == 404, path
    assert "That is not a hashtag" in response.content.decode()


def test_bad_tag_answers_json_for_json_clients(client, db):
    response = client.get("/tags/" + "x" * 300, headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert "not a hashtag" in response.json()["error"]["message"]


def test_a_valid_tag_no_post_carries_is_a_404_saying_so(client, db):
    response = client.get("/tags/nothinghere")
    assert response.status_code == 404
    assert "No post carries #nothinghere yet." in response.content.decode()


def test_a_tag_written_otherwise_redirects_to_its_one_address(alice, make_post, client):
    make_post(alice, "#Café time")
    for written in ("/tags/Caf%C3%A9", "/tags/%23caf%C3%A9", "/tags/CAF%C3%89"):
        response = client.get(written + "?cursor=5")
        assert response.status_code == 301, written
        assert response["Location"] == "/tags/caf%C3%A9?cursor=5"
    assert client.get("/tags/caf%C3%A9").status_code == 200


def test_a_bad_cursor_on_a_tag_page_is_a_400(alice, make_post, client):
    make_post(alice, "#cursor")
    assert client.get("/tags/cursor?cursor=abc").status_code == 400
    assert client.get("/tags/cursor?cursor=99999999999999999999").status_code == 400


def test_the_tag_page_costs_the_same_with_5_and_20_posts(
    alice, bob, make_post, client_for, django_assert_num_queries
):
    client = client_for(alice)
    made = 0
    for wanted in (5, 20):
        while made < wanted:
            parent = make_post(bob, "root") if made % 2 else None
            make_post(bob, f"post {made} #pinned", parent=parent)
            made += 1
        # Queries: 1 the session with the signed-in user, 2 the tag by name, 3 the page of posts
        # with authors, parents and parents' authors (blocks and mutes as subqueries).
        with django_assert_num_queries(3):
            response = client.get("/tags/pinned")
        assert len(shown_ids(response)) == wanted


# --- Trending ---------------------------------------------------------------------------------


def test_trending_ranks_tags_by_distinct_authors_of_the_last_day(make_user, make_post, client):
    users = [make_user(f"user_t{n}") for n in range(4)]
    for user in users:
        make_post(user, "#wide")
    for _ in range(5):
        make_post(users[0], "#spammy")  # one voice, five posts
    for user in users[:2]:
        make_post(user, "#middle")
    hidden = make_post(users[3], "#hiddenonly")
    Post.objects.filter(id=hidden.id).update(is_hidden=True)

    jobs.tags_trending.enqueue()  # the periodic job (run at once by the test backend)

    trends = list(Trend.objects.select_related("tag").order_by("rank"))
    assert [(t.tag.name, t.authors, t.posts) for t in trends] == [
        ("wide", 4, 4),
        ("middle", 2, 2),
        ("spammy", 1, 5),
    ]
    page = client.get("/tags").content.decode()
    assert page.index("#wide") < page.index("#middle") < page.index("#spammy")
    assert "#hiddenonly" not in page


def test_trending_forgets_posts_older_than_a_day(alice, make_post):
    make_post(alice, "#yesterday")
    assert trending_refresh() == 1
    a_day_later_ms = int(time.time() * 1000) + 24 * 3600 * 1000 + 60_000
    assert trending_refresh(now_ms=a_day_later_ms) == 0
    assert not Trend.objects.exists()


def test_the_scheduler_enqueues_the_trending_job(alice, make_post, settings):
    settings.MAINTENANCE_INTERVALS = {"tags_trending": 600}
    make_post(alice, "#scheduled")
    from microblog.core.models import ScheduledJob

    ScheduledJob.objects.create(name="tags_trending", next_run_at="2000-01-01T00:00:00Z")
    assert scheduler.enqueue_due_jobs() == ["tags_trending"]
    assert Trend.objects.get().tag.name == "scheduled"


def test_pages_read_trending_without_computing_it(
    alice, make_post, client, django_assert_num_queries
):
    make_post(alice, "#stored")
    trending_refresh()
    make_post(alice, "#newer #newer2")  # not in the list until the job runs again
    with django_assert_num_queries(1):  # the stored list with its tags, nothing else
        page = client.get("/tags").content.decode()
    assert "#stored" in page and "#newer" not in page


# --- Admin ------------------------------------------------------------------------------------


def test_the_admin_shows_tags_and_trends_read_only(alice, make_post, make_user, client_for):
    root = make_user("root", is_staff=True, is_superuser=True)
    make_post(alice, "#admin")
    trending_refresh()
    client = client_for(root)
    for path, shown in (("/admin/tags/tag/", ">admin<"), ("/admin/tags/trend/", ">#admin<")):
        response = client.get(path)
        assert response.status_code == 200, path
        assert f"{path}add/" not in response.content.decode()
        assert shown in response.content.decode()
    tag = Tag.objects.get()
    assert client.get(f"/admin/tags/tag/{tag.id}/delete/").status_code == 403
    assert client.post("/admin/tags/tag/add/", {"name": "x"}).status_code == 403
