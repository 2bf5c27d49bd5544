"""A thread page's replies as nested list items (`{{ reply_tree(thread) }}` in
posts/_replies_page.html).

Written in Python rather than as a recursive Jinja macro, like the like / repost buttons
(interactions/buttons.py): the 200-reply thread calls it for each of its 20 replies, and a macro
call per reply cost more CPU than placing that reply's card from the fragment cache
(docs/benchmarks.md, "Issue 15: the thread and the profile"). What it writes is the cards (from
posts.cards, one cache lookup for every reply of the page, escaped there), integers and fixed
words; tests/posts/test_replies_html.py checks it against the macro it replaced.
"""

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from microblog.core.jinja import plural, post_path
from microblog.posts.cards import post_cards_by_id
from microblog.posts.selectors import ReplyNode, Thread


@pass_context
def reply_tree(context: Context, thread: Thread) -> Markup:
    """Every reply the page shows, nested to their depth, each with its card and, when some of
    its replies are not shown under it, a link to its own page."""
    cards = post_cards_by_id(context, thread.reply_posts(), show_parent=False)
    out: list[str] = []
    for node in thread.replies.items:
        _write(node, cards, out)
    # Made of the cards (Markup from the autoescaping card template and posts.cards) and integers.
    return Markup("".join(out))  # noqa: S704


def _write(node: ReplyNode, cards: dict[int, Markup], out: list[str]) -> None:
    post_id = node.post.id
    out.append(f'<li class="reply depth-{node.depth}">\n  {cards[post_id]}\n')
    if node.children:
        out.append('  <ul class="replies">')
        for child in node.children:
            _write(child, cards, out)
        out.append("</ul>\n")
    hidden = node.hidden_replies
    if hidden:
        more = plural(hidden, "more reply", "more replies")
        out.append(f'  <a class="view-more" href="{post_path(post_id)}">View {more}</a>\n')
    out.append("</li>")
