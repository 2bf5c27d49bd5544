"""`microblog seed`: fills an empty database with synthetic users, follows, posts and feeds.

Every seeded account's password is microblog.seeder.seeder.SEED_PASSWORD ("seeded-password-1").
"""

from typing import Any, TextIO, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from microblog.accounts.models import User
from microblog.seeding import seeder


class Command(BaseCommand):
    help = (
        "Fill an empty database with synthetic data: a preset (small: 1k users; medium: 100k "
        "users / 5M follows; seed: 1,091,000 users / 50,368,293 follows) or explicit counts. "
        f'Every seeded user signs in with the password "{seeder.SEED_PASSWORD}".'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--preset", choices=sorted(seeder.PRESETS), default=None)
        parser.add_argument("--users", type=int, help="Number of users (overrides the preset).")
        parser.add_argument("--follows", type=int, help="Number of follows.")
        parser.add_argument("--posts", type=int, help="Number of top-level posts.")
        parser.add_argument(
            "--top-followers", type=int, help="Followers of the most-followed account (user 1)."
        )
        parser.add_argument(
            "--reply-share", type=float, help="Share of all posts that are replies (0.3)."
        )
        parser.add_argument(
            "--likes-per-post", type=float, help="Likes per post, on average (3.0; 0 for none)."
        )
        parser.add_argument(
            "--reposts-per-post",
            type=float,
            help="Reposts per top-level post, on average (0.3; 0 for none).",
        )
        parser.add_argument("--random-seed", type=int, default=1)
        parser.add_argument(
            "--reset", action="store_true", help="Empty the app's tables first (destroys data)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["preset"] and not any(options[k] for k in ("users", "follows", "posts")):
            raise CommandError("Give --preset or explicit --users/--follows/--posts.")
        cfg = seeder.config_for(
            options["preset"],
            users=options["users"],
            follows=options["follows"],
            posts=options["posts"],
            top_followers=options["top_followers"],
            reply_share=options["reply_share"],
            likes_per_post=options["likes_per_post"],
            reposts_per_post=options["reposts_per_post"],
            random_seed=options["random_seed"],
        )
        if options["users"] and not options["preset"]:
            # Explicit users without the other counts: the small preset's proportions.
            follows = options["follows"] or cfg.users * 25
            posts = options["posts"] if options["posts"] is not None else cfg.users * 3
            cfg = seeder.config_for(None, **{**cfg.__dict__, "follows": follows, "posts": posts})
        if User._meta.db_table not in connection.introspection.table_names():
            raise CommandError("The database has no tables yet: run `microblog migrate` first.")
        if not seeder.database_is_empty():
            if not options["reset"]:
                raise CommandError(
                    "The database is not empty; refusing to seed it. Pass --reset to empty the "
                    "app's tables (users, posts, follows, feeds, sessions, jobs) first."
                )
            self.stderr.write("Emptying the app's tables...")
            seeder.reset_database()
        db = connection.settings_dict
        self.stderr.write(
            f"Seeding {db['ENGINE'].rsplit('.', 1)[-1]} database {db['NAME']}: "
            f"{cfg.users:,} users, {cfg.follows:,} follows, {cfg.posts:,} top-level posts + "
            f"{cfg.replies:,} replies, top account {cfg.top():,} followers, "
            f"random seed {cfg.random_seed}"
        )
        try:
            summary = seeder.seed(cfg, stream=cast(TextIO, self.stderr._out))
        except seeder.SeedError as error:
            raise CommandError(str(error)) from error
        minutes, seconds = divmod(int(summary.seconds), 60)
        top = ", ".join(f"{name} ({n:,})" for name, n in summary.top_accounts)
        self.stdout.write(
            "\n".join(
                [
                    f"Seeded in {minutes}m{seconds:02d}s:",
                    f"  users          {summary.users:>12,}  ({summary.active_users:,} active, "
                    f"{summary.celebrities:,} celebrities above "
                    f"{settings.FANOUT_CELEBRITY_FOLLOWERS:,} followers)",
                    f"  follows        {summary.follows:>12,}",
                    f"  posts          {summary.posts:>12,}  ({summary.replies:,} replies)",
                    f"  hashtags       {summary.post_tags:>12,}  (on posts; {summary.tags:,} tags)",
                    f"  mentions       {summary.mentions:>12,}  "
                    f"({summary.notifications:,} reply and mention notifications)",
                    f"  likes          {summary.likes:>12,}",
                    f"  reposts        {summary.reposts:>12,}",
                    f"  feed entries   {summary.feed_entries:>12,}  ({summary.capped_feeds:,} "
                    f"feeds capped at {settings.FEED_MAX_ENTRIES})",
                    f"  repost entries {summary.repost_entries:>12,}",
                    f"  most followed  {top}",
                    f'  password       "{seeder.SEED_PASSWORD}" for every seeded user',
                ]
            )
        )
