"""A card's like / repost buttons: the one definition of their HTML, for the cards of a page
(posts.cards, once per card, per reader: never cached) and for a button's htmx answer
(`interactions/_buttons.html`, through the `interaction_buttons` template global).

Written as Python rather than a Jinja macro: a feed page renders them for every card, and a
macro call per card cost more CPU than the rest of the card taken from the fragment cache.
Every value put in is escaped (the ids are integers; `back` and `error` are escaped)."""

from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape


def buttons_html(
    *,
    post_id: int,
    top_level: bool,
    liked: bool,
    reposted: bool,
    csrf_input: str,
    back: str,
    error: str = "",
) -> Markup:
    """Like / Unlike and (top-level posts) Repost / Undo repost: small forms that post without
    JavaScript and swap themselves in place with htmx. `csrf_input`: the page's hidden input."""
    hidden = f'{csrf_input}<input type="hidden" name="next" value="{escape(back)}">'
    forms = [
        _form(post_id, "unlike" if liked else "like", liked, "Unlike" if liked else "Like", hidden)
    ]
    if top_level:
        label = "Undo repost" if reposted else "Repost"
        forms.append(_form(post_id, "unrepost" if reposted else "repost", reposted, label, hidden))
    shown_error = f'<span class="error" role="alert">{escape(error)}</span>' if error else ""
    return Markup(  # noqa: S704 (made of escaped values and integers)
        f'<span class="interaction-buttons" id="buttons-{post_id}">'
        f"{''.join(forms)}{shown_error}</span>"
    )


def _form(post_id: int, verb: str, pressed: bool, label: str, hidden: str) -> str:
    action = f"/posts/{post_id}/{verb}"
    return (
        f'\n  <form method="post" action="{action}" hx-post="{action}" '
        f'hx-target="#buttons-{post_id}" hx-swap="outerHTML">{hidden}\n'
        f'    <button type="submit" class="action action-button" '
        f'aria-pressed="{"true" if pressed else "false"}">{label}</button>\n  </form>'
    )


@pass_context
def interaction_buttons(context: Context, post: Any, state: Any, error: str = "") -> Markup:
    """`{{ interaction_buttons(post, state) }}`: the buttons of `post` for the reader whose
    InteractionState of the page is `state` (None: nothing pressed)."""
    request = context["request"]
    return buttons_html(
        post_id=post.id,
        top_level=post.parent_id is None,
        liked=bool(state) and post.id in state.liked,
        reposted=bool(state) and post.id in state.reposted,
        csrf_input=str(context["csrf_input"]),
        back=request.get_full_path() + f"#post-{post.id}",
        error=error,
    )
