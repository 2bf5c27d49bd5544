"""Settings, read from environment variables with safe production defaults.

`DEBUG` is off unless asked for; with it off, `SECRET_KEY` must be set and the security
settings (HTTPS redirect, secure cookies, HSTS) are on. `make run` turns `DEBUG` on for the
laptop quick start.
"""

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("DATA_DIR", "data")).resolve()

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it to a long random string "
            '(python -c "import secrets; print(secrets.token_urlsafe(50))"), or set DEBUG=1 for '
            "local development."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "microblog.core",
    "microblog.accounts",
    "microblog.posts",
    "microblog.follows",
    "microblog.timelines",
    "microblog.moderation",
    "microblog.tags",
    "microblog.search",
    "microblog.notifications",
    "microblog.interactions",
    "microblog.ops",
    "microblog.seeding",
    "microblog.api",
    "oauth2_provider",
    "django_tasks_db",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    # First, so its duration and query count cover the whole stack (docs/operations.md).
    "microblog.ops.requestlog.RequestLogMiddleware",
    # Where this request's page reads go: a healthy replica or the primary (core.replicas).
    "microblog.core.replicas.ReplicaReadsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Before anything that can answer early, so every answer carries X-Frame-Options.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Refuses bodies larger than the route can use before anything reads them (with the headers
    # of the middlewares above).
    "microblog.core.middleware.RequestBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Django's AuthenticationMiddleware, reading the session and its user in one query.
    "microblog.accounts.sessions.SessionUserMiddleware",
    # /api/ and the OAuth endpoints: the bearer token, never the session cookie, says who is
    # asking (request.user), before the rate limiter counts per user; CORS for other origins.
    "microblog.api.auth.ApiTokenMiddleware",
    # After auth: per-user limits need request.user (microblog.ratelimit).
    "microblog.ratelimit.RateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Signed-in pages: Cache-Control: private, no-store.
    "microblog.core.middleware.PrivatePagesMiddleware",
    "microblog.core.middleware.ErrorPageMiddleware",
    "microblog.accounts.middleware.LastSeenMiddleware",
]

ROOT_URLCONF = "microblog.urls"

# Template functions of the apps (core.jinja imports no app): the post card and the profile
# header, rendered through the fragment cache (core.fragments).
JINJA_GLOBALS = {
    "post_card": "microblog.posts.cards.post_card",
    "post_cards": "microblog.posts.cards.post_cards",
    "post_cards_by_id": "microblog.posts.cards.post_cards_by_id",
    "reply_tree": "microblog.posts.replies.reply_tree",
    "profile_header_parts": "microblog.accounts.headers.profile_header_parts",
    "interaction_buttons": "microblog.interactions.buttons.interaction_buttons",
}
WSGI_APPLICATION = "microblog.wsgi.application"

TEMPLATES = [
    {
        # The app's pages: Jinja2 renders a feed page about twice as fast as Django templates.
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "environment": "microblog.core.jinja.environment",
            "autoescape": True,
            # `csp_nonce`, for the `csp_nonce_attr()` global (core.jinja).
            "context_processors": [
                "django.template.context_processors.csp",
                # csrf_input and csrf_token masked once per request, not once per use.
                "microblog.core.jinja.csrf_once",
            ],
        },
    },
    {
        # The admin keeps Django templates.
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # The admin's inline <script>/<style> tags carry the CSP nonce.
                "django.template.context_processors.csp",
            ]
        },
    },
]

DEFAULT_SQLITE_URL = f"sqlite:///{DATA_DIR / 'microblog.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or DEFAULT_SQLITE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web and the worker read while one writes; IMMEDIATE avoids lock upgrades
    # that fail with "database is locked" under concurrent writers.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
# Server-side parameter binding lets psycopg prepare a statement it has run DB_PREPARE_THRESHOLD
# times on a connection, so later runs skip parsing and, once PostgreSQL settles on a generic
# plan, planning (measured in docs/benchmarks.md, "For You against the pull query"). Turn it off
# (DB_SERVER_SIDE_BINDING=0) behind a pooler in transaction mode, which cannot keep prepared
# statements per client.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DB_SERVER_SIDE_BINDING", True
):
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"server_side_binding": True, "prepare_threshold": env_int("DB_PREPARE_THRESHOLD", 5)}
    )

