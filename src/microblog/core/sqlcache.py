"""Hot ORM queries compiled to SQL once per process, under a contract this module enforces.

Why keep compiling ORM queries instead of writing the hot ones in SQL: building and compiling a
QuerySet (Django's SQLCompiler: joins, select lists, expression hashing) costs more Python time
than PostgreSQL spends running the small queries of a page (docs/benchmarks.md), and the queries
worth caching are the ones that carry the visibility rules (`moderation.selectors.on_pages_for`,
the feed's filters). Written again as SQL beside a hand-made hydrator, each rule would live twice
and could silently disagree; compiled here, the ORM expression stays the only copy, and the rows
become model instances through Django's own iterables (select_related and annotations included).

`fetch(build, *args)` returns `list(build(*args))`. The first call for a builder, a shape (the
types of the arguments) and a database alias compiles `build`'s QuerySet twice with two sets of
stand-in arguments and learns where each argument lands among the SQL's parameters; later calls
run that SQL with the real values. The contract, checked when a key is compiled:

- `build` is a plain module-level function: no closure cells, no default values, not a lambda or
  a method (a captured value would be replayed from the first call). The key is the builder
  itself (named by its qualified name) and the argument types, so callers cannot mix shapes.
- Arguments are ints, strs and aware datetimes, each reaching the SQL as a bound parameter,
  unchanged or through one of the backend's own adaptations (SQLite's escaping of an `iexact`
  pattern, its datetimes as text), which are applied again to the real values. A parameter
  derived from an argument (`upper - 1`), an argument written into the SQL text (a slice) or a
  shape that changes with the values is detected by the two compilations disagreeing.
- Each int argument has the range in which the ORM compiles it like the stand-ins (the field's
  range, from the backend); a value outside it runs the ORM, which gives the empty (or, for
  `<` and `>`, the full) result Django gives for an out-of-range lookup, instead of raising.
- A builder may read settings (a changed setting forgets every compiled query), nothing else.

A builder that breaks the contract raises `ContractError` when `SQLCACHE_STRICT` is on (tests and
`DEBUG`); otherwise the key is logged once and runs through the ORM (correct, only slower).
With `SQLCACHE_STRICT` on, the first compiled result of each key is also compared with the ORM's
(model fields, related objects and annotations), outside query counting, so every test that
reaches a hot query checks the replay, including against a Django upgrade: the replay hands
Django's iterable a copy of the compiled SQLCompiler whose `as_sql` returns the stored SQL, the
one use of Django's private API (Django is pinned in pyproject.toml).
"""

import copy
import inspect
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.core.signals import setting_changed
from django.db import connections, router
from django.db.models import Model, QuerySet
from django.dispatch import receiver

logger = logging.getLogger(__name__)

SUPPORTED = (int, str, datetime)


class ContractError(TypeError):
    """A builder or an argument that sqlcache cannot replay exactly (see the module's doc)."""


class _Position:
    """Where an argument lands among the parameters, and how the backend adapted it there."""

    __slots__ = ("adapt", "index", "kind")

    def __init__(self, index: int, kind: type, adapt: Callable[[Any], Any] | None) -> None:
        self.index = index
        self.kind = kind
        self.adapt = adapt


class _Compiled:
    __slots__ = ("__weakref__", "compiler", "params", "positions", "queryset", "ranges", "sql")

    def __init__(
        self,
        queryset: QuerySet[Any],
        compiler: Any,
        sql: str,
        params: list[Any],
        positions: list[list[_Position]],
        ranges: list[tuple[int, int, int]],
    ) -> None:
        self.queryset = queryset
        self.compiler = compiler
        self.sql = sql
        self.params = params
        self.positions = positions
        self.ranges = ranges  # (argument index, lowest, highest) for int arguments


# The result columns' converters of each compiled query, stored on each connection (a thread's
# own; their backend converters may be the connection's methods): what Django's iterables ask
# the compiler for on every query, a walk over every selected column (a third of the CPU of
# posts.selectors.post_for_display's 62 columns, docs/benchmarks.md). On the connection, not in
# a dictionary weakly keyed by it: the converters (SQLite's DatabaseOperations methods) refer to
# the connection, so such a dictionary's values kept every thread's connection alive for good.
_CONVERTERS = "_sqlcache_converters"


