"""The search indexes, on tables other apps own (kept here so their migrations stay theirs):

- PostgreSQL: a GIN index on `to_tsvector('simple', content)` of posts (full-text search by
  words, through `search_post_document`, below) and a B-tree on `UPPER(username) COLLATE "C"` of
  accounts (username prefixes: the unique index on `UPPER(username)` cannot serve `LIKE 'AB%'`
  under the C.UTF-8 collation).
- SQLite: an FTS5 table over the posts' text (external content: it stores only the index) kept
  in sync by triggers on insert, delete and change of text, and filled with the existing posts.

The 'simple' configuration and FTS5's unicode61 tokenizer without diacritics removal both split
on what is not a letter or digit and fold case only, so both databases find the same posts.
"""

from django.db import migrations

POSTGRES_FORWARD = [
    # to_tsvector('simple', content) behind a function that declares its real cost: computing
    # it costs ~25 us a post here, ten times what the planner assumes for to_tsvector, which
    # made it scan posts backwards computing it row by row (440 ms for a word in 0.2% of the
    # posts at the medium preset) instead of reading the GIN index (docs/benchmarks.md). plpgsql,
    # so the planner cannot inline it and lose the cost; IMMUTABLE, as an index requires.
    "CREATE FUNCTION search_post_document(content text) RETURNS tsvector "
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 1000 AS "
    "$$ BEGIN RETURN to_tsvector('simple'::regconfig, content); END $$",
    "CREATE INDEX search_posts_fts_idx ON posts_post USING gin (search_post_document(content))",
    # Username prefixes in name order: under the "C" collation a B-tree serves both the
    # `LIKE 'AB%'` range and the ORDER BY (search.selectors.accounts).
    "CREATE INDEX search_users_username_prefix_idx ON accounts_user "
    '((UPPER(username::text) COLLATE "C"))',
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS search_posts_fts_idx",
    "DROP FUNCTION IF EXISTS search_post_document(text)",
    "DROP INDEX IF EXISTS search_users_username_prefix_idx",
]
SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE search_post_fts USING fts5("
    "content, content='posts_post', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER search_post_fts_insert AFTER INSERT ON posts_post BEGIN "
    "INSERT INTO search_post_fts (rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER search_post_fts_delete AFTER DELETE ON posts_post BEGIN "
    "INSERT INTO search_post_fts (search_post_fts, rowid, content) "
    "VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER search_post_fts_update AFTER UPDATE OF content ON posts_post BEGIN "
    "INSERT INTO search_post_fts (search_post_fts, rowid, content) "
    "VALUES ('delete', old.id, old.content); "
    "INSERT INTO search_post_fts (rowid, content) VALUES (new.id, new.content); END",
    "INSERT INTO search_post_fts (search_post_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS search_post_fts_insert",
    "DROP TRIGGER IF EXISTS search_post_fts_delete",
    "DROP TRIGGER IF EXISTS search_post_fts_update",
    "DROP TABLE IF EXISTS search_post_fts",
]


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    for sql in {"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}.get(vendor, []):
        schema_editor.execute(sql)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    for sql in {"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD}.get(vendor, []):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0003_deleted_placeholder"),
        ("accounts", "0002_user_feed_horizon_user_is_celebrity_and_more"),
    ]

    operations = [migrations.RunPython(forward, backward)]