# Read replicas (core.replicas): GET pages read from a healthy replica, everything else from the
# primary. REPLICA_DATABASE_URLS is a comma-separated list; REPLICA_DATABASE_URL (one standby)
# still works. Each becomes a database alias replica1, replica2, ... connected directly (not
# through a transaction-mode pooler), so it keeps server-side binding when the primary has it.
REPLICA_DATABASE_URL = os.environ.get("REPLICA_DATABASE_URL", "")
REPLICA_DATABASE_URLS = env_list("REPLICA_DATABASE_URLS", [])
REPLICA_MAX_LAG_SECONDS = float(os.environ.get("REPLICA_MAX_LAG_SECONDS", "10"))
# How often each process asks each replica for its lag; a replica that is down costs one failed
# probe per this interval, never an error page.
REPLICA_PROBE_SECONDS = float(os.environ.get("REPLICA_PROBE_SECONDS", "1"))
REPLICA_CONNECT_TIMEOUT = env_int("REPLICA_CONNECT_TIMEOUT", 2)
# After a session writes, its reads stay on the primary this long, on every instance.
READ_YOUR_WRITES_SECONDS = float(os.environ.get("READ_YOUR_WRITES_SECONDS", "5"))
_replica_urls = REPLICA_DATABASE_URLS or ([REPLICA_DATABASE_URL] if REPLICA_DATABASE_URL else [])
for _number, _url in enumerate(_replica_urls, start=1):
    _replica = dj_database_url.parse(
        _url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
    if _replica["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("REPLICA_DATABASE_URLS: a replica must be PostgreSQL")
    _replica["OPTIONS"] = {
        "connect_timeout": REPLICA_CONNECT_TIMEOUT,
        **(
            {"server_side_binding": True, "prepare_threshold": env_int("DB_PREPARE_THRESHOLD", 5)}
            if env_bool("REPLICA_SERVER_SIDE_BINDING", True)
            else {}
        ),
    }
    # Tests run against the primary's test database under this alias.
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES[f"replica{_number}"] = _replica
DATABASE_ROUTERS = ["microblog.core.replicas.ReplicaRouter"] if _replica_urls else []
# Django's PostgreSQL backend with a health check that skips `SELECT 1` when the connection's
# socket is quiet (core.postgresql: the same protection without a round trip per request).
for _database in DATABASES.values():
    if _database["ENGINE"] == "django.db.backends.postgresql":
        _database["ENGINE"] = "microblog.core.postgresql"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["microblog.accounts.backends.CaseInsensitiveModelBackend"]
LOGIN_URL = "/login"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "microblog.accounts.passwords.UsernameSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SESSION_ENGINE = "microblog.accounts.sessions"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 30
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "microblog.core.views.csrf_failure"
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Production security, on whenever DEBUG is off; each can be overridden (e.g. behind a proxy
# that terminates TLS and sets X-Forwarded-Proto).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^up$", r"^health$", r"^metrics$"]

# Content Security Policy (django.middleware.csp), on in every mode: scripts, styles, fetches and
# form posts only to our own origin; no inline script or style attribute runs. Our pages load only
# files; the admin's few inline tags carry the per-request nonce. An absolute STREAM_PUBLIC_URL's
# origin may be fetched from, and CSP_CONNECT_SRC adds more such origins; CSP_REPORT_URI receives
# violation reports; CSP_REPORT_ONLY=1 sends the policy as Content-Security-Policy-Report-Only.
CSP_REPORT_URI = os.environ.get("CSP_REPORT_URI", "")
_stream = urlsplit(os.environ.get("STREAM_PUBLIC_URL", ""))
_stream_origin = _stream._replace(path="", query="", fragment="").geturl().removeprefix("//")
CSP_CONNECT_SRC = [_stream_origin] if _stream.netloc else []
CSP_CONNECT_SRC += env_list("CSP_CONNECT_SRC", [])
SECURE_CSP: dict[str, list[str] | str] = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF, *CSP_CONNECT_SRC],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}
if CSP_REPORT_URI:
    SECURE_CSP["report-uri"] = CSP_REPORT_URI
SECURE_CSP_REPORT_ONLY: dict[str, list[str] | str] = {}
if env_bool("CSP_REPORT_ONLY", False):
    SECURE_CSP_REPORT_ONLY, SECURE_CSP = SECURE_CSP, {}

# Bodies larger than this are refused before a view sees them.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 64 * 1024)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# WhiteNoise serves the files straight from the apps' static folders, so no collectstatic step
# is needed; set STATIC_ROOT and run `microblog collectstatic` to serve a collected copy instead.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True
WHITENOISE_MAX_AGE = 3600

# Logs go to stdout, one JSON object per line (LOG_FORMAT=text for plain lines); every request
# writes one line on the "microblog.requests" logger (ops.requestlog).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "microblog.ops.requestlog.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "text" if os.environ.get("LOG_FORMAT", "json") == "text" else "json",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# Operations (docs/operations.md): slow-query log, /health thresholds, /metrics access.
SLOW_QUERY_MS = float(os.environ.get("SLOW_QUERY_MS", "200"))
HEALTH_QUEUE_MAX_AGE_SECONDS = env_int("HEALTH_QUEUE_MAX_AGE_SECONDS", 60)
HEALTH_FAILED_JOBS_WINDOW_SECONDS = env_int("HEALTH_FAILED_JOBS_WINDOW_SECONDS", 3600)
HEALTH_TIMEOUT_SECONDS = env_int("HEALTH_TIMEOUT_SECONDS", 2)
# The name /health gives for the process that answered (several instances behind a balancer).
INSTANCE_NAME = os.environ.get("INSTANCE_NAME") or socket.gethostname()
STREAM_URL = os.environ.get("STREAM_URL", "")
# Live updates (microblog.stream, docs/architecture.md "Real-time"). STREAM_PUBLIC_URL is where
# browsers open the event stream ("" turns live updates off in the pages).
STREAM_PUBLIC_URL = os.environ.get("STREAM_PUBLIC_URL", "/events/")
STREAM_MAX_CONNECTIONS_PER_USER = env_int("STREAM_MAX_CONNECTIONS_PER_USER", 5)
STREAM_HEARTBEAT_SECONDS = float(os.environ.get("STREAM_HEARTBEAT_SECONDS", "15"))
STREAM_POLL_SECONDS = float(os.environ.get("STREAM_POLL_SECONDS", "0.5"))
STREAM_CATCH_UP_LIMIT = env_int("STREAM_CATCH_UP_LIMIT", 200)
STREAM_DB_THREADS = env_int("STREAM_DB_THREADS", 4)
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", ["127.0.0.1/32", "::1/128"])
if os.environ.get("METRICS_ALLOWED_NETWORKS") == "none":
    METRICS_ALLOWED_NETWORKS = []

# Background jobs: django.tasks with the database backend; `microblog worker` runs them.
TASKS = {
    "default": {
        "BACKEND": os.environ.get("TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
        "QUEUES": ["fanout", "default", "maintenance"],
    }
}

# Moderation: a post with this many unreviewed reports is hidden until staff review it.
REPORTS_TO_HIDE = env_int("REPORTS_TO_HIDE", 5)

# Fan-out (timelines.fanout): see docs/architecture.md.
FANOUT_CELEBRITY_FOLLOWERS = env_int("FANOUT_CELEBRITY_FOLLOWERS", 10_000)
FANOUT_INACTIVE_DAYS = env_int("FANOUT_INACTIVE_DAYS", 30)
FEED_MAX_ENTRIES = env_int("FEED_MAX_ENTRIES", 800)
FANOUT_CHUNK_SIZE = env_int("FANOUT_CHUNK_SIZE", 5_000)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 5)
JOB_RETRY_BASE_SECONDS = float(os.environ.get("JOB_RETRY_BASE_SECONDS", "2"))
# A job RUNNING this long is presumed abandoned by a dead worker and queued again
# (jobs.queue.requeue_abandoned_jobs); keep it above the longest job.
JOB_RUNNING_TIMEOUT_SECONDS = env_int("JOB_RUNNING_TIMEOUT_SECONDS", 3600)
# Asked to stop, a worker lets its current job run this long, then interrupts it and puts it back
# in the queue (a fan-out stops at once, at its next chunk); `microblog serve` forces a worker
# still running a few seconds after that. Give a process manager more (docs/operations.md).
JOB_STOP_GRACE_SECONDS = float(os.environ.get("JOB_STOP_GRACE_SECONDS", "20"))
# How often every worker's scheduler thread looks for due maintenance (ops.scheduler).
SCHEDULER_POLL_SECONDS = float(os.environ.get("SCHEDULER_POLL_SECONDS", "15"))
# Periodic maintenance, run by `microblog worker`'s scheduler (seconds between runs).
MAINTENANCE_INTERVALS = {
    "feeds_trim": env_int("FEEDS_TRIM_INTERVAL", 600),
    "jobs_prune": env_int("JOBS_PRUNE_INTERVAL", 3600),
    "counters_check": env_int("COUNTERS_CHECK_INTERVAL", 86400),
    "ratelimit_prune": env_int("RATELIMIT_PRUNE_INTERVAL", 600),
    "fanouts_resume": env_int("FANOUTS_RESUME_INTERVAL", 60),
    # The trending hashtags of the last 24 hours (tags.services.trending_refresh).
    "tags_trending": env_int("TAGS_TRENDING_INTERVAL", 600),
    # Idempotency-Keys older than API_IDEMPOTENCY_HOURS (api.services.idempotency_keys_prune).
    "api_idempotency_prune": env_int("API_IDEMPOTENCY_PRUNE_INTERVAL", 600),
}
JOBS_KEEP_FINISHED_DAYS = env_int("JOBS_KEEP_FINISHED_DAYS", 7)

# Feeds and pages.
PAGE_SIZE = env_int("PAGE_SIZE", 20)
THREAD_MAX_DEPTH = 5
THREAD_CHILDREN_SHOWN = 3
LAST_SEEN_UPDATE_SECONDS = env_int("LAST_SEEN_UPDATE_SECONDS", 300)

# Compiled hot queries (core.sqlcache): a builder that breaks the contract raises instead of
# falling back to the ORM, and each key's first result is compared with the ORM's. On in tests.
SQLCACHE_STRICT = DEBUG

# Rate limits (microblog.ratelimit, docs/operations.md): fixed windows counted on the database, or
# on Redis when REDIS_URL is set. Each rule is "COUNT/PERIOD" (period in s, m, h or d) and can be
# overridden by its environment variable, e.g. RATELIMIT_POSTS=20/1m. RATELIMIT_ENABLED=0 turns
# every limit off (load tests, local tools).
RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
# Production defaults: strict, per client address.
RATELIMIT_PRODUCTION_RULES = {
    # every request, per client IP
    "requests": "300/5m",
    # posts and replies (POST /posts), per user
    "posts": "10/1m",
    # follows and unfollows, per user
    "follows": "50/1h",
    # feed pages (/, /following, /all, profiles), per user, per IP when signed out
    "feeds": "100/1m",
    # failed log-ins, per IP and per username; a throttled log-in is refused unchecked
    "login_failures": "5/5m",
    # accounts created (POST /signup), per IP
    "signups": "3/1h",
    # reports of posts, per user (moderation)
    "reports": "10/1h",
    # searches (/search, every page of results), per user, per IP when signed out
    "searches": "30/1m",
}
# Development (DEBUG=1, as `make run` sets): one person trying the site from one address, where
# every browser tab is 127.0.0.1, with several accounts; still limits, so they can be tried.
RATELIMIT_DEVELOPMENT_RULES = {
    "requests": "3000/5m",
    "posts": "60/1m",
    "follows": "500/1h",
    "feeds": "1000/1m",
    "login_failures": "20/5m",
    "signups": "50/1h",
    "reports": "100/1h",
    "searches": "300/1m",
}
RATELIMIT_RULES = {
    name: os.environ.get(f"RATELIMIT_{name.upper()}", default)
    for name, default in (
        RATELIMIT_DEVELOPMENT_RULES if DEBUG else RATELIMIT_PRODUCTION_RULES
    ).items()
}
# A browser that logged in to an account before keeps a signed cookie naming it for this long
# (seconds); it lets that browser past the account's per-username log-in lock (microblog.ratelimit).
LOGIN_DEVICE_COOKIE_AGE = env_int("LOGIN_DEVICE_COOKIE_AGE", 365 * 86400)
# Not counted: liveness, health and metrics probes.
RATELIMIT_EXEMPT_PATHS = env_list("RATELIMIT_EXEMPT_PATHS", ["/up", "/health", "/metrics"])
# Proxies (CIDRs) whose X-Forwarded-For is believed: the client is the right-most address in it
# that is not one of them. Empty: the peer's address is the client's.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
REDIS_URL = os.environ.get("REDIS_URL", "")
RATELIMIT_STORE = os.environ.get("RATELIMIT_STORE") or ("redis" if REDIS_URL else "database")
RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "microblog:rl:")
# Rendered fragments (post cards, profile headers) cached by what they show (core.fragments,
# docs/architecture.md "Fragment cache"): never stale, so no setting here affects correctness.
# Each process keeps up to FRAGMENT_CACHE_LOCAL_BYTES of HTML (0: none); with Redis, every
# instance also shares them (FRAGMENT_CACHE_SHARED=none turns that off). The expiry only
# bounds Redis's memory.
FRAGMENT_CACHE_LOCAL_BYTES = env_int("FRAGMENT_CACHE_LOCAL_BYTES", 16 * 1024 * 1024)
FRAGMENT_CACHE_SHARED = os.environ.get("FRAGMENT_CACHE_SHARED") or (
    "redis" if REDIS_URL else "none"
)
FRAGMENT_CACHE_SHARED_TTL_SECONDS = env_int("FRAGMENT_CACHE_SHARED_TTL_SECONDS", 86400)
FRAGMENT_CACHE_SHARED_RETRY_SECONDS = float(
    os.environ.get("FRAGMENT_CACHE_SHARED_RETRY_SECONDS", "10")
)
FRAGMENT_CACHE_KEY_PREFIX = os.environ.get("FRAGMENT_CACHE_KEY_PREFIX", "microblog:frag:")
# With Redis, the cache is shared by every instance too (a cache entry cannot depend on which
# instance served a request); without it each process keeps its own small in-memory cache.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "microblog"),
        }
    }