class _Fallback:
    """A key that runs through the ORM (SQLCACHE_STRICT off), with the reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_lock = threading.Lock()
# (build, alias, argument types) -> _Compiled or _Fallback
_compiled: dict[tuple[Callable[..., Any], str, tuple[type, ...]], _Compiled | _Fallback] = {}
_models: dict[Callable[..., Any], type[Model]] = {}
_warned: set[str] = set()


def name_of(build: Callable[..., Any]) -> str:
    return f"{getattr(build, '__module__', '?')}.{getattr(build, '__qualname__', repr(build))}"


def _stand_ins(types: tuple[type, ...], variant: int) -> list[Any]:
    """Values of the arguments' types that no query holds by chance; two variants, so that a
    parameter derived from an argument shows as one that differs between them. Integers stay in
    the 32-bit range, which every integer field accepts."""
    values: list[Any] = []
    for n, kind in enumerate(types):
        if kind is int:
            values.append((1_999_000_017, 1_888_000_013)[variant] + n * (7_919, 6_007)[variant])
        elif kind is str:
            # Mixed case, LIKE wildcards, a backslash and a non-ASCII letter: any change the
            # backend makes on the way to the SQL changes this too.
            values.append(f"SqlCache_Stand%In\\é {variant} {n}")
        else:
            base = datetime(1971, 2, 3, 4, 5, 6, tzinfo=UTC) + timedelta(days=4_001 * variant)
            values.append(base + timedelta(microseconds=n + 1))
    return values


def _adaptations(connection: Any, kind: type) -> list[Callable[[Any], Any]]:
    """The backend's own changes to a value on its way to the parameters."""
    ops = connection.ops
    if kind is str:
        return [ops.prep_for_iexact_query, ops.prep_for_like_query]
    if kind is datetime:
        return [ops.adapt_datetimefield_value]
    return []


def _check_builder(build: Callable[..., Any]) -> None:
    if not inspect.isfunction(build):
        raise ContractError(f"{build!r} is not a plain function")
    name = name_of(build)
    module = sys.modules.get(build.__module__)
    if getattr(module, build.__qualname__, None) is not build:
        raise ContractError(f"{name} is not a module-level function (a closure or a lambda?)")
    if build.__closure__ or build.__code__.co_freevars:
        raise ContractError(f"{name} captures variables")
    if build.__defaults__ or build.__kwdefaults__:
        raise ContractError(f"{name} has default values: pass every value as an argument")


def _compile_once(
    build: Callable[..., QuerySet[Any, Any]], values: list[Any], alias: str, using: str | None
) -> tuple[QuerySet[Any, Any], Any, str, list[Any]]:
    queryset = build(*values)
    if not isinstance(queryset, QuerySet):
        raise ContractError(f"{name_of(build)} must return a QuerySet")
    if using:
        queryset = queryset.using(using)
    if getattr(queryset, "_prefetch_related_lookups", ()) or queryset._result_cache is not None:
        raise ContractError(f"{name_of(build)}: prefetch_related or an evaluated QuerySet")
    if queryset.db != alias:
        raise ContractError(f"{name_of(build)} chooses its database: pass using= to fetch")
    compiler = queryset.query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    return queryset, compiler, sql, list(params)


def _find(param: Any, stand_in: Any, adapts: list[Callable[[Any], Any]]) -> _Position | None:
    if isinstance(param, type(stand_in)) and not isinstance(param, bool) and param == stand_in:
        return _Position(0, type(param), None)
    for adapt in adapts:
        adapted = adapt(stand_in)
        if type(param) is type(adapted) and param == adapted:
            return _Position(0, type(param), adapt)
    return None


