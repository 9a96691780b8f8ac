"""The person-month grid of one slice of months, and dated events turned into monthly states.

Register facts arrive as dated events (a residence declared, a child born, a grant
allocated, a course started). The panel needs their state in every month. Two shapes
cover everything:

* :class:`Running` -- additive states (counts, balances): each event adds a delta in its
  month; the state is the running sum over months.
* :class:`Latest` -- the latest value (municipality, education level): an event sets the
  value from its month on.

Both work on one slice of months (e.g. one year) at a time: events before the slice are
folded into its first month, so a year is built without the years before it. Events after
the slice are ignored.

Nothing is joined to the grid. :class:`Grid` knows, for every person, the first month and
the number of months the person is in the slice, so the row of a (person, month) in the
grid (sorted by person and month) is arithmetic: the person's offset plus the month's
distance from the person's first month. Every part of the panel is gathered into grid order
through such row numbers (:meth:`Grid.rows`, :class:`Keyed`); a state is the value at the
person's last event row, carried forward along the person's rows
(:meth:`Chunk.last_event`).

Assumptions
-----------
* A person is the dense integer ``pid`` (``0..n-1``); months are first days of months,
  handled as month numbers (``year * 12 + month - 1``, :func:`month_number`).
* A person's months in a slice are consecutive (from birth or the slice's first month to
  exit or the slice's last month).
* Event frames have ``pid``, ``month`` (first day of the month in which the event takes
  effect; events without a month are ignored) and the value columns.
* Events falling in a month of the slice before the person's first month in it (e.g. before
  birth) have no row to land on and are ignored, like the events folded into the slice's
  first month for such a person.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import date

import numpy as np
import polars as pl


def month_number(month: pl.Expr) -> pl.Expr:
    """``year * 12 + month - 1`` of a date column (int32)."""
    return month.dt.year().cast(pl.Int32) * 12 + month.dt.month().cast(pl.Int32) - 1


def _number(d: date) -> int:
    return d.year * 12 + d.month - 1


def with_blank(values: pl.DataFrame, zero: bool = False) -> pl.DataFrame:
    """``values`` plus one row of nulls (zeros if ``zero``), in one chunk: :func:`take` reads
    that last row where there is none."""
    blank = values.clear(1)
    if zero:
        blank = blank.select(pl.all().fill_null(0))
    return pl.concat([values, blank]).rechunk()


def take(values: pl.DataFrame, rows: np.ndarray) -> pl.DataFrame:
    """Rows ``rows`` (int32) of ``values`` (a :func:`with_blank` frame); its blank last row
    where ``rows`` is negative."""
    idx = np.where(rows >= 0, rows, np.int32(values.height - 1)).view(np.uint32)
    return values.select(pl.all().gather(pl.Series(idx)))


def code_index(values: pl.Series, codes: pl.Series) -> pl.Series:
    """Row of each of ``values`` in ``codes`` (unique strings; null matches null), UInt32;
    null if absent.

    Joins on 64-bit hashes of the strings (much cheaper than hashing them again in a string
    join) and checks every match against the strings; on a hash collision it falls back to
    the string join.
    """
    hashes = codes.hash()
    table = pl.DataFrame({"__h": hashes}).with_row_index("__r")
    if hashes.n_unique() == len(hashes):
        found = pl.DataFrame({"__h": values.hash()}).join(
            table, on="__h", how="left", maintain_order="left")["__r"]
        hit = found.is_not_null()
        if (codes.gather(found.filter(hit)) == values.filter(hit)).all():
            return found
    return values.rename("__v").to_frame().join(
        codes.rename("__v").to_frame().with_row_index("__r"), on="__v", how="left",
        nulls_equal=True, maintain_order="left")["__r"]


def _clip(events: pl.LazyFrame, first: date, last: date) -> pl.LazyFrame:
    """Fold events before ``first`` into ``first``; drop events after ``last``."""
    return events.filter(pl.col("month") <= last).with_columns(
        pl.max_horizontal(pl.col("month"), pl.lit(first)).alias("month"))


class Grid:
    """The person-months of the slice ``first``..``last`` of all persons, as index arithmetic.

    Parameters
    ----------
    birth, exit_
        Per person (indexed by ``pid``): month numbers of the first and the last month the
        person may be in the panel (birth month; month of death or emigration); null birth:
        never in the panel, null exit: no end.
    first, last
        First days of the slice's first and last month.

    A grid covers every person; :meth:`block` narrows it to a range of persons, whose rows
    are then numbered from 0 (so that a year's data can be held for one block at a time).
    """

    #: persons ``lo..hi-1`` of the grid (all persons unless made by :meth:`block`)
    lo: int
    hi: int

    def __init__(self, birth: pl.Series, exit_: pl.Series, first: date, last: date) -> None:
        self.first_date, self.last_date = first, last
        self.first, self.last = _number(first), _number(last)
        big = np.iinfo(np.int64).max // 4
        b = birth.cast(pl.Int64).fill_null(big).to_numpy()
        e = exit_.cast(pl.Int64).fill_null(big).to_numpy()
        start = np.maximum(b, self.first)
        count = np.maximum(np.minimum(e, self.last) - start + 1, 0)
        #: per person: month number of the first row, number of rows, row of the first row
        self.start = np.where(count > 0, start, 0).astype(np.int32)
        self.count = count.astype(np.int32)
        self.offset = np.zeros(len(count) + 1, dtype=np.int64)
        np.cumsum(count, out=self.offset[1:])
        self.months = pl.date_range(first, last, "1mo", eager=True).alias("month")
        self.lo, self.hi = 0, len(count)

    def block(self, lo: int, hi: int) -> Grid:
        """The same slice of months for the persons ``lo..hi-1`` only: rows numbered from
        the block's first row, :meth:`rows` of other persons -1."""
        out = copy.copy(self)
        out.offset = self.offset - self.offset[lo]
        out.lo, out.hi = lo, hi
        return out

    def height(self, lo: int | None = None, hi: int | None = None) -> int:
        """Rows of the persons ``lo..hi-1`` (the grid's persons by default)."""
        lo = self.lo if lo is None else lo
        return int(self.offset[self.hi if hi is None else hi] - self.offset[lo])

    def chunk(self, lo: int, hi: int) -> Chunk:
        """The rows of the persons ``lo..hi-1``."""
        return Chunk(self, lo, hi)

    def rows(self, pid: np.ndarray, month: np.ndarray) -> np.ndarray:
        """Row (int32) of each (``pid``, month number) in the whole slice; -1 if it is not
        a row."""
        start, count = self.start[pid], self.count[pid]
        ok = (month >= start) & (month - start < count)
        if self.lo > 0 or self.hi < len(self.count):
            ok &= (pid >= self.lo) & (pid < self.hi)
        return np.where(ok, self.offset[pid] + (month - start), -1).astype(np.int32)


class Chunk:
    """The rows of the persons ``lo..hi-1`` of a :class:`Grid`, with their keys."""

    def __init__(self, grid: Grid, lo: int, hi: int) -> None:
        self.grid, self.lo, self.hi = grid, lo, hi
        self.base, self.height = int(grid.offset[lo]), grid.height(lo, hi)
        count = grid.count[lo:hi]
        #: per row: ``pid``, month number, row of the person's first row
        self.pid = np.repeat(np.arange(lo, hi, dtype=np.int32), count)
        self.first_row = np.repeat((grid.offset[lo:hi] - self.base).astype(np.int32), count)
        self.month = (np.arange(self.height, dtype=np.int32) - self.first_row
                      + np.repeat(grid.start[lo:hi], count))

    def last_event(self, pid: np.ndarray, month: np.ndarray) -> np.ndarray:
        """Per row, the position in (``pid``, ``month``) -- events sorted by ``pid`` and
        then ``month`` -- of the person's last event at or before the row's month; -1 if
        none. The slice's events only: events before a person's first row count (on that
        row) only if it is the slice's first month, events after the person's last row do
        not count."""
        g = self.grid
        i0, i1 = np.searchsorted(pid, [self.lo, self.hi])
        p, m = pid[i0:i1], month[i0:i1]
        start, count = g.start[p], g.count[p]
        m = np.where((m < start) & (start == g.first), start, m)  # folded into the first month
        keep = np.flatnonzero((m >= start) & (m - start < count))
        row = (g.offset[p[keep]] - self.base).astype(np.int32) + (m[keep] - start[keep])
        # rows are ascending (events sorted); of several events on a row the last counts
        last = np.ones(len(row), dtype=bool)
        last[:-1] = row[1:] != row[:-1]
        src = np.full(self.height, -1, dtype=np.int32)
        src[row[last]] = keep[last] + i0
        # carried forward along the person's rows
        at = np.where(src >= 0, np.arange(self.height, dtype=np.int32), np.int32(-1))
        np.maximum.accumulate(at, out=at)
        return np.where(at >= self.first_row, src[np.maximum(at, 0)], np.int32(-1))


class Keyed:
    """Rows unique on (``key``, ``month``), put in grid order once (:meth:`on` slices it).

    Parameters
    ----------
    frame
        ``key``, ``month`` and the value columns; rows that are not person-months of the
        grid are dropped.
    grid
        The slice.
    """

    def __init__(self, frame: pl.DataFrame, grid: Grid, key: str = "pid") -> None:
        rows = grid.rows(frame[key].cast(pl.Int32).to_numpy(),
                         frame.select(month_number(pl.col("month")))["month"].to_numpy())
        src = np.full(grid.height(), -1, dtype=np.int32)
        ok = rows >= 0
        src[rows[ok]] = np.flatnonzero(ok)
        self.values = take(with_blank(frame.drop(key, "month")), src)

    def on(self, chunk: Chunk) -> pl.DataFrame:
        """Values at each row of ``chunk`` (null where none)."""
        return self.values.slice(chunk.base, chunk.height)


class Latest:
    """The latest event values of ``columns``, looked up at any person-month.

    Parameters
    ----------
    events
        ``key``, ``month``, ``order`` (e.g. the event date) and the value columns. Of
        several events in one month the one with the greatest ``order`` wins (ties: the later
        row); ``order`` must not decrease with ``month`` (an event's date and its month), so
        that this is also the winner among the events folded into a slice's first month.
    columns
        Value columns; null before the person's first event.
    order
        Column that orders events within a month.
    key
        Person column.
    """

    def __init__(self, events: pl.DataFrame, columns: Sequence[str], order: str,
                 key: str = "pid") -> None:
        e = events.filter(pl.col("month").is_not_null()).with_columns(
            month_number(pl.col("month")).alias("__m")
        ).sort(key, "__m", order, maintain_order=True)
        self.pid = e[key].cast(pl.Int32).to_numpy()
        self.month = e["__m"].to_numpy()
        self.values = with_blank(e.select(columns))

    def on(self, chunk: Chunk) -> pl.DataFrame:
        """State at each row of ``chunk`` (see :meth:`Chunk.last_event`)."""
        return take(self.values, chunk.last_event(self.pid, self.month))


class Running:
    """Running sums of event deltas over the months of one slice, looked up at grid rows.

    Parameters
    ----------
    events
        ``key``, ``month`` and the delta columns; several events per person-month are summed.
    columns
        Delta columns; the states are their running sums under the same names (zero before
        the first event).
    grid
        The slice (events before it are folded into its first month, events after it are
        dropped).
    key
        Person column.

    Each person's sums are added month after month from the person's first row, as a
    running sum along the grid would.
    """

    def __init__(self, events: pl.DataFrame, columns: Sequence[str], grid: Grid,
                 key: str = "pid") -> None:
        deltas = _clip(events.lazy(), grid.first_date, grid.last_date).group_by(
            key, "month").agg(pl.col(c).sum() for c in columns).collect()
        deltas = deltas.with_columns(month_number(pl.col("month")).alias("__m"))
        pid = deltas[key].cast(pl.Int32).to_numpy()
        # months before the person's first row of the slice have no row: dropped
        deltas = deltas.filter(pl.Series(deltas["__m"].to_numpy() >= grid.start[pid])
                               ).sort(key, "__m")
        self.pid = deltas[key].cast(pl.Int32).to_numpy()
        self.month = deltas["__m"].to_numpy()
        self.values = with_blank(deltas.select(pl.col(c).cum_sum().over(key) for c in columns),
                                 zero=True)

    def on(self, chunk: Chunk) -> pl.DataFrame:
        """States at each row of ``chunk``."""
        return take(self.values, chunk.last_event(self.pid, self.month))
