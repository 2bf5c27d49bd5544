"""Shared fixtures. Tests run on the database DATABASE_URL names (SQLite when unset)."""

import json
import os
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from microblog.accounts.models import User
from microblog.posts.models import Post
from microblog.posts.services import post_create

# The cluster's tests start a whole cluster (HAProxy, PostgreSQL primary + replica, PgBouncer):
# `make cluster-test` runs them, `make test` does not.
collect_ignore = [] if os.environ.get("MICROBLOG_CLUSTER_TESTS") == "1" else ["cluster"]

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None

PASSWORD = "correct-horse-battery-staple"
_names = count(1)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    # Every database test is transactional: writes really commit, so jobs and events sent with
    # transaction.on_commit fire as they do in production (a test wrapped in a transaction would
    # silently drop them).
    for item in items:
        marker = item.get_closest_marker("django_db")
        fixtures = getattr(item, "fixturenames", ())
        if marker is not None or "db" in fixtures:
            kwargs = dict(marker.kwargs) if marker is not None else {}
            kwargs["transaction"] = True
            item.add_marker(pytest.mark.django_db(**kwargs), append=False)

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" in engine:
        return
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but DATABASE_URL is not a PostgreSQL URL")
    skip = pytest.mark.skip(
        reason="PostgreSQL-only: DATABASE_URL is not PostgreSQL "
        "(set DATABASE_URL=postgres://user@host:5432/microblog to run it)"
    )
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    postgres = [r for r in skipped if "PostgreSQL-only" in str(r.longrepr)]
    browser = [r for r in skipped if "Chromium" in str(r.longrepr) or "axe-core" in str(r.longrepr)]
    if postgres:
        terminalreporter.write_line(
            f"NOTE: {len(postgres)} PostgreSQL-only tests were skipped: DATABASE_URL does not "
            "point at PostgreSQL. Run `DATABASE_URL=postgres://postgres@127.0.0.1:5432/microblog "
            "make test` to run them.",
            yellow=True,
        )
    if browser:
        terminalreporter.write_line(
            f"NOTE: {len(browser)} browser tests were skipped: /usr/bin/chromium is missing "
            "(install it with `apt-get install -y chromium`), or axe-core is (`make test` "
            "installs it with npm: install Node.js and npm).",
            yellow=True,
        )


@pytest.fixture
def db(transactional_db: None) -> None:
    """Every test that asks for the database gets real commits (see above)."""


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str | None = None, password: str = PASSWORD, **extra: Any) -> User:
        name = username or f"user{next(_names)}"
        extra.setdefault("last_seen_at", timezone.now())
        return User.objects.create_user(username=name, password=password, **extra)

    return make


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user("bob")


@pytest.fixture
def make_post(db: None) -> Callable[..., Post]:
    def make(author: User, content: str = "hello", parent: Post | None = None) -> Post:
        return post_create(author=author, content=content, parent_id=parent.id if parent else None)

    return make


@pytest.fixture
def client_for() -> Iterator[Callable[[User], Client]]:
    """A test client signed in as the given user (CSRF not enforced; CSRF tests build their own)."""
    clients: list[Client] = []

    def make(user: User) -> Client:
        client = Client(enforce_csrf_checks=False)
        client.force_login(user)
        clients.append(client)
        return client

    yield make


def refreshed(user: User) -> User:
    user.refresh_from_db()
    return user


def _reset_task_backends() -> None:
    from asgiref.local import Local
    from django.tasks import task_backends

    task_backends.__dict__.pop("settings", None)
    task_backends._connections = Local(task_backends.thread_critical)


@pytest.fixture
def db_job_backend(settings: Any, db: None) -> Iterator[Callable[[], None]]:
    """The production job backend (django-tasks-db); yields `run_jobs`, which runs the real
    worker until the queue is empty."""
    from django.core.management import call_command

    settings.TASKS = {
        "default": {
            "BACKEND": "django_tasks_db.DatabaseBackend",
            "QUEUES": ["fanout", "default", "maintenance"],
        }
    }
    _reset_task_backends()

    def run_jobs() -> None:
        call_command("worker", batch=True, verbosity=0)

    yield run_jobs
    _reset_task_backends()


