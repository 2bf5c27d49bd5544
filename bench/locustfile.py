"""Load-test scenarios for the microblog (issue 4), one locust user class per scenario.

Run by `make bench` (bench/run_bench.py), which prepares the fixture (bench/load_setup.py) and
starts the app. By hand, against an app already serving on port 8000:

    LOAD_FIXTURE=/tmp/load_fixture.json .venv/bin/locust -f bench/locustfile.py --headless \\
        -u 32 -r 32 --run-time 30s --host http://127.0.0.1:8000 HomeForYou

Every simulated user signs in once (GET the log-in form, POST it with the CSRF token, keep the
cookies) before its tasks run. The statistics are reset once every user has finished signing in,
so the reported figures cover the scenario's own requests only; a failed sign-in is counted in
the extra figures (LOAD_EXTRA_OUT) and added to the errors by the orchestrator. Every request
checks its status and its content (a feed page must be the signed-in page and hold posts);
anything else is a failure.
"""

import itertools
import json
import os
import random
import re
import time
import uuid
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, events, task
from locust.contrib.fasthttp import FastHttpSession
from locust.exception import StopUser

FIXTURE = json.loads(Path(os.environ.get("LOAD_FIXTURE", "/tmp/load_fixture.json")).read_text())
PASSWORD = os.environ.get("LOAD_PASSWORD", "seeded-password-1")
DEEP_PAGES = int(os.environ.get("LOAD_DEEP_PAGES", "50"))
# Share of home_for_you iterations that also load page 2 through the Load more cursor.
HOME_PAGE2_SHARE = float(os.environ.get("LOAD_HOME_PAGE2_SHARE", "0.2"))
# One simulated user in this many posts as user 1, the most-followed account (posting).
CELEBRITY_EVERY = int(os.environ.get("LOAD_CELEBRITY_EVERY", "8"))
# Seconds to measure once every user has signed in (0: until --run-time ends the run).
MEASURE_SECONDS = float(os.environ.get("LOAD_MEASURE_SECONDS", "0"))

CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CURSOR_RE = re.compile(r'class="load-more[^"]*" href="\?cursor=(\d+)"')
SIGNED_IN_FOR_YOU = 'aria-current="page">For You<'
SIGNED_IN_FOLLOWING = 'aria-current="page">Following<'

extra = {"setup_errors": 0, "empty_pages": 0, "deep_ended_early": 0, "deep_pages_max": 0}
_ready = {"count": 0, "reset": False, "measure_start": None, "cpu_start": None}
_reader_ids = itertools.count()


def _user_ready(user: FastHttpUser) -> None:
    """Once every simulated user has signed in, reset the statistics: the figures then cover
    only the scenario's requests, not the sign-ins (Argon2 is slow on purpose) or the ramp-up."""
    _ready["count"] += 1
    runner = user.environment.runner
    if not _ready["reset"] and runner is not None and _ready["count"] >= runner.target_user_count:
        _ready["reset"] = True
        _ready["measure_start"] = time.time()
        _ready["cpu_start"] = sum(os.times()[:2])
        user.environment.stats.reset_all()
        if os.environ.get("LOAD_EXTRA_OUT"):
            # Tells the orchestrator to snapshot the app's and PostgreSQL's CPU time now.
            Path(os.environ["LOAD_EXTRA_OUT"] + ".started").touch()
        if MEASURE_SECONDS:
            # Measure for a fixed time from here; --run-time stays the hard bound.
            gevent.spawn_later(MEASURE_SECONDS, runner.quit)


@events.test_stop.add_listener
def _write_extra(environment, **kwargs) -> None:
    path = os.environ.get("LOAD_EXTRA_OUT")
    if path:
        cpu = sum(os.times()[:2]) - _ready["cpu_start"] if _ready["cpu_start"] else None
        figures = {
            **extra,
            "measure_start": _ready["measure_start"],
            "measure_end": time.time(),
            "generator_cpu_s": cpu,
        }
        Path(path).write_text(json.dumps(figures))


