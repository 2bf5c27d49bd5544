"""A page's post ids as ONE bound parameter: `filter(post_id__in_ids=id_list(ids))`.

Why not `post_id__in=ids`: `IN (%s, %s, ...)` binds one parameter per id, so the SQL changes
with the number of ids (core.sqlcache would keep a compiled shape per length, and a 200-reply
thread went back to the ORM on every request), and a query that names a page's 20 ids in three
places binds over 50 parameters: psycopg caches its conversion of a statement only up to 50
parameters, so it converted that query's text again on every request (11% of a For You
page's CPU, docs/benchmarks.md "Issue 15"). One text parameter ("1,2,3") keeps the SQL the same
for every page and the parameters few.

The text is made here from ints only (`id_list`), and the lookup refuses anything else, so
what reaches the database is digits and commas. PostgreSQL reads it as an array
(`= ANY(string_to_array(...)::bigint[])`, an index scan per id as `IN` gives), SQLite as a JSON
array (`IN (SELECT value FROM json_each(...))`).
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import ForeignKey, IntegerField, Lookup


def id_list(ids: Iterable[int]) -> str:
    """The ids as the one parameter `in_ids` takes: ints only (bool and str refused), so the
    text is digits and commas. A plain str, which core.sqlcache binds like any other."""
    values = list(ids)
    for value in values:
        if type(value) is not int or value < 0:
            raise TypeError(f"id_list takes non-negative ints, not {value!r}")
    return ",".join(map(str, values))


class InIds(Lookup[Any]):
    """`<id column>__in_ids=<id_list(...)>`: the column is one of the listed ids."""

    lookup_name = "in_ids"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: Any) -> tuple[str, tuple[str, ...]]:
        # Only the type is checked here: core.sqlcache compiles with stand-in strs that are
        # never run. The text's shape is id_list's (the one way callers make it).
        if not isinstance(value, str):
            raise TypeError(f"in_ids takes id_list(...), not {value!r}")
        return "%s", (value,)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            sql = f"{lhs} = ANY(string_to_array({rhs}, ',')::bigint[])"
        else:
            sql = f"{lhs} IN (SELECT value FROM json_each('[' || {rhs} || ']'))"
        return sql, (*lhs_params, *rhs_params)


ForeignKey.register_lookup(InIds)
IntegerField.register_lookup(InIds)