def _compile(
    build: Callable[..., QuerySet[Any, Any]],
    types: tuple[type, ...],
    alias: str,
    using: str | None,
) -> _Compiled:
    name = name_of(build)
    for kind in types:
        if kind not in SUPPORTED:
            raise ContractError(f"{name}: arguments of type {kind.__name__} are not supported")
    connection = connections[alias]
    first, second = _stand_ins(types, 0), _stand_ins(types, 1)
    try:
        queryset, compiler, sql, params = _compile_once(build, first, alias, using)
        _, _, sql_2, params_2 = _compile_once(build, second, alias, using)
    except (EmptyResultSet, FullResultSet) as error:
        raise ContractError(f"{name}: the query is {type(error).__name__} by shape") from error
    if sql != sql_2 or len(params) != len(params_2):
        raise ContractError(f"{name}: the SQL changes with the values (one written into the SQL?)")
    positions: list[list[_Position]] = []
    taken: set[int] = set()
    for n, kind in enumerate(types):
        adapts = _adaptations(connection, kind)
        found = []
        for i, (param, param_2) in enumerate(zip(params, params_2, strict=True)):
            one, two = _find(param, first[n], adapts), _find(param_2, second[n], adapts)
            if one is not None and two is not None and one.adapt == two.adapt:
                one.index = i
                found.append(one)
        if not found:
            raise ContractError(
                f"{name}: argument {n} is not among the parameters as passed (derived from it, "
                "like `upper - 1`, or inside an expression?)"
            )
        if taken & {p.index for p in found}:
            raise ContractError(f"{name}: two arguments share a parameter")
        taken.update(p.index for p in found)
        positions.append(found)
    for i, (param, param_2) in enumerate(zip(params, params_2, strict=True)):
        if i not in taken and param != param_2:
            raise ContractError(f"{name}: parameter {i} is derived from an argument")
    ranges = [
        (n, *_int_range(build, first, n, positions[n], sql, alias, using))
        for n, kind in enumerate(types)
        if kind is int
    ]
    return _Compiled(queryset, compiler, sql, params, positions, ranges)


def _int_range(
    build: Callable[..., QuerySet[Any, Any]],
    stand_ins: list[Any],
    n: int,
    where: list[_Position],
    sql: str,
    alias: str,
    using: str | None,
) -> tuple[int, int]:
    """The widest of the backend's integer field ranges whose ends the ORM compiles like the
    stand-in (outside a field's range, Django's lookups compile to an empty or full result)."""
    ops = connections[alias].ops
    candidates = {r for r in ops.integer_field_ranges.values() if None not in r}
    for low, high in sorted(candidates, key=lambda r: r[0] - r[1]):
        for value in (low, high):
            values = [*stand_ins[:n], value, *stand_ins[n + 1 :]]
            try:
                _, _, end_sql, end_params = _compile_once(build, values, alias, using)
            except (EmptyResultSet, FullResultSet):
                break
            if end_sql != sql or any(end_params[p.index] != value for p in where):
                break
        else:
            return low, high
    raise ContractError(f"{name_of(build)}: argument {n} fits no integer field's range")


def _replay(compiled: _Compiled, args: tuple[Any, ...], alias: str) -> list[Any]:
    params = list(compiled.params)
    for value, where in zip(args, compiled.positions, strict=True):
        for position in where:
            bound = value if position.adapt is None else position.adapt(value)
            params[position.index] = bound if type(bound) is position.kind else position.kind(bound)
    sql = compiled.sql
    # Django's private API, in this one place: the iterable gets a copy of the compiled
    # SQLCompiler (its select list, related-object layout and converters) that returns the stored
    # SQL with these values. The strict mode's comparison with the ORM checks it in every test run.
    compiler = copy.copy(compiled.compiler)
    connection = compiler.connection = connections[alias]
    compiler.as_sql = lambda *a, **k: (sql, params)
    per_connection: (
        weakref.WeakKeyDictionary[_Compiled, tuple[list[Any], dict[int, Any]]] | None
    ) = connection.__dict__.get(_CONVERTERS)
    if per_connection is None:
        per_connection = weakref.WeakKeyDictionary()
        setattr(connection, _CONVERTERS, per_connection)
    known = per_connection.get(compiled)
    if known is None:
        columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
        known = per_connection[compiled] = (columns, compiler.get_converters(columns))
    compiler.get_converters = _converters_from(compiler.get_converters, *known)
    # Shallow copies of the stored, never evaluated QuerySet and of its Query, which the
    # iterables only read (QuerySet.all() clones the whole Query: a tenth of a replay's CPU).
    # Their attributes copied as such: copy.copy() would pickle, and a QuerySet's pickling runs it.
    stored = compiled.queryset
    query = _shallow(stored.query)
    query.get_compiler = lambda *a, **k: compiler  # type: ignore[method-assign]
    queryset = _shallow(stored)
    queryset._query = query  # type: ignore[attr-defined]
    return list(queryset)


def _shallow[O](original: O) -> O:
    made = object.__new__(type(original))
    made.__dict__.update(original.__dict__)
    return made


def _converters_from(
    get_converters: Callable[[list[Any]], dict[int, Any]],
    columns: list[Any],
    converters: dict[int, Any],
) -> Callable[[list[Any]], dict[int, Any]]:
    """The compiler's get_converters, answered from the stored result for the query's own
    result columns (the same expression objects) and computed for anything else."""

    def get(expressions: list[Any]) -> dict[int, Any]:
        if len(expressions) == len(columns) and all(
            asked is column for asked, column in zip(expressions, columns, strict=True)
        ):
            return converters
        return get_converters(expressions)

    return get


