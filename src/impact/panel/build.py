"""Build the person-month panel and the episode tables from the clean sources.

The panel is built one calendar year at a time, and within a year one chunk of persons at
a time: each (year, chunk) is an independent query over the sources (dated register facts
before the year are folded into its first month, see :mod:`impact.panel.state`), collected
and written to ``year=YYYY/part-NNN.parquet`` before the next starts. Inside the build a
person is the dense ``pid`` (int32, pseudonym order), which keeps joins and window
functions on integers; the pseudonym is attached at the end. Peak memory is that of one
year's employer reports plus one chunk of person-months, not of the whole panel.

Assumptions
-----------
* ``sources`` is the output of :func:`impact.ingest.ingest` (pseudonymised, duplicates and
  corrections resolved).
* The data period is the range of months of the VID employer reports.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from impact import episodes as ep
from impact.atomic import write_parquet
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
    """The sources of one build, scanned once; small tables collected, keyed by ``pid``.

    Every source row is linked to its person through ``pid`` (an inner join on the
    pseudonym). The ingest has already enforced that every person code of the registers
    exists in the population register, so the join loses no rows.
    """

    def __init__(self, sources: Path, cpi_base_year: int) -> None:
        s = {t: scan(sources, t) for t in SOURCES}
        self.persons = demography.persons_frame(s["pmlp_persons"])
        self.codes = self.persons.select("pid", "person_code").lazy()
        self.reports = s["vid_monthly_reports"]
        self.employers, self.nace, self.isco = (s["employers"], s["ref_nace_classes"],
                                                s["ref_isco"])
        self.spells = self.to_pid(s["nva_unemployment_spells"]).collect().lazy()
        self.benefits = s["vsaa_benefits"]
        self.deflator = deflator(sources, cpi_base_year).collect().lazy()
        self.residence = self._events(demography.residence_events(
            s["pmlp_residence"], s["ref_municipalities"]))
        self.education = self._events(demography.education_events(s["viis_education"]))
        self.dependants = self._events(demography.dependant_events(s["pmlp_children"]))
        acc, gr, app = s["stars_accounts"], s["stars_grants"], s["stars_applications"]
        self.ila = self._events(learning.ila_events(acc, gr, app))
        self.ila_flags = self._events(learning.ila_month_flags(acc, app))
        self.first_start = self._events(learning.first_start(acc, app))
        self.prior = self._events(learning.prior_learning_events(s["stars_prior_learning"]))
        self.ila_persons = pl.concat([self.ila.select("pid"), self.prior.select("pid")]).unique()

    def to_pid(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """Replace ``person_code`` by ``pid``."""
        return frame.join(self.codes, on="person_code", how="inner").drop("person_code")

    def _events(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return self.to_pid(frame).collect().lazy()


class _Year:
    """The big sources of one year, aggregated to person-months once (all persons)."""

    def __init__(self, inp: _Inputs, first: date, last: date) -> None:
        reports = inp.to_pid(inp.reports.filter(pl.col("period").is_between(first, last)))
        self.employment = labour.employment(reports, inp.employers, inp.nace, inp.isco,
                                            key="pid").collect().lazy()
        self.unemployment = labour.unemployment(inp.spells, first, last,
                                                key="pid").collect().lazy()
        self.benefits = labour.benefits(inp.to_pid(inp.benefits.filter(
            pl.col("period_start").dt.month_start().is_between(first, last))),
            key="pid").collect().lazy()


def _subset_states(grid: pl.LazyFrame, inp: _Inputs, first: date, last: date) -> pl.LazyFrame:
    """ILA and prior-learning running sums, computed only for persons with such records."""
    sub = (grid.select("pid", "month").join(inp.ila_persons, on="pid", how="semi")
           .sort("pid", "month"))
    sub = state.cumulate(sub, inp.ila, learning.ILA_CUMULATIVE, first, last)
    return state.cumulate(sub, inp.prior, learning.PRIOR_CUMULATIVE, first, last)


def slice_panel(inp: _Inputs, year: _Year, first: date, last: date,
                pids: tuple[int, int] | None = None) -> pl.DataFrame:
    """Panel rows of the months ``first``..``last`` (within one year) for ``pid`` in
    ``[pids[0], pids[1])`` (all persons if ``None``), sorted by ``pid`` and ``month``.

    Every part (employment, unemployment, benefits, residence, education, dependants, ILA,
    prior learning) is computed on the narrow (pid, month) key frame in grid order and the
    parts are put side by side (:func:`impact.panel.state.align`): no wide joins, no final
    sort.
    """
    persons = inp.persons.lazy()
    if pids is not None:
        persons = persons.filter(pl.col("pid").is_between(pids[0], pids[1], closed="left"))
    grid = demography.person_months(persons, first, last).sort("pid", "month").collect()
    k = grid.select("pid", "month").lazy()
    keys = ["pid", "month"]
    lo, hi = (pids if pids is not None else (0, inp.persons.height))

    def left(right: pl.LazyFrame, on: list[str] | str = keys) -> pl.DataFrame:
        if on != "month":  # only this chunk's persons
            right = right.filter(pl.col("pid").is_between(lo, hi, closed="left"))
        cols = [on] if isinstance(on, str) else on
        return state.align(grid, right.collect(), cols)

    def drop_keys(frame: pl.LazyFrame) -> pl.DataFrame:
        return frame.drop(keys).collect()

    parts = [
        left(year.employment),
        left(year.unemployment),
        left(year.benefits),
        drop_keys(state.carry_forward(k, inp.residence, ["municipality_code", "region_code",
                                                         "urbanisation"], "__order", first,
                                      last)),
        drop_keys(state.carry_forward(k, inp.education, ["isced_level", "isced_field"],
                                      "__order", first, last)),
        drop_keys(state.cumulate(k, inp.dependants, ["dependants"], first, last)),
        left(_subset_states(k, inp, first, last)),
        left(inp.ila_flags),
        left(inp.first_start, on="pid"),
        left(inp.deflator, on="month"),
        left(inp.codes, on="pid"),
    ]
    p = pl.concat([grid, *parts], how="horizontal").lazy()
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
    return p.select(names("panel")).collect()


def build(sources: Path, out: Path, cpi_base_year: int = 2024,
          years: list[int] | None = None, chunk_persons: int = 400_000) -> PanelResult:
    """Build the panel from ``sources/`` (ingest output) into ``out/year=YYYY/``.

    Parameters
    ----------
    sources
        Folder holding the clean source tables (``<data root>/sources``).
    out
        Folder receiving ``year=YYYY/part-NNN.parquet`` (one part per chunk of persons, in
        ``pid`` = pseudonym order); each year folder is replaced as a whole.
    cpi_base_year
        Real amounts are in the average prices of this year.
    years
        Build only these years (default: every year of the data period).
    chunk_persons
        Persons per part: peak memory grows with this, not with the population.
    """
    first, last = data_period(sources)
    inp = _Inputs(sources, cpi_base_year)
    n = inp.persons.height
    todo = years or list(range(first.year, last.year + 1))
    rows: dict[int, int] = {}
    secs: dict[int, float] = {}
    months = 0
    for y in todo:
        t0 = time.perf_counter()
        a, b = max(first, date(y, 1, 1)), min(last, date(y, 12, 1))
        if a > b:
            continue
        year = _Year(inp, a, b)
        folder = out / f"year={y}"
        tmp_dir = out / f".year={y}.tmp"
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        tmp_dir.mkdir(parents=True)
        rows[y] = 0
        for c, lo in enumerate(range(0, max(n, 1), chunk_persons)):
            df = slice_panel(inp, year, a, b, (lo, lo + chunk_persons))
            df.write_parquet(tmp_dir / f"part-{c:03d}.parquet", compression="zstd",
                             statistics=True)
            rows[y] += df.height
        if folder.exists():
            shutil.rmtree(folder)
        tmp_dir.rename(folder)
        months += (b.year - a.year) * 12 + b.month - a.month + 1
        secs[y] = round(time.perf_counter() - t0, 2)
    n_persons = pl.scan_parquet(out / "**" / "*.parquet", hive_partitioning=False).select(
        pl.col("pid").n_unique()).collect().item()
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
        write_parquet(df.select(names(name)), out / f"{name}.parquet", statistics=True)
        counts[name] = df.height
    return counts