def _check_feed(response, signed_in_marker: str | None = None) -> None:
    """A feed page: 200, the signed-in page when expected, and posts (or the designed empty
    state, counted apart in `empty_pages`)."""
    if response.status_code != 200:
        response.failure(f"status {response.status_code}")
    elif signed_in_marker and signed_in_marker not in response.text:
        response.failure("not the signed-in page")
    elif 'class="post"' not in response.text and 'class="post ' not in response.text:
        if 'class="empty"' in response.text:
            extra["empty_pages"] += 1
            response.success()
        else:
            response.failure("no posts in the page")
    else:
        response.success()


def _next_cursor(text: str) -> str | None:
    match = CURSOR_RE.search(text)
    return match.group(1) if match else None


class Reader(FastHttpUser):
    """A signed-in user (random seeded reader unless `username` says otherwise)."""

    abstract = True
    wait_time = constant(0)
    pool = "readers"
    csrf = ""
    username = ""

    def pick_username(self) -> str:
        names = FIXTURE[self.pool]
        return names[next(_reader_ids) % len(names)]

    def on_start(self) -> None:
        self.username = self.pick_username()
        try:
            self.sign_in()
        except StopUser:
            _user_ready(self)
            raise
        _user_ready(self)

    def sign_in(self) -> None:
        with self.client.get("/login", name="sign-in form", catch_response=True) as response:
            match = CSRF_RE.search(response.text or "")
            if response.status_code != 200 or not match:
                response.failure("no log-in form")
                extra["setup_errors"] += 1
                raise StopUser
        with self.client.post(
            "/login",
            data={
                "csrfmiddlewaretoken": match.group(1),
                "username": self.username,
                "password": PASSWORD,
            },
            name="sign-in",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"sign-in answered {response.status_code}")
                extra["setup_errors"] += 1
                raise StopUser
        # login() rotates the CSRF secret: take the new token from a page's compose form.
        with self.client.get("/", name="sign-in home", catch_response=True) as response:
            match = CSRF_RE.search(response.text or "")
            if response.status_code != 200 or not match:
                response.failure("no compose form after sign-in")
                extra["setup_errors"] += 1
                raise StopUser
            self.csrf = match.group(1)

    # --- requests shared by the scenarios ---------------------------------------------------

    def for_you(self, cursor: str | None = None, name: str = "for_you page 1") -> str | None:
        url = "/" if cursor is None else f"/?cursor={cursor}"
        with self.client.get(url, name=name, catch_response=True) as response:
            _check_feed(response, SIGNED_IN_FOR_YOU)
            return _next_cursor(response.text or "")

    def following_page(self) -> None:
        with self.client.get("/following", name="following page 1", catch_response=True) as r:
            _check_feed(r, SIGNED_IN_FOLLOWING)

    def profile(self, username: str, name: str) -> None:
        with self.client.get(f"/@{username}", name=name, catch_response=True) as response:
            if response.status_code != 200 or f">{username}<" not in response.text:
                response.failure(f"profile: status {response.status_code}")
            else:
                response.success()

    def thread(self) -> None:
        with self.client.get(
            f"/posts/{FIXTURE['thread_id']}", name="thread (200 replies)", catch_response=True
        ) as response:
            if response.status_code != 200 or response.text.count('class="post') < 20:
                response.failure(f"thread: status {response.status_code}")
            else:
                response.success()

    def post(self, name: str = "post", parent_id: str = "") -> None:
        data = {
            "csrfmiddlewaretoken": self.csrf,
            "content": f"Load test {uuid.uuid4().hex[:12]} from {self.username}",
            "next": "/",
        }
        if parent_id:
            data["parent_id"] = parent_id
        with self.client.post(
            "/posts", data=data, name=name, allow_redirects=False, catch_response=True
        ) as response:
            expected = f"/posts/{parent_id}" if parent_id else "/"
            location = response.headers.get("Location", "")
            if response.status_code != 302 or not location.endswith(expected):
                response.failure(f"post: status {response.status_code} -> {location!r}")
            else:
                response.success()

    def follow_toggle(self, username: str, action: str) -> None:
        with self.client.post(
            f"/@{username}/{action}",
            data={"csrfmiddlewaretoken": self.csrf},
            name=action,
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"{action}: status {response.status_code}")
            else:
                response.success()


class HomeForYou(Reader):
    """home_for_you: For You page 1 as random readers, and page 2 by the Load more cursor."""

    @task
    def home(self) -> None:
        cursor = self.for_you()
        if cursor and random.random() < HOME_PAGE2_SHARE:
            self.for_you(cursor, name="for_you page 2 (cursor)")


