"""The last-seen mark (accounts.middleware.LastSeenMiddleware): signed-in requests only."""

from datetime import timedelta

from django.utils import timezone
from django.utils.functional import empty

from microblog.accounts.models import User


def test_a_signed_out_request_does_not_build_a_user_for_it(db, client, django_assert_num_queries):
    """No session cookie: the middleware leaves request.user unevaluated (no work for a probe)."""
    with django_assert_num_queries(0):
        response = client.get("/up")
    assert response.status_code == 200
    assert response.wsgi_request.user._wrapped is empty


def test_a_signed_in_page_marks_a_reader_not_seen_for_a_while(alice, client_for):
    long_ago = timezone.now() - timedelta(hours=2)
    User.objects.filter(id=alice.id).update(last_seen_at=long_ago)
    client = client_for(alice)
    assert client.get("/up").status_code == 200
    assert User.objects.get(id=alice.id).last_seen_at > long_ago


def test_a_reader_seen_recently_is_not_written_again(alice, client_for, django_assert_num_queries):
    client = client_for(alice)
    client.get("/up")
    # 1 the session with its user; no UPDATE of last_seen_at.
    with django_assert_num_queries(1):
        assert client.get("/up").status_code == 200
