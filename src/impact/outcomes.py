"""Event-time outcome trajectories of treated persons and their statistical twins.

For every matched treated person ``i`` (cohort month ``g_i`` = month of the first ILA start,
leaving month ``l_i`` = end month of that first course) and every twin ``j`` of ``i``, the
monthly outcomes are laid out on two event-time clocks:

``start``
    event time ``e = t - g_i`` (``e = 0`` is the start month, ``e < 0`` the pre-period);
``end``
    event time ``e = t - l_i`` (``e = 0`` is the leaving month; the 6, 12 and 24-month
    horizons of the ILA indicators are ``e = 6, 12, 24`` on this clock).

**Twins take the treated person's calendar months**: twin ``j`` of ``i`` at event time ``e``
is observed in calendar month ``t = g_i + e`` (start clock) or ``t = l_i + e`` (end clock),
whatever the twin itself does. A twin therefore carries the same calendar shocks (season,
sector cycles, CPI) as its treated person.

Outcomes (:data:`OUTCOMES`)
---------------------------
``earnings_real``
    Real gross monthly earnings from all jobs (EUR, CPI base-year prices); 0 without a job.
``daily_wage_real``
    Real daily wage ``earnings_real / days_worked``; **missing when no days were worked**.
``employed``, ``days_worked``
    Any employer report with positive income (0/1); days worked over all jobs.
``registered_unemployed``, ``ub_days``, ``sick_benefit_days``
    Registered at the NVA in the month (0/1); unemployment-benefit days; sickness days.
``skill_level``
    ISCO-08 skill level (1-4) of the main job; **0 when not employed** (the convention of the
    synthetic ground truth, so that the outcome mixes the employment and the upgrading
    margin); missing when employed but the occupation code is missing in the register.
``sector_rel_wage``
    Relative average wage of the main job's NACE section from the reference table
    ``ref_nace_sections.rel_wage`` (:func:`load_sector_rel_wage`); missing when not employed
    or the section is unknown. Needs the reference table.
``sector_daily_wage``
    Mean real daily wage of all persons working in the main job's NACE section in that
    calendar month, computed from the panel itself (:func:`sector_daily_wage_table`; a
    time-varying alternative to the reference table); missing when not employed.

Censoring and missing months
----------------------------
Each cell carries a status (:class:`Status`) and the value is NaN unless the status is
``OBSERVED`` (and the outcome is defined, e.g. a daily wage needs days worked):

``BEYOND_DATA``
    The calendar month lies before the first or after the last loaded month (right
    censoring by the end of the data). Applies to a treated person and all its twins alike.
``OUT_OF_PANEL``
    The person has no panel row that month: died or emigrated (the population register
    ends the person), or not yet resident. Such months are **missing, not zero**: an
    emigrant's earnings abroad are unknown, and a zero would mix mortality and migration
    into the effect. The estimator drops the treated person from that event time (or, for a
    twin, renormalises the remaining twins' weights). Counts per event time are in
    :meth:`EventGrid.status_counts`. (The synthetic truth writes zeros for both potential
    paths after exit, i.e. an individual effect of 0 there; the truth-recovery benchmark
    reports the truth on the estimate's own sample.)
``OWN_START``
    Twins only: the twin starts ILA learning itself (allowed by the ``not_yet_treated``
    pool) in or before this calendar month, so it is no longer an untreated comparison:
    censored from its own first start month on. Months before its own start are kept.

Identifying assumptions carried by the estimators built on these trajectories: conditional
parallel trends of treated persons and their matched twins given the matching features, no
anticipation of the start (pre-period months are untreated outcomes), SUTVA (no spill-overs
from participants to twins), and non-informative censoring (a twin's own later start and
exits from the panel are unrelated to its untreated outcome trend given the features).

Everything is vectorised over persons: the grids are filled by fancy indexing of the dense
:class:`impact.twins.features.PanelArrays` (``[person, event time]`` index arrays); the only
Python loops run over outcomes, clocks, cohort months or calendar months.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

from impact.twins.features import PanelArrays

if TYPE_CHECKING:
    from impact.estimate.bias_correction import MatchCovariates

__all__ = [
    "CLOCKS",
    "OUTCOMES",
    "Clock",
    "EventGrid",
    "Status",
    "Trajectories",
    "build_trajectories",
    "candidate_change_means",
    "load_sector_rel_wage",
    "outcome_values",
    "sector_daily_wage_table",
]

Clock = Literal["start", "end"]
CLOCKS: tuple[Clock, ...] = ("start", "end")

#: Outcome name -> short description (see the module docstring for the definitions).
OUTCOMES: dict[str, str] = {
    "earnings_real": "real monthly earnings, EUR (base-year prices)",
    "daily_wage_real": "real daily wage, EUR/day (missing without days worked)",
    "employed": "employed (0/1)",
    "days_worked": "days worked in the month",
    "registered_unemployed": "registered unemployed (0/1)",
    "ub_days": "unemployment-benefit days",
    "sick_benefit_days": "sickness days",
    "skill_level": "ISCO-08 skill level of the main job (0 when not employed)",
    "sector_rel_wage": "relative wage of the main job's NACE section (reference table)",
    "sector_daily_wage": "mean real daily wage of the main job's NACE section and month",
}


class Status(IntEnum):
    """Why a cell of an event-time grid is (not) observed."""

    OBSERVED = 0
    BEYOND_DATA = 1
    OUT_OF_PANEL = 2
    OWN_START = 3


def load_sector_rel_wage(sources: Path) -> dict[str, float]:
    """``{NACE section: rel_wage}`` from ``sources/ref_nace_sections`` (Parquet)."""
    path = sources / "ref_nace_sections"
    df = pl.read_parquet(path / "**" / "*.parquet" if path.is_dir() else path)
    return dict(zip(df["section"].to_list(), df["rel_wage"].to_list(), strict=True))


def sector_daily_wage_table(arrays: PanelArrays) -> np.ndarray:
    """Mean real daily wage by NACE section code and month, shape ``(n_sections, n_months)``.

    Averages ``daily_wage_real`` over every panel person-month with days worked and a known
    main-job section (all persons, not only the evaluation sample). NaN where no one worked.
    The loop runs over calendar months; each month is one vectorised ``bincount``.

    When ``arrays`` hold only some persons (``arrays.source_pid``; rows indexed by the codes
    of ``arrays.levels``), the table is computed from every person of the panel under
    ``arrays.panel_dir`` instead (:func:`_panel_sector_daily_wage`: the same sums in the same
    order, hence the same values), once, and cached in ``arrays.population``.
    """
    if arrays.source_pid is not None:
        table = arrays.population.get("sector_daily_wage")
        if table is None:
            table = _panel_sector_daily_wage(arrays)
            arrays.population["sector_daily_wage"] = table
        return table
    codes = arrays.codes["nace_section"]
    days = arrays.series["days_worked"]
    wage = arrays.series["daily_wage_real"]
    n_sec = len(arrays.levels["nace_section"])
    out = np.full((n_sec, len(arrays.months)), np.nan)
    for t in range(len(arrays.months)):
        c = codes[:, t]
        ok = (c >= 0) & (days[:, t] > 0)
        if not ok.any():
            continue
        s = np.bincount(c[ok], weights=wage[ok, t].astype(np.float64), minlength=n_sec)
        n = np.bincount(c[ok], minlength=n_sec)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, t] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return out


def _panel_sector_daily_wage(arrays: PanelArrays) -> np.ndarray:
    """:func:`sector_daily_wage_table` over every person of ``arrays.panel_dir``.

    One query per year of the loaded months, for the person-months with days worked and a
    section among ``arrays.levels["nace_section"]`` (a section no loaded person ever holds
    is never looked up). The wages are cast as :meth:`PanelArrays.load` casts them (float32)
    and summed by ``bincount`` in pid order within each section and month, as the
    whole-panel arrays sum them, so the table is bit-identical to theirs.
    """
    if arrays.panel_dir is None:
        raise ValueError("a subset of the panel needs its panel_dir for the sector wage table")
    levels = arrays.levels["nace_section"]
    n_sec, n_months = len(levels), len(arrays.months)
    first, last = arrays.months[0], arrays.months[-1]
    scan = pl.scan_parquet(Path(arrays.panel_dir) / "**" / "*.parquet", hive_partitioning=False)
    month = (pl.col("month").dt.year().cast(pl.Int64) - first.year) * 12 + (
        pl.col("month").dt.month().cast(pl.Int64) - first.month)
    s = np.zeros(n_months * n_sec)
    n = np.zeros(n_months * n_sec, dtype=np.int64)
    for year in range(first.year, last.year + 1):
        df = (
            scan.filter(
                (pl.col("month").dt.year() == year)
                & pl.col("month").is_between(first, last)
                & (pl.col("days_worked").fill_null(0).cast(pl.Int16) > 0)
                & pl.col("nace_section").is_in(levels)
            )
            .select(
                "pid",
                (month * n_sec + pl.col("nace_section").cast(pl.Enum(levels)).to_physical()
                 .cast(pl.Int64)).alias("key"),
                pl.col("daily_wage_real").fill_null(0).cast(pl.Float32).alias("w"),
            )
            .sort("pid")
            .collect()
        )
        key = df["key"].to_numpy()
        s += np.bincount(key, weights=df["w"].to_numpy().astype(np.float64), minlength=s.size)
        n += np.bincount(key, minlength=n.size)
        del df, key
    s, n = s.reshape(n_months, n_sec).T, n.reshape(n_months, n_sec).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _lookup(arrays: PanelArrays, rel_wage: Mapping[str, float]) -> np.ndarray:
    """Reference rel_wage per section code (+ a trailing NaN for code -1)."""
    lv = arrays.levels["nace_section"]
    return np.array([float(rel_wage.get(s, np.nan)) for s in lv] + [np.nan])


def outcome_values(
    arrays: PanelArrays,
    name: str,
    pid: np.ndarray,
    t: np.ndarray,
    *,
    sector_rel_wage: Mapping[str, float] | None = None,
    sector_wage: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Values and status of outcome ``name`` at persons ``pid`` and month indices ``t``.

    Parameters
    ----------
    arrays
        The loaded panel.
    name
        One of :data:`OUTCOMES`.
    pid, t
        Integer arrays broadcastable to a common shape; ``t`` may lie outside the loaded
        months (status ``BEYOND_DATA``).
    sector_rel_wage
        ``{section: rel_wage}``, needed for ``sector_rel_wage``.
    sector_wage
        :func:`sector_daily_wage_table` (computed if needed and not given).

    Returns
    -------
    values : ndarray of float64
        NaN where the status is not ``OBSERVED`` or the outcome is undefined.
    status : ndarray of int8
        :class:`Status` codes.
    """
    if name not in OUTCOMES:
        raise KeyError(f"unknown outcome {name!r}; choose from {sorted(OUTCOMES)}")
    pid, t = np.broadcast_arrays(np.asarray(pid, np.int64), np.asarray(t, np.int64))
    n_months = len(arrays.months)
    inside = (t >= 0) & (t < n_months)
    tc = np.clip(t, 0, n_months - 1)
    s = arrays.series
    present = inside & (s["age"][pid, tc] >= 0)
    status = np.where(
        inside, np.where(present, Status.OBSERVED, Status.OUT_OF_PANEL), Status.BEYOND_DATA
    ).astype(np.int8)
    if name == "daily_wage_real":
        v = s["daily_wage_real"][pid, tc].astype(np.float64)
        v[s["days_worked"][pid, tc] <= 0] = np.nan
    elif name == "skill_level":
        v = s["skill_level"][pid, tc].astype(np.float64)
        v[(s["employed"][pid, tc] > 0) & (v <= 0)] = np.nan  # employed, occupation unknown
        v[s["employed"][pid, tc] <= 0] = 0.0
    elif name == "sector_rel_wage":
        if sector_rel_wage is None:
            raise ValueError("sector_rel_wage needs the reference table (load_sector_rel_wage)")
        code = arrays.codes["nace_section"][pid, tc]
        v = _lookup(arrays, sector_rel_wage)[code]  # code -1 -> trailing NaN
        v[s["employed"][pid, tc] <= 0] = np.nan
    elif name == "sector_daily_wage":
        table = sector_daily_wage_table(arrays) if sector_wage is None else sector_wage
        code = arrays.codes["nace_section"][pid, tc]
        v = np.where(code >= 0, table[np.maximum(code, 0), tc], np.nan)
        v[s["employed"][pid, tc] <= 0] = np.nan
    else:
        v = s[name][pid, tc].astype(np.float64)
    v = np.where(present, v, np.nan)
    return v, status


