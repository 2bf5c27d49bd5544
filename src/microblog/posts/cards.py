"""The post card, rendered once per content and reused by every reader (core.fragments).

A card is three kinds of HTML:

1. **The cached fragment** (`posts/_card.html`): everything that is the same for every reader
   who may see the post. It is rendered from a `CardView` alone, the tuple of every value it
   shows, which is also its cache key: a template that tried to show something else would have
   nothing to show it from. `card_view()` is the one place that decides what goes in.
2. **The relative time** ("3m", "2d"), which changes with the clock, not with the post: computed
   on every render and put between the fragment's first two parts. The fragment keeps the
   absolute time (`datetime` and `title` of the `<time>` element), so it never needs to expire.
3. **The reader's parts**: their like / repost buttons (interactions) and Delete (the author)
   or Report (other signed-in readers) after the counts, and on For You the "Reposted by" line
   at the top of the card's body: they depend on who reads, so they are never cached.

Who may see a post is decided before any card is asked for (the page's selector and
timelines.visibility); the cache never decides it and holds nothing a reader could not be shown
by the page that asked.

    <article ...><div class="post-body">[label] ... <time ...>[relative time]</time> ...
    `------------- part 1 --------------'       `-- part 2 --'                `- part 3 ...
        ... reply count, like and repost counts [buttons, actions]</footer></div></article>
        ... part 3 ----------------------------'                   `------ part 4 -------'
"""

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template import engines
from django.utils import timezone
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from microblog.core.fragments import FragmentCache, LocalLRU, RedisStore
from microblog.core.jinja import reltime
from microblog.interactions.buttons import buttons_html
from microblog.ops import metrics
from microblog.posts.models import Post

TEMPLATE = "posts/_card.html"
# Where the fragment's template leaves room for what is rendered per request. HTML comments:
# the escaped text of a post or a name can never contain "<!--", so the first occurrence of
# each marker is the template's own.
LABEL_MARK = Markup("<!--mb:label-->")
TIME_MARK = Markup("<!--mb:time-->")
ACTIONS_MARK = Markup("<!--mb:actions-->")
MARKS = (LABEL_MARK, TIME_MARK, ACTIONS_MARK)


class ParentLine(NamedTuple):
    """The "Replying to ..." line: the parent's id and its author's name, None when the parent
    or its author is gone (the line says so)."""

    parent_id: int
    parent_shown: bool  # False: the parent was deleted ("Replying to a deleted post")
    parent_author: str | None


class CardView(NamedTuple):
    """Everything the cached part of a post card shows, and so its cache key. Add a field here
    when the card shows something new (e.g. likes_count, reposts_count, or stored mention and
    hashtag links when the content's HTML is made from more than `content`): the fragment is
    rendered from this tuple only, and any value that differs gives a different fragment."""

    id: int
    featured: bool  # the thread page's main post (a class)
    deleted: bool  # a placeholder: "This post was deleted." and its reply count, nothing else
    reply_count: int  # as this page counts them (a thread counts what this reader can open)
    author: str | None  # the author's username; None: the account was deleted
    created_at: datetime | None  # shown absolute in the fragment (relative text added per render)
    content: str
    mention_names: str  # the post's stored mentions, linked in the content (Post.mention_names)
    hidden: bool  # hidden by moderation (only its author and staff get this far)
    awaiting_review: bool  # hidden with reports still open: "waiting for review"
    parent: ParentLine | None  # None: no "Replying to" line on this card
    likes_count: int
    reposts_count: int


def card_view(post: Post, show_parent: bool = True, featured: bool = False) -> CardView:
    """The one place that reads a post for its card: every value the fragment shows."""
    if post.is_deleted:
        return CardView(
            post.id, featured, True, post.reply_count, None, None, "", "", False, False, None, 0, 0
        )
    author = post.author
    parent = None
    if show_parent and post.parent_id:
        parent_post = post.parent  # loaded with the post (select_related) where lists show it
        if parent_post is not None and not parent_post.is_deleted:
            parent_author = parent_post.author
            parent = ParentLine(
                post.parent_id, True, parent_author.username if parent_author else None
            )
        else:
            parent = ParentLine(post.parent_id, False, None)
    return CardView(
        post.id,
        featured,
        False,
        post.reply_count,
        author.username if author is not None else None,
        post.created_at,
        post.content,
        post.mention_names,
        post.is_hidden,
        post.is_hidden and post.open_reports > 0,
        parent,
        post.likes_count,
        post.reposts_count,
    )


