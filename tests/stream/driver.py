"""Writes for the streaming tests, run in a process of its own against DATABASE_URL: one JSON
command per line on stdin, one JSON answer per line on stdout. It lets a test drive a database
its own process cannot reach (the SQLite test database lives in the test process's memory)."""

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    # Answers go to stdout; everything else (the app's logs) to stderr.
    answers, sys.stdout = sys.stdout, sys.stderr
    import django

    django.setup()
    from django.test import Client

    from microblog.accounts.models import User
    from microblog.accounts.services import user_change_password
    from microblog.follows.services import follow_create, follow_delete
    from microblog.moderation.services import block_create, mute_create, mute_delete, review
    from microblog.posts.models import Post
    from microblog.posts.services import post_create, post_delete
    from tests.conftest import PASSWORD

    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "user":
            user = User.objects.create_user(
                username=command["name"], password=PASSWORD, is_staff=command.get("staff", False)
            )
            client = Client()
            client.force_login(user)
            answer = {"id": user.id, "session": client.cookies["sessionid"].value}
        elif op == "logout":  # through the log-out view, with the session's cookie
            client = Client(HTTP_HOST="127.0.0.1")
            client.cookies["sessionid"] = command["session"]
            answer = {"status": client.post("/logout").status_code}
        elif op == "password":
            user_change_password(
                user=User.objects.get(id=command["user"]),
                current_password=PASSWORD,
                new_password=command["new"],
            )
            answer = {}
        elif op == "hide":
            review(
                staff=User.objects.get(id=command["staff"]), post_id=command["post"], action="hide"
            )
            answer = {}
        elif op == "post":
            post = post_create(
                author=User.objects.get(id=command["author"]),
                content=command.get("content", "hello"),
                parent_id=command.get("parent"),
            )
            answer = {"id": post.id}
        elif op == "delete":
            post = Post.objects.get(id=command["post"])
            post_delete(post=post, actor=post.author)
            answer = {}
        elif op in ("mute", "unmute", "block"):
            reader = User.objects.get(id=command["reader"])
            other = User.objects.get(id=command["other"])
            if op == "mute":
                mute_create(muter=reader, muted=other)
            elif op == "unmute":
                mute_delete(muter=reader, muted=other)
            else:
                block_create(blocker=reader, blocked=other)
            answer = {}
        elif op == "token":  # an OAuth access token, as the token endpoint stores it
            answer = {"token": _token(command.get("user"), command["scope"])}
        elif op == "revoke":  # Settings, "Authorized apps": every token of the app ends
            from microblog.api.services import authorization_revoke

            ended = authorization_revoke(
                user=User.objects.get(id=command["user"]), app_id=command["app"]
            )
            answer = {"ended": ended}
        elif op in ("follow", "unfollow"):
            follower = User.objects.get(id=command["follower"])
            followed = User.objects.get(id=command["followed"])
            if op == "follow":
                follow_create(follower=follower, followed=followed)
            else:
                follow_delete(follower=follower, followed=followed)
            answer = {}
        else:
            answer = {"error": f"unknown op {op}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def _token(user_id: int | None, scope: str) -> dict[str, object]:
    import secrets
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    from microblog.accounts.models import User
    from microblog.api.services import app_register

    app, _secret = app_register(
        name="Streaming test", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scopes=scope
    )
    raw = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=User.objects.get(id=user_id) if user_id is not None else None,
        application=app,
        token=raw,
        scope=scope,
        expires=timezone.now() + timedelta(days=1),
    )
    return {"raw": raw, "app": app.id}


if __name__ == "__main__":
    main()
