"""Sector benchmark: participants' earnings dynamics against their NACE division's average.

The ILA report's simpler "sector or firm" comparison (section 9.3, control-group approach 3,
and recommendation 5, "choose the wage-dynamics reference point carefully, e.g. relative to
the sector average"): set the participants' earnings path around the start of learning
beside the average path of all employees of the sector they worked in when they started, so
that sector-wide booms, crises and wage growth are not read as a training effect.

This is a *descriptive benchmark*, not a counterfactual: nothing adjusts for who chooses to
learn (see :func:`sector_benchmark`). The statistical twins (:mod:`impact.twins`) are the
evaluation's counterfactual; the benchmark is a cross-check reported beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import polars as pl

SERIES = ("earnings_real", "employed")
BASELINE = (-12, -1)


def _month_number(col: str | pl.Expr) -> pl.Expr:
    """Months since year 0 of a date column (differences are whole months)."""
    c = pl.col(col) if isinstance(col, str) else col
    return c.dt.year().cast(pl.Int32) * 12 + c.dt.month().cast(pl.Int32) - 1


_FIXED = 1024.0  # fixed-point scale of the earnings sums (a power of two: exact division)


def division_month_means(panel_dir: Path, months: tuple[int, int] | None = None) -> pl.DataFrame:
    """Mean real earnings of all employees per NACE division and calendar month.

    Employees of division ``d`` in month ``t``: every panel person-month with ``employed``
    true and main-job ``nace_division == d`` (participants included). One group-by per
    year folder of the panel (columns ``month``, ``employed``, ``nace_division``,
    ``earnings_real`` only), so memory is bounded by a year. Earnings are summed as integers
    in units of 1/1024 EUR: exact and independent of the order in which threads add them, so
    the means are the same in every run (floating-point sums over parallel chunks differed
    in the 13th digit); the rounding moves a mean by less than 0.0005 EUR.

    Parameters
    ----------
    panel_dir
        The panel folder (``panel/year=YYYY/*.parquet``).
    months
        Inclusive range of month numbers (``year * 12 + month - 1``) to keep; None: all.

    Returns
    -------
    polars.DataFrame
        ``nace_division``, ``month_no`` (month number), ``reference`` (mean real earnings of
        the division's employees) and ``n_employees``.
    """
    keep = pl.col("employed") & pl.col("nace_division").is_not_null()
    if months is not None:
        keep = keep & _month_number("month").is_between(*months)
    folders = sorted(p for p in Path(panel_dir).glob("year=*") if p.is_dir())
    parts = [
        pl.scan_parquet(folder / "*.parquet", hive_partitioning=False)
        .filter(keep)
        .group_by("nace_division", _month_number("month").alias("month_no"))
        .agg(
            (pl.col("earnings_real").cast(pl.Float64) * _FIXED).round().cast(pl.Int64).sum()
            .alias("__sum"),
            pl.len().cast(pl.Int64).alias("n_employees"),
        )
        .collect()
        for folder in folders
    ]
    if not parts:
        raise FileNotFoundError(f"no year folders under {panel_dir}")
    # a month lies in one year folder: the yearly groups are complete
    return (pl.concat(parts)
            .select("nace_division", "month_no",
                    (pl.col("__sum") / _FIXED / pl.col("n_employees")).alias("reference"),
                    "n_employees")
            .sort("nace_division", "month_no"))


def sector_benchmark(
    panel_dir: Path,
    treatment: pl.DataFrame,
    *,
    event_times: Sequence[int] = range(-36, 37),
    clock: Literal["start", "end"] = "start",
    baseline: tuple[int, int] = BASELINE,
    z: float = 1.959963984540054,
) -> pl.DataFrame:
    """Participants' earnings and employment paths beside their NACE division's average.

    For every participant (a row of ``research/treatment.parquet``: ``person_code``, cohort
    month ``cohort`` = start of the first ILA course, ``end_month``) the *division at entry* is
    the NACE division of their main job in the month before the start (``m-1``); participants
    not employed then have none and are left out (``n_no_division``). For event time ``e``
    (calendar month ``cohort + e`` on the start clock, ``end_month + e`` on the end clock):

    * ``participants``: the mean of the participants' outcome (real monthly earnings with
      zeros for months without work; employment 0/1) over the participants in the panel that
      month;
    * ``reference`` (earnings only): for each of those participants, the mean real earnings of
      *all* employees of their division at entry in that calendar month
      (:func:`division_month_means`), averaged over the participants: each participant gets
      their own division's path, so the reference has the participants' mix of divisions
      and calendar months;
    * ``participants_change``, ``reference_change``: each path minus its baseline, the mean
      over the start-clock months ``baseline`` (default -12..-1, both clocks, as in
      :mod:`impact.estimate.matched_did`), per participant, then averaged;
    * ``sector_adjusted``: the difference-in-differences ``participants_change -
      reference_change``, the participants' change net of the sector's (earnings only).

    Standard errors come from the participants' variation only: ``se_change`` and
    ``se_adjusted`` are ``sd / sqrt(n)`` of the per-participant change and difference at
    ``e``. Assumptions: participants are independent draws; the division-month means are
    fixed (they average thousands of employees; their sampling noise and the correlation
    between participants sharing a division and month, e.g. a common sector shock, are
    ignored, so the SEs are a lower bound when a few divisions dominate).

    What it is not: a counterfactual. The reference is the average of *employees* (all
    employed in that month; their composition changes as people enter and leave the
    division) while the participants' path includes months without work; participants are
    selected (they chose to learn, see report section 9.3) and nothing adjusts for that:
    no matching, no covariates. A participant leaving the sector, a lock-in dip or
    pre-existing individual trends (e.g. careers rising faster than the sector average) all
    move ``sector_adjusted``. Read it as "how the participants fared relative to the sector
    they came from", a benchmark for the twins' ATT, not an estimate of it.

    Parameters
    ----------
    panel_dir
        The panel folder (``ROOT/panel``, Parquet partitioned by year).
    treatment
        The participants: ``person_code``, ``cohort`` (first day of the start month) and,
        for the end clock, ``end_month``.
    event_times
        Event times to report.
    clock
        ``"start"`` (months since the start) or ``"end"`` (months since leaving).
    baseline
        Inclusive start-clock window of the baseline (pre-start months).
    z
        Normal quantile of the confidence intervals (default 95 %).

    Returns
    -------
    polars.DataFrame
        One row per ``series`` (``earnings_real``, ``employed``) and ``event_time``:
        ``clock``, ``n`` (participants observed), ``participants``, ``reference``,
        ``participants_change``, ``se_change``, ``reference_change``, ``sector_adjusted``,
        ``se_adjusted``, ``ci_low``, ``ci_high`` (of ``sector_adjusted``),
        ``n_participants`` (with a division at entry) and ``n_no_division``. The reference
        columns are null for ``employed`` (every employee is employed: there is no sector
        average of employment in this sense).
    """
    lo, hi = baseline
    if not lo <= hi < 0:
        raise ValueError(f"baseline must be a pre-start window (lo <= hi < 0); got {baseline}")
    if clock not in ("start", "end"):
        raise ValueError(f"clock must be 'start' or 'end' (got {clock!r})")
    events = sorted({int(e) for e in event_times})
    if not events:
        raise ValueError("no event times")
    need = ["person_code", "cohort", *(["end_month"] if clock == "end" else [])]
    missing = [c for c in need if c not in treatment.columns]
    if missing:
        raise KeyError(f"treatment table lacks columns {missing}")
    anchor = "cohort" if clock == "start" else "end_month"
    people = (
        treatment.select(need)
        .unique("person_code", keep="first", maintain_order=True)
        .with_columns(
            _month_number("cohort").alias("g"),
            _month_number(anchor).alias("a"),
        )
    )
    scan = pl.scan_parquet(Path(panel_dir) / "**" / "*.parquet", hive_partitioning=False)
    codes = people["person_code"]
    rows = (
        scan.filter(pl.col("person_code").is_in(codes.implode()))
        .select(
            "person_code",
            _month_number("month").alias("month_no"),
            pl.col("earnings_real").cast(pl.Float64),
            pl.col("employed").cast(pl.Float64),
            "nace_division",
        )
        .collect(engine="streaming")
        .sort("person_code", "month_no")  # the streaming engine's row order varies
        .join(people.select("person_code", "g", "a"), on="person_code", how="inner",
              maintain_order="left")
    )
    entry = (
        rows.filter(pl.col("month_no") == pl.col("g") - 1)
        .select("person_code", pl.col("nace_division").alias("division"))
        .filter(pl.col("division").is_not_null())
    )
    n_all = people.height
    n_div = entry.height
    rows = rows.join(entry, on="person_code", how="inner").with_columns(
        (pl.col("month_no") - pl.col("g")).alias("e_start"),
        (pl.col("month_no") - pl.col("a")).alias("event_time"),
    )
    if rows.height:
        span = (int(rows["month_no"].min()), int(rows["month_no"].max()))
    else:
        span = (0, -1)
    ref = division_month_means(panel_dir, span).select(
        pl.col("nace_division").alias("division"), "month_no", "reference"
    )
    rows = rows.join(ref, on=["division", "month_no"], how="left")
    # per-participant baselines over the start-clock window (observed months)
    in_base = pl.col("e_start").is_between(lo, hi)
    base = rows.group_by("person_code").agg(
        pl.col("earnings_real").filter(in_base).mean().alias("base_earnings_real"),
        pl.col("employed").filter(in_base).mean().alias("base_employed"),
        pl.col("reference").filter(in_base).mean().alias("base_reference"),
    )
    at = rows.filter(pl.col("event_time").is_in(events)).join(base, on="person_code", how="left")
    out = []
    for series in SERIES:
        y, b = pl.col(series), pl.col(f"base_{series}")
        has_ref = series == "earnings_real"
        d = at.filter(y.is_not_null() & b.is_not_null())
        if has_ref:
            d = d.filter(pl.col("reference").is_not_null() & pl.col("base_reference").is_not_null())
        d = d.with_columns(
            (y - b).alias("dy"),
            ((pl.col("reference") - pl.col("base_reference")) if has_ref
             else pl.lit(None, pl.Float64)).alias("dr"),
        ).with_columns((pl.col("dy") - pl.col("dr")).alias("dd"))
        agg = d.group_by("event_time").agg(
            pl.len().cast(pl.Int64).alias("n"),
            y.mean().alias("participants"),
            (pl.col("reference").mean() if has_ref else pl.lit(None, pl.Float64))
            .alias("reference"),
            pl.col("dy").mean().alias("participants_change"),
            (pl.col("dy").std() / pl.len().sqrt()).alias("se_change"),
            pl.col("dr").mean().alias("reference_change"),
            pl.col("dd").mean().alias("sector_adjusted"),
            (pl.col("dd").std() / pl.len().sqrt()).alias("se_adjusted"),
        )
        grid = pl.DataFrame({"event_time": events}, schema={"event_time": pl.Int32})
        out.append(
            grid.join(agg.with_columns(pl.col("event_time").cast(pl.Int32)),
                      on="event_time", how="left")
            .with_columns(pl.lit(series).alias("series"), pl.col("n").fill_null(0))
        )
    res = pl.concat(out, how="vertical_relaxed").with_columns(
        (pl.col("sector_adjusted") - z * pl.col("se_adjusted")).alias("ci_low"),
        (pl.col("sector_adjusted") + z * pl.col("se_adjusted")).alias("ci_high"),
        pl.lit(clock).alias("clock"),
        pl.lit(n_div, pl.Int64).alias("n_participants"),
        pl.lit(n_all - n_div, pl.Int64).alias("n_no_division"),
    )
    return res.select(
        "series", "clock", "event_time", "n", "participants", "reference",
        "participants_change", "se_change", "reference_change", "sector_adjusted",
        "se_adjusted", "ci_low", "ci_high", "n_participants", "n_no_division",
    )
