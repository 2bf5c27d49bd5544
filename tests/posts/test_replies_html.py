"""posts.replies.reply_tree writes the same HTML as the Jinja macro it replaced (a thread's
nested replies: depth classes, nested lists, cards, "View N more replies" links)."""

# ruff: noqa: E501 (the macro as it was written)

import re

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template import engines
from django.test import RequestFactory

from microblog.interactions.selectors import state_for
from microblog.posts import selectors
from microblog.posts.services import post_delete

# posts/_replies_page.html before the reply tree was written in Python.
MACRO_PAGE = """{% set cards = post_cards_by_id(thread.reply_posts(), show_parent=False) %}
{% macro reply_tree(node) -%}
<li class="reply depth-{{ node.depth }}">
  {{ cards[node.post.id] }}
  {% if node.children %}
    <ul class="replies">{% for child in node.children %}{{ reply_tree(child) }}{% endfor %}</ul>
  {% endif %}
  {% if node.hidden_replies %}
    <a class="view-more" href="{{ post_path(node.post.id) }}">View {{ node.hidden_replies|plural("more reply", "more replies") }}</a>
  {% endif %}
</li>
{%- endmacro %}
{% for node in thread.replies.items %}{{ reply_tree(node) }}{% endfor %}
"""


def _normal(html: str) -> str:
    """Whitespace between tags and runs of it do not matter; each render masks the CSRF token
    anew."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "csrf", html)
    return re.sub(r">\s+<", "><", re.sub(r"\s+", " ", html)).strip()


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed in", "visitor"])
def test_the_reply_tree_matches_the_macro(alice, bob, make_post, settings, signed_in):
    settings.PAGE_SIZE = 4  # a "Load more replies" item too
    top = make_post(alice, "the top")
    busy = make_post(bob, "busy <b>&</b>", parent=top)
    for n in range(5):  # three shown under it, "View 2 more replies"
        make_post(alice, f"child {n}", parent=busy)
    deep = top
    for level in range(7):  # nested to depth 5, then "View 1 more reply"
        deep = make_post(bob if level % 2 else alice, f"level {level}", parent=deep)
    gone = make_post(bob, "to be deleted", parent=top)
    make_post(alice, "under a placeholder", parent=gone)
    post_delete(post=gone, actor=bob)
    for n in range(3):
        make_post(alice, f"later {n}", parent=top)

    viewer = alice if signed_in else AnonymousUser()
    request = RequestFactory().get(f"/posts/{top.id}")
    request.user = viewer
    post = selectors.post_for_display(top.id, viewer)
    assert post is not None
    thread = selectors.thread(post, viewer)
    context = {"thread": thread}
    if signed_in:
        context["interactions"] = state_for(alice, [p.id for p in thread.reply_posts()])
    engine = engines["jinja2"]
    new = engine.get_template("posts/_replies_page.html").render(context, request)
    # The rest of the template (the "Load more replies" item) is the page's own.
    source = engine.env.loader.get_source(engine.env, "posts/_replies_page.html")[0]
    rest = source.partition("{{ reply_tree(thread) }}")[2]
    old = engine.from_string(MACRO_PAGE + rest).render(context, request)

    assert _normal(new) == _normal(old)
    assert "depth-5" in new
    assert "View 2 more replies" in new
    assert "View 1 more reply" in new
    assert "This post was deleted." in new
    assert "Load more replies" in new
    assert "busy &lt;b&gt;&amp;&lt;/b&gt;" in new
    assert ("Like</button>" in new) is signed_in
