"""The person-month research panel (first slice: labour market and demography).

One row per person and calendar month in which the person was alive and
resident on the first day (so the month of death or emigration, in which a
last partial wage is common, is included), built from the clean, pseudonymised sources
written by :mod:`impact.ingest`. Everything is a polars lazy query; the output
is Parquet partitioned by year.

Columns of this slice
---------------------
``person_code``, ``month``
    Person pseudonym and first day of the month.
``employed``, ``n_employers``
    Any employer report with positive income; number of employers reporting.
``earnings``, ``earnings_real``, ``days_worked``, ``hours_worked``, ``daily_wage_real``
    Sum over all jobs of gross income (EUR), deflated to the average price level
    of ``cpi_base_year``; days and hours summed over jobs (hours null when no
    employer reported hours); real earnings per day worked (null without days).
``employer_id``, ``nace_code``, ``nace_section``, ``nace_division``, ``sector``,
``size_class``, ``occupation_code``, ``skill_level``, ``contract_type``, ``part_time``
    Of the main job: the report with the highest income (ties: lowest employer
    pseudonym). Sections come from the NACE class; skill levels from ISCO-08.
``registered_unemployed``
    An NVA registration covers at least one day of the month.
``ub_days``, ``ub_amount``, ``sick_benefit_days``
    VSAA payments whose period starts in the month.
``sex``, ``age``
    Age in completed years on the first day of the month.

Assumptions
-----------
* Corrections and duplicates were resolved at ingest: each (person, employer,
  month) has one report.
* A person is in the panel from the later of the delivery start and the birth
  month, up to and including the month of death or emigration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

SOURCES = ("pmlp_persons", "vid_monthly_reports", "employers", "ref_nace_classes",
           "ref_isco", "nva_unemployment_spells", "vsaa_benefits", "ref_cpi")


@dataclass(frozen=True)
class PanelResult:
    """Where the panel went and how big it is."""

    folder: Path
    rows: int
    persons: int
    months: int


def _scan(sources: Path, table: str) -> pl.LazyFrame:
    folder = sources / table
    if not folder.exists():
        raise FileNotFoundError(f"source table {table!r} not found under {sources}; "
                                "run the ingest first")
    return pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=False)


def person_months(persons: pl.LazyFrame, first: date, last: date) -> pl.LazyFrame:
    """One row per person and month, alive and resident on the month's first day."""
    months = pl.LazyFrame({"month": pl.date_range(first, last, "1mo", eager=True)})
    exit_month = pl.min_horizontal(pl.col("death_date").dt.month_start(),
                                   pl.col("emigration_date").dt.month_start())
    p = persons.select("person_code", "sex", "birth_date", exit_month.alias("__exit"))
    grid = p.join(months, how="cross").filter(
        (pl.col("month") >= pl.col("birth_date").dt.month_start())
        & (pl.col("__exit").is_null() | (pl.col("month") <= pl.col("__exit"))))
    age = (pl.col("month").dt.year() - pl.col("birth_date").dt.year()
           - ((pl.col("month").dt.month() < pl.col("birth_date").dt.month())
              | ((pl.col("month").dt.month() == pl.col("birth_date").dt.month())
                 & (pl.col("birth_date").dt.day() > 1))).cast(pl.Int32))
    return grid.select("person_code", "month", "sex", age.cast(pl.Int16).alias("age"))


def employment(reports: pl.LazyFrame, employers: pl.LazyFrame, nace: pl.LazyFrame,
               isco: pl.LazyFrame) -> pl.LazyFrame:
    """Person-month employment: totals over jobs and the main job's attributes."""
    r = reports.select(
        "person_code", pl.col("period").alias("month"), "employer_id", "gross_income",
        "days_worked", "hours_worked", "occupation_code", "contract_type", "part_time")
    totals = r.group_by("person_code", "month").agg(
        (pl.col("gross_income") > 0).any().alias("employed"),
        pl.col("employer_id").n_unique().cast(pl.Int16).alias("n_employers"),
        pl.col("gross_income").sum().alias("earnings"),
        pl.col("days_worked").sum().cast(pl.Int32).alias("days_worked"),
        pl.when(pl.col("hours_worked").is_not_null().any())
        .then(pl.col("hours_worked").sum()).cast(pl.Int32).alias("hours_worked"),
    )
    main = (
        r.sort(["person_code", "month", "gross_income", "employer_id"],
               descending=[False, False, True, False])
        .group_by("person_code", "month").first()
        .select("person_code", "month", "employer_id", "occupation_code", "contract_type",
                "part_time")
    )
    emp = employers.select("employer_id", "nace_code", "sector", "size_class").join(
        nace.select("nace_code", pl.col("section").alias("nace_section"),
                    pl.col("division").alias("nace_division")), on="nace_code", how="left")
    main = main.join(emp, on="employer_id", how="left").join(
        isco.select(pl.col("isco_code").alias("occupation_code"), "skill_level"),
        on="occupation_code", how="left")
    return totals.join(main, on=["person_code", "month"], how="left")


