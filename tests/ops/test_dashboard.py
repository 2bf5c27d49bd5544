"""The staff job dashboard."""

from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from microblog.follows.models import Follow
from microblog.posts.models import Post
from microblog.timelines.models import FeedEntry


def failed_fan_out(post_id: int) -> DBTaskResult:
    """A fan-out job as the worker leaves it after giving up."""
    now = timezone.now()
    return DBTaskResult.objects.create(
        status=TaskResultStatus.FAILED,
        args_kwargs={"args": [post_id], "kwargs": {"attempt": 5}},
        priority=50,
        task_path="microblog.jobs.fan_out_post",
        queue_name="fanout",
        backend_name="default",
        run_after=now,
        started_at=now,
        finished_at=now,
        exception_class_path="django.db.utils.OperationalError",
        traceback=(
            "Traceback (most recent call last):\nOperationalError: server closed the connection"
        ),
    )


def test_dashboard_is_for_staff_only(client, alice, client_for):
    """Visitors are sent to log in; a signed-in user who is not staff gets our 403 page."""
    response = client.get("/staff/jobs")
    assert response.status_code == 302 and response["Location"] == "/login?next=/staff/jobs"
    response = client_for(alice).get("/staff/jobs")
    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()


def test_staff_see_states_queue_depth_and_failed_jobs_with_their_error(
    db_job_backend, make_user, alice, client_for
):
    staff = make_user("ops", is_staff=True)
    failed_fan_out(post_id=12345)
    page = client_for(staff).get("/staff/jobs").content.decode()
    assert "Background jobs" in page
    assert "fan_out_post" in page
    assert "OperationalError: server closed the connection" in page
    assert "1</strong> failed" in page


def test_retry_button_runs_the_job_again(db_job_backend, make_user, alice, bob, client_for):
    staff = make_user("ops", is_staff=True)
    Follow.objects.create(follower=bob, followed=alice)
    post = Post.objects.create(author=alice, content="missed by fan-out", created_at=timezone.now())
    job = failed_fan_out(post.id)
    assert not FeedEntry.objects.filter(user=bob, post=post).exists()

    response = client_for(staff).post(f"/staff/jobs/{job.id}/retry", follow=True)

    assert response.status_code == 200
    assert "fan_out_post was queued again" in response.content.decode()
    db_job_backend()  # the worker picks it up
    assert FeedEntry.objects.filter(user=bob, post=post).exists()


def test_retry_of_an_unknown_job_is_404(make_user, client_for):
    staff = make_user("ops", is_staff=True)
    url = "/staff/jobs/00000000-0000-0000-0000-000000000000/retry"
    assert client_for(staff).post(url).status_code == 404
