"""The Jinja2 environment for the app's pages: URL and static helpers, times, avatars."""

from datetime import datetime
from typing import Any

from django.contrib.messages import get_messages
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.csp import CONTEXT_KEY as CSP_CONTEXT_KEY
from django.utils.html import format_html
from jinja2 import Environment, pass_context
from jinja2.runtime import Context


def url(name: str, *args: Any, **kwargs: Any) -> str:
    return reverse(name, args=args or None, kwargs=kwargs or None)


def profile_path(username: str) -> str:
    """`/@<username>`, built directly: reverse() was 15% of a feed page's time (docs/benchmarks.md),
    and a post card links to its author twice. tests/test_templates checks it matches reverse()."""
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


@pass_context
def csp_nonce_attr(context: Context) -> str:
    """` nonce="..."` with this request's CSP nonce (the `csp` context processor puts it in the
    context), or nothing when there is none (a page rendered without a request); like Django's
    `{% csp_nonce_attr %}`. Using it puts the nonce in the response's policy header."""
    nonce = context.get(CSP_CONTEXT_KEY)
    return format_html(' nonce="{}"', nonce) if nonce is not None else ""


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
        },
    )
    env.filters.update(
        {
            "reltime": reltime,
            "fulltime": fulltime,
            "initials": initials,
            "avatar_hue": avatar_hue,
            "plural": plural,
        }
    )
    return env
