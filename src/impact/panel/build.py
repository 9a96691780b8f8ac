"""Build the person-month panel and the episode tables from the clean sources.

The panel is built one calendar year at a time: each year is an independent query over the
sources (dated register facts before the year are folded into its first month, see
:mod:`impact.panel.state`), collected and written to ``year=YYYY/part-0.parquet`` before
the next starts. Peak memory is therefore that of one year of person-months, not of the
whole panel.

Assumptions
-----------
* ``sources`` is the output of :func:`impact.ingest.ingest` (pseudonymised, duplicates and
  corrections resolved).
* The data period is the range of months of the VID employer reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from impact import episodes as ep
from impact.panel import demography, labour, learning, state
from impact.panel.dictionary import names

#: Source tables the panel reads.
SOURCES = ("pmlp_persons", "pmlp_residence", "pmlp_children", "viis_education",
           "vid_monthly_reports", "employers", "ref_nace_classes", "ref_isco",
           "ref_municipalities", "ref_cpi", "nva_unemployment_spells", "vsaa_benefits",
           "stars_accounts", "stars_grants", "stars_programmes", "stars_applications",
           "stars_prior_learning")


@dataclass(frozen=True)
class PanelResult:
    """Where the panel went and how big it is."""

    folder: Path
    rows: int
    persons: int
    months: int
    rows_by_year: dict[int, int] = field(default_factory=dict)
    seconds_by_year: dict[int, float] = field(default_factory=dict)


def scan(sources: Path, table: str) -> pl.LazyFrame:
    """Lazy scan of one clean source table (all its year partitions)."""
    folder = sources / table
    if not folder.exists():
        raise FileNotFoundError(f"source table {table!r} not found under {sources}; "
                                "run the ingest first")
    return pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=False)


def data_period(sources: Path) -> tuple[date, date]:
    """First and last month of the employer reports."""
    b = scan(sources, "vid_monthly_reports").select(
        pl.col("period").min().alias("a"), pl.col("period").max().alias("b")).collect()
    return b["a"][0], b["b"][0]


def deflator(sources: Path, cpi_base_year: int) -> pl.LazyFrame:
    """``month`` -> CPI relative to the mean of ``cpi_base_year``."""
    cpi = scan(sources, "ref_cpi")
    base = cpi.filter(pl.col("month").dt.year() == cpi_base_year).select(
        pl.col("cpi").mean()).collect().item()
    if base is None:
        raise ValueError(f"ref_cpi has no months in the base year {cpi_base_year}")
    return cpi.select("month", (pl.col("cpi") / base).alias("__deflator"))


class _Inputs:
    """The sources of one build, scanned once; small tables collected."""

    def __init__(self, sources: Path, cpi_base_year: int) -> None:
        s = {t: scan(sources, t) for t in SOURCES}
        self.persons = demography.persons_frame(s["pmlp_persons"])
        self.reports = s["vid_monthly_reports"]
        self.employers, self.nace, self.isco = (s["employers"], s["ref_nace_classes"],
                                                s["ref_isco"])
        self.spells, self.benefits = s["nva_unemployment_spells"], s["vsaa_benefits"]
        self.deflator = deflator(sources, cpi_base_year).collect().lazy()
        self.residence = demography.residence_events(
            s["pmlp_residence"], s["ref_municipalities"]).collect().lazy()
        self.education = demography.education_events(s["viis_education"]).collect().lazy()
        self.dependants = demography.dependant_events(s["pmlp_children"]).collect().lazy()
        acc, gr, app = s["stars_accounts"], s["stars_grants"], s["stars_applications"]
        self.ila = learning.ila_events(acc, gr, app).collect().lazy()
        self.ila_flags = learning.ila_month_flags(acc, app).collect().lazy()
        self.first_start = learning.first_start(acc, app).collect().lazy()
        self.prior = learning.prior_learning_events(s["stars_prior_learning"]).collect().lazy()
        self.ila_persons = pl.concat([self.ila.select("person_code"),
                                      self.prior.select("person_code")]).unique()


def _subset_states(grid: pl.LazyFrame, inp: _Inputs, first: date, last: date) -> pl.LazyFrame:
    """ILA and prior-learning running sums, computed only for persons with such records."""
    sub = grid.select("person_code", "month").join(inp.ila_persons, on="person_code",
                                                   how="semi")
    sub = state.cumulate(sub, inp.ila, learning.ILA_CUMULATIVE, first, last)
    return state.cumulate(sub, inp.prior, learning.PRIOR_CUMULATIVE, first, last)


def year_panel(inp: _Inputs, first: date, last: date) -> pl.LazyFrame:
    """The panel rows of the months ``first``..``last`` (one year or less)."""
    grid = demography.person_months(inp.persons, first, last)
    in_slice = pl.col("period").is_between(first, last)
    emp = labour.employment(inp.reports.filter(in_slice), inp.employers, inp.nace, inp.isco)
    ben = labour.benefits(inp.benefits.filter(
        pl.col("period_start").dt.month_start().is_between(first, last)))
    keys = ["person_code", "month"]
    p = (grid.join(emp, on=keys, how="left")
         .join(labour.unemployment(inp.spells, first, last), on=keys, how="left")
         .join(ben, on=keys, how="left"))
    p = state.carry_forward(p, inp.residence, ["municipality_code", "region_code",
                                               "urbanisation"], "__order", first, last)
    p = state.carry_forward(p, inp.education, ["isced_level", "isced_field"], "__order",
                            first, last)
    p = state.cumulate(p, inp.dependants, ["dependants"], first, last)
    p = (p.join(_subset_states(grid, inp, first, last), on=keys, how="left")
         .join(inp.ila_flags, on=keys, how="left")
         .join(inp.first_start, on="person_code", how="left")
         .join(inp.deflator, on="month", how="left"))
    zeros = {"n_employers": 0, "earnings": 0.0, "days_worked": 0, "ub_days": 0,
             "ub_amount": 0.0, "sick_benefit_days": 0, "ila_grant_balance": 0.0,
             "ila_started": 0, "ila_completed": 0, "ila_dropped": 0, "ila_courses_cum": 0,
             "ila_spend_cum": 0.0, "ila_co_payment_cum": 0.0, "prior_learning_courses": 0,
             "prior_learning_completed": 0}
    p = p.with_columns(
        *[pl.col(c).fill_null(v) for c, v in zeros.items()],
        pl.col("employed").fill_null(False),
        pl.col("registered_unemployed").fill_null(False),
        (pl.col("ila_account").fill_null(0) > 0).alias("ila_account"),
        (pl.col("ila_in_training").fill_null(0) > 0).alias("ila_in_training"),
        pl.col("dependants").cast(pl.Int16),
        (pl.col("ila_first_start").is_null() | (pl.col("month") < pl.col("ila_first_start")))
        .alias("not_yet_treated"),
    ).with_columns((pl.col("earnings") / pl.col("__deflator")).alias("earnings_real")
    ).with_columns(
        pl.when(pl.col("days_worked") > 0)
        .then(pl.col("earnings_real") / pl.col("days_worked")).alias("daily_wage_real"),
        pl.when(pl.col("hours_complete") & (pl.col("hours_worked") > 0))
        .then(pl.col("earnings_real") / pl.col("hours_worked")).alias("hourly_wage_real"),
    )
    return p.select(names("panel"))


def _write(df: pl.DataFrame, path: Path) -> None:
    """Write atomically: a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.write_parquet(tmp, compression="zstd", statistics=True)
    tmp.replace(path)


