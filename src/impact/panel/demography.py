"""Who is in the panel, and their demography at each month.

* :func:`person_months` -- the grid: one row per person and month in which the person was
  alive and resident on the first day (so the month of death or emigration is included:
  a last partial wage is common in it), with sex, age and the eligibility-relevant flags.
* :func:`residence_events`, :func:`education_events`, :func:`dependant_events` -- dated
  register facts as events for :mod:`impact.panel.state`.

Assumptions
-----------
* Residence: the municipality of the latest declaration that took effect on or before the
  last day of the month (a move mid-month counts for that month). Region and degree of
  urbanisation come from the municipality reference table.
* Education: the highest ISCED level awarded on or before the last day of the month, and
  the field of that award (the latest one if a level was awarded twice). Null before the
  first recorded award.
* Dependants: children under 18 on the first day of the month who were born on or before its
  last day (PMLP parent-child links).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from impact.panel.state import Chunk, Grid, month_number

#: Age limits of the ILA target population, inclusive (used for ``eligible``).
ELIGIBLE_AGE = (18, 64)


def persons_frame(persons: pl.LazyFrame) -> pl.DataFrame:
    """The population register reduced to what the grid needs (collected once)."""
    exit_month = pl.min_horizontal(pl.col("death_date").dt.month_start(),
                                   pl.col("emigration_date").dt.month_start())
    return persons.select(
        "person_code", "sex", "birth_date", exit_month.alias("exit_month_start"),
    ).sort("person_code").with_row_index("pid").with_columns(
        pl.col("pid").cast(pl.Int32)).collect().rechunk()


def grid(persons: pl.DataFrame, first: date, last: date) -> Grid:
    """The months ``first``..``last`` of every person of :func:`persons_frame`: from the
    month of birth to the month of death or emigration (inclusive), one row per month."""
    m = persons.select(month_number(pl.col("birth_date")).alias("a"),
                       month_number(pl.col("exit_month_start")).alias("b"))
    return Grid(m["a"], m["b"], first, last)


def person_months(persons: pl.DataFrame, rows: Chunk) -> pl.DataFrame:
    """One row per person and month of the slice in the panel, for a chunk of persons.

    Parameters
    ----------
    persons
        Output of :func:`persons_frame` (row ``i`` is ``pid`` ``i``).
    rows
        The chunk's rows of the slice (:func:`grid` of the same ``persons``).

    Returns
    -------
    polars.DataFrame
        Sorted by ``pid`` and ``month``: ``pid`` (dense int32 index of the person in
        pseudonym order), ``person_code``, ``month``, ``sex``, ``age`` (completed years on
        the first day of the month), ``exit_month`` (the person died or emigrated in this
        month; the last row of such a person), ``eligible`` (aged 18-64 and resident for the
        whole month).
    """
    pid, month, lo = rows.pid, rows.month, rows.lo
    who = pid - lo
    p = persons.slice(lo, rows.hi - lo)
    born = p.select(month_number(pl.col("birth_date")).fill_null(0).alias("m"),
                    (pl.col("birth_date").dt.day() > 1).fill_null(False).cast(pl.Int32)
                    .alias("late"),
                    month_number(pl.col("exit_month_start")).fill_null(-1).alias("exit"))
    # completed years on the first day of the month: months since the birth month, less
    # one if born after the 1st, in whole years
    age = ((month - born["m"].to_numpy()[who] - born["late"].to_numpy()[who]) // 12
           ).astype(np.int16)
    exit_ = month == born["exit"].to_numpy()[who]
    lo_age, hi_age = ELIGIBLE_AGE
    return pl.concat([
        pl.DataFrame([pl.Series("pid", pid, dtype=pl.Int32)]),
        p.select(pl.col("person_code").gather(pl.Series(who, dtype=pl.UInt32))),
        pl.DataFrame([rows.grid.months.gather(pl.Series(month - rows.grid.first,
                                                         dtype=pl.UInt32))]),
        p.select(pl.col("sex").gather(pl.Series(who, dtype=pl.UInt32))),
        pl.DataFrame([pl.Series("age", age), pl.Series("exit_month", exit_),
                      pl.Series("eligible", (age >= lo_age) & (age <= hi_age) & ~exit_)]),
    ], how="horizontal")


def residence_events(residence: pl.LazyFrame, municipalities: pl.LazyFrame) -> pl.LazyFrame:
    """Residence declarations as carry-forward events with region and urbanisation."""
    ref = municipalities.select("municipality_code", "region_code",
                                pl.col("urbanisation").cast(pl.Int8))
    return residence.select(
        "person_code", pl.col("valid_from").dt.month_start().alias("month"),
        pl.col("valid_from").alias("__order"), "municipality_code",
    ).join(ref, on="municipality_code", how="left")


def education_events(education: pl.LazyFrame, key: str = "person_code") -> pl.LazyFrame:
    """Awards as carry-forward events of the highest level so far and its field.

    ``key`` is the person column (``pid`` if the pseudonyms were already replaced: the
    windows over the person are then on integers).
    """
    ordered = education.select(
        key, "award_date", pl.col("isced_level").cast(pl.Int8), "isced_field",
    ).sort(key, "award_date", "isced_level")
    best = pl.col("isced_level").cum_max().over(key)
    return ordered.with_columns(best.alias("__best")).with_columns(
        pl.when(pl.col("isced_level") == pl.col("__best")).then(pl.col("isced_field"))
        .forward_fill().over(key).alias("isced_field"),
        pl.col("__best").alias("isced_level"),
    ).select(key, pl.col("award_date").dt.month_start().alias("month"),
             pl.col("award_date").alias("__order"), "isced_level", "isced_field")


def dependant_events(children: pl.LazyFrame) -> pl.LazyFrame:
    """+1 in a child's birth month, -1 in the first month it starts aged 18 or over."""
    birth = pl.col("child_birth_date")
    adult = birth.dt.offset_by("18y")
    leaves = pl.when(adult.dt.day() == 1).then(adult).otherwise(
        adult.dt.month_start().dt.offset_by("1mo"))
    plus = children.select("person_code", birth.dt.month_start().alias("month"),
                           pl.lit(1, pl.Int16).alias("dependants"))
    minus = children.select("person_code", leaves.alias("month"),
                            pl.lit(-1, pl.Int16).alias("dependants"))
    return pl.concat([plus, minus])
