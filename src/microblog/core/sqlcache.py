"""Hot ORM queries compiled to SQL once per process instead of on every call.

Building a QuerySet and compiling it to SQL (Django's SQLCompiler: joins, select lists,
ordering, expression hashing) costs more Python time than PostgreSQL spends running the small
queries of a page (docs/benchmarks.md, "Load tests"). `fetch(key, build, *args)` compiles the
QuerySet that `build(*args)` returns the first time a key is seen (per database alias), with
stand-in values for the arguments so it can find where each argument lands in the SQL's
parameters; later calls run the stored SQL with the new values and turn the rows into model
instances with Django's own iterable (select_related included), so the objects are the ones the
ORM would have built. Queries still go through `connection.cursor()`, so query counting, the
slow-query log and prepared statements work as before.

The QuerySet's shape must not depend on the argument values (a key per shape: e.g. a page with
and without a cursor are two keys), and each argument must reach the SQL as a bound parameter
(an int, a str or an aware datetime compared to a column; slicing limits are written into the
SQL, so they must be constants of the shape). When an argument cannot be found among the
parameters exactly as given, the key is marked uncacheable and every call simply runs the
QuerySet (correct, just not faster).
"""

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.core.signals import setting_changed
from django.db import connections, router
from django.db.models import Model, QuerySet
from django.dispatch import receiver

_UNCACHEABLE = object()
_lock = threading.Lock()
# (key, alias) -> _Compiled or _UNCACHEABLE
_compiled: dict[tuple[str, str], Any] = {}


def _stand_in(value: Any, n: int) -> Any:
    """A value of the argument's type that no query would hold by chance. Integers stay in the
    32-bit range: Django turns out-of-range integer lookups into empty or full results."""
    if isinstance(value, bool):
        raise TypeError("booleans cannot be told apart from 0 and 1")
    if isinstance(value, int):
        return 1_999_000_017 + n * 7_919
    if isinstance(value, str):
        # Mixed case, LIKE wildcards, a backslash and a non-ASCII letter: a backend that
        # changes any of them on the way to the SQL (e.g. escaping for LIKE) changes this too,
        # so the argument is not found and the key is not cached.
        return f"SqlCache_Stand%In\\é {n}"
    if isinstance(value, datetime) and value.tzinfo is not None:
        return datetime(1971, 2, 3, 4, 5, 6, tzinfo=UTC) + timedelta(microseconds=n + 1)
    raise TypeError(f"no stand-in for {type(value).__name__}")


def _same(param: Any, stand_in: Any) -> bool:
    """The parameter is the stand-in, or the stand-in in a backend's subclass of its type (on
    PostgreSQL, Django passes bigint values as psycopg's `Int8(int)`)."""
    return isinstance(param, type(stand_in)) and not isinstance(param, bool) and param == stand_in


class _Compiled:
    __slots__ = ("compiler", "params", "positions", "queryset", "sql")

    def __init__(
        self,
        queryset: QuerySet[Any],
        compiler: Any,
        sql: str,
        params: list[Any],
        positions: list[list[tuple[int, type]]],
    ) -> None:
        self.queryset = queryset
        self.compiler = compiler
        self.sql = sql
        self.params = params
        self.positions = positions


def _compile[M: Model, T](
    build: Callable[..., QuerySet[M, T]], args: tuple[Any, ...], alias: str, using: str | None
) -> Any:
    try:
        stand_ins = [_stand_in(arg, n) for n, arg in enumerate(args)]
    except TypeError:
        return _UNCACHEABLE
    queryset = build(*stand_ins)
    if using:
        queryset = queryset.using(using)
    if getattr(queryset, "_prefetch_related_lookups", ()) or queryset._result_cache is not None:
        return _UNCACHEABLE
    if queryset.db != alias:
        return _UNCACHEABLE
    compiler = queryset.query.get_compiler(using=alias)
    try:
        sql, params = compiler.as_sql()
    except (EmptyResultSet, FullResultSet):
        return _UNCACHEABLE
    params = list(params)
    positions: list[list[tuple[int, type]]] = []
    for stand_in in stand_ins:
        found = [(i, type(p)) for i, p in enumerate(params) if _same(p, stand_in)]
        if not found or str(stand_in) in sql:
            return _UNCACHEABLE
        positions.append(found)
    if sum(len(p) for p in positions) != len({i for p in positions for i, _ in p}):
        return _UNCACHEABLE
    return _Compiled(queryset, compiler, sql, params, positions)


def fetch[M: Model, T](
    key: str, build: Callable[..., QuerySet[M, T]], *args: Any, using: str | None = None
) -> list[T]:
    """`list(build(*args))`, compiled once per key and database alias (see the module's doc).
    Model instances, values() dicts and values_list() tuples alike. The alias is `using`, else
    the one the database routers choose for the query's model (a replica on pages, see
    core.replicas)."""
    probe = build.__qualname__  # a key is one shape; guard against reusing it for another
    model = _models.get(key)
    if model is None:
        model = _models.setdefault(key, build(*args).model)
    alias = using or router.db_for_read(model)
    compiled = _compiled.get((key, alias))
    if compiled is None:
        compiled = _compile(build, args, alias, using)
        with _lock:
            compiled = _compiled.setdefault((key, alias), compiled)
            _builders.setdefault(key, probe)
    if compiled is _UNCACHEABLE or _builders.get(key) != probe:
        queryset = build(*args)
        return list(queryset.using(using) if using else queryset)
    params = list(compiled.params)
    for value, where in zip(args, compiled.positions, strict=True):
        for i, kind in where:
            params[i] = value if type(value) is kind else kind(value)
    sql = compiled.sql
    connection = connections[alias]

    def replay(using: Any = None, connection_: Any = None, elide_empty: bool = True) -> Any:
        compiler = copy.copy(compiled.compiler)
        compiler.connection = connection
        compiler.as_sql = lambda *a, **k: (sql, params)
        return compiler

    queryset = compiled.queryset._chain()
    queryset.query.get_compiler = replay
    return list(queryset)


_builders: dict[str, str] = {}
_models: dict[str, type[Model]] = {}


@receiver(setting_changed)
def clear(**kwargs: Any) -> None:
    """Forget every compiled query; run when a test changes a setting (the SQL may differ)."""
    with _lock:
        _compiled.clear()
        _builders.clear()
        _models.clear()
