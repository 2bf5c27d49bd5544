"""The Jinja2 environment for the app's pages: URL and static helpers, times, avatars."""

import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.contrib.messages import get_messages
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.templatetags.static import static as django_static
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.csp import CONTEXT_KEY as CSP_CONTEXT_KEY
from django.utils.html import format_html
from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape


def url(name: str, *args: Any, **kwargs: Any) -> str:
    """reverse(), remembered: a page builds the same few links on every request (the top bar
    alone has eight), and each reverse() walks the URL resolver. The key holds what reverse()
    depends on besides its arguments: the script prefix and the request's URLconf."""
    if kwargs:
        return reverse(name, args=args or None, kwargs=kwargs)
    try:
        return _reverse(get_script_prefix(), get_urlconf(), name, args)
    except TypeError:  # an argument that cannot be a cache key
        return reverse(name, args=args or None)


@lru_cache(maxsize=4096)
def _reverse(prefix: str, urlconf: Any, name: str, args: tuple[Any, ...]) -> str:
    return reverse(name, args=args or None, urlconf=urlconf)


@lru_cache(maxsize=256)
def static(path: str) -> str:
    """The URL of a static file, remembered (the storage's answer depends only on settings)."""
    return django_static(path)


@receiver(setting_changed)
def _forget_urls(**kwargs: Any) -> None:
    """Tests that change settings (STATIC_URL, ROOT_URLCONF, ...) get fresh URLs."""
    _reverse.cache_clear()
    static.cache_clear()


def profile_path(username: str) -> str:
    """`/@<username>`, built directly: reverse() was 15% of a feed page's time (docs/benchmarks.md),
    and a post card links to its author twice. tests/core/test_templates checks it matches
    reverse()."""
    return "/@" + username


def post_path(post_id: int) -> str:
    return f"/posts/{post_id}"


def reltime(value: datetime, now: datetime | None = None) -> str:
    """Twitter-style relative time: "now", "5m", "3h", "2d", then a date."""
    now = now or timezone.now()
    seconds = int((now - value).total_seconds())
    if seconds < 45:
        return "now"
    if seconds < 3600:
        return f"{max(1, seconds // 60)}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    if seconds < 7 * 86400:
        return f"{seconds // 86400}d"
    if value.year == now.year:
        return f"{value:%b} {value.day}"
    return f"{value:%b} {value.day}, {value.year}"


def fulltime(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC"


def initials(username: str | None) -> str:
    """Up to two letters for the avatar: "alice_smith" -> "AS", "bob" -> "B"."""
    if not username:
        return "?"
    parts = [p for p in username.split("_") if p]
    if len(parts) >= 2:
        return (parts[0][0] + parts[1][0]).upper()
    return (parts[0] if parts else username)[0].upper()


AVATAR_HUES = 12


def avatar_hue(username: str | None) -> int:
    """A stable colour per user, from a cheap hash of the name (the same across processes)."""
    if not username:
        return 0
    return sum(username.lower().encode()) % AVATAR_HUES


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}"


# http(s) addresses in a post, starting at a word boundary (so "xhttp://" is not one). Only these
# two schemes ever become links: nothing else (javascript:, data:) can reach an href.
URL_IN_TEXT = re.compile(r"\bhttps?://[^\s<>\"']+", re.IGNORECASE)
# Punctuation that ends a sentence rather than the address ("see https://example.org.").
URL_TRAILING = ".,;:!?*'\""
OPENING_BRACKET = {")": "(", "]": "[", "}": "{"}
LINK_SHOWN_LENGTH = 30


def _url_end(url: str) -> str:
    """The address without the sentence's punctuation after it, and without a closing bracket
    that closes a bracket opened before it, e.g. "(see https://example.org)"."""
    while url:
        last = url[-1]
        opening = OPENING_BRACKET.get(last)
        if last in URL_TRAILING or (opening and url.count(last) > url.count(opening)):
            url = url[:-1]
        else:
            break
    return url


def shortened(url: str) -> str:
    """The address as shown: without its scheme, and cut to LINK_SHOWN_LENGTH characters."""
    shown = url.split("://", 1)[1]
    if len(shown) > LINK_SHOWN_LENGTH:
        shown = shown[: LINK_SHOWN_LENGTH - 1] + "\u2026"
    return shown


def linkify(text: str) -> Markup:
    """The post's text, escaped, with its http(s) addresses as links (rel="nofollow noopener
    ugc": no endorsement for search engines, no window.opener for the target) shown shortened;
    the full address is the link's title."""
    if "://" not in text:
        return escape(text)
    parts: list[str] = []
    last = 0
    for match in URL_IN_TEXT.finditer(text):
        url = _url_end(match.group(0))
        if not urlsplit(url).hostname:
            continue
        start, end = match.start(), match.start() + len(url)
        parts.append(escape(text[last:start]))
        parts.append(
            Markup('<a href="{0}" title="{0}" rel="nofollow noopener ugc">{1}</a>').format(
                url, shortened(url)
            )
        )
        last = end
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


@pass_context
def csp_nonce_attr(context: Context) -> str:
    """` nonce="..."` with this request's CSP nonce (the `csp` context processor puts it in the
    context), or nothing when there is none (a page rendered without a request); like Django's
    `{% csp_nonce_attr %}`. Using it puts the nonce in the response's policy header."""
    nonce = context.get(CSP_CONTEXT_KEY)
    return format_html(' nonce="{}"', nonce) if nonce is not None else ""


@pass_context
def page_csrf_input(context: Context) -> Markup:
    """The CSRF hidden input, masked once per response: the like/repost buttons put a form on
    every post card, and masking a token for each (32 random characters from the system's
    random source) was most of a feed page's CPU. One masked token repeated within a response
    protects as well as one per form (the mask is there against BREACH across responses)."""
    request = context.get("request")
    if request is None:
        return Markup(str(context.get("csrf_input", "")))
    cached = getattr(request, "_page_csrf_input", None)
    if cached is None:
        cached = Markup(str(context["csrf_input"]))
        request._page_csrf_input = cached
    return cached


def environment(**options: Any) -> Environment:
    env = Environment(**options)  # noqa: S701 (autoescape is on in settings)
    env.globals.update(
        {
            "url": url,
            "static": static,
            "get_messages": get_messages,
            "profile_path": profile_path,
            "post_path": post_path,
            "csp_nonce_attr": csp_nonce_attr,
            "page_csrf_input": page_csrf_input,
        },
    )
    env.filters.update(
        {
            "reltime": reltime,
            "fulltime": fulltime,
            "initials": initials,
            "avatar_hue": avatar_hue,
            "plural": plural,
            "linkify": linkify,
        }
    )
    return env
