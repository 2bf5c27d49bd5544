"""The thread page `/posts/<id>`: ancestors, the post, nested replies, pagination of replies."""

import html
import re

import pytest
from django.conf import settings

from microblog.accounts.services import user_erase
from microblog.posts.services import post_delete


def text(response) -> str:
    return html.unescape(response.content.decode())


def words(response) -> str:
    """The visible text, tags removed and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", text(response)).split())


def shown_ids(response) -> list[int]:
    """Ids of the post cards on the page, in page order."""
    return [
        int(i) for i in re.findall(r'<article class="post[^"]*" id="post-(\d+)"', text(response))
    ]


def next_cursor(response) -> str | None:
    match = re.search(r'href="\?cursor=(\d+)"', response.content.decode())
    return match.group(1) if match else None


def chain(make_post, author, below, depth: int, prefix: str) -> list:
    """`depth` replies, each replying to the previous one, starting below `below`."""
    posts = []
    parent = below
    for level in range(1, depth + 1):
        parent = make_post(author, f"{prefix} {level}", parent=parent)
        posts.append(parent)
    return posts


def test_unknown_post_is_404(client, db):
    response = client.get("/posts/123456")
    assert response.status_code == 404
    assert "That page does not exist, or it was deleted." in text(response)


@pytest.mark.parametrize(
    "post_id", ["9" * 25, "9223372036854775808", "99999999999999999999"], ids=["25", "2^63", "20"]
)
def test_post_id_too_large_for_the_database_is_404_not_500(client, db, post_id):
    response = client.get(f"/posts/{post_id}")
    assert response.status_code == 404


def test_largest_possible_post_id_is_a_plain_404(client, db):
    assert client.get("/posts/9223372036854775807").status_code == 404


def test_thread_shows_ancestors_root_first_then_the_post_then_replies_oldest_first(
    client, alice, bob, make_post
):
    root = make_post(alice, "the root post")
    first = make_post(bob, "first level", parent=root)
    second = make_post(alice, "second level", parent=first)
    post = make_post(bob, "the post itself", parent=second)
    replies = [make_post(alice, f"answer number {n}", parent=post) for n in (1, 2, 3)]

    response = client.get(f"/posts/{post.id}")

    assert response.status_code == 200
    assert shown_ids(response) == [root.id, first.id, second.id, post.id] + [r.id for r in replies]
    page = text(response)
    assert "3 replies" in page
    assert "continues from a deleted post" not in page


def test_thread_of_a_top_level_post_has_no_ancestors(client, alice, make_post):
    post = make_post(alice, "a root")
    response = client.get(f"/posts/{post.id}")
    assert shown_ids(response) == [post.id]
    page = text(response)
    assert "0 replies" in page
    assert 'class="ancestors"' not in page


def test_reply_counts_are_shown_on_each_post(client, alice, bob, make_post):
    root = make_post(alice, "root")
    busy = make_post(bob, "busy reply", parent=root)
    make_post(alice, "quiet reply", parent=root)
    make_post(alice, "one", parent=busy)
    make_post(alice, "two", parent=busy)

    page = text(client.get(f"/posts/{root.id}"))
    card = re.search(rf'id="post-{busy.id}".*?</article>', page, re.S).group(0)
    assert "2 replies" in card
    assert "2 replies" in page.split(f'id="post-{busy.id}"')[0]  # the heading: root's 2 replies
    quiet = page.split("quiet reply")[1].split("</article>")[0]
    assert "0 replies" in quiet


def test_reply_form_is_shown_to_signed_in_users(alice, bob, make_post, client_for):
    post = make_post(alice, "ask me anything")
    page = text(client_for(bob).get(f"/posts/{post.id}"))
    assert 'action="/posts"' in page
    assert "Your reply" in page
    assert re.search(rf'name="parent_id" value="{post.id}"', page)
    assert "Log in to reply" not in " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_visitors_get_a_log_in_link_instead_of_a_reply_form(client, alice, make_post):
    post = make_post(alice, "ask me anything")
    response = client.get(f"/posts/{post.id}")
    page = text(response)
    assert "Log in to reply." in words(response)
    assert f'href="/login?next=/posts/{post.id}"' in page
    assert 'name="parent_id"' not in page
    assert 'action="/posts"' not in page


def test_replies_are_paginated_by_cursor(client, alice, bob, make_post):
    post = make_post(alice, "popular")
    replies = [make_post(bob, f"reply {n:02}", parent=post) for n in range(1, 26)]

    first = client.get(f"/posts/{post.id}")
    assert shown_ids(first) == [post.id] + [r.id for r in replies[:20]]
    assert "25 replies" in text(first)
    assert "Load more replies" in text(first)
    cursor = next_cursor(first)
    assert cursor == str(replies[19].id)

    second = client.get(f"/posts/{post.id}?cursor={cursor}")
    assert second.status_code == 200
    assert shown_ids(second) == [post.id] + [r.id for r in replies[20:]]
    assert "Load more replies" not in text(second)


def test_replies_load_more_with_htmx_returns_only_the_next_replies(client, alice, bob, make_post):
    root = make_post(alice, "the root")
    post = make_post(alice, "popular", parent=root)
    replies = [make_post(bob, f"reply {n:02}", parent=post) for n in range(1, 26)]

    response = client.get(
        f"/posts/{post.id}?cursor={replies[19].id}", headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert "Microblog · a self-hostable microblog" not in body
    assert shown_ids(response) == [r.id for r in replies[20:]]  # no root, no post, no form
    assert 'name="parent_id"' not in body
    assert body.lstrip().startswith("<li")


def test_exactly_one_page_of_replies_has_no_load_more(client, alice, bob, make_post):
    post = make_post(alice, "popular")
    for n in range(settings.PAGE_SIZE):
        make_post(bob, f"reply {n}", parent=post)
    response = client.get(f"/posts/{post.id}")
    assert len(shown_ids(response)) == 1 + settings.PAGE_SIZE
    assert "Load more replies" not in text(response)


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "1" * 30, "%00"])
def test_malformed_reply_cursor_is_a_clear_400(client, alice, make_post, cursor):
    post = make_post(alice)
    response = client.get(f"/posts/{post.id}?cursor={cursor}")
    assert response.status_code == 400
    assert "That page link is not valid." in text(response)


def test_replies_nest_to_depth_five_then_link_to_the_deeper_post(client, alice, bob, make_post):
    post = make_post(alice, "the top")
    deep = chain(make_post, bob, post, 7, "level")
    assert settings.THREAD_MAX_DEPTH == 5

    response = client.get(f"/posts/{post.id}")
    page = text(response)

    assert shown_ids(response) == [post.id] + [p.id for p in deep[:5]]
    for level, reply in enumerate(deep[:5], start=1):
        assert re.search(
            rf'<li class="reply depth-{level}">\s*<article[^>]*id="post-{reply.id}"', page
        )
    assert "depth-6" not in page
    assert "level 6" not in page
    assert "level 7" not in page
    assert f'<a class="view-more" href="/posts/{deep[4].id}">View 1 more reply</a>' in page
    # Each level is nested inside the previous one, not a flat list.
    assert re.search(r"(<ul class=\"replies\">\s*<li class=\"reply depth-\d\">.*?){4}", page, re.S)

    deeper = client.get(f"/posts/{deep[4].id}")
    assert shown_ids(deeper) == [post.id] + [p.id for p in deep]


def test_a_reply_with_more_than_three_replies_shows_three_and_a_view_more_link(
    client, alice, bob, make_post
):
    post = make_post(alice, "the top")
    busy = make_post(bob, "busy", parent=post)
    children = [make_post(alice, f"child {n}", parent=busy) for n in range(1, 6)]
    later = make_post(bob, "a later direct reply", parent=post)
    assert settings.THREAD_CHILDREN_SHOWN == 3

    response = client.get(f"/posts/{post.id}")
    page = text(response)

    assert shown_ids(response) == [post.id, busy.id] + [c.id for c in children[:3]] + [later.id]
    assert "child 4" not in page
    assert "child 5" not in page
    assert f'<a class="view-more" href="/posts/{busy.id}">View 2 more replies</a>' in page

    busy_page = client.get(f"/posts/{busy.id}")
    assert shown_ids(busy_page) == [post.id, busy.id] + [c.id for c in children]


def test_the_thread_post_shows_all_its_direct_replies_not_only_three(client, alice, make_post):
    post = make_post(alice, "the top")
    replies = [make_post(alice, f"reply {n}", parent=post) for n in range(6)]
    response = client.get(f"/posts/{post.id}")
    assert shown_ids(response) == [post.id] + [r.id for r in replies]
    assert "view-more" not in response.content.decode()


def test_nested_children_are_shown_oldest_first(client, alice, bob, make_post):
    post = make_post(alice, "the top")
    a = make_post(bob, "a", parent=post)
    b = make_post(bob, "b", parent=post)
    b1 = make_post(alice, "b1", parent=b)
    a1 = make_post(alice, "a1", parent=a)
    a2 = make_post(alice, "a2", parent=a)
    b2 = make_post(alice, "b2", parent=b)
    response = client.get(f"/posts/{post.id}")
    assert shown_ids(response) == [post.id, a.id, a1.id, a2.id, b.id, b1.id, b2.id]


def test_reply_to_a_deleted_post_shows_a_placeholder_for_it(client, alice, bob, make_post):
    root = make_post(alice, "gone root")
    reply = make_post(bob, "still here", parent=root)
    post_delete(post=root, actor=alice)

    response = client.get(f"/posts/{reply.id}")

    assert response.status_code == 200
    assert "gone root" not in text(response)
    assert shown_ids(response) == [root.id, reply.id]
    assert card(response, root) == "? This post was deleted. 1 reply"  # "?": the avatar


def test_a_post_removed_before_placeholders_existed_cuts_the_ancestors_there(
    client, alice, bob, make_post
):
    """Posts deleted with their replies by earlier versions left no placeholder."""
    from microblog.posts.models import Post

    root = make_post(alice, "gone root")
    middle = make_post(bob, "middle", parent=root)
    leaf = make_post(alice, "leaf", parent=middle)
    Post.objects.filter(id=root.id).delete()

    response = client.get(f"/posts/{leaf.id}")

    assert shown_ids(response) == [middle.id, leaf.id]
    assert "This conversation continues from a deleted post." in text(response)
    assert "Replying to a deleted post" in words(client.get(f"/posts/{middle.id}"))


def card(response, post) -> str:
    """The visible text of one post card."""
    found = re.search(rf'<article[^>]* id="post-{post.id}">(.*?)</article>', text(response), re.S)
    assert found, f"no card for post {post.id}"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def test_a_deleted_reply_in_the_middle_of_a_thread_leaves_a_placeholder_with_its_replies(
    client, alice, bob, make_post
):
    """root -> r1 -> ... -> r7; r3 is deleted: r2 still has 1 reply, r3 stands as a placeholder
    with r4 and r5 nested under it, and r5 links to the rest."""
    root = make_post(alice, "the root")
    replies = chain(make_post, bob, root, 7, "r")
    r2, r3, r4, r5 = replies[1], replies[2], replies[3], replies[4]
    post_delete(post=r3, actor=bob)

    response = client.get(f"/posts/{root.id}")

    assert response.status_code == 200
    assert shown_ids(response) == [root.id, *(p.id for p in replies[:5])]
    assert "1 reply" in card(response, r2)
    assert card(response, r3) == "? This post was deleted. 1 reply"
    assert "r 3" not in words(response)
    page = text(response)
    # r4 is nested inside the placeholder's list item, r5 inside r4's.
    placeholder_item = page[page.index(f'id="post-{r3.id}"') :]
    assert placeholder_item.index(f'id="post-{r4.id}"') < placeholder_item.index("</li>")
    assert f'<a class="view-more" href="/posts/{r5.id}">View 1 more reply</a>' in page

    placeholder_page = client.get(f"/posts/{r3.id}")
    assert placeholder_page.status_code == 200
    assert shown_ids(placeholder_page) == [root.id, *(p.id for p in replies)]
    assert "This post was deleted." in card(client.get(f"/posts/{r4.id}"), r3)


def test_a_placeholder_goes_with_its_last_reply(client, alice, bob, make_post):
    root = make_post(alice, "the root")
    middle = make_post(bob, "middle", parent=root)
    leaf = make_post(alice, "leaf", parent=middle)
    post_delete(post=middle, actor=bob)
    post_delete(post=leaf, actor=alice)

    response = client.get(f"/posts/{root.id}")
    assert shown_ids(response) == [root.id]
    assert "0 replies" in card(response, root)
    assert client.get(f"/posts/{middle.id}").status_code == 404


def test_a_deleted_top_level_post_with_replies_is_a_placeholder_not_on_the_public_timeline(
    alice, bob, make_post, client_for
):
    root = make_post(alice, "the root")
    reply = make_post(bob, "a reply", parent=root)
    post_delete(post=root, actor=alice)

    assert root.id not in shown_ids(client_for(bob).get("/all"))
    response = client_for(bob).get(f"/posts/{root.id}")
    assert shown_ids(response) == [root.id, reply.id]
    assert "This post was deleted: you can reply to its replies." in words(response)
    refused = client_for(bob).post("/posts", {"content": "hi", "parent_id": str(root.id)})
    assert refused.status_code == 400
    assert "no longer exists" in words(refused)
    assert client_for(bob).get(f"/posts/{root.id}/report").status_code == 404


def test_reply_counts_and_view_more_links_count_only_replies_the_reader_can_open(
    client, alice, bob, make_user, make_post, client_for
):
    """A reply hidden by the moderators or by an account the reader blocks is not counted."""
    from microblog.moderation.services import block_create, review

    carol = make_user("carol")
    staff = make_user("moderator", is_staff=True)
    root = make_post(alice, "the root")
    busy = make_post(bob, "busy", parent=root)
    for n in range(1, 5):
        make_post(alice, f"child {n}", parent=busy)
    make_post(carol, "by carol", parent=busy)
    hidden = make_post(alice, "hidden one", parent=busy)
    review(staff=staff, post_id=hidden.id, action="hide")
    block_create(blocker=bob, blocked=carol)

    # A visitor: 5 replies they can open (carol's included), 3 shown.
    visitor = client.get(f"/posts/{root.id}")
    assert "5 replies" in card(visitor, busy)
    assert "View 2 more replies" in words(visitor)
    # bob blocks carol: 4 replies, 3 shown.
    as_bob = client_for(bob).get(f"/posts/{root.id}")
    assert "4 replies" in card(as_bob, busy)
    assert "View 1 more reply" in words(as_bob)
    assert "4 replies" in card(client_for(bob).get(f"/posts/{busy.id}"), busy)
    # Staff see the hidden one too.
    assert "6 replies" in card(client_for(staff).get(f"/posts/{root.id}"), busy)


def test_posts_by_a_deleted_account_show_as_deleted_user(client, make_user, make_post):
    gone = make_user("gone")
    post = make_post(gone, "words that remain")
    user_erase(user=gone)
    page = text(client.get(f"/posts/{post.id}"))
    assert "words that remain" in page
    assert "Deleted user" in page
