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

import polars as pl

#: Age limits of the ILA target population, inclusive (used for ``eligible``).
ELIGIBLE_AGE = (18, 64)


def persons_frame(persons: pl.LazyFrame) -> pl.DataFrame:
    """The population register reduced to what the grid needs (collected once)."""
    exit_month = pl.min_horizontal(pl.col("death_date").dt.month_start(),
                                   pl.col("emigration_date").dt.month_start())
    return persons.select(
        "person_code", "sex", "birth_date", exit_month.alias("exit_month_start"),
    ).sort("person_code").with_row_index("pid").with_columns(
        pl.col("pid").cast(pl.Int32)).collect()


def person_months(persons: pl.DataFrame | pl.LazyFrame, first: date,
                  last: date) -> pl.LazyFrame:
    """One row per person and month of ``first``..``last`` in the panel.

    Parameters
    ----------
    persons
        Output of :func:`persons_frame`.
    first, last
        First days of the first and last month of the slice.

    Returns
    -------
    polars.LazyFrame
        ``pid`` (dense int32 index of the person in pseudonym order; the builder adds
        ``person_code`` at the end), ``month``, ``sex``, ``age`` (completed years on the
        first day of the month), ``exit_month`` (the person died or emigrated in this
        month; the last row of such a person), ``eligible`` (aged 18-64 and resident for
        the whole month).
    """
    months = pl.LazyFrame({"month": pl.date_range(first, last, "1mo", eager=True)})
    grid = persons.lazy().select(pl.exclude("person_code")).join(months, how="cross").filter(
        (pl.col("month") >= pl.col("birth_date").dt.month_start())
        & (pl.col("exit_month_start").is_null()
           | (pl.col("month") <= pl.col("exit_month_start"))))
    age = (pl.col("month").dt.year() - pl.col("birth_date").dt.year()
           - ((pl.col("month").dt.month() < pl.col("birth_date").dt.month())
              | ((pl.col("month").dt.month() == pl.col("birth_date").dt.month())
                 & (pl.col("birth_date").dt.day() > 1))).cast(pl.Int32)).cast(pl.Int16)
    exit_ = (pl.col("month") == pl.col("exit_month_start")).fill_null(False)
    lo, hi = ELIGIBLE_AGE
    return grid.select(
        "pid", "month", "sex", age.alias("age"), exit_.alias("exit_month"),
    ).with_columns((pl.col("age").is_between(lo, hi) & ~pl.col("exit_month"))
                   .alias("eligible"))


def residence_events(residence: pl.LazyFrame, municipalities: pl.LazyFrame) -> pl.LazyFrame:
    """Residence declarations as carry-forward events with region and urbanisation."""
    ref = municipalities.select("municipality_code", "region_code",
                                pl.col("urbanisation").cast(pl.Int8))
    return residence.select(
        "person_code", pl.col("valid_from").dt.month_start().alias("month"),
        pl.col("valid_from").alias("__order"), "municipality_code",
    ).join(ref, on="municipality_code", how="left")


def education_events(education: pl.LazyFrame) -> pl.LazyFrame:
    """Awards as carry-forward events of the highest level so far and its field."""
    ordered = education.select(
        "person_code", "award_date", pl.col("isced_level").cast(pl.Int8), "isced_field",
    ).sort("person_code", "award_date", "isced_level")
    best = pl.col("isced_level").cum_max().over("person_code")
    return ordered.with_columns(best.alias("__best")).with_columns(
        pl.when(pl.col("isced_level") == pl.col("__best")).then(pl.col("isced_field"))
        .forward_fill().over("person_code").alias("isced_field"),
        pl.col("__best").alias("isced_level"),
    ).select("person_code", pl.col("award_date").dt.month_start().alias("month"),
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
