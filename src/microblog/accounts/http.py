"""The signed-in request, typed once (django-stubs: "typing request.user")."""

from django.http import HttpRequest

from microblog.accounts.models import User


class AuthedHttpRequest(HttpRequest):
    """The request of a view behind `login_required` (or `staff_required`): `user` is a User,
    never AnonymousUser. Only a type: the decorators make it true."""

    user: User
