from django.conf import settings

from microblog.accounts.models import User
from microblog.core.pagination import Page, make_page
from microblog.follows.models import Follow


def followers(user: User, cursor: int | None = None) -> Page[User]:
    """Accounts following `user`, newest accounts first: a backward scan of
    (followed_id, follower_id) from the cursor, joined to the users; cost is independent of how
    many followers there are."""
    rows = Follow.objects.filter(followed_id=user.id).select_related("follower")
    if cursor is not None:
        rows = rows.filter(follower_id__lt=cursor)
    size = settings.PAGE_SIZE
    return make_page([f.follower for f in rows.order_by("-follower_id")[: size + 1]], size)


def followed(user: User, cursor: int | None = None) -> Page[User]:
    """Accounts `user` follows, newest accounts first (the primary key's order)."""
    rows = Follow.objects.filter(follower_id=user.id).select_related("followed")
    if cursor is not None:
        rows = rows.filter(followed_id__lt=cursor)
    size = settings.PAGE_SIZE
    return make_page([f.followed for f in rows.order_by("-followed_id")[: size + 1]], size)