# Notifications (microblog.notifications): likes, reposts and follows of one group (a post, a
# day's followers) are folded into its notification by a job this long after the first of them,
# so a like spree writes the notification once per this many seconds, not once per like.
NOTIFICATIONS_GROUP_DELAY_SECONDS = float(os.environ.get("NOTIFICATIONS_GROUP_DELAY_SECONDS", "2"))
# The Mastodon-compatible client API (microblog.api, docs/api.md): OAuth 2 by
# django-oauth-toolkit, with our app model (code flow and client_credentials for one app).
OAUTH2_PROVIDER_APPLICATION_MODEL = "api.ClientApp"
# Paths answered as the client API: errors as {"error": ...} (core.views.error_response, also
# for refusals made before the API's middleware runs: a body too large, a bad Host) and CORS
# (api.auth). Only /api/ takes bearer tokens; the OAuth token endpoints read client credentials.
API_PATH_PREFIXES = ("/api/", "/oauth/token", "/oauth/revoke", "/.well-known/", "/nodeinfo/")
OAUTH2_PROVIDER = {
    "SCOPES_BACKEND_CLASS": "microblog.api.oauth.MastodonScopes",
    "OAUTH2_VALIDATOR_CLASS": "microblog.api.oauth.Validator",
    # Mastodon's tokens do not expire until revoked; apps (Mastodon.py, Tusky...) never refresh.
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("API_TOKEN_EXPIRE_SECONDS", 10 * 365 * 86400),
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 600,
    # PKCE (S256 only) is accepted and checked when a client sends it; existing apps that do not
    # send it (Mastodon.py, many mobile apps) use their client secret instead, as on Mastodon.
    "PKCE_REQUIRED": False,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    # RFC 9700 (OAuth 2.0 Security BCP), as `check --deploy` asks: tokens only in the
    # Authorization header, stored hashed, `iss` in the authorization response, replayed
    # refresh tokens revoke their family.
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # The password grant is off: api.models.ClientApp allows the code flow and client_credentials.
    "REQUEST_APPROVAL_PROMPT": "force",
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "client_credentials"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
}
# Two of the OAuth security BCP's checks are left off on purpose: PKCE stays optional (W010)
# because the Mastodon apps and Mastodon.py do not send it and authenticate with their client
# secret, as on Mastodon; `http` redirect URIs stay allowed (W008) for native apps' loopback
# callbacks (http://127.0.0.1, RFC 8252). PKCE is checked, S256 only, whenever a client sends it.
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008", "oauth2_provider.W010"]
# A retried POST /api/v1/statuses with the same Idempotency-Key within this many hours returns the
# first request's status instead of posting again (Mastodon keeps keys an hour).
API_IDEMPOTENCY_HOURS = env_int("API_IDEMPOTENCY_HOURS", 1)
# The name and version /api/v1/instance gives; clients read the Mastodon version at its start.
API_INSTANCE_TITLE = os.environ.get("API_INSTANCE_TITLE", "Microblog")
API_MASTODON_VERSION = "4.3.0"
# Where Mastodon clients open the streaming API (/api/v1/instance `urls.streaming_api`, v2
# `configuration.urls.streaming`): empty for the site's own origin as ws:// or wss://, where
# `microblog serve` and the load balancer send /api/v1/streaming to the streaming process.
API_STREAMING_URL = os.environ.get("API_STREAMING_URL", "")
