"""Labour-market parts of the person-month panel: employment, unemployment, benefits.

Each function takes lazy frames of clean sources (ingest output) and returns one row per
person-month *with something to report* (:func:`employment`: already in the order of the
person-month grid); :mod:`impact.panel.build` puts them on the grid
(:class:`impact.panel.state.Keyed`) and fills the gaps with zeros.

Assumptions
-----------
* Corrections and duplicates were resolved at ingest: each (person, employer, month) has
  one employer report.
* Benefit payments are attributed to the month in which their period starts.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from impact.panel import state
from impact.panel.state import Grid, month_number, take, with_blank

#: Columns of the employer reports that :func:`employment` reads.
REPORT_COLUMNS = ("period", "employer_id", "gross_income", "days_worked", "hours_worked",
                  "occupation_code", "contract_type", "part_time")

#: Columns of the main job's employer, from the employer register and the NACE reference.
EMPLOYER_COLUMNS = ("employer_id", "nace_code", "nace_section", "nace_division", "sector",
                    "size_class")


def employment(reports: pl.LazyFrame, employers: pl.LazyFrame, nace: pl.LazyFrame,
               isco: pl.LazyFrame, grid: Grid, key: str = "pid",
               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Person-month employment: totals over jobs and the main job's attributes.

    The main job is the report with the highest gross income (ties: the lowest employer
    pseudonym, so the choice is deterministic). ``hours_worked`` sums the hours of the jobs
    that reported hours (null if none did); ``hours_complete`` says whether every job did,
    which the hourly wage requires.

    Parameters
    ----------
    reports
        Employer reports with the person as ``key`` (the grid's ``pid``).
    employers, nace, isco
        Employer register and references (codes unique).
    grid
        The slice of months the reports are for.

    Returns
    -------
    (polars.DataFrame, polars.DataFrame)
        One row per row of ``grid`` (in grid order; null where the person-month has no
        report), the main job's employer as ``__employer`` (a row number of the second
        frame); and the employers of the reports
        (:data:`EMPLOYER_COLUMNS`, ``employer_id`` in ascending order so that ``__employer``
        orders like the pseudonym, and a blank last row). Employer pseudonyms are carried
        as these integers, not as strings, until the panel rows are written. Reports of
        months in which the person is not in the grid are left out.
    """
    r = reports.select(
        key, pl.col("period").alias("month"), "employer_id", "gross_income",
        "days_worked", "hours_worked", "occupation_code", "contract_type", "part_time",
    ).collect()
    ids = r["employer_id"].gather(r["employer_id"].hash().arg_unique()).sort()
    employer = state.code_index(r["employer_id"], ids)
    if employer.null_count():  # two pseudonyms with one hash: unique on the strings
        ids = r["employer_id"].unique().sort()
        employer = state.code_index(r["employer_id"], ids)
    r = r.with_columns(employer.alias("__employer")).drop("employer_id")
    skill = isco.select(pl.col("isco_code").alias("occupation_code"),
                        pl.col("skill_level").cast(pl.Int8)).collect()
    if skill["occupation_code"].is_duplicated().any():
        raise ValueError("ref_isco repeats an occupation code")
    r = r.join(skill, on="occupation_code", how="left", maintain_order="left")
    # grid row of each report; most rows have one report, which is its own total and main job
    row = grid.rows(r[key].cast(pl.Int32).to_numpy(),
                    r.select(month_number(pl.col("month")))["month"].to_numpy())
    n = np.bincount(row[row >= 0], minlength=grid.height())
    src = np.full(grid.height(), -1, dtype=np.int32)
    ok = row >= 0
    src[row[ok]] = np.flatnonzero(ok)
    # rows with several reports: main job first, then totals over the jobs
    several = np.flatnonzero(ok & (n[np.maximum(row, 0)] > 1))
    many = r[several].with_columns(pl.Series("__row", row[several]),
                                   pl.Series("__src", several)).sort(
        "__row", "gross_income", "__employer", descending=[False, True, False],
        maintain_order=True,
    ).group_by("__row", maintain_order=True).agg(
        pl.col("__src").first(),
        (pl.col("gross_income") > 0).any().alias("employed"),
        pl.col("__employer").n_unique().cast(pl.Int16).alias("n_employers"),
        pl.col("gross_income").sum().alias("earnings"),
        pl.col("days_worked").sum().cast(pl.Int32).alias("days_worked"),
        pl.when(pl.col("hours_worked").is_not_null().any())
        .then(pl.col("hours_worked").sum()).cast(pl.Int32).alias("hours_worked"),
        pl.col("hours_worked").is_not_null().all().alias("hours_complete"),
    )
    multi_rows = many["__row"].to_numpy()
    src[multi_rows] = many["__src"].to_numpy()
    # the main report's values in grid order; a row with one report is its own total
    main = take(with_blank(r.select(
        pl.col("gross_income").fill_null(0.0).alias("earnings"),
        pl.col("days_worked").fill_null(0).cast(pl.Int32),
        pl.col("hours_worked").cast(pl.Int32),
        "__employer", "occupation_code", "contract_type", "part_time", "skill_level",
    )), src)
    reported = pl.Series(src >= 0)
    main = main.with_columns(
        (pl.col("earnings") > 0).alias("employed"),  # null without a report
        pl.when(reported).then(pl.lit(1, pl.Int16)).alias("n_employers"),
        pl.when(reported).then(pl.col("hours_worked").is_not_null()).alias("hours_complete"),
    )
    totals = many.drop("__row", "__src")
    per_month = main.with_columns(
        main[c].scatter(multi_rows, totals[c]) for c in totals.columns
    ).select("employed", "n_employers", "earnings", "days_worked", "hours_worked",
             "hours_complete", "__employer", "occupation_code", "contract_type", "part_time",
             "skill_level")
    emp = employers.select("employer_id", "nace_code", "sector", "size_class").join(
        nace.select("nace_code", pl.col("section").alias("nace_section"),
                    pl.col("division").alias("nace_division")), on="nace_code", how="left")
    table = ids.to_frame().lazy().join(emp, on="employer_id", how="left",
                                       maintain_order="left").select(EMPLOYER_COLUMNS).collect()
    if table.height != len(ids):
        raise ValueError("employers or ref_nace_classes repeat a code")
    return per_month, with_blank(table)


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
