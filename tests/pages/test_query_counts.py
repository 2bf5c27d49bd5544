"""SQL query counts of the busiest pages, pinned as exact numbers.

Each page is measured twice, rendering few and many items: the count must be the same, so a query
per rendered post (an N+1) fails the test. A new query on a page is a deliberate change: update the
number and the comment that lists the queries.
"""

import re

from microblog.follows.services import follow_create


def shown_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'id="post-(\d+)"', response.content.decode())]


def test_for_you_for_a_user_following_30_people(
    make_user, make_post, client_for, django_assert_num_queries
):
    """For You costs the same with 5 and with 20 posts from 30 followed users."""
    reader = make_user("reader")
    authors = [make_user(f"author{n}") for n in range(30)]
    for author in authors:
        follow_create(follower=reader, followed=author)
    client = client_for(reader)
    rendered = []

    # First 5 of the 30 have posted (5 shown), then all 30 (a full page of 20 shown).
    for posting, wanted in ((5, 5), (30, 20)):
        while len(rendered) < posting:
            author = authors[len(rendered)]
            post = make_post(author, f"post by {author.username}")
            make_post(reader, "a reply, not in For You", parent=post)
            rendered.append(post.id)
        # Queries: 1 the session with the signed-in user (one join, accounts.sessions), 2 the
        # posts with their authors and parents whose ids a subquery takes from the reader's
        # feed entries (unioned with followed celebrities' posts, and their reposts), 3 the
        # reader's likes and reposts of the page's posts and who of those they hear reposted
        # them (one UNION ALL).
        with django_assert_num_queries(3):
            response = client.get("/")
        assert response.status_code == 200
        assert len(shown_ids(response)) == wanted


def test_following_page_with_replies(make_user, make_post, client_for, django_assert_num_queries):
    """Following (replies included, each naming the author it answers) costs the same with 5 and
    20 posts."""
    reader = make_user("reader")
    target = make_user("target")
    authors = [make_user(f"author{n}") for n in range(20)]
    for author in authors:
        follow_create(follower=reader, followed=author)
    original = make_post(target, "the post everyone answers")
    client = client_for(reader)

    made = 0
    for wanted in (5, 20):
        while made < wanted:
            make_post(authors[made], f"reply by author{made}", parent=original)
            made += 1
        # Queries: 1 the session with the signed-in user, 2 the posts of followed users with
        # their authors, parents and parents' authors (one join; the follows are a subquery),
        # 3 the reader's likes and reposts of the page's posts.
        with django_assert_num_queries(3):
            response = client.get("/following")
        assert len(shown_ids(response)) == wanted
        assert response.content.decode().count("@target</a>") == wanted


def test_profile_page(alice, bob, make_post, client_for, django_assert_num_queries):
    """A profile page seen by a signed-in follower costs the same with 5 and 20 posts."""
    follow_create(follower=alice, followed=bob)
    client = client_for(alice)
    made = 0
    for wanted in (5, 20):
        while made < wanted + (5 if wanted == 20 else 0):
            make_post(bob, f"bob says {made}")
            made += 1
        # Queries: 1 the session with the signed-in user, 2 the profile's user by username with
        # whether the viewer follows, blocks or mutes them (the Follow/Unfollow button), 3 the
        # user's top-level posts, 4 the viewer's likes and reposts of them.
        with django_assert_num_queries(4):
            response = client.get("/@bob")
        assert response.status_code == 200
        assert len(shown_ids(response)) == wanted
        assert "Unfollow" in response.content.decode()


def test_thread_page_with_ancestors_and_nested_replies(
    alice, bob, make_post, client_for, django_assert_num_queries
):
    """A thread page with 3 ancestors and replies nested 5 deep costs the same whether the first
    level has 5 or 20 replies."""
    root = make_post(alice, "root")
    middle = make_post(bob, "middle", parent=root)
    parent = make_post(alice, "parent", parent=middle)
    post = make_post(bob, "the post", parent=parent)
    client = client_for(alice)

    made = 0
    for wanted in (5, 20):
        while made < wanted:
            reply = make_post(alice, f"reply {made}", parent=post)
            for branch in range(2):
                below = reply
                for level in range(2, 7):  # depth 2..6: one level deeper than the page shows
                    below = make_post(bob, f"reply {made}.{branch} depth {level}", parent=below)
            made += 1
        # Queries: 1 the session with the signed-in user, 2 the post with its author and
        # parent, 3 the chain of ancestor ids (one recursive CTE), 4 the ancestors with their
        # authors, 5 the first page of direct replies with authors, 6-9 the first replies of
        # every node, one query per depth (2, 3, 4, 5) with a window function, 10 the reader's
        # likes and reposts of every post on the page.
        with django_assert_num_queries(10):
            response = client.get(f"/posts/{post.id}")
        assert response.status_code == 200
        # 3 ancestors, the post, then per reply: itself and 2 branches of depths 2 to 5.
        assert len(shown_ids(response)) == 3 + 1 + wanted * (1 + 2 * 4)
        assert response.content.decode().count("View 1 more reply") == wanted * 2


def test_all_posts_for_a_visitor(client, alice, bob, make_post, django_assert_num_queries):
    """/all for a visitor costs one query, whatever the number of posts shown."""
    made = 0
    for wanted in (5, 20):
        while made < wanted + (5 if wanted == 20 else 0):
            post = make_post(alice if made % 2 else bob, f"post {made}")
            make_post(bob, f"reply {made}", parent=post)  # replies are not on /all
            made += 1
        # Queries: 1 the top-level posts with their authors (no session: a visitor has no
        # cookie, and an empty session is not looked up).
        with django_assert_num_queries(1):
            response = client.get("/all")
        assert response.status_code == 200
        assert len(shown_ids(response)) == wanted
