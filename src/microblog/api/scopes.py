"""OAuth scopes as Mastodon defines them: four top-level scopes and their granular forms.

A token with `read` may do what `read:statuses` allows; `follow` (deprecated by Mastodon, still
asked for by many apps) stands for the follow, block and mute scopes. Each endpoint names the one
granular scope it needs (api.auth.api_view), and `satisfied` decides.
"""

GRANULAR = {
    "read": (
        "accounts",
        "blocks",
        "bookmarks",
        "favourites",
        "filters",
        "follows",
        "lists",
        "mutes",
        "notifications",
        "search",
        "statuses",
    ),
    "write": (
        "accounts",
        "blocks",
        "bookmarks",
        "conversations",
        "favourites",
        "filters",
        "follows",
        "lists",
        "media",
        "mutes",
        "notifications",
        "reports",
        "statuses",
    ),
}
FOLLOW_SCOPES = frozenset(
    {"read:blocks", "write:blocks", "read:follows", "write:follows", "read:mutes", "write:mutes"}
)

DESCRIPTIONS = {
    "read": "Read everything your account can read: your timelines, posts, followers",
    "write": "Post, delete your posts, follow, block and mute, report, edit your profile",
    "follow": "Follow, unfollow, block, unblock, mute and unmute accounts",
    "push": "Receive push notifications (not supported here yet)",
    "profile": "Read your own profile only",
}
for _top, _names in GRANULAR.items():
    for _name in _names:
        DESCRIPTIONS[f"{_top}:{_name}"] = f"{_top.capitalize()} your {_name}"

ALL_SCOPES = tuple(DESCRIPTIONS)


def expand(granted: str | list[str] | set[str] | frozenset[str]) -> frozenset[str]:
    """Every granular scope a set of granted scopes allows."""
    names = set(granted.split() if isinstance(granted, str) else granted)
    allowed = set(names)
    for top, granular in GRANULAR.items():
        if top in names:
            allowed.update(f"{top}:{name}" for name in granular)
    if "follow" in names:
        allowed |= FOLLOW_SCOPES
    return frozenset(allowed)


def satisfied(granted: frozenset[str], required: str) -> bool:
    """Whether scopes already expanded by `expand` allow an endpoint that needs `required`.
    `profile` (Mastodon 4.3) allows verify_credentials alone: it is checked as `read:accounts`'s
    narrower sibling by the endpoint itself."""
    return required in granted


def unknown(requested: str) -> list[str]:
    """The names in a space-separated scope list that are not scopes."""
    return [name for name in requested.split() if name not in DESCRIPTIONS]