class ForYouDeep(Reader):
    """for_you_deep: 50 pages deep by the Load more cursor, as the readers who follow the most
    accounts (the longest feeds; below the stored feed's horizon the pull query answers)."""

    pool = "deep_readers"

    @task
    def walk(self) -> None:
        cursor = self.for_you(name="for_you deep page 1")
        page = 1
        while cursor and page < DEEP_PAGES:
            page += 1
            name = (
                f"for_you deep page {DEEP_PAGES}"
                if page == DEEP_PAGES
                else f"for_you deep pages 2-{DEEP_PAGES - 1}"
            )
            cursor = self.for_you(cursor, name=name)
        extra["deep_pages_max"] = max(extra["deep_pages_max"], page)
        if page < DEEP_PAGES:
            extra["deep_ended_early"] += 1


class ProfileCelebrity(Reader):
    """profile_celebrity: the profile of user 1 (the most-followed account) as signed-in
    readers; the page must show its exact follower count (counted by load_setup.py just before
    the run; no scenario follows user 1)."""

    @task
    def celebrity(self) -> None:
        username = FIXTURE["celebrity"]
        count = f"{FIXTURE['celebrity_followers']:,}"
        with self.client.get(
            f"/@{username}", name="profile of user 1", catch_response=True
        ) as response:
            text = response.text or ""
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif f"<strong>{count}</strong> followers" not in text:
                response.failure("follower count not exact")
            elif 'class="post' not in text:
                response.failure("no posts")
            else:
                response.success()


class Thread(Reader):
    """thread: a post with 200 replies (made by bench/load_setup.py)."""

    @task
    def thread_page(self) -> None:
        self.thread()


class Posting(Reader):
    """posting: the compose form POSTed (302 to the next page), one user in CELEBRITY_EVERY
    being user 1, whose posts are merged at read time instead of fanned out."""

    def pick_username(self) -> str:
        n = next(_reader_ids)
        if n % CELEBRITY_EVERY == 0:
            return FIXTURE["celebrity"]
        return FIXTURE["readers"][n % len(FIXTURE["readers"])]

    @task
    def publish(self) -> None:
        self.post(name="post (user 1)" if self.username == FIXTURE["celebrity"] else "post")


class Mixed(Reader):
    """mixed: 85% reads, 10% posts and replies, 5% follows and unfollows."""

    followed: list[str]

    def on_start(self) -> None:
        self.followed = []
        super().on_start()

    @task(40)
    def home(self) -> None:
        cursor = self.for_you()
        if cursor and random.random() < 0.25:
            self.for_you(cursor, name="for_you page 2 (cursor)")

    @task(12)
    def following(self) -> None:
        self.following_page()

    @task(12)
    def profile_celebrity(self) -> None:
        self.profile(FIXTURE["celebrity"], "profile of user 1")

    @task(8)
    def profile_other(self) -> None:
        self.profile(random.choice(FIXTURE["readers"]), "profile (random)")

    @task(8)
    def thread_page(self) -> None:
        self.thread()

    @task(6)
    def publish(self) -> None:
        self.post()

    @task(4)
    def reply(self) -> None:
        self.post(name="reply", parent_id=FIXTURE["thread_id"])

    @task(5)
    def follow_or_unfollow(self) -> None:
        if self.followed and random.random() < 0.5:
            self.follow_toggle(self.followed.pop(), "unfollow")
        else:
            target = random.choice(FIXTURE["readers"])
            if target != self.username:
                self.followed.append(target)
                self.follow_toggle(target, "follow")


class FollowingPull(Reader):
    """following_pull: the Following page (the pull query over follows) against For You page 1,
    alternating, so the ratio comes from one run under the same load."""

    @task
    def both(self) -> None:
        self.following_page()
        self.for_you()


