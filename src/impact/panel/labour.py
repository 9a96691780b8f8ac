"""Labour-market parts of the person-month panel: employment, unemployment, benefits.

Each function takes lazy frames of clean sources (ingest output) and returns one row per
person-month *with something to report*; :mod:`impact.panel.build` left-joins them onto the
person-month grid and fills the gaps with zeros.

Assumptions
-----------
* Corrections and duplicates were resolved at ingest: each (person, employer, month) has
  one employer report.
* Benefit payments are attributed to the month in which their period starts.
"""

from __future__ import annotations

from datetime import date

import polars as pl


def employment(reports: pl.LazyFrame, employers: pl.LazyFrame, nace: pl.LazyFrame,
               isco: pl.LazyFrame, key: str = "person_code") -> pl.LazyFrame:
    """Person-month employment: totals over jobs and the main job's attributes.

    The main job is the report with the highest gross income (ties: the lowest employer
    pseudonym, so the choice is deterministic). ``hours_worked`` sums the hours of the jobs
    that reported hours (null if none did); ``hours_complete`` says whether every job did,
    which the hourly wage requires.
    """
    r = reports.select(
        key, pl.col("period").alias("month"), "employer_id", "gross_income",
        "days_worked", "hours_worked", "occupation_code", "contract_type", "part_time")
    order = dict(by=[pl.col("gross_income"), pl.col("employer_id")],
                 descending=[True, False])
    main_cols = ("employer_id", "occupation_code", "contract_type", "part_time")
    per_month = r.group_by(key, "month").agg(
        (pl.col("gross_income") > 0).any().alias("employed"),
        pl.col("employer_id").n_unique().cast(pl.Int16).alias("n_employers"),
        pl.col("gross_income").sum().alias("earnings"),
        pl.col("days_worked").sum().cast(pl.Int32).alias("days_worked"),
        pl.when(pl.col("hours_worked").is_not_null().any())
        .then(pl.col("hours_worked").sum()).cast(pl.Int32).alias("hours_worked"),
        pl.col("hours_worked").is_not_null().all().alias("hours_complete"),
        *[pl.col(c).sort_by(**order).first() for c in main_cols],
    )
    emp = employers.select("employer_id", "nace_code", "sector", "size_class").join(
        nace.select("nace_code", pl.col("section").alias("nace_section"),
                    pl.col("division").alias("nace_division")), on="nace_code", how="left")
    return per_month.join(emp, on="employer_id", how="left").join(
        isco.select(pl.col("isco_code").alias("occupation_code"),
                    pl.col("skill_level").cast(pl.Int8)),
        on="occupation_code", how="left")


def unemployment(spells: pl.LazyFrame, first: date, last: date,
                 key: str = "person_code") -> pl.LazyFrame:
    """Person-months covered by an NVA registration (overlapping spells merged)."""
    s = spells.select(
        key,
        pl.max_horizontal(pl.col("registered_on").dt.month_start(), pl.lit(first)).alias("a"),
        pl.min_horizontal(pl.col("deregistered_on").fill_null(last).dt.month_start(),
                          pl.lit(last)).alias("b"),
    ).filter(pl.col("a") <= pl.col("b"))
    return (
        s.with_columns(pl.date_ranges("a", "b", "1mo").alias("month"))
        .explode("month")
        .select(key, "month")
        .unique()
        .with_columns(pl.lit(True).alias("registered_unemployed"))
    )


def benefits(payments: pl.LazyFrame, key: str = "person_code") -> pl.LazyFrame:
    """Unemployment- and sickness-benefit days and amounts per person-month."""
    b = payments.with_columns(pl.col("period_start").dt.month_start().alias("month"))
    ub = pl.col("benefit_type") == "UNEMPLOYMENT"
    return b.group_by(key, "month").agg(
        pl.col("benefit_days").filter(ub).sum().cast(pl.Int16).alias("ub_days"),
        pl.col("amount").filter(ub).sum().alias("ub_amount"),
        pl.col("benefit_days").filter(~ub).sum().cast(pl.Int16).alias("sick_benefit_days"),
    )
