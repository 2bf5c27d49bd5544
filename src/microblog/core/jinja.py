"""The Jinja2 environment for the app's pages: URL and static helpers, times, avatars."""

import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.contrib.messages import get_messages
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.template.backends.utils import csrf_input
from django.templatetags.static import static as django_static
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.csp import CONTEXT_KEY as CSP_CONTEXT_KEY
from django.utils.html import format_html
from django.utils.module_loading import import_string
from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from microblog.core.text import MENTION, hashtag_spans


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


def tag_path(name: str) -> str:
    """`/tags/<name>`, the name percent-encoded (tests/tags check it matches reverse())."""
    return "/tags/" + quote(name, safe="")


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


def linkify(text: str, mentioned: str = "") -> Markup:
    """The post's text, escaped, with its http(s) addresses as links (rel="nofollow noopener
    ugc": no endorsement for search engines, no window.opener for the target) shown shortened;
    the full address is the link's title. `mentioned`: the post's resolved mentions (stored with
    the post, `Post.mention_names`); those and the hashtags are linked by link_words() outside
    the addresses."""
    if "://" not in text:
        return link_words(text, mentioned)
    parts: list[str] = []
    last = 0
    for match in URL_IN_TEXT.finditer(text):
        url = _url_end(match.group(0))
        if not urlsplit(url).hostname:
            continue
        start, end = match.start(), match.start() + len(url)
        parts.append(link_words(text, mentioned, last, start))
        parts.append(
            Markup('<a href="{0}" title="{0}" rel="nofollow noopener ugc">{1}</a>').format(
                url, shortened(url)
            )
        )
        last = end
    parts.append(link_words(text, mentioned, last))
    return Markup("").join(parts)


def link_words(text: str, mentioned: str, start: int = 0, end: int | None = None) -> Markup:
    """`text[start:end]`, escaped, with its hashtags as links to their tag pages and its stored
    mentions as links to their profiles.

    Hashtags are found in the whole text (core.text.hashtag_spans: whether a `#` starts a tag
    depends on what stands around it), the same way as when the post's tags were stored.
    `mentioned` holds the post's resolved mentions (space-separated usernames, `Post.mention_names`,
    resolved when the post was written): only those become links, so the card is a function of
    the post's stored data. A tag and a mention never overlap (neither rule lets one run into the
    other: `#a@b` is the tag `a` and no mention, `@a#b` the mention `a` and no tag)."""
    end = len(text) if end is None else end
    if "#" not in text and not (mentioned and "@" in text):
        return escape(text[start:end])
    links: list[tuple[int, int, Markup]] = []
    if "#" in text:
        for tag_start, tag_end, name in hashtag_spans(text):
            if start <= tag_start and tag_end <= end:
                links.append(
                    (
                        tag_start,
                        tag_end,
                        Markup('<a class="hashtag" href="{0}">{1}</a>').format(
                            tag_path(name), text[tag_start:tag_end]
                        ),
                    )
                )
    if mentioned and "@" in text:
        accounts = {name.lower(): name for name in mentioned.split()}
        for match in MENTION.finditer(text, start, end):
            username = accounts.get(match.group(1).lower())
            if username is not None:
                links.append(
                    (
                        match.start(),
                        match.end(),
                        Markup('<a class="mention" href="{0}">@{1}</a>').format(
                            profile_path(username), match.group(1)
                        ),
                    )
                )
    links.sort(key=lambda link: link[0])
    parts: list[str] = []
    last = start
    for link_start, link_end, html in links:
        if link_start < last:  # cannot happen (see above); never emit text twice
            continue
        parts.append(escape(text[last:link_start]))
        parts.append(html)
        last = link_end
    parts.append(escape(text[last:end]))
    return Markup("").join(parts)


class _OncePerRequest:
    """A template value computed on first use and then kept for the rest of the request."""

    __slots__ = ("_compute", "_request", "_value")

    def __init__(self, compute: Any, request: HttpRequest) -> None:
        self._compute = compute
        self._request = request
        self._value: str | None = None

    def __html__(self) -> str:
        if self._value is None:
            self._value = self._compute(self._request)
        return self._value

    __str__ = __html__


def csrf_once(request: HttpRequest) -> dict[str, Any]:
    """`csrf_input` and `csrf_token` for Jinja2 pages, masked once per request. Django's Jinja2
    backend gives lazy values that mask the token again on every use (32 random characters
    each time); a page with a compose form and the log-out button used it twice. One masked
    token per response is what Django's own template tag gives a page (BREACH protection is
    per response). Still lazy: a page that shows no form does not touch the CSRF cookie."""
    return {
        "csrf_input": _OncePerRequest(csrf_input, request),
        "csrf_token": _OncePerRequest(get_token, request),
    }


@pass_context
def csp_nonce_attr(context: Context) -> str:
    """` nonce="..."` with this request's CSP nonce (the `csp` context processor puts it in the
    context), or nothing when there is none (a page rendered without a request); like Django's
    `{% csp_nonce_attr %}`. Using it puts the nonce in the response's policy header."""
    nonce = context.get(CSP_CONTEXT_KEY)
    return format_html(' nonce="{}"', nonce) if nonce is not None else ""


def environment(**options: Any) -> Environment:
    """The pages' environment. Globals that belong to the apps (the post card, posts.cards) are
    named by dotted path in settings.JINJA_GLOBALS, so this module imports no app."""
    env = Environment(**options)  # noqa: S701 (autoescape is on in settings)
    env.globals.update(
        {name: import_string(path) for name, path in getattr(settings, "JINJA_GLOBALS", {}).items()}
    )
    env.globals.update(
        {
            "url": url,
            "static": static,
            "get_messages": get_messages,
            "profile_path": profile_path,
            "post_path": post_path,
            "tag_path": tag_path,
            "csp_nonce_attr": csp_nonce_attr,
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
