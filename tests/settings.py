"""Test settings: the real settings, with a fixed key and a fast password hasher.

Argon2 stays the production hasher (a test checks it); hashing every fixture user with it would
make the suite minutes slower without testing anything more.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")

from microblog.settings import *  # noqa: F403

PRODUCTION_PASSWORD_HASHERS = PASSWORD_HASHERS  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Jobs run in-process right after the commit that enqueued them, so request tests see a fan-out
# as a user with a running worker would. Tests of the job system itself switch to the real
# database backend and run the real worker (tests/jobs/test_jobs.py).
TASKS = {
    "default": {
        "BACKEND": os.environ.get(
            "TEST_TASKS_BACKEND", "django.tasks.backends.immediate.ImmediateBackend"
        ),
        "QUEUES": ["fanout", "default", "maintenance"],
    }
}

# The rate limiter is off for the suite, whose tests send many requests from one address and user
# (hostile-input tests alone send hundreds); tests/ratelimit/test_ratelimit.py turns it on with the
# `settings` fixture. (RATELIMIT_ENABLED=1 turns it on everywhere: tests that send more than a
# limit's worth of requests then see 429s.)
RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", False)  # noqa: F405

# Every compiled hot query (core.sqlcache) is checked against the ORM once per process, and a
# builder that breaks the contract fails the test that reaches it.
SQLCACHE_STRICT = True

# Grouped notifications are folded in at once (the job's delay is tested on its own in
# tests/notifications), so the worker's batch runs find no job waiting for its time.
NOTIFICATIONS_GROUP_DELAY_SECONDS = 0.0
