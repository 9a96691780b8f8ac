"""The cell table: validation, canonical order and the index of partitions.

A *cell table* has one row per published cell, keyed by ``(indicator, dimension, group,
horizon)``. Within one *table* ``(indicator, horizon)`` the row ``dimension = group =
"all"`` is the total, and the groups of every other dimension partition the total's
participants (absent groups are empty). :func:`prepare` checks this and returns the rows
in the canonical order used everywhere (indicator, horizon with nulls first, the total
first, then dimension and group); :func:`build_index` turns the rows into the equations
(``total = sum of groups`` per table and dimension) and the population groups that the
secondary suppression and the attacker work on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import polars as pl

from impact.disclosure.settings import DEFAULT_VALUE_COLUMNS, DisclosureSettings

__all__ = [
    "ARMS", "KEY", "KINDS", "TOTAL", "CellIndex", "Equation", "build_index", "prepare",
    "value_columns",
]

KEY: tuple[str, ...] = ("indicator", "dimension", "group", "horizon")
REQUIRED: tuple[str, ...] = (*KEY, "kind", "n_participants", "n_twins")
TOTAL = "all"
KINDS: tuple[str, ...] = ("rate", "mean", "other")
ARMS: tuple[str, ...] = ("participants", "twins")
#: relative slack when checking top contributions against the cell total
_SLACK = 1e-9


def _example(rows: pl.DataFrame) -> str:
    """The key (and n) of the first offending row, for error messages."""
    cols = [c for c in (*KEY, "n_participants", "n_twins") if c in rows.columns]
    return str(rows.select(cols).row(0, named=True))


def _fail(column: str, problem: str, rows: pl.DataFrame) -> None:
    raise ValueError(f"cell table, column {column!r}: {problem}; e.g. row {_example(rows)}")


def value_columns(cells: pl.DataFrame, settings: DisclosureSettings) -> list[str]:
    """The value columns nulled in a suppressed cell (explicit ones must exist)."""
    if settings.value_columns is None:
        return [c for c in DEFAULT_VALUE_COLUMNS if c in cells.columns]
    missing = [c for c in settings.value_columns if c not in cells.columns]
    if missing:
        raise ValueError(f"cell table: value column {missing[0]!r} (settings.value_columns) "
                         f"is missing; columns are {cells.columns}")
    reserved = [c for c in settings.value_columns if c in REQUIRED or c.startswith("_")]
    if reserved:
        raise ValueError(f"cell table: {reserved[0]!r} cannot be a value column")
    return list(dict.fromkeys(settings.value_columns))


def _magnitude_columns(cells: pl.DataFrame, settings: DisclosureSettings) -> list[str]:
    """Check and list the ``_top*`` / ``_total*`` columns the rules need."""
    needed: list[str] = []
    for arm in ARMS:
        total = f"_total_{arm}"
        if total not in cells.columns:
            stray = [c for c in cells.columns if c.startswith("_top") and c.endswith(f"_{arm}")]
            if stray:
                raise ValueError(f"cell table: {stray[0]!r} is given but {total!r} is missing")
            continue
        tops = 0
        if settings.dominance_k is not None:
            tops = settings.dominance_n
        if settings.p_percent is not None:
            tops = max(tops, 2)
        cols = [f"_top{i}_{arm}" for i in range(1, tops + 1)]
        for col in cols:
            if col not in cells.columns:
                raise ValueError(f"cell table: column {col!r} is missing but {total!r} is "
                                 "given (needed by the dominance / p% rules)")
        needed += [total, *cols]
    return needed


def _check_magnitudes(df: pl.DataFrame, settings: DisclosureSettings) -> None:
    for arm in ARMS:
        total = f"_total_{arm}"
        if total not in df.columns:
            continue
        tops = sorted(c for c in df.columns if c.startswith("_top") and c.endswith(f"_{arm}"))
        given = df.filter(pl.col(total).is_not_null())
        for col in tops:
            bad = given.filter(pl.col(col).is_null())
            if bad.height:
                _fail(col, f"null where {total!r} is given", bad)
            bad = given.filter(pl.col(col) < 0)
            if bad.height:
                _fail(col, "negative contribution (use absolute values)", bad)
        for a, b in zip(tops, tops[1:], strict=False):
            bad = given.filter(pl.col(b) > pl.col(a))
            if bad.height:
                _fail(b, f"larger than {a!r} (top contributions must be sorted)", bad)
        if tops:
            top_sum = pl.sum_horizontal(tops)
            bad = given.filter(top_sum > pl.col(total) * (1 + _SLACK) + _SLACK)
            if bad.height:
                _fail(total, "smaller than the sum of the top contributions", bad)


def prepare(cells: pl.DataFrame, settings: DisclosureSettings) -> pl.DataFrame:
    """Validate a cell table and return it typed and in canonical order.

    Raises
    ------
    ValueError
        Naming the column and an example row: missing key columns, nulls in keys or in n,
        unknown ``kind``, negative n, a total whose group is not "all", duplicate keys,
        ``kind`` or ``population`` varying within a table, breakdowns without a total,
        groups whose ``n_participants`` do not add up to the total's (or whose
        ``n_twins`` exceed it), unequal n within one declared population, rates outside
        [0, 1], malformed top-contribution columns.
    """
    if not isinstance(cells, pl.DataFrame):
        raise ValueError(f"cell table must be a polars DataFrame, got {type(cells).__name__}")
    missing = [c for c in REQUIRED if c not in cells.columns]
    if missing:
        raise ValueError(f"cell table: required column {missing[0]!r} is missing; "
                         f"columns are {cells.columns}")
    vcols = value_columns(cells, settings)
    mcols = _magnitude_columns(cells, settings)
    casts: dict[str, Any] = {c: pl.String for c in ("indicator", "dimension", "group", "kind")}
    casts |= {"horizon": pl.Int64, "n_participants": pl.Int64, "n_twins": pl.Int64}
    casts |= {c: pl.Float64 for c in [*vcols, *mcols]}
    if "population" in cells.columns:
        casts["population"] = pl.String
    try:
        df = cells.with_columns([pl.col(c).cast(t, strict=True) for c, t in casts.items()])
    except Exception as exc:  # polars raises several exception types for failed casts
        raise ValueError(f"cell table: a column has the wrong type ({exc})") from exc

    for col in ("indicator", "dimension", "group", "kind", "n_participants", "n_twins"):
        bad = df.filter(pl.col(col).is_null())
        if bad.height:
            _fail(col, "null values", bad)
    bad = df.filter(~pl.col("kind").is_in(list(KINDS)))
    if bad.height:
        _fail("kind", f"unknown kind {bad['kind'][0]!r} (expected one of {KINDS})", bad)
    for col in ("n_participants", "n_twins"):
        bad = df.filter(pl.col(col) < 0)
        if bad.height:
            _fail(col, "negative count", bad)
    is_total = pl.col("dimension") == TOTAL
    bad = df.filter(is_total != (pl.col("group") == TOTAL))
    if bad.height:
        _fail("group", f"the total row must have dimension = group = {TOTAL!r}", bad)
    bad = df.filter(pl.struct(list(KEY)).is_duplicated())
    if bad.height:
        _fail("group", f"duplicate key {KEY}", bad)

    table = ["indicator", "horizon"]
    for col in ("kind", "population"):
        if col in df.columns:
            bad = df.filter(pl.col(col).n_unique().over(table) > 1)
            if bad.height:
                _fail(col, "varies within one (indicator, horizon)", bad)
    has_total = is_total.any().over(table)
    bad = df.filter(~has_total)
    if bad.height:
        _fail("dimension", f"table has breakdowns but no total row ({TOTAL!r}/{TOTAL!r})", bad)

    totals = df.filter(is_total).select(
        *table, pl.col("n_participants").alias("_n_tot"), pl.col("n_twins").alias("_t_tot"))
    groups = df.filter(~is_total).join(totals, on=table, how="left", nulls_equal=True)
    sums = groups.with_columns(
        pl.col("n_participants").sum().over([*table, "dimension"]).alias("_n_sum"))
    bad = sums.filter(pl.col("_n_sum") != pl.col("_n_tot"))
    if bad.height:
        r = bad.row(0, named=True)
        _fail("n_participants", f"groups of dimension {r['dimension']!r} add up to "
              f"{r['_n_sum']}, the total has {r['_n_tot']} (groups must partition the total; "
              "add a missing group such as 'unknown' as a row)", bad)
    bad = groups.filter(pl.col("n_twins") > pl.col("_t_tot"))
    if bad.height:
        _fail("n_twins", "a group has more distinct twins than its total", bad)
    if "population" in df.columns:
        pkey = ["population", "dimension", "group", "horizon"]
        bad = df.filter(pl.col("n_participants").n_unique().over(pkey) > 1)
        if bad.height:
            _fail("n_participants", "differs between indicators of the same population", bad)
    for col in ARMS:
        if col in vcols:
            bad = df.filter((pl.col("kind") == "rate") & ~pl.col(col).is_between(0.0, 1.0))
            if bad.height:
                _fail(col, "a rate outside [0, 1]", bad)
    _check_magnitudes(df, settings)

    order = [pl.col("indicator"), pl.col("horizon"), pl.col("dimension") != TOTAL,
             pl.col("dimension"), pl.col("group")]
    return df.sort(order, nulls_last=False, maintain_order=True)


@dataclass(frozen=True)
class Equation:
    """``n(total) = sum of n(groups)`` of one dimension of one table (row positions)."""

    indicator: str
    horizon: int | None
    dimension: str
    total: int
    groups: tuple[int, ...]


@dataclass(frozen=True)
class CellIndex:
    """Row positions of a prepared cell table arranged for suppression.

    ``population_groups`` are sets of rows (two or more) that describe the same persons:
    rows with equal ``(population, dimension, group, horizon)`` when the table has a
    ``population`` column, otherwise rows with equal ``(dimension, group, horizon,
    n_participants)`` in different indicators (equal n is taken as the same population,
    which can only over-protect).
    """

    keys: tuple[tuple[str, str, str, int | None], ...]
    n: tuple[int, ...]
    equations: tuple[Equation, ...]
    equations_of: tuple[tuple[int, ...], ...]
    population_groups: tuple[tuple[int, ...], ...]

    def sort_key(self, row: int) -> tuple[int, str, str]:
        """Order of complementary candidates: smallest n, then dimension and group."""
        return (self.n[row], self.keys[row][1], self.keys[row][2])


def build_index(df: pl.DataFrame) -> CellIndex:
    """Equations and population groups of a table returned by :func:`prepare`."""
    keys = tuple(df.select(KEY).iter_rows())
    n = tuple(df["n_participants"].to_list())
    totals: dict[tuple[str, int | None], int] = {}
    members: dict[tuple[str, int | None, str], list[int]] = defaultdict(list)
    for i, (ind, dim, _grp, hor) in enumerate(keys):
        if dim == TOTAL:
            totals[(ind, hor)] = i
        else:
            members[(ind, hor, dim)].append(i)
    equations = tuple(Equation(ind, hor, dim, totals[(ind, hor)], tuple(rows))
                      for (ind, hor, dim), rows in members.items())
    eq_of: list[list[int]] = [[] for _ in keys]
    for e, eq in enumerate(equations):
        for i in (eq.total, *eq.groups):
            eq_of[i].append(e)
    pops: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    population = df["population"].to_list() if "population" in df.columns else None
    for i, (_ind, dim, grp, hor) in enumerate(keys):
        pkey = (population[i], dim, grp, hor) if population is not None else (dim, grp, hor, n[i])
        pops[pkey].append(i)
    return CellIndex(
        keys=keys, n=n, equations=equations, equations_of=tuple(tuple(e) for e in eq_of),
        population_groups=tuple(tuple(r) for r in pops.values() if len(r) > 1))