def _orm[T](
    build: Callable[..., QuerySet[Any, T]], args: tuple[Any, ...], using: str | None
) -> list[T]:
    queryset = build(*args)
    return list(queryset.using(using) if using else queryset)


def fetch[M: Model, T](
    build: Callable[..., QuerySet[M, T]], *args: Any, using: str | None = None
) -> list[T]:
    """`list(build(*args))`, compiled once per builder, argument types and database alias (see
    the module's doc). Model instances, values() dicts and values_list() tuples alike. The alias
    is `using`, else the one the database routers choose for the query's model (a replica on
    pages, see core.replicas)."""
    model = _models.get(build)
    if model is None:
        return _first_call(build, args, using)
    alias = using or router.db_for_read(model)
    key = (build, alias, tuple(map(type, args)))
    compiled = _compiled.get(key)
    if compiled is None:
        return _first_call(build, args, using)
    if isinstance(compiled, _Fallback):
        return _orm(build, args, using)
    for n, low, high in compiled.ranges:
        if not low <= args[n] <= high:
            return _orm(build, args, using)  # the ORM's answer to an out-of-range integer
    return _replay(compiled, args, alias)


def _first_call(
    build: Callable[..., QuerySet[Any, Any]], args: tuple[Any, ...], using: str | None
) -> list[Any]:
    strict = getattr(settings, "SQLCACHE_STRICT", settings.DEBUG)
    try:
        _check_builder(build)
    except ContractError as error:
        if strict:
            raise
        # Nothing is stored for such a builder: a closure made per call would be a key per call.
        if name_of(build) not in _warned:
            _warned.add(name_of(build))
            logger.warning("sqlcache: %s; running it through the ORM", error)
        return _orm(build, args, using)
    model = _models.setdefault(build, build(*args).model)
    alias = using or router.db_for_read(model)
    key = (build, alias, tuple(map(type, args)))
    if key in _compiled:
        return fetch(build, *args, using=using)
    try:
        compiled: _Compiled | _Fallback = _compile(build, key[2], alias, using)
    except ContractError as error:
        if strict:
            raise
        logger.warning("sqlcache: %s; running it through the ORM", error)
        compiled = _Fallback(str(error))
    with _lock:
        compiled = _compiled.setdefault(key, compiled)
    if not strict:
        return fetch(build, *args, using=using)
    # Compare the replay with the ORM once per key and process (tests, DEBUG).
    replayed = fetch(build, *args, using=using)
    with _uncounted(connections[alias]):
        expected = _orm(build, args, using)
    if _snapshot(replayed) != _snapshot(expected):
        with _lock:
            _compiled.pop(key, None)
        raise ContractError(
            f"{name_of(build)}{args!r}: the compiled query returned {_snapshot(replayed)!r}, "
            f"the ORM {_snapshot(expected)!r}"
        )
    return replayed


@contextmanager
def _uncounted(connection: Any) -> Iterator[None]:
    """A check's own query, left out of query counts (tests pin them) and request logs."""
    wrappers = connection.execute_wrappers
    logged = len(connection.queries_log)
    connection.execute_wrappers = []
    try:
        yield
    finally:
        connection.execute_wrappers = wrappers
        while len(connection.queries_log) > logged:
            connection.queries_log.pop()


def _snapshot(value: Any) -> Any:
    """A comparable picture of a result: every field, annotation and related object loaded."""
    if isinstance(value, Model):
        fields = {k: _snapshot(v) for k, v in vars(value).items() if k != "_state"}
        related = {k: _snapshot(v) for k, v in value._state.fields_cache.items()}
        return (type(value).__name__, fields, related)
    if isinstance(value, list | tuple):
        return [_snapshot(v) for v in value]
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value


def is_compiled(build: Callable[..., Any], *args: Any, alias: str = "default") -> bool:
    """Whether `fetch(build, *args)` runs compiled SQL on `alias` (for tests)."""
    key = (build, alias, tuple(map(type, args)))
    return isinstance(_compiled.get(key), _Compiled)


@receiver(setting_changed)
def clear(**kwargs: Any) -> None:
    """Forget every compiled query; run when a test changes a setting (the SQL may differ)."""
    with _lock:
        _compiled.clear()
        _models.clear()
        _warned.clear()