class Liking(Reader):
    """liking (issue 16): POST like then POST unlike of a recent public post (the plain forms,
    302 each), so the run leaves the counts as it found them; a like's notification is folded
    in by the job worker, as in production."""

    @task
    def like_then_unlike(self) -> None:
        post_id = random.choice(FIXTURE["like_posts"])
        for action in ("like", "unlike"):
            with self.client.post(
                f"/posts/{post_id}/{action}",
                data={"csrfmiddlewaretoken": self.csrf, "next": "/"},
                name=action,
                allow_redirects=False,
                catch_response=True,
            ) as response:
                if response.status_code != 302:
                    response.failure(f"{action}: status {response.status_code}")
                else:
                    response.success()


class NotificationsPage(Reader):
    """notifications (issue 16): /notifications page 1 as the users with the most
    notifications; the page must list some."""

    pool = "notified_readers"

    @task
    def notifications(self) -> None:
        with self.client.get(
            "/notifications", name="notifications page 1", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif '<li class="notification' not in (response.text or ""):
                response.failure("no notifications in the page")
            else:
                response.success()


class TagPage(Reader):
    """tag_page (issue 16): /tags/<the tag on the most posts>, page 1, as signed-in readers."""

    @task
    def tag(self) -> None:
        with self.client.get(
            f"/tags/{FIXTURE['tag']}", name="tag page 1", catch_response=True
        ) as response:
            _check_feed(response)


class Search(Reader):
    """search (issue 16): /search?q=<a frequent word> (accounts, tags and the first page of
    matching posts), as signed-in readers."""

    @task
    def search(self) -> None:
        with self.client.get(
            f"/search?q={FIXTURE['search_word']}", name="search page 1", catch_response=True
        ) as response:
            _check_feed(response)


class ApiHome(Reader):
    """api_home_vs_for_you (issue 17), with ForYouPage1 in the same run (half the users each):
    the client API's home timeline, GET /api/v1/timelines/home with the reader's bearer token.
    The reader signs in through the form like the others (the same readers, the same setup), but
    the API calls go through a second HTTP session with no cookies, as an app sends them. The
    answer must be a JSON list of statuses."""

    def on_start(self) -> None:
        super().on_start()
        self.token = FIXTURE["api_tokens"][self.username]
        self.api = FastHttpSession(
            self.host, request_event=self.environment.events.request, user=self
        )

    @task
    def home(self) -> None:
        with self.api.get(
            "/api/v1/timelines/home",
            headers={"Authorization": f"Bearer {self.token}"},
            name="api home timeline",
            catch_response=True,
        ) as response:
            try:
                statuses = response.json() if response.status_code == 200 else None
            except ValueError:
                statuses = None
            if not isinstance(statuses, list):
                response.failure(f"api home: status {response.status_code}")
            elif not statuses:
                extra["empty_pages"] += 1
                response.success()
            elif "content" not in statuses[0] or "account" not in statuses[0]:
                response.failure("api home: not a list of statuses")
            else:
                response.success()


class ForYouPage1(Reader):
    """api_home_vs_for_you's other half: the For You page 1 (signed in by cookie), the page the
    API's home timeline is measured against."""

    @task
    def home(self) -> None:
        self.for_you()


class SignedOut(FastHttpUser):
    """signed_out: anonymous browsing: the public feed and its next page, profiles, the thread."""

    wait_time = constant(0)

    def on_start(self) -> None:
        _user_ready(self)

    @task(4)
    def public_feed(self) -> None:
        with self.client.get("/", name="public feed page 1", catch_response=True) as response:
            _check_feed(response)
            cursor = _next_cursor(response.text or "")
        if cursor:
            with self.client.get(
                f"/all?cursor={cursor}", name="public feed page 2 (cursor)", catch_response=True
            ) as response:
                _check_feed(response)

    @task(2)
    def profiles(self) -> None:
        for username, name in (
            (FIXTURE["celebrity"], "profile of user 1"),
            (random.choice(FIXTURE["readers"]), "profile (random)"),
        ):
            with self.client.get(f"/@{username}", name=name, catch_response=True) as response:
                if response.status_code != 200 or f">{username}<" not in response.text:
                    response.failure(f"profile: status {response.status_code}")
                else:
                    response.success()

    @task(1)
    def thread(self) -> None:
        with self.client.get(
            f"/posts/{FIXTURE['thread_id']}", name="thread (200 replies)", catch_response=True
        ) as response:
            if response.status_code != 200 or response.text.count('class="post') < 20:
                response.failure(f"thread: status {response.status_code}")
            else:
                response.success()
