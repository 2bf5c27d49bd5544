"""Sign-up, log-in, settings and profiles. Views check access, call one service, shape the reply."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from microblog import ratelimit
from microblog.accounts import services
from microblog.accounts.forms import (
    DeleteAccountForm,
    LogInForm,
    PasswordChangeForm,
    ProfileForm,
    SignUpForm,
)
from microblog.accounts.http import AuthedHttpRequest
from microblog.accounts.models import User
from microblog.core import sqlcache
from microblog.core.errors import NotAllowed, ServiceError, add_to_form
from microblog.core.http import safe_next
from microblog.core.pagination import parse_cursor
from microblog.core.views import error_response
from microblog.follows import selectors as follow_selectors
from microblog.follows import services as follow_services
from microblog.moderation import selectors as moderation
from microblog.timelines import selectors as timelines
from microblog.timelines.views import render_feed

LOGIN_FAILED = "Incorrect username or password."
# Password re-checks (password change, account deletion) share the failed-log-in limit.
RECHECKS = "Too many wrong passwords. Wait {wait} and try again."


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # Reserves the account about to be created (the 4th in an hour from one address is
        # refused), and gives the count back when none is created: only accounts count.
        try:
            reserved = ratelimit.reserve(request, [("signups", ratelimit.ip_subject(request))])
        except ratelimit.Throttled as refusal:
            form.add_error(None, ratelimit.message(refusal.decision))
            page = render(request, "accounts/signup.html", {"form": form})
            return ratelimit.throttled_form(page, refusal.decision)
        try:
            user = services.user_create(
                username=form.cleaned_data["username"], password=form.cleaned_data["password"]
            )
        except ServiceError as error:
            ratelimit.refund(reserved)
            add_to_form(form, error)
        except BaseException:
            ratelimit.refund(reserved)
            raise
        else:
            login(request, user, backend="microblog.accounts.backends.CaseInsensitiveModelBackend")
            messages.success(request, f"Welcome to Microblog, {user.username}!")
            response = redirect("home")
            # The browser that created the account is one it knows (microblog.ratelimit).
            ratelimit.remember_device(request, response, user.username)
            return response
    status = 400 if form.is_bound else 200
    return render(request, "accounts/signup.html", {"form": form}, status=status)


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(safe_next(request))
    form = LogInForm(request.POST or None)
    error = None
    if request.method == "POST":
        if form.is_valid():
            username = form.cleaned_data["username"]
            # Counted as a failure before the password is hashed (microblog.ratelimit), refunded on
            # success; refused unchecked once the client or the username has too many failures.
            try:
                attempt = ratelimit.login_reserve(request, username)
            except ratelimit.Throttled as refusal:
                context = {"form": form, "error": ratelimit.message(refusal.decision)}
                page = render(
                    request, "accounts/login.html", {**context, "next": safe_next(request, "")}
                )
                return ratelimit.throttled_form(page, refusal.decision)
            user = authenticate(request, username=username, password=form.cleaned_data["password"])
            if user is not None:
                ratelimit.refund(attempt)
                login(request, user)  # rotates the session key
                messages.success(request, f"Welcome back, {user.username}.")
                response = redirect(safe_next(request))
                ratelimit.remember_device(request, response, user.username)
                return response
        error = LOGIN_FAILED
    context = {"form": form, "error": error, "next": safe_next(request, "")}
    return render(request, "accounts/login.html", context, status=400 if error else 200)


@require_http_methods(["GET", "HEAD", "POST"])
def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's log-in page is the app's: /login, behind the same limits and counters (the
    admin's own form had none). Nothing posted here is checked; a signed-in user who is not
    staff gets the 403 page instead of a log-in form (or a redirect loop)."""
    target = safe_next(request, "/admin/")
    if request.user.is_authenticated:
        if request.user.is_staff:
            return redirect(target)
        return error_response(
            request, 403, "Not allowed", "Only staff can open the admin. You are signed in."
        )
    return redirect(f"{reverse('login')}?{urlencode({'next': target}, safe='/')}")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, "You have been logged out.")
    return redirect("home")


