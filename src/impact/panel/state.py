"""Turn dated events into monthly states on a person-month grid.

Register facts arrive as dated events (a residence declared, a child born, a grant
allocated, a course started). The panel needs their state in every month. Two shapes
cover everything:

* :func:`cumulate` -- additive states (counts, balances): each event adds a delta in its
  month; the state is the running sum over months.
* :func:`carry_forward` -- the latest value (municipality, education level): an event sets
  the value from its month on.

Both work on one slice of months (e.g. one year) at a time: events before the slice are
folded into its first month, so a year is built without the years before it. Events after
the slice are ignored.

Assumptions
-----------
* The grid has columns ``key`` (the person: ``pid`` by default) and ``month`` (first day of
  the month), is **sorted by key and month**, and holds every month of the slice for which
  a person is in the panel; states are computed along ``month`` within a person. Sorting
  lets the states be running sums and forward fills over the whole column, restarted at
  each person's first row, instead of window functions grouped by person.
* Event frames have ``key``, ``month`` (first day of the month in which the event takes
  effect) and the value columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import polars as pl


def _clip(events: pl.LazyFrame, first: date, last: date) -> pl.LazyFrame:
    """Fold events before ``first`` into ``first``; drop events after ``last``."""
    return events.filter(pl.col("month") <= last).with_columns(
        pl.max_horizontal(pl.col("month"), pl.lit(first)).alias("month"))


def align(keys: pl.DataFrame, right: pl.DataFrame, on: Sequence[str]) -> pl.DataFrame:
    """``right``'s other columns, one row per row of ``keys`` (null where no match).

    A left join that keeps the order of ``keys`` without the cost of an order-preserving
    join: an inner join of the key columns only finds each match's row, and every payload
    column is gathered once. ``right`` must be unique on ``on``.
    """
    left = keys.select(on).with_row_index("__i")
    hits = left.join(right.select(on).with_row_index("__j"), on=list(on), how="inner")
    src = np.full(keys.height, -1, dtype=np.int64)
    src[hits["__i"].to_numpy()] = hits["__j"].to_numpy()
    idx = pl.Series("__src", src).replace(-1, None).cast(pl.UInt32)
    return right.drop(on).select(pl.all().gather(idx))


def _first_row(key: str) -> pl.Expr:
    """True on the first row of each person (the grid is sorted by person)."""
    return (pl.col(key) != pl.col(key).shift(1)).fill_null(True)


def cumulate(grid: pl.LazyFrame, events: pl.LazyFrame, columns: Sequence[str], first: date,
             last: date, key: str = "pid") -> pl.LazyFrame:
    """Add running sums of the event deltas ``columns`` to ``grid``.

    Parameters
    ----------
    grid
        Person-months of the slice ``first``..``last``, sorted by ``key`` and ``month``.
    events
        ``key``, ``month`` and the delta columns; several events per person-month
        are summed.
    columns
        Delta columns; the result holds their running sums under the same names (zero
        before the first event).
    first, last
        The slice's first and last month.
    key
        Person column.
    """
    deltas = _clip(events, first, last).group_by(key, "month").agg(
        pl.col(c).sum() for c in columns)
    keys = grid.collect()
    joined = pl.concat([keys, align(keys, deltas.collect(), [key, "month"])],
                       how="horizontal").lazy()
    # running sum over the column, minus its value before the person's first row
    return joined.with_columns(pl.col(c).fill_null(0) for c in columns).with_columns(
        (pl.col(c).cum_sum()
         - pl.when(_first_row(key)).then(pl.col(c).cum_sum() - pl.col(c)).forward_fill())
        .alias(c) for c in columns)


def carry_forward(grid: pl.LazyFrame, events: pl.LazyFrame, columns: Sequence[str],
                  order: str, first: date, last: date, key: str = "pid") -> pl.LazyFrame:
    """Add the latest event values of ``columns`` to ``grid``.

    Parameters
    ----------
    grid
        Person-months of the slice ``first``..``last``, sorted by ``key`` and ``month``.
    events
        ``key``, ``month``, ``order`` (e.g. the event date) and the value columns;
        of several events in one person-month the one with the greatest ``order`` wins.
    columns
        Value columns; null before the person's first event.
    order
        Column that orders events within a month (ties keep the later row).
    first, last
        The slice's first and last month.
    key
        Person column.
    """
    latest = (_clip(events, first, last)
              .group_by(key, "month")
              .agg(*[pl.col(c).sort_by(order, maintain_order=True).last() for c in columns],
                   pl.lit(True).alias("__event")))
    keys = grid.collect()
    joined = pl.concat([keys, align(keys, latest.collect(), [key, "month"])],
                       how="horizontal").lazy()
    # row of the latest event of the person (or the person's first row when none yet)
    src = (pl.when(pl.col("__event").is_not_null() | _first_row(key))
           .then(pl.int_range(pl.len(), dtype=pl.UInt32)).forward_fill())
    return joined.with_columns(pl.col(c).gather(src) for c in columns).drop("__event")
