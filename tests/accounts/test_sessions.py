"""The session and the signed-in user in one query (accounts.sessions), with Django's rules."""

import importlib

from django.apps import apps
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from microblog.accounts.models import UserSession
from microblog.accounts.services import user_delete
from microblog.stream.app import session_user
from tests.conftest import PASSWORD


def signed_in_name(client: Client, path: str = "/settings") -> str | None:
    response = client.get(path)
    user = response.wsgi_request.user
    return user.username if user.is_authenticated else None


def test_one_query_reads_the_session_and_its_user(alice, client_for):
    """A signed-in page reads its session row joined with the user row: no second query."""
    client = client_for(alice)
    client.get("/")
    with CaptureQueriesContext(connection) as queries:
        assert signed_in_name(client, "/") == "alice"
    sessions = [q["sql"] for q in queries if 'FROM "accounts_usersession"' in q["sql"]]
    users = [q["sql"] for q in queries if 'FROM "accounts_user" WHERE' in q["sql"]]
    assert len(sessions) == 1
    assert 'JOIN "accounts_user"' in sessions[0]
    assert users == []


def test_the_session_row_names_its_user_until_log_out(alice, client_for):
    client = client_for(alice)
    key = client.cookies["sessionid"].value
    assert UserSession.objects.get(session_key=key).user_id == alice.id
    client.post("/logout")
    assert not UserSession.objects.filter(session_key=key).exists()
    stale = Client()
    stale.cookies["sessionid"] = key
    assert signed_in_name(stale) is None


def test_the_session_data_not_the_column_says_who_is_signed_in(alice, bob, client_for):
    """A row whose user column disagrees with its data (written by hand) signs in the user its
    data names, checked against that user's password hash, never the joined one."""
    client = client_for(alice)
    key = client.cookies["sessionid"].value
    UserSession.objects.filter(session_key=key).update(user_id=bob.id)
    assert signed_in_name(client) == "alice"
    UserSession.objects.filter(session_key=key).update(user_id=None)
    assert signed_in_name(client) == "alice"


def test_a_deactivated_account_is_signed_out_at_once(alice, client_for):
    client = client_for(alice)
    assert signed_in_name(client) == "alice"
    type(alice).objects.filter(id=alice.id).update(is_active=False)
    assert signed_in_name(client) is None


def test_a_password_changed_elsewhere_ends_the_session_for_pages_and_the_stream(alice, client_for):
    client = client_for(alice)
    key = client.cookies["sessionid"].value
    assert session_user(key) == alice
    alice.set_password("another-password-123")
    alice.save()
    assert signed_in_name(client) is None
    assert session_user(key) is None


def test_an_expired_session_signs_no_one_in(alice, client_for):
    from datetime import timedelta

    from django.utils import timezone

    client = client_for(alice)
    key = client.cookies["sessionid"].value
    UserSession.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(1))
    assert signed_in_name(client) is None
    assert session_user(key) is None


def test_deleting_an_account_deletes_its_sessions(alice, bob, client_for):
    client_for(alice)
    client_for(alice)
    client_for(bob)
    user_delete(user=alice, password=PASSWORD)
    assert not UserSession.objects.filter(user_id=alice.id).exists()
    assert UserSession.objects.filter(user_id=bob.id).count() == 1


def test_the_upgrade_keeps_signed_in_users_signed_in(alice):
    """The migration copies Django's live session rows, with their user ids."""
    old = DjangoSessionStore()
    old[SESSION_KEY] = str(alice.pk)
    old["_auth_user_backend"] = "microblog.accounts.backends.CaseInsensitiveModelBackend"
    old["_auth_user_hash"] = alice.get_session_auth_hash()
    old.create()
    migration = importlib.import_module("microblog.accounts.migrations.0003_user_session")
    migration.copy_live_sessions(apps, None)
    assert UserSession.objects.get(session_key=old.session_key).user_id == alice.id
    client = Client()
    client.cookies["sessionid"] = old.session_key
    assert signed_in_name(client) == "alice"


def test_a_changed_session_is_saved_in_one_statement_and_one_gone_meanwhile_is_not_made_again(
    alice, client_for
):
    """The UPDATE of an existing session runs alone (autocommit): no BEGIN and COMMIT around it
    (issue 15: two round trips on every post's flash message). A session deleted meanwhile (a
    log-out elsewhere) is not written again: Django's UpdateError, as before."""
    import pytest
    from django.conf import settings
    from django.contrib.sessions.backends.base import UpdateError

    store_class = importlib.import_module(settings.SESSION_ENGINE).SessionStore
    key = client_for(alice).cookies["sessionid"].value
    store = store_class(key)
    store["note"] = "kept"
    with CaptureQueriesContext(connection) as queries:
        store.save()
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE"]
    assert store_class(key)["note"] == "kept"
    assert UserSession.objects.get(session_key=key).user_id == alice.id
    UserSession.objects.filter(session_key=key).delete()
    store["note"] = "again"
    with pytest.raises(UpdateError):
        store.save()
    assert not UserSession.objects.filter(session_key=key).exists()
