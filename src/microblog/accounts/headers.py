"""A profile's header, cached by content like the post cards (core.fragments, posts.cards).

The name, bio, join date and the three counts are the same for every reader: they are the
fragment, rendered from a `ProfileHeaderView` alone (its cache key), so any change to one of
them (a post, a follow, an edited bio) is a new key and the header is never stale. The reader's
button (Edit profile, Follow, Unfollow, Unblock, with its CSRF token) and their notices (blocked,
muted) are rendered around it on every request, in `accounts/_profile_header.html`.
"""

from functools import cache
from typing import Any, NamedTuple

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template import engines
from markupsafe import Markup

from microblog.accounts.models import User
from microblog.core.fragments import FragmentCache, LocalLRU
from microblog.ops import metrics
from microblog.posts.cards import decode_parts, encode_parts, parts_size

TEMPLATE = "accounts/_profile_header_shared.html"
ACTION_MARK = Markup("<!--mb:action-->")
NOTICES_MARK = Markup("<!--mb:notices-->")


class ProfileHeaderView(NamedTuple):
    """Everything the cached part of a profile header shows, and so its cache key."""

    id: int
    username: str
    description: str
    joined: str  # "November 2026"
    posts_count: int
    followers_count: int
    following_count: int


def header_view(user: User) -> ProfileHeaderView:
    """The one place that reads a user for the header's shared part."""
    return ProfileHeaderView(
        user.id,
        user.username,
        user.description,
        user.date_joined.strftime("%B %Y"),
        user.posts_count,
        user.followers_count,
        user.following_count,
    )


def render_header(header: ProfileHeaderView) -> tuple[str, str, str]:
    template = engines["jinja2"].get_template(TEMPLATE).template  # type: ignore[attr-defined]
    html = template.render(header=header, ACTION_MARK=ACTION_MARK, NOTICES_MARK=NOTICES_MARK)
    head, _, rest = html.partition(ACTION_MARK)
    middle, _, tail = rest.partition(NOTICES_MARK)
    return head, middle, tail


@cache
def header_cache() -> FragmentCache:
    from django.conf import settings

    local_bytes = settings.FRAGMENT_CACHE_LOCAL_BYTES
    return FragmentCache(
        name="profile_header",
        render=render_header,
        encode=encode_parts,
        decode=decode_parts,
        size=parts_size,
        version=lambda: "1",
        # A small share of the card cache's memory: one header per profile page.
        local=LocalLRU(local_bytes // 8) if local_bytes > 0 else None,
        shared=None,  # one fragment per page: a Redis round trip costs more than rendering it
        observe=metrics.observe_fragments,
    )


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: Any) -> None:
    if setting.startswith("FRAGMENT_CACHE_") or setting == "TEMPLATES":
        header_cache.cache_clear()


def profile_header_parts(user: User) -> list[Markup]:
    """`{% set parts = profile_header_parts(profile_user) %}`: the three cached parts, to be
    joined with the reader's button and notices between them."""
    (parts,) = header_cache().get_many([header_view(user)], use_shared=False)
    # The parts come from the autoescaping template.
    return [Markup(part) for part in parts]  # noqa: S704