# --- the browser ----------------------------------------------------------------------------
# Debian's Chromium driven by Playwright. Every page a browser test opens is checked by axe-core
# (tests/a11y, installed by `make test` with npm): WCAG 2.1 A and AA plus best practices, and any
# violation fails the test.

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 10_000
AXE_JS = Path(__file__).parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
# Django's admin is Django's own markup, not the app's: it is not scanned.
AXE_SKIPPED_PATHS = ("/admin/",)
# Runs in every document of the top frame: scans it once it has loaded, reports the violations
# to the test through a binding, and holds back a click or a form submission made before the
# scan is done (replaying it after), so no page is left unchecked however quickly a test moves
# on. The test's own page.goto() waits for the scan too (AxeWatch.adopt).
AXE_RUNNER = """
(() => {
  if (window.top !== window || !location.protocol.startsWith("http")) return;
  const skipped = %(skipped)s.some((prefix) => location.pathname.startsWith(prefix));
  let done = false, finish;
  window.__axeScan = new Promise((resolve) => { finish = () => { done = true; resolve(); }; });
  const scan = () => {
    if (skipped) { finish(); return; }
    axe.run(document, {runOnly: {type: "tag", values: %(tags)s}, resultTypes: ["violations"]})
      .then((results) => window.__axeReport(location.href, results.violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + ": " + n.failureSummary),
      }))))
      .catch((error) => window.__axeReport(location.href, [{id: "axe-error", help: String(error)}]))
      .finally(finish);
  };
  if (document.readyState === "complete") scan(); else window.addEventListener("load", scan);
  const hold = (event, replay) => {
    if (done || !event.isTrusted) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    window.__axeScan.then(replay);
  };
  window.addEventListener("click", (event) => {
    const target = event.target.closest("a[href], button, input[type=submit]");
    if (target && event.button === 0) hold(event, () => target.click());
  }, true);
  window.addEventListener("submit", (event) => {
    const form = event.target, submitter = event.submitter;
    hold(event, () => form.requestSubmit(submitter || undefined));
  }, true);
})();
"""


@pytest.fixture(scope="session")
def browser() -> Iterator["Browser"]:
    reason = None
    if not os.path.exists(CHROMIUM) or sync_playwright is None:
        reason = f"Chromium not found at {CHROMIUM} (or the playwright package is missing)"
    elif not AXE_JS.exists():
        reason = f"axe-core not found at {AXE_JS} (`make test` installs it with npm)"
    if reason:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls made by the
    # test itself (creating fixtures through the services) are still plain synchronous calls.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            expect.set_options(timeout=TIMEOUT_MS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class AxeWatch:
    """Collects axe-core's findings on every page of one browser context."""

    def __init__(self, context: "BrowserContext") -> None:
        self.context = context
        self.scanned: list[str] = []
        self.violations: list[str] = []
        context.expose_binding("__axeReport", self._report)
        runner = AXE_RUNNER % {
            "skipped": json.dumps(list(AXE_SKIPPED_PATHS)),
            "tags": json.dumps(AXE_TAGS),
        }
        context.add_init_script(script=AXE_JS.read_text() + "\n" + runner)
        context.on("page", self.adopt)

    def adopt(self, page: "Page") -> None:
        """The test's own navigations wait for the scan of the page they leave."""
        for name in ("goto", "reload", "go_back", "go_forward"):
            navigate = getattr(page, name)

            def after_scan(*args: Any, _navigate: Any = navigate, **kwargs: Any) -> Any:
                self.finish(page)
                return _navigate(*args, **kwargs)

            setattr(page, name, after_scan)

    def _report(self, source: Any, url: str, violations: list[dict[str, Any]]) -> None:
        self.scanned.append(url)
        for v in violations:
            nodes = "\n    ".join(v.get("nodes", []))
            found = f"{url}: {v['id']} ({v.get('impact')}): {v['help']}"
            self.violations.append(f"{found}\n    {nodes}")

    def finish(self, page: "Page") -> None:
        """Waits for the scan of the page's current document."""
        if page.is_closed() or page.url in ("", "about:blank"):
            return
        try:
            page.evaluate("window.__axeScan")
        except Exception as error:  # a navigation replaced the document meanwhile
            if "context was destroyed" not in str(error):
                raise

    def finish_all(self) -> None:
        for page in self.context.pages:
            self.finish(page)


@pytest.fixture
def browser_context(browser: "Browser") -> Iterator[Callable[..., "BrowserContext"]]:
    """Opens browser contexts (each with its own cookies: one signed-in user each) whose pages
    are all checked by axe-core; the test fails on any violation, after it has run."""
    opened: list[tuple[BrowserContext, AxeWatch | None]] = []

    def make(base_url: str, **options: Any) -> "BrowserContext":
        context = browser.new_context(base_url=base_url, **options)
        context.set_default_timeout(TIMEOUT_MS)
        # axe-core runs in the page: a context without JavaScript cannot be scanned (its pages
        # are the same markup the other tests scan with it).
        if options.get("java_script_enabled", True):
            opened.append((context, AxeWatch(context)))
        else:
            opened.append((context, None))
        return context

    yield make
    found: list[str] = []
    for context, watch in opened:
        try:
            if watch is not None:
                watch.finish_all()
                found += watch.violations
        finally:
            context.close()
    assert not found, "axe-core found accessibility violations:\n" + "\n".join(found)


@pytest.fixture
def new_page(
    browser_context: Callable[..., "BrowserContext"], live_server: Any
) -> Callable[..., "Page"]:
    """A page of the app under Django's live server, in a fresh browser context."""

    def make(**options: Any) -> "Page":
        return browser_context(live_server.url, **options).new_page()

    return make


def flash(page: "Page") -> Any:
    return page.locator(".flash")


def log_in(page: "Page", username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(flash(page)).to_contain_text(f"Welcome back, {username}.")


def feed_posts(page: "Page") -> Any:
    return page.locator(".feed article.post")
