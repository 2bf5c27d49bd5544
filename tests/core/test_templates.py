"""Template helpers that bypass reverse() on hot paths must build the same URLs."""

from django.urls import reverse

from microblog.core.jinja import post_path, profile_path


def test_profile_path_matches_the_url_pattern():
    assert profile_path("alice_1") == reverse("profile", args=["alice_1"])


def test_post_path_matches_the_url_patterns():
    post_id = 9_223_372_036_854_775_807
    assert post_path(post_id) == reverse("post_detail", args=[post_id])
    assert post_path(post_id) + "/delete" == reverse("post_delete", args=[post_id])


def test_feed_and_post_pages_have_one_h1(alice, make_post, client_for, client):
    """Screen reader users jump to a page's <h1>; every page has exactly one."""
    post = make_post(alice, "hello")
    signed_in = client_for(alice)
    for who, path in [
        (signed_in, "/"),
        (signed_in, "/following"),
        (signed_in, "/all"),
        (signed_in, f"/posts/{post.id}"),
        (client, f"/posts/{post.id}"),
        (client, "/all"),
    ]:
        page = who.get(path).content.decode()
        assert page.count("<h1") == 1, path