@dataclass(frozen=True)
class EventGrid:
    """Outcomes of treated persons and twins on one event-time clock.

    Attributes
    ----------
    clock
        ``"start"`` or ``"end"``.
    event_time : ndarray, shape (E,)
        Event times (consecutive integers).
    treated : dict of ndarray, shape (n_treated, E)
        Outcome values of the treated persons (NaN = missing, see :class:`Status`);
        float32 like the panel arrays (estimators sum in float64).
    twins : dict of ndarray, shape (n_pairs, E)
        Outcome values of the twins, at their treated person's calendar months.
    treated_status, twin_status : ndarray of int8
        :class:`Status` of every cell (common to all outcomes).
    """

    clock: Clock
    event_time: np.ndarray
    treated: dict[str, np.ndarray]
    twins: dict[str, np.ndarray]
    treated_status: np.ndarray
    twin_status: np.ndarray

    def column(self, e: int) -> int:
        """Column index of event time ``e``."""
        i = int(e - self.event_time[0])
        if not 0 <= i < self.event_time.size:
            raise KeyError(
                f"event time {e} outside {self.event_time[0]}..{self.event_time[-1]} "
                f"({self.clock} clock)"
            )
        return i

    def status_counts(self) -> pl.DataFrame:
        """Per event time: treated and twin cells by :class:`Status` (censoring report)."""
        cols: dict[str, np.ndarray] = {"event_time": self.event_time}
        for who, st in (("treated", self.treated_status), ("twins", self.twin_status)):
            for s in Status:
                if who == "treated" and s is Status.OWN_START:
                    continue
                cols[f"{who}_{s.name.lower()}"] = (st == s).sum(axis=0)
        return pl.DataFrame(cols)


