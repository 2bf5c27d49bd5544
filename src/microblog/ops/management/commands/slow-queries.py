"""`microblog slow-queries`: the heaviest statements by total time, from pg_stat_statements."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

ENABLE_HELP = """pg_stat_statements is not loaded on this PostgreSQL server.
To enable it (needs a server restart, by whoever runs the server):
  1. in postgresql.conf: shared_preload_libraries = 'pg_stat_statements'
     (or: ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';)
     and optionally pg_stat_statements.track = all
  2. restart PostgreSQL (e.g. systemctl restart postgresql)
  3. run `microblog slow-queries` again: it creates the extension in this database
     (CREATE EXTENSION pg_stat_statements; needs a role allowed to create it).
On a managed PostgreSQL, turn it on in the provider's parameter settings."""

STATEMENTS_SQL = """
SELECT s.calls,
       s.total_exec_time,
       s.mean_exec_time,
       s.rows,
       s.query
FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database()
ORDER BY s.total_exec_time DESC
LIMIT %s
"""


class Command(BaseCommand):
    help = (
        "Print the statements that took the most database time (PostgreSQL with the "
        "pg_stat_statements extension)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=20, help="Statements shown (20).")
        parser.add_argument(
            "--width", type=int, default=160, help="Characters of each statement shown (160)."
        )
        parser.add_argument(
            "--reset", action="store_true", help="Reset the statistics after printing them."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                "slow-queries is PostgreSQL-only: it reads pg_stat_statements. On SQLite, set "
                "SLOW_QUERY_MS to log slow queries per request instead."
            )
        if not self.extension_loaded():
            raise CommandError(ENABLE_HELP)
        self.ensure_extension()
        with connection.cursor() as cursor:
            cursor.execute(STATEMENTS_SQL, [options["limit"]])
            rows = cursor.fetchall()
        if not rows:
            self.stdout.write("pg_stat_statements has no statements for this database yet.")
        else:
            self.print_rows(rows, options["width"])
        if options["reset"]:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_statements_reset()")
            self.stdout.write("Statistics reset.")

    def extension_loaded(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SHOW shared_preload_libraries")
            row = cursor.fetchone()
        libraries = {item.strip() for item in (row[0] if row else "").split(",")}
        return "pg_stat_statements" in libraries

    def ensure_extension(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
            if cursor.fetchone() is not None:
                return
            try:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            except Exception as error:
                raise CommandError(
                    "pg_stat_statements is loaded but the extension is not created in this "
                    f"database, and creating it failed ({error}). Run as a superuser: "
                    "CREATE EXTENSION pg_stat_statements;"
                ) from error

    def print_rows(self, rows: list[tuple[Any, ...]], width: int) -> None:
        self.stdout.write(f"{'total ms':>12} {'calls':>10} {'mean ms':>10} {'rows':>10}  statement")
        for calls, total, mean, nrows, query in rows:
            text = " ".join(str(query).split())
            if len(text) > width:
                text = text[: width - 3] + "..."
            self.stdout.write(f"{total:>12.1f} {calls:>10} {mean:>10.2f} {nrows:>10}  {text}")