Fragment = tuple[str, str, str, str]


def _template() -> Any:
    # The Jinja2 template itself, rendered with the card alone: no request, no reader.
    return engines["jinja2"].get_template(TEMPLATE).template  # type: ignore[attr-defined]


def render_fragment(card: CardView) -> Fragment:
    html = _template().render(
        card=card, LABEL_MARK=LABEL_MARK, TIME_MARK=TIME_MARK, ACTIONS_MARK=ACTIONS_MARK
    )
    head, _, rest = html.partition(LABEL_MARK)
    before_time, _, rest = rest.partition(TIME_MARK)
    middle, _, tail = rest.partition(ACTIONS_MARK)
    return head, before_time, middle, tail


def encode_parts(fragment: Fragment) -> bytes:
    """A fragment's parts as the shared level's bytes (NUL never occurs in our HTML)."""
    return "\x00".join(fragment).encode()


def decode_parts(raw: bytes) -> Fragment:
    head, before_time, middle, tail = raw.decode().split("\x00", 3)
    return head, before_time, middle, tail


def parts_size(fragment: Fragment) -> int:
    return sum(map(len, fragment))


@cache
def _template_version() -> str:
    """The shared level's keys change with the template's source and this module's fields."""
    source = engines["jinja2"].env.loader.get_source(  # type: ignore[attr-defined]
        engines["jinja2"].env,  # type: ignore[attr-defined]
        TEMPLATE,
    )[0]
    shape = repr((CardView._fields, ParentLine._fields, *map(str, MARKS)))
    return hashlib.blake2b((source + shape).encode(), digest_size=6).hexdigest()


@cache
def fragment_cache() -> FragmentCache:
    """Built on first use from settings (tests that change them call fragment_cache.cache_clear)."""
    local_bytes = settings.FRAGMENT_CACHE_LOCAL_BYTES
    shared = None
    if settings.FRAGMENT_CACHE_SHARED == "redis" and settings.REDIS_URL:
        shared = RedisStore(
            settings.REDIS_URL,
            prefix=settings.FRAGMENT_CACHE_KEY_PREFIX,
            ttl_seconds=settings.FRAGMENT_CACHE_SHARED_TTL_SECONDS,
            retry_seconds=settings.FRAGMENT_CACHE_SHARED_RETRY_SECONDS,
        )
    return FragmentCache(
        name="post_card",
        render=render_fragment,
        encode=encode_parts,
        decode=decode_parts,
        size=parts_size,
        version=_template_version,
        local=LocalLRU(local_bytes) if local_bytes > 0 else None,
        shared=shared,
        observe=metrics.observe_fragments,
    )


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: Any) -> None:
    """Tests that change the cache's settings get a cache built from them."""
    if setting.startswith("FRAGMENT_CACHE_") or setting in {"REDIS_URL", "TEMPLATES"}:
        fragment_cache.cache_clear()
        _template_version.cache_clear()


def _actions(post: Post, reader_id: int | None) -> str:
    """The reader's own links on a card: never cached."""
    if reader_id is None or post.is_deleted:
        return ""
    if post.author_id == reader_id:
        return f'\n      <a href="/posts/{post.id}/delete" class="action action-danger">Delete</a>'
    return f'\n      <a href="/posts/{post.id}/report" class="action">Report</a>'


def _repost_label(post_id: int, reposted_by: dict[int, str]) -> str:
    """For You's "Reposted by" line (interactions.selectors.InteractionState.reposted_by: who of
    those the reader hears reposted the post, "" for the reader themself)."""
    if post_id not in reposted_by:
        return ""
    by = reposted_by[post_id]
    if not by:
        return '\n    <p class="repost-label">You reposted</p>'
    return (
        f'\n    <p class="repost-label">Reposted by <a href="/@{escape(by)}">{escape(by)}</a></p>'
    )