def build(sources: Path, out: Path, cpi_base_year: int = 2024,
          years: list[int] | None = None) -> PanelResult:
    """Build the panel from ``sources/`` (ingest output) into ``out/year=YYYY/``.

    Parameters
    ----------
    sources
        Folder holding the clean source tables (``<data root>/sources``).
    out
        Folder receiving ``year=YYYY/part-0.parquet``; each year file is replaced
        atomically.
    cpi_base_year
        Real amounts are in the average prices of this year.
    years
        Build only these years (default: every year of the data period).
    """
    first, last = data_period(sources)
    inp = _Inputs(sources, cpi_base_year)
    todo = years or list(range(first.year, last.year + 1))
    rows: dict[int, int] = {}
    secs: dict[int, float] = {}
    months = 0
    for y in todo:
        t0 = time.perf_counter()
        a, b = max(first, date(y, 1, 1)), min(last, date(y, 12, 1))
        if a > b:
            continue
        df = year_panel(inp, a, b).sort("person_code", "month").collect()
        _write(df, out / f"year={y}" / "part-0.parquet")
        rows[y] = df.height
        months += df["month"].n_unique()
        secs[y] = round(time.perf_counter() - t0, 2)
    n_persons = pl.scan_parquet(out / "**" / "*.parquet", hive_partitioning=False).select(
        pl.col("person_code").n_unique()).collect().item()
    return PanelResult(folder=out, rows=sum(rows.values()), persons=n_persons, months=months,
                       rows_by_year=rows, seconds_by_year=secs)


def build_episodes(sources: Path, out: Path) -> dict[str, int]:
    """Write ``episodes``, ``treatment`` and ``near_participants`` Parquet tables to ``out``.

    Returns
    -------
    dict
        Rows written per table.
    """
    acc, gr, app, prog = (scan(sources, t) for t in ("stars_accounts", "stars_grants",
                                                     "stars_applications", "stars_programmes"))
    e = ep.episodes(app, acc, prog, gr).collect()
    tables = {
        "episodes": e,
        "treatment": ep.treatment(e.lazy()).collect(),
        "near_participants": ep.near_participants(acc, gr, app).collect(),
    }
    counts = {}
    for name, df in tables.items():
        _write(df.select(names(name)), out / f"{name}.parquet")
        counts[name] = df.height
    return counts