def _settings_page(request: AuthedHttpRequest, status: int = 200, **forms: object) -> HttpResponse:
    user = request.user
    context = {
        "profile_form": ProfileForm(initial={"description": user.description}),
        "password_form": PasswordChangeForm(),
        "delete_form": DeleteAccountForm(),
        "blocked": moderation.blocked_users(user),
        "muted": moderation.muted_users(user),
        **forms,
    }
    return render(request, "accounts/settings.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def settings_view(request: AuthedHttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _settings_page(request)
    form = ProfileForm(request.POST)
    if form.is_valid():
        services.user_update_profile(
            user=request.user,
            description=form.cleaned_data["description"],
        )
        messages.success(request, "Your profile was updated.")
        return redirect("settings")
    return _settings_page(request, 400, profile_form=form)


@login_required
@require_POST
def settings_password(request: AuthedHttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.POST)
    if form.is_valid():
        try:
            attempt = ratelimit.recheck_reserve(request, request.user)
        except ratelimit.Throttled as refusal:
            form.add_error("current_password", ratelimit.message(refusal.decision, RECHECKS))
            page = _settings_page(request, password_form=form)
            return ratelimit.throttled_form(page, refusal.decision)
        try:
            user = services.user_change_password(
                user=request.user,
                current_password=form.cleaned_data["current_password"],
                new_password=form.cleaned_data["new_password"],
            )
        except ServiceError as error:
            if not isinstance(error, NotAllowed):
                ratelimit.refund(attempt)  # the current password was right
            add_to_form(form, error)
        else:
            ratelimit.refund(attempt)
            update_session_auth_hash(request, user)  # this session stays; the others end
            messages.success(request, "Your password was changed. Other sessions were signed out.")
            return redirect("settings")
    return _settings_page(request, 400, password_form=form)


@login_required
@require_POST
def settings_delete(request: AuthedHttpRequest) -> HttpResponse:
    form = DeleteAccountForm(request.POST)
    if form.is_valid():
        try:
            ratelimit.recheck_reserve(request, request.user)
        except ratelimit.Throttled as refusal:
            form.add_error("password", ratelimit.message(refusal.decision, RECHECKS))
            page = _settings_page(request, delete_form=form)
            return ratelimit.throttled_form(page, refusal.decision)
        try:
            services.user_delete(
                user=request.user,
                password=form.cleaned_data["password"],
            )
        except ServiceError as error:
            add_to_form(form, error)
        else:
            logout(request)
            messages.info(request, "Your account was deleted. Your posts remain, unsigned.")
            return redirect("home")
    return _settings_page(request, 400, delete_form=form)


def _profile_user(username: str) -> User:
    # Compiled once per process (core.sqlcache): every profile and people page starts here.
    found = sqlcache.fetch(_user_by_username, username)
    if not found:
        raise Http404("No such user")
    return found[0]


def _user_by_username(username: str) -> QuerySet[User]:
    return User.objects.filter(username__iexact=username)[:1]


def _user_by_username_for(username: str, viewer_id: int) -> QuerySet[User]:
    """The profile's user with how the signed-in viewer stands to them (the buttons): one
    query instead of two (moderation.selectors.with_relationship)."""
    users = User.objects.filter(username__iexact=username)
    return moderation.with_relationship(users, viewer_id)[:1]


@require_safe
def profile(request: HttpRequest, username: str) -> HttpResponse:
    viewer = request.user
    if viewer.is_authenticated:
        found = sqlcache.fetch(_user_by_username_for, username, viewer.id)
        if not found:
            raise Http404("No such user")
        author = found[0]
    else:
        author = _profile_user(username)
    cursor = parse_cursor(request.GET.get("cursor"))
    return render_feed(
        request,
        "accounts/profile.html",
        timelines.profile(author, viewer, cursor),
        {"profile_user": author, "relation": moderation.relationship(viewer, author)},
    )


def _people_page(request: HttpRequest, username: str, which: str) -> HttpResponse:
    person = _profile_user(username)
    cursor = parse_cursor(request.GET.get("cursor"))
    page = (
        follow_selectors.followers(person, cursor)
        if which == "followers"
        else follow_selectors.followed(person, cursor)
    )
    template = (
        "accounts/_people_page.html"
        if request.headers.get("HX-Request")
        else ("accounts/people.html")
    )
    return render(request, template, {"profile_user": person, "page": page, "which": which})


@require_safe
def followers(request: HttpRequest, username: str) -> HttpResponse:
    return _people_page(request, username, "followers")


@require_safe
def following(request: HttpRequest, username: str) -> HttpResponse:
    return _people_page(request, username, "following")


@login_required
@require_POST
def follow(request: AuthedHttpRequest, username: str) -> HttpResponse:
    target = _profile_user(username)
    try:
        created = follow_services.follow_create(follower=request.user, followed=target)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        if created:
            messages.success(request, f"You are now following {target.username}.")
    return redirect(safe_next(request, f"/@{target.username}"))


@login_required
@require_POST
def unfollow(request: AuthedHttpRequest, username: str) -> HttpResponse:
    target = _profile_user(username)
    if follow_services.follow_delete(follower=request.user, followed=target):
        messages.success(request, f"You unfollowed {target.username}.")
    return redirect(safe_next(request, f"/@{target.username}"))