@dataclass(frozen=True)
class Trajectories:
    """Event-time outcome trajectories of matched treated persons and their twins.

    Rows are in a canonical order (treated by ``pid``; pairs by treated then twin ``pid``),
    so nothing downstream depends on the row order of the twins table.

    Attributes
    ----------
    outcomes
        Outcome names held.
    months
        First day of each loaded month (month index -> date).
    treated_pid, treated_code : ndarray, shape (n_treated,)
    cohort, end : ndarray, shape (n_treated,)
        Month index of the first start and of the leaving month (``-1`` if no end month
        was given; the ``end`` clock is then missing).
    pair_treated : ndarray, shape (n_pairs,)
        Row of the pair's treated person in the treated arrays.
    twin_pid, twin_code, weight : ndarray, shape (n_pairs,)
        Twin and its matching weight (``1/k'`` of its treated person's twins).
    twin_start : ndarray, shape (n_pairs,)
        Month index of the twin's own first ILA start (``-1``: never in the data).
    grids
        :class:`EventGrid` per clock.
    covariates
        Matching covariates of treated persons and twins at the cohort month, for the
        regression bias correction (:func:`impact.estimate.bias_correction.with_covariates`);
        ``None`` unless attached.
    """

    outcomes: tuple[str, ...]
    months: list
    treated_pid: np.ndarray
    treated_code: np.ndarray
    cohort: np.ndarray
    end: np.ndarray
    pair_treated: np.ndarray
    twin_pid: np.ndarray
    twin_code: np.ndarray
    weight: np.ndarray
    twin_start: np.ndarray
    grids: dict[str, EventGrid] = field(default_factory=dict)
    covariates: MatchCovariates | None = field(default=None, repr=False)

    @property
    def n_treated(self) -> int:
        return int(self.treated_pid.size)

    @property
    def n_pairs(self) -> int:
        return int(self.twin_pid.size)

    def grid(self, clock: Clock) -> EventGrid:
        if clock not in self.grids:
            raise KeyError(f"no {clock!r} clock built (have {sorted(self.grids)})")
        return self.grids[clock]

    def baseline(
        self, outcome: str, window: tuple[int, int] = (-12, -1)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pre-period baseline of treated persons and twins (mean over ``window``).

        ``window`` is an inclusive range of **start-clock** event times (default the 12
        months before the start), for every clock: on the end clock the baseline is still
        the pre-start mean, since months between start and end are treated. The mean is
        over the observed months of the window (a daily wage, say, only over months with
        days worked); NaN if none is observed. Twins are never censored in the pre-period
        (they had not started by the cohort month).
        """
        lo, hi = window
        if lo > hi or hi >= 0:
            raise ValueError(f"baseline window must be pre-start (lo <= hi < 0); got {window}")
        g = self.grid("start")
        a, b = g.column(lo), g.column(hi) + 1
        out = []
        for x in (g.treated[outcome][:, a:b], g.twins[outcome][:, a:b]):
            x = x.astype(np.float64)
            n = np.isfinite(x).sum(axis=1)
            s = np.where(np.isfinite(x), x, 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(n > 0, s / np.maximum(n, 1), np.nan))
        return out[0], out[1]

    def subset(self, keep: np.ndarray) -> Trajectories:
        """The trajectories of the treated persons with ``keep`` (bool, per treated row)
        and their twins: a subgroup, estimated with the same machinery."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.n_treated,):
            raise ValueError(f"keep must have one entry per treated person ({self.n_treated})")
        new_row = np.cumsum(keep) - 1
        pk = keep[self.pair_treated]
        grids = {
            c: EventGrid(clock=g.clock, event_time=g.event_time,
                         treated={k: v[keep] for k, v in g.treated.items()},
                         twins={k: v[pk] for k, v in g.twins.items()},
                         treated_status=g.treated_status[keep],
                         twin_status=g.twin_status[pk])
            for c, g in self.grids.items()
        }
        return Trajectories(
            outcomes=self.outcomes, months=self.months, treated_pid=self.treated_pid[keep],
            treated_code=self.treated_code[keep], cohort=self.cohort[keep],
            end=self.end[keep], pair_treated=new_row[self.pair_treated[pk]],
            twin_pid=self.twin_pid[pk], twin_code=self.twin_code[pk],
            weight=self.weight[pk], twin_start=self.twin_start[pk], grids=grids,
            covariates=None if self.covariates is None else self.covariates.subset(keep, pk))

    def pairs_frame(self) -> pl.DataFrame:
        """The canonical pairs as a frame (treated and twin codes, weight, months)."""
        return pl.DataFrame(
            {
                "treated_pid": self.treated_pid[self.pair_treated],
                "treated_code": self.treated_code[self.pair_treated],
                "twin_pid": self.twin_pid,
                "twin_code": self.twin_code,
                "weight": self.weight,
                "cohort": [self.months[m] for m in self.cohort[self.pair_treated]],
                "twin_start": [self.months[m] if m >= 0 else None for m in self.twin_start],
            }
        )


def _event_range(window: tuple[int, int | None], anchors: np.ndarray, n_months: int) -> np.ndarray:
    lo, hi = window
    if hi is None:
        ok = anchors[anchors >= 0]
        hi = int(n_months - 1 - ok.min()) if ok.size else 0
    if hi < lo:
        raise ValueError(f"empty event window {window}")
    return np.arange(lo, hi + 1, dtype=np.int64)


def _canonical_pairs(
    arrays: PanelArrays, pairs: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(treated_pid, cohort, pair_treated, twin_pid, weight) in canonical order."""
    need = {"cohort", "treated_pid", "twin_pid", "weight"}
    missing = need - set(pairs.columns)
    if missing:
        raise KeyError(f"pairs lack columns {sorted(missing)}")
    p = pairs.select("cohort", "treated_pid", "twin_pid", "weight").sort("treated_pid", "twin_pid")
    tp = p["treated_pid"].to_numpy().astype(np.int64)
    cohorts = p["cohort"].to_list()
    first = arrays.months[0]
    coh = np.array([(c.year - first.year) * 12 + c.month - first.month for c in cohorts])
    treated_pid, first_row, pair_treated = np.unique(tp, return_index=True, return_inverse=True)
    cohort = coh[first_row]
    if (coh != cohort[pair_treated]).any():
        raise ValueError("a treated person appears in more than one cohort in the pairs")
    dup = p.select(pl.struct("treated_pid", "twin_pid").is_duplicated().any()).item()
    if dup:
        raise ValueError("duplicate (treated, twin) pairs")
    return (
        treated_pid,
        cohort.astype(np.int64),
        pair_treated.astype(np.int64),
        p["twin_pid"].to_numpy().astype(np.int64),
        p["weight"].to_numpy().astype(np.float64),
    )


def _end_months(
    arrays: PanelArrays, codes: np.ndarray, cohort: np.ndarray, treatment: pl.DataFrame | None
) -> np.ndarray:
    if treatment is None:
        return np.full(codes.size, -1, dtype=np.int64)
    first = arrays.months[0]
    t = treatment.select(
        pl.col("person_code").cast(pl.Utf8),
        (
            (pl.col("end_month").dt.year() - first.year) * 12
            + pl.col("end_month").dt.month()
            - first.month
        ).alias("_end"),
    )
    got = pl.DataFrame({"person_code": codes.astype(str)}).join(
        t, on="person_code", how="left", maintain_order="left"
    )
    end = got["_end"].fill_null(-1).to_numpy().astype(np.int64)
    has = end >= 0
    if (end[has] < cohort[has]).any():
        raise ValueError("an end month precedes its start month in the treatment table")
    return end


def build_trajectories(
    arrays: PanelArrays,
    pairs: pl.DataFrame,
    treatment: pl.DataFrame | None = None,
    *,
    outcomes: Sequence[str] | None = None,
    start_window: tuple[int, int | None] = (-36, None),
    end_window: tuple[int, int | None] = (-36, None),
    sector_rel_wage: Mapping[str, float] | None = None,
) -> Trajectories:
    """Lay out the outcomes of treated persons and their twins on event-time grids.

    Parameters
    ----------
    arrays
        The panel (:meth:`PanelArrays.load`) with the cohorts' pre-period loaded.
    pairs
        Twins table of :func:`impact.twins.riskset.match_cohorts` (``cohort``,
        ``treated_pid``, ``twin_pid``, ``weight``; codes are taken from ``arrays``).
    treatment
        ``research/treatment.parquet`` (``person_code``, ``end_month``) for the ``end``
        clock; without it only the ``start`` clock is built.
    outcomes
        Outcome names (default: all of :data:`OUTCOMES`, ``sector_rel_wage`` only when
        ``sector_rel_wage`` is given).
    start_window, end_window
        Inclusive event-time ranges; ``None`` as upper end: as far as the data reach for the
        earliest anchor month.
    sector_rel_wage
        ``{NACE section: rel_wage}`` (:func:`load_sector_rel_wage`).

    Returns
    -------
    Trajectories

    Notes
    -----
    Memory: ``4 * (n_treated + n_pairs) * E`` bytes per outcome and clock (national scale,
    14,000 treated with 5 twins and about 120 event times: about 40 MB each); pass
    ``outcomes`` to hold fewer.
    """
    if outcomes is None:
        outcomes = [o for o in OUTCOMES if o != "sector_rel_wage" or sector_rel_wage]
    outcomes = tuple(outcomes)
    unknown = [o for o in outcomes if o not in OUTCOMES]
    if unknown:
        raise KeyError(f"unknown outcomes {unknown}")
    treated_pid, cohort, pair_treated, twin_pid, weight = _canonical_pairs(arrays, pairs)
    codes = arrays.person_code
    treated_code = codes[treated_pid].astype(str)
    end = _end_months(arrays, treated_code, cohort, treatment)
    twin_start = arrays.first_start[twin_pid].astype(np.int64)
    n_months = len(arrays.months)
    if (twin_start[twin_start >= 0] <= cohort[pair_treated][twin_start >= 0]).any():
        raise ValueError("a twin started ILA learning by its treated person's cohort month")
    sector_wage = sector_daily_wage_table(arrays) if "sector_daily_wage" in outcomes else None

    grids: dict[str, EventGrid] = {}
    anchors_by_clock: dict[Clock, tuple[np.ndarray, tuple[int, int | None]]] = {
        "start": (cohort, start_window)
    }
    if (end >= 0).any():
        anchors_by_clock["end"] = (end, end_window)
    for clock, (anchor, window) in anchors_by_clock.items():
        ev = _event_range(window, anchor, n_months)
        t_treated = anchor[:, None] + ev[None, :]
        t_treated = np.where(anchor[:, None] >= 0, t_treated, -1 - n_months)  # no end: beyond
        t_twin = t_treated[pair_treated]
        tv, ts = {}, {}
        pv, ps = {}, {}
        for name in outcomes:
            kw = {"sector_rel_wage": sector_rel_wage, "sector_wage": sector_wage}
            v, ts_ = outcome_values(arrays, name, treated_pid[:, None], t_treated, **kw)
            tv[name] = v.astype(np.float32)
            v, ps_ = outcome_values(arrays, name, twin_pid[:, None], t_twin, **kw)
            own = (twin_start[:, None] >= 0) & (t_twin >= twin_start[:, None])
            ps_ = np.where(own & (ps_ == Status.OBSERVED), np.int8(Status.OWN_START), ps_)
            v[own] = np.nan
            pv[name] = v.astype(np.float32)
            ts, ps = ts_, ps_
        grids[clock] = EventGrid(
            clock=clock,
            event_time=ev,
            treated=tv,
            twins=pv,
            treated_status=np.asarray(ts, np.int8),
            twin_status=np.asarray(ps, np.int8),
        )
    return Trajectories(
        outcomes=outcomes,
        months=list(arrays.months),
        treated_pid=treated_pid,
        treated_code=treated_code,
        cohort=cohort,
        end=end,
        pair_treated=pair_treated,
        twin_pid=twin_pid,
        twin_code=codes[twin_pid].astype(str),
        weight=weight,
        twin_start=twin_start,
        grids=grids,
    )


def candidate_change_means(
    arrays: PanelArrays,
    cohorts: Iterable[int],
    outcome: str,
    *,
    baseline: tuple[int, int] = (-12, -1),
    pool: Literal["not_yet_treated", "never_treated", "account_holders"] = "not_yet_treated",
    sector_rel_wage: Mapping[str, float] | None = None,
    max_candidates: int | None = None,
    seed: int = 0,
    chunk: int = 50_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean change from baseline of *all* risk-set candidates, per cohort and calendar month.

    The comparison group of a naive (unmatched) DiD: for cohort month ``g`` the candidates
    are the eligible persons who had not started ILA learning by ``g``
    (:func:`impact.twins.riskset.risk_set`, the pool the twins are drawn from); their
    change ``Y(t) - mean(Y over g + baseline)`` is averaged for every calendar month ``t``
    over the candidates observed then, a candidate being censored from its own first start
    (as twins are) and missing when out of the panel.

    Parameters
    ----------
    cohorts
        Cohort month indices.
    arrays
        The panel, or a subset of its persons holding a uniform random sample of them
        (``arrays.population_sample``): the candidates are then the sampled persons of the
        risk set, so the means estimate those of the whole risk set.
    max_candidates
        Subsample at most this many candidates per cohort (seeded), to bound the cost at
        national scale; ``None``: all.
    chunk
        Candidates processed at once (memory about ``chunk * n_months * 8`` bytes a few
        times over).

    Returns
    -------
    mean : ndarray, shape (n_cohorts, n_months)
        NaN where no candidate is observed.
    count : ndarray of int64, same shape
    """
    from impact.twins.riskset import risk_set

    cohorts = [int(g) for g in cohorts]
    n_months = len(arrays.months)
    rng = np.random.default_rng(seed)
    mean = np.full((len(cohorts), n_months), np.nan)
    count = np.zeros((len(cohorts), n_months), dtype=np.int64)
    sector_wage = sector_daily_wage_table(arrays) if outcome == "sector_daily_wage" else None
    lo, hi = baseline
    for r, g in enumerate(cohorts):
        _, cand, _ = risk_set(arrays, g, pool)
        if arrays.population_sample is not None:
            cand = cand[arrays.population_sample[cand]]
        if max_candidates is not None and cand.size > max_candidates:
            cand = np.sort(rng.choice(cand, size=max_candidates, replace=False))
        if cand.size == 0:
            continue
        t = np.arange(n_months)
        n = np.zeros(n_months, dtype=np.int64)
        s = np.zeros(n_months)
        for c0 in range(0, cand.size, chunk):  # bounded memory: chunk x n_months at a time
            part = cand[c0 : c0 + chunk]
            v, _ = outcome_values(
                arrays,
                outcome,
                part[:, None],
                t[None, :],
                sector_rel_wage=sector_rel_wage,
                sector_wage=sector_wage,
            )
            fs = arrays.first_start[part]
            v[(fs[:, None] >= 0) & (t[None, :] >= fs[:, None])] = np.nan
            w = v[:, g + lo : g + hi + 1]
            nb = np.isfinite(w).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                base = np.where(nb > 0, np.where(np.isfinite(w), w, 0.0).sum(axis=1) / nb, np.nan)
            d = v - base[:, None]
            ok = np.isfinite(d)
            n += ok.sum(axis=0)
            s += np.where(ok, d, 0.0).sum(axis=0)
        count[r] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[r] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return mean, count
