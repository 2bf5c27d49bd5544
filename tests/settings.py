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