def _reader(context: Context) -> Any:
    request = context.get("request")
    return getattr(request, "user", None)


ButtonsFor = Callable[[Post], str]


def _buttons_from(context: Context) -> ButtonsFor:
    """The reader's like / repost buttons (interactions.buttons) with the page's
    InteractionState (`interactions` in the page's context; pages without it show every button
    unpressed), the page's one CSRF input and the page's address to come back to."""
    state = context.get("interactions")
    liked = state.liked if state is not None else frozenset()
    reposted = state.reposted if state is not None else frozenset()
    csrf_input = str(context["csrf_input"])
    back = context["request"].get_full_path()
    return lambda post: str(  # plain str: adding a Markup to the parts' str would escape them
        buttons_html(
            post_id=post.id,
            top_level=post.parent_id is None,
            liked=post.id in liked,
            reposted=post.id in reposted,
            csrf_input=csrf_input,
            back=f"{back}#post-{post.id}",
        )
    )


def cards(
    posts: Sequence[Post],
    reader: Any,
    show_parent: bool = True,
    featured: bool = False,
    now: datetime | None = None,
    *,
    buttons: ButtonsFor | None = None,
    reposted_by: dict[int, str] | None = None,
) -> list[Markup]:
    """The cards of `posts`, in order, for `reader` (their parts), from one cache lookup."""
    if not posts:
        return []
    views = [card_view(post, show_parent, featured) for post in posts]
    fragments = fragment_cache().get_many(views, use_shared=len(views) > 1)
    now = now or timezone.now()
    # Read once: request.user is a lazy object, each attribute read goes through it.
    reader_id = reader.id if reader is not None and reader.is_authenticated else None
    if reader_id is None:
        buttons = None
    reposted_by = reposted_by or {}
    shown = []
    for post, view, (head, before_time, middle, tail) in zip(posts, views, fragments, strict=True):
        when = reltime(view.created_at, now) if view.created_at is not None else ""
        label = _repost_label(post.id, reposted_by) if reposted_by else ""
        actions = _actions(post, reader_id)
        if buttons is not None and not post.is_deleted:
            actions = buttons(post) + actions
        # The parts come from the autoescaping template; the time is made of digits and letters,
        # the label escapes its name, the buttons come from the autoescaping macro and the
        # actions are made of the post's integer id.
        shown.append(Markup(head + label + before_time + when + middle + actions + tail))  # noqa: S704
    return shown


def _cards_in(
    context: Context, posts: list[Post], show_parent: bool = True, featured: bool = False
) -> list[Markup]:
    reader = _reader(context)
    signed_in = reader is not None and reader.is_authenticated
    state = context.get("interactions")
    return cards(
        posts,
        reader,
        show_parent,
        featured,
        buttons=_buttons_from(context) if signed_in and posts else None,
        reposted_by=getattr(state, "reposted_by", None),
    )


@pass_context
def post_card(
    context: Context, post: Post, show_parent: bool = True, featured: bool = False
) -> Markup:
    """`{{ post_card(post) }}` in a template: one card."""
    return _cards_in(context, [post], show_parent, featured)[0]


@pass_context
def post_cards(context: Context, posts: Iterable[Post], show_parent: bool = True) -> Markup:
    """`{{ post_cards(page.items) }}`: a list's cards as one piece of HTML (empty: no posts),
    from one cache lookup (one round trip to the shared level, when there is one, for the cards
    this process lacks). One piece rather than a list for a template loop: the loop and the
    autoescape of each card (a copy of its HTML) were a tenth of a For You page's rendering."""
    return Markup("\n".join(_cards_in(context, list(posts), show_parent)))  # noqa: S704 (cards)


@pass_context
def post_cards_by_id(
    context: Context, posts: Iterable[Post], show_parent: bool = True
) -> dict[int, Markup]:
    """The cards of a thread's replies, by post id, from one cache lookup (the reply tree
    template places them)."""
    listed = list(posts)
    return {
        post.id: card
        for post, card in zip(listed, _cards_in(context, listed, show_parent), strict=True)
    }
