"""The empty compose form is written out in macros.html instead of rendered by Django's widgets
(a fifth of a For You page's CPU). It must stay the HTML the widgets would render."""

import re

from microblog.posts.forms import PostForm


def test_the_feeds_form_is_what_djangos_widgets_render(alice, client_for):
    page = client_for(alice).get("/").content.decode()
    form = PostForm()
    assert str(form["content"]) in page
    assert str(form["parent_id"]) in page
    assert f'<label for="id_content" class="visually-hidden">{form["content"].label}' in (
        page.replace("&#39;", "'")
    )


def test_the_reply_form_is_what_djangos_widgets_render(alice, bob, make_post, client_for):
    post = make_post(bob, "answer me")
    page = client_for(alice).get(f"/posts/{post.id}").content.decode()
    form = PostForm(initial={"parent_id": post.id})
    assert str(form["content"].as_widget(attrs={"placeholder": "Post your reply"})) in page
    assert str(form["parent_id"]) in page


def test_one_csrf_token_per_page(alice, client_for):
    """The compose form and the log-out button carry the same masked token (one per response)."""
    page = client_for(alice).get("/").content.decode()
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert len(tokens) == 2 and len(set(tokens)) == 1