def unemployment(spells: pl.LazyFrame, first: date, last: date) -> pl.LazyFrame:
    """Person-months covered by an NVA registration (overlapping spells merged)."""
    s = spells.select(
        "person_code",
        pl.max_horizontal(pl.col("registered_on").dt.month_start(), pl.lit(first)).alias("a"),
        pl.min_horizontal(pl.col("deregistered_on").fill_null(last).dt.month_start(),
                          pl.lit(last)).alias("b"),
    ).filter(pl.col("a") <= pl.col("b"))
    return (
        s.with_columns(pl.date_ranges("a", "b", "1mo").alias("month"))
        .explode("month")
        .select("person_code", "month")
        .unique()
        .with_columns(pl.lit(True).alias("registered_unemployed"))
    )


def benefits(payments: pl.LazyFrame) -> pl.LazyFrame:
    """Unemployment- and sickness-benefit days and amounts per person-month."""
    b = payments.with_columns(pl.col("period_start").dt.month_start().alias("month"))
    ub = pl.col("benefit_type") == "UNEMPLOYMENT"
    return b.group_by("person_code", "month").agg(
        pl.col("benefit_days").filter(ub).sum().cast(pl.Int16).alias("ub_days"),
        pl.col("amount").filter(ub).sum().alias("ub_amount"),
        pl.col("benefit_days").filter(~ub).sum().cast(pl.Int16).alias("sick_benefit_days"),
    )


def build(sources: Path, out: Path, cpi_base_year: int = 2024) -> PanelResult:
    """Build the panel from ``sources/`` (ingest output) into ``out/`` (year partitions).

    Parameters
    ----------
    sources
        Folder holding the clean source tables (``<data root>/sources``).
    out
        Folder receiving ``year=YYYY/part-0.parquet`` files.
    cpi_base_year
        Real amounts are in the average prices of this year.
    """
    reports = _scan(sources, "vid_monthly_reports")
    bounds = reports.select(pl.col("period").min().alias("a"),
                            pl.col("period").max().alias("b")).collect()
    first, last = bounds["a"][0], bounds["b"][0]
    cpi = _scan(sources, "ref_cpi")
    base = cpi.filter(pl.col("month").dt.year() == cpi_base_year).select(
        pl.col("cpi").mean()).collect().item()
    if base is None:
        raise ValueError(f"ref_cpi has no months in the base year {cpi_base_year}")
    grid = person_months(_scan(sources, "pmlp_persons"), first, last)
    emp = employment(reports, _scan(sources, "employers"), _scan(sources, "ref_nace_classes"),
                     _scan(sources, "ref_isco"))
    panel = (
        grid.join(emp, on=["person_code", "month"], how="left")
        .join(unemployment(_scan(sources, "nva_unemployment_spells"), first, last),
              on=["person_code", "month"], how="left")
        .join(benefits(_scan(sources, "vsaa_benefits")), on=["person_code", "month"],
              how="left")
        .join(cpi.select("month", (pl.col("cpi") / base).alias("__deflator")), on="month",
              how="left")
        .with_columns(
            pl.col("employed").fill_null(False),
            pl.col("n_employers").fill_null(0),
            pl.col("earnings").fill_null(0.0),
            pl.col("days_worked").fill_null(0),
            pl.col("registered_unemployed").fill_null(False),
            pl.col("ub_days").fill_null(0),
            pl.col("ub_amount").fill_null(0.0),
            pl.col("sick_benefit_days").fill_null(0),
        )
        .with_columns((pl.col("earnings") / pl.col("__deflator")).alias("earnings_real"))
        .with_columns(
            pl.when(pl.col("days_worked") > 0)
            .then(pl.col("earnings_real") / pl.col("days_worked")).alias("daily_wage_real"))
        .drop("__deflator")
    )
    out.mkdir(parents=True, exist_ok=True)
    df = panel.collect()
    for (year,), part in df.with_columns(pl.col("month").dt.year().alias("__y")).group_by(
            "__y", maintain_order=True):
        path = out / f"year={year}" / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("part-0.parquet.tmp")
        part.drop("__y").sort("person_code", "month").write_parquet(tmp, compression="zstd")
        tmp.replace(path)
    return PanelResult(folder=out, rows=df.height, persons=df["person_code"].n_unique(),
                       months=df["month"].n_unique())
