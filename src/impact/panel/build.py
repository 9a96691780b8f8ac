"""Build the person-month panel and the episode tables from the clean sources.

The panel is built one calendar year at a time, and within a year one chunk of persons at
a time. Per year, the big sources (employer reports, unemployment spells, benefits) are
aggregated to person-months once, for all persons, and put in the order of the year's
person-month grid (:class:`impact.panel.state.Grid`: the row of a person-month is
arithmetic, so nothing is joined to the grid); dated register facts are looked up per
chunk (events before the year are folded into its first month, see
:mod:`impact.panel.state`). Each chunk's rows are assembled side by side from slices and
gathers and written to ``year=YYYY/part-NNN.parquet`` by a second thread while the next
chunk is computed. Inside the build a person is the dense ``pid`` (int32, pseudonym order)
and an employer a row number of the year's employer table; the pseudonyms and the employer
attributes are attached per chunk. Peak memory is that of one year's employer reports and
grid-ordered parts plus two chunks of person-months, not of the whole panel.

Assumptions
-----------
* ``sources`` is the output of :func:`impact.ingest.ingest` (pseudonymised, duplicates and
  corrections resolved).
* The data period is the range of months of the VID employer reports.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from impact import episodes as ep
from impact.atomic import replace_folder, write_parquet
from impact.faults import checkpoint
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
    #: from the start of the year's computation until its folder is in place (the last
    #: part's write overlaps the next year's computation)
    seconds_by_year: dict[int, float] = field(default_factory=dict)


def scan(sources: Path, table: str) -> pl.LazyFrame:
    """Lazy scan of one clean source table (all its year partitions)."""
    folder = sources / table
    if not folder.exists():
        raise FileNotFoundError(f"source table {table!r} not found under {sources}; "
                                "run the ingest first")
    return pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=False)


def person_codes(sources: Path) -> pl.Series:
    """The pseudonymous code of every ``pid`` of a panel built from ``sources`` (row ``i`` is
    ``pid`` ``i``: the population register sorted by code, as :func:`build` numbers it)."""
    return (scan(sources, "pmlp_persons").select("person_code").sort("person_code")
            .collect().to_series())


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

    Every source row is linked to its person through ``pid`` (a join on the pseudonym).
    The ingest has already enforced that every person code of the registers exists in the
    population register, so the join loses no rows.
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
        self.deflator = deflator(sources, cpi_base_year).collect()
        self.residence = state.Latest(self._events(demography.residence_events(
            s["pmlp_residence"], s["ref_municipalities"])),
            ["municipality_code", "region_code", "urbanisation"], "__order")
        self.education = state.Latest(demography.education_events(
            self.to_pid(s["viis_education"]), key="pid").collect(),
            ["isced_level", "isced_field"], "__order")
        self.dependants = self._events(demography.dependant_events(s["pmlp_children"]))
        acc, gr, app = s["stars_accounts"], s["stars_grants"], s["stars_applications"]
        self.ila = self._events(learning.ila_events(acc, gr, app))
        self.ila_flags = self._events(learning.ila_month_flags(acc, app))
        first = self._events(learning.first_start(acc, app))
        #: ``ila_first_start`` of every person, row = pid
        self.first_start = self.persons.select("pid").join(
            first, on="pid", how="left", maintain_order="left").select("ila_first_start")
        self.prior = self._events(learning.prior_learning_events(s["stars_prior_learning"]))

    def to_pid(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """Replace ``person_code`` by ``pid``."""
        return frame.join(self.codes, on="person_code", how="inner").drop("person_code")

    def to_pid_now(self, frame: pl.LazyFrame) -> pl.DataFrame:
        """:meth:`to_pid`, collected; for big frames (a hash join, see
        :func:`impact.panel.state.code_index`)."""
        f = frame.collect()
        pid = state.code_index(f["person_code"], self.persons["person_code"])
        f = f.with_columns(pid.cast(pl.Int32).alias("pid")).drop("person_code")
        return f.filter(pl.col("pid").is_not_null()) if pid.null_count() else f

    def _events(self, frame: pl.LazyFrame) -> pl.DataFrame:
        return self.to_pid(frame).collect()


class _Year:
    """The sources of one slice of months (within a year) for the persons ``lo..hi-1`` (a
    block; all persons by default): aggregated to person-months and put in grid order once;
    each chunk of persons of the block then slices them.

    A block reads only its persons' monthly reports and benefit payments (a range of
    pseudonyms, since ``pid`` follows the pseudonym order), so memory follows the block.
    """

    def __init__(self, inp: _Inputs, first: date, last: date, lo: int = 0,
                 hi: int | None = None) -> None:
        n = inp.persons.height
        hi = n if hi is None else hi
        g = demography.grid(inp.persons, first, last)
        self.grid = g = g if (lo, hi) == (0, n) else g.block(lo, hi)
        if (lo, hi) == (0, n) or lo >= hi:
            mine = pl.lit(True)
        else:
            codes = inp.persons["person_code"]
            mine = pl.col("person_code").is_between(pl.lit(codes[lo]), pl.lit(codes[hi - 1]))
        reports = inp.to_pid_now(inp.reports.filter(pl.col("period").is_between(first, last)
                                                    & mine)
                                 .select("person_code", *labour.REPORT_COLUMNS))
        self.employment, self.employers = labour.employment(
            reports.lazy(), inp.employers, inp.nace, inp.isco, g, key="pid")
        del reports
        self.unemployment = state.Keyed(labour.unemployment(inp.spells, first, last,
                                                            key="pid").collect(), g)
        self.benefits = state.Keyed(labour.benefits(inp.to_pid(inp.benefits.filter(
            pl.col("period_start").dt.month_start().is_between(first, last) & mine)),
            key="pid").collect(), g)
        self.ila_flags = state.Keyed(inp.ila_flags.filter(
            pl.col("month").is_between(first, last)), g)
        self.dependants = state.Running(inp.dependants, ["dependants"], g)
        self.ila = state.Running(inp.ila, learning.ILA_CUMULATIVE, g)
        self.prior = state.Running(inp.prior, learning.PRIOR_CUMULATIVE, g)
        months = pl.DataFrame([g.months])
        self.deflator = months.join(inp.deflator, on="month", how="left",
                                    maintain_order="left").select("__deflator")


def slice_panel(inp: _Inputs, year: _Year, lo: int, hi: int) -> pl.DataFrame:
    """Panel rows of the slice of ``year`` for ``pid`` in ``[lo, hi)``, sorted by ``pid``
    and ``month``.

    Every part (employment, unemployment, benefits, residence, education, dependants, ILA,
    prior learning) is sliced or gathered in grid order by row numbers computed from the
    keys (:mod:`impact.panel.state`) and the parts are put side by side: no joins, no sort.
    Employers are carried as row numbers of the year's employer table and decoded here.
    """
    g = year.grid
    rows = g.chunk(lo, hi)
    grid = demography.person_months(inp.persons, rows)
    emp = year.employment.slice(rows.base, rows.height)
    employer = state.take(year.employers, emp["__employer"].cast(pl.Int32).fill_null(-1)
                          .to_numpy())
    parts = [
        emp.drop("__employer"),
        employer,
        year.unemployment.on(rows),
        year.benefits.on(rows),
        inp.residence.on(rows),
        inp.education.on(rows),
        year.dependants.on(rows),
        year.ila.on(rows),
        year.prior.on(rows),
        year.ila_flags.on(rows),
        inp.first_start.slice(lo, hi - lo).select(
            pl.all().gather(pl.Series(rows.pid - lo, dtype=pl.UInt32))),
        year.deflator.select(pl.all().gather(pl.Series(rows.month - g.first,
                                                       dtype=pl.UInt32))),
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


def _write_part(df: pl.DataFrame, path: Path) -> None:
    df.write_parquet(path, compression="zstd", compression_level=1, statistics=True,
                     row_group_size=512 * 1024)


def _publish(parts: list[Future], tmp_dir: Path, folder: Path, secs: dict[int, float],
             y: int, t0: float) -> None:
    """Put a year's folder in place once all its parts are written.

    The old folder is renamed aside first and removed after the new one is in place, so a
    reader sees the old year or the new one (or, for the instant between the two renames,
    no file of that year), never a mixture or a partial part.
    """
    for part in parts:
        part.result()
    checkpoint(folder)
    out = folder.parent  # aside, outside ``out`` (hidden folders in it are read too)
    replace_folder(tmp_dir, folder, out.parent / f".{out.name}.{folder.name}.old")
    secs[y] = round(time.perf_counter() - t0, 2)


def build(sources: Path, out: Path, cpi_base_year: int = 2024,
          years: list[int] | None = None, chunk_persons: int = 400_000,
          block_persons: int | None = None) -> PanelResult:
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
        Persons per part (at most; a block's last part may be smaller).
    block_persons
        Persons whose year of sources (monthly reports aggregated to person-months, benefit
        payments) is held at a time; ``None``: everyone. Peak memory grows with this and
        ``chunk_persons``; what grows with the population besides is small (per person:
        the register entry, residence and education events). The panel's rows do not
        depend on either setting, only its part files.

    A part is written (Parquet, zstd level 1) by a second thread while the next part is
    computed; a year's folder is put in place when its last part is written.
    """
    first, last = data_period(sources)
    inp = _Inputs(sources, cpi_base_year)
    n = inp.persons.height
    todo = years or list(range(first.year, last.year + 1))
    rows: dict[int, int] = {}
    secs: dict[int, float] = {}
    months = 0
    out.mkdir(parents=True, exist_ok=True)
    # one thread writes the parts (one at a time, in order) while the next is computed
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future | None = None
        for y in todo:
            t0 = time.perf_counter()
            a, b = max(first, date(y, 1, 1)), min(last, date(y, 12, 1))
            if a > b:
                continue
            # beside ``out``, not in it: readers glob out/**/*.parquet, hidden folders included
            tmp_dir = out.parent / f".{out.name}.year={y}.tmp"
            if tmp_dir.exists():
                shutil.rmtree(tmp_dir)
            tmp_dir.mkdir(parents=True)
            rows[y] = 0
            parts = []
            block = block_persons or max(n, 1)
            for b_lo in range(0, max(n, 1), block):
                b_hi = min(b_lo + block, n)
                year = _Year(inp, a, b, b_lo, b_hi)
                for lo in range(b_lo, max(b_hi, 1), chunk_persons):
                    df = slice_panel(inp, year, lo, min(lo + chunk_persons, b_hi))
                    rows[y] += df.height
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(_write_part, df,
                                            tmp_dir / f"part-{len(parts):03d}.parquet")
                    parts.append(pending)
                    del df
                year = None
            pending = writer.submit(_publish, parts, tmp_dir, out / f"year={y}", secs, y, t0)
            months += (b.year - a.year) * 12 + b.month - a.month + 1
        if pending is not None:
            pending.result()
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
