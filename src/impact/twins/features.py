"""Matching features of every person at a cohort month, measured strictly before it.

The panel is loaded once into dense person x month arrays (:class:`PanelArrays`; pid from
the panel's ``pid`` column, month index from the first loaded month). The features of
cohort month ``m`` are then array slices over months ``< m``: there is no way for a value
of month ``m`` or later to reach them (tests/test_twins_riskset.py plants such a change).

Layout and speed: the arrays are column-major (the persons of one month are contiguous),
so a cohort's features (a few months of nearly every person) are read from contiguous
columns; categorical features are polars ``Enum`` columns built from integer codes (no
Python string per row). The features of a set of persons do not depend on which other
persons are computed with them (row-wise arithmetic in a fixed order).

Features (the ILA report's section 9.3 list and more)
------------------------------------------------------
``earn_l1`` .. ``earn_l12``
    Real monthly earnings 1..12 months before ``m``.
``earn_m13_24``, ``earn_m25_36``
    Mean real monthly earnings over months 13-24 and 25-36 before ``m``.
``days_12``, ``days_24``, ``days_36``
    Days worked in the last 12, 24 and 36 months.
``unemp_months_36``, ``ub_days_36``, ``sick_days_36``, ``sick_days_12``
    Months registered unemployed, unemployment-benefit days and sickness-benefit days.
``registered_l1``, ``unemp_months_12``, ``ub_days_12``
    Registered unemployed at the NVA in month ``m-1``; months registered and
    unemployment-benefit days in the last 12 months. They describe the current
    unemployment spell (how recent, how long), which the 36-month totals blur and which
    predicts both a start (a job loss prompts learning) and the months after it. Without
    them, on 1.2 M synthetic persons whose selection is ignorable given the registers
    (``hidden_confounding: 0``), the twins' NVA registration and benefit days fell less
    than the participants' counterfactual did: the estimated effects on them were 2-7 SE
    too negative; with them, within 1.1 SE of the truth.
``employed_l1``, ``daily_wage_l1``
    Employed in month ``m-1``; real daily wage then (0 if not employed).
``nace_section``, ``isco_major``, ``skill_level``, ``sector``, ``size_class``
    Main job in month ``m-1`` ("none" if not employed).
``isced_level``, ``edu_band``, ``isced_field``, ``age``, ``age_band``, ``sex``,
``region_code``, ``urbanisation``, ``dependants``, ``prior_learning``
    Person at ``m-1`` (age at ``m``). ``edu_band``: low (ISCED 0-2), medium (3-4), high (5+).
``ila_account_l1``
    Held an ILA account (STARS) in month ``m-1``: an optional feature, not in the defaults
    (:data:`OPTIONAL_NUMERIC_FEATURES`). As an exact stratum it draws the twins of account
    holders from account holders who had not (yet) started, the "near-participants" of the
    report's section 9.3.
``months_since_job``, ``job_recency``
    Months from the last month with a job to ``m-1`` (0: employed in ``m-1``; 36: no job in
    the 36 months before ``m``) and its bands (:data:`JOB_RECENCY_BANDS`: employed, left
    1-3, 4-11 or 12-35 months before, no job in 36). Not among the default score features
    (:data:`OPTIONAL_NUMERIC_FEATURES`, :data:`OPTIONAL_CATEGORICAL_FEATURES`);
    ``job_recency`` is a default exact stratum. The DiD
    baseline (mean of the 12 months before the start) of a person who lost a job a few
    months before starting still holds most of a year of wages; a twin who lost it a year
    earlier does not, and the score balances recency only on average over the
    non-employed. ``job_recency`` as an exact stratum aligns it person by person (see
    :mod:`impact.twins.riskset`, "Defaults and why", for what it buys and what the coarser
    passes for treated persons without such twins cost).
``nace_group``, ``isced_field_group``, ``isco_group``
    Coarse groups of ``nace_section`` (NACE A*10), ``isced_field`` (ISCED 1997 broad groups)
    and ``isco_major`` (:data:`COARSE_FEATURES`).

Assumptions
-----------
* Months in which a person is not in the panel (not yet resident) count as no earnings,
  no days and no benefits.
* Categorical values of ``m-1`` missing in the registers become ``"none"``/``"unknown"``
  rather than nulls, so that every eligible person can be matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

#: Numeric monthly series loaded into arrays (panel column -> dtype).
SERIES: dict[str, type[np.generic]] = {
    "earnings_real": np.float32,
    "days_worked": np.int16,
    "registered_unemployed": np.int8,
    "ub_days": np.int16,
    "sick_benefit_days": np.int16,
    "employed": np.int8,
    "daily_wage_real": np.float32,
    "eligible": np.int8,
    "age": np.int16,
    "dependants": np.int8,
    "urbanisation": np.int8,
    "isced_level": np.int8,
    "skill_level": np.int8,
    "prior_learning_courses": np.int16,
    "ila_account": np.int8,
}
#: Categorical monthly columns loaded as codes (``-1`` = missing).
CATEGORIES = (
    "nace_section",
    "occupation_code",
    "sector",
    "size_class",
    "isced_field",
    "region_code",
)

NUMERIC_FEATURES = (
    *(f"earn_l{k}" for k in range(1, 13)),
    "earn_m13_24",
    "earn_m25_36",
    "days_12",
    "days_24",
    "days_36",
    "unemp_months_36",
    "ub_days_36",
    "registered_l1",
    "unemp_months_12",
    "ub_days_12",
    "sick_days_36",
    "sick_days_12",
    "employed_l1",
    "daily_wage_l1",
    "age",
    "dependants",
    "urbanisation",
    "prior_learning",
)
#: Numeric features built for every person but used only when configured (``twins.exact``,
#: ``twins.features``): see the module docstring.
OPTIONAL_NUMERIC_FEATURES = ("ila_account_l1", "months_since_job")
#: Every numeric feature :func:`features_at` builds.
ALL_NUMERIC_FEATURES = (*NUMERIC_FEATURES, *OPTIONAL_NUMERIC_FEATURES)
CATEGORICAL_FEATURES = (
    "sex",
    "age_band",
    "edu_band",
    "isced_level",
    "isced_field",
    "region_code",
    "nace_section",
    "isco_major",
    "skill_level",
    "sector",
    "size_class",
)
#: Coarse versions of three detailed categorical features (same month, same source):
#: ``nace_group``: NACE Rev. 2 sections in the A*10 aggregation (A, B-E, F, G-I, J, K, L, M-N,
#: O-Q, R-U); ``isced_field_group``: ISCED-F 2013 broad fields grouped as the ISCED 1997
#: broad groups (00, 01, 02, 03-04, 05-06, 07, 08, 09, 10); ``isco_group``: ISCO-08 major
#: groups 1-3 (skilled non-manual), 4-5 (low-skilled non-manual), 6-7 (skilled manual),
#: 8-9 (low-skilled manual), 0 (armed forces). Missing stays "none"/"unknown".
COARSE_FEATURES = ("nace_group", "isced_field_group", "isco_group")
#: Categorical features built for every person but used only when configured.
OPTIONAL_CATEGORICAL_FEATURES = ("job_recency",)
NACE_A10 = {
    "A": "A",
    **dict.fromkeys("BCDE", "B-E"),
    "F": "F",
    **dict.fromkeys("GHI", "G-I"),
    "J": "J",
    "K": "K",
    "L": "L",
    **dict.fromkeys("MN", "M-N"),
    **dict.fromkeys("OPQ", "O-Q"),
    **dict.fromkeys("RSTU", "R-U"),
}
ISCED_FIELD_GROUPS = {"03": "03-04", "04": "03-04", "05": "05-06", "06": "05-06"}
ISCO_GROUPS = {
    **dict.fromkeys("123", "1-3"),
    **dict.fromkeys("45", "4-5"),
    **dict.fromkeys("67", "6-7"),
    **dict.fromkeys("89", "8-9"),
}
#: Months of history the features need.
HISTORY = 36

AGE_BANDS = ((18, 29), (30, 39), (40, 49), (50, 64))
#: ``job_recency`` bands of ``months_since_job`` (inclusive ranges; labels sort in band order).
JOB_RECENCY_BANDS = (
    ("employed", 0, 0),
    ("left 01-03", 1, 3),
    ("left 04-11", 4, 11),
    ("left 12-35", 12, HISTORY - 1),
    ("no job in 36", HISTORY, HISTORY),
)


def _month_index(d: date, origin: date) -> int:
    return (d.year - origin.year) * 12 + d.month - origin.month


@dataclass(frozen=True)
class PanelArrays:
    """Dense person x month arrays of the panel over ``months``.

    Attributes
    ----------
    person_code
        Pseudonym of each pid.
    sex
        ``"M"``/``"F"`` of each pid.
    first_start
        Month index of the first ILA course start (``-1``: never, or before the first
        loaded month is impossible: ILA starts are after any history window).
    months
        First day of each loaded month.
    series
        Numeric arrays ``[pid, month]`` (0 where the person is not in the panel, except
        ``eligible`` = 0 and ``age`` = -1 there).
    codes, levels
        Categorical arrays of codes into ``levels[name]`` (``-1`` = missing).
    panel_dir
        The panel folder the arrays were loaded from (:meth:`load`; None when built in
        memory). Columns not held in the arrays are read from there on demand: the main
        employer of a cohort's month ``m-1`` for the co-worker pool
        (:mod:`impact.twins.coworkers`).
    employers
        Cache of those on-demand employer codes, one int32 array over pids per month read
        (first day of the month -> code, ``-1`` = no main employer); in-memory arrays may be
        given their months here instead of a ``panel_dir``.
    source_pid
        ``None`` (the default) when row ``i`` of every array is the panel's ``pid`` ``i``
        and every person of the panel is loaded. When only some persons are loaded
        (:meth:`load` with ``pids``): the panel ``pid`` of each row (sorted, unique); the
        row is then the "pid" every function taking these arrays receives and returns
        (a compact index ``0 .. n_persons - 1``); :meth:`rows` maps panel pids to rows.
        Category ``levels`` are then those of the loaded persons, and aggregates over the
        whole population cannot be taken from the rows (see ``population``).
    population_sample
        For a subset only: whether each row belongs to a uniform random sample of the
        panel's persons (bool per row; ``None``: no such sample was loaded). Averages meant
        to be over the whole population (the naive comparison's candidate means,
        :func:`impact.outcomes.candidate_change_means`) are taken over these rows only.
    population
        Cache of whole-panel aggregates that a subset must read from ``panel_dir`` (e.g.
        :func:`impact.outcomes.sector_daily_wage_table`; name -> array).

    Notes
    -----
    The co-worker pool (:mod:`impact.twins.coworkers`) reads employer codes by panel pid and
    needs every person of the panel: it is not for a subset (its read refuses panel pids
    beyond the rows).
    """

    person_code: np.ndarray
    sex: np.ndarray
    first_start: np.ndarray
    months: list[date]
    series: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    levels: dict[str, list[str]]
    panel_dir: Path | None = None
    employers: dict[date, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    source_pid: np.ndarray | None = field(default=None, compare=False, repr=False)
    population_sample: np.ndarray | None = field(default=None, compare=False, repr=False)
    population: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def sex_codes(self) -> tuple[list[str], np.ndarray]:
        """Sorted distinct values of ``sex`` and the code of each pid (-1: missing)."""
        v = pl.Series(self.sex, dtype=pl.String)
        cats = v.drop_nulls().unique().sort().to_list()
        codes = v.cast(pl.Enum(cats)).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
        return cats, codes

    @property
    def n_persons(self) -> int:
        return int(self.person_code.size)

    def rows(self, pids: np.ndarray) -> np.ndarray:
        """Row of each panel pid in ``pids`` (the pid itself when every person is loaded).

        Raises
        ------
        KeyError
            If a pid is not among the loaded persons.
        """
        if self.source_pid is not None:
            return pid_rows(self.source_pid, pids, "arrays")
        pids = np.asarray(pids, dtype=np.int64)
        if pids.size and (pids.min() < 0 or pids.max() >= self.n_persons):
            raise KeyError("a person was not loaded into the arrays")
        return pids

    def month_index(self, month: date) -> int:
        """Index of ``month`` (first day) among the loaded months."""
        i = _month_index(month, self.months[0])
        if not 0 <= i < len(self.months):
            raise ValueError(
                f"month {month} is outside the loaded months {self.months[0]}..{self.months[-1]}"
            )
        return i

    @classmethod
    def load(
        cls,
        panel_dir: Path,
        first: date | None = None,
        last: date | None = None,
        *,
        pids: np.ndarray | None = None,
    ) -> PanelArrays:
        """Read the panel's year partitions between ``first`` and ``last`` into arrays.

        One query per year; values are scattered into the (column-major) arrays by a flat
        index (``month * n_persons + pid``). Category levels are those seen in the loaded months
        (sorted), codes are remapped to that order at the end.

        Parameters
        ----------
        panel_dir
            The panel (``year=YYYY/*.parquet``, one row per person and month).
        first, last
            First and last month loaded (default: the panel's).
        pids
            Only these persons (panel ``pid``, sorted and unique; ``None``: everyone). The
            scans filter on ``pid`` and the arrays are indexed by the row of each pid in
            ``pids`` (recorded as :attr:`source_pid`), so memory grows with ``len(pids)``,
            not with the population. A pid without panel rows in the loaded months gets an
            empty row (out of the panel every month). Category levels are those of the
            loaded persons.
        """
        scan = pl.scan_parquet(panel_dir / "**" / "*.parquet", hive_partitioning=False)
        source_pid = None if pids is None else _sorted_pids(pids)
        bounds = scan.select(
            pl.col("month").min().alias("a"),
            pl.col("month").max().alias("b"),
            pl.col("pid").max().alias("n"),
        ).collect()
        first = first or bounds["a"][0]
        last = last or bounds["b"][0]
        n = int(bounds["n"][0]) + 1 if source_pid is None else int(source_pid.size)
        if source_pid is not None:
            # the persons' rows only; pid -> row by a lookup after each query
            scan = scan.filter(pl.col("pid").is_in(source_pid))
        months = pl.date_range(first, last, "1mo", eager=True).to_list()
        t = len(months)
        # column-major: the persons of one month are contiguous, so the features of a cohort
        # (a few months of nearly every person) are gathered from contiguous columns
        series = {c: np.zeros((n, t), dtype=d, order="F") for c, d in SERIES.items()}
        series["age"][:] = -1
        codes = {c: np.full((n, t), -1, dtype=np.int16, order="F") for c in CATEGORIES}
        seen: dict[str, list[str]] = {c: [] for c in CATEGORIES}  # levels in order of arrival
        person_code = np.empty(n, dtype=object)
        sex = np.empty(n, dtype=object)
        first_start = np.full(n, -1, dtype=np.int32)
        month_index = (
            (pl.col("month").dt.year() - first.year) * 12 + pl.col("month").dt.month() - first.month
        )
        # casts inside the query (parallel, strict: a value out of the array's range raises)
        values = [pl.col(c).fill_null(0).cast(_POLARS_DTYPE[d]) for c, d in SERIES.items()]
        cats = [pl.col(c).cast(pl.Categorical) for c in CATEGORIES]
        person = ["pid", "person_code", "sex", "ila_first_start"]
        for year in range(first.year, last.year + 1):
            in_year = (pl.col("month").dt.year() == year) & pl.col("month").is_between(first, last)
            # the row of a person: its pid, or (a subset) the pid's position in source_pid
            row = pl.col("pid").cast(pl.Int64)
            if source_pid is not None:
                row = row.replace_strict(source_pid, np.arange(n), return_dtype=pl.Int64)
            df = (
                scan.filter(in_year)
                .select(
                    (month_index.cast(pl.Int64) * n + row).alias("__f"),
                    *values,
                    *cats,
                )
                .collect()
            )
            if df.height == 0:
                continue
            flat = df["__f"].to_numpy()
            for c in SERIES:
                _flat(series[c])[flat] = df[c].to_numpy()
            for c in CATEGORIES:
                _flat(codes[c])[flat] = _category_codes(df[c], seen[c])
            present = np.zeros(n, dtype=bool)
            present[flat % n] = True
            del df, flat
            # person attributes from the year's first month, then from any month for persons
            # not there in that month (only those rows' strings are decoded)
            first_month = max(first, date(year, 1, 1))
            parts = [scan.filter(pl.col("month") == first_month).select(person).collect()]
            missing = present.copy()
            missing[_to_rows(source_pid, parts[0]["pid"].to_numpy())] = False
            if missing.any():
                wanted = np.flatnonzero(missing)
                parts.append(
                    scan.filter(
                        in_year
                        & pl.col("pid").is_in(wanted if source_pid is None else source_pid[wanted])
                    )
                    .select(person)
                    .unique("pid", keep="first")
                    .collect()
                )
            people = pl.concat(parts)
            p = _to_rows(source_pid, people["pid"].to_numpy())
            person_code[p] = people["person_code"].to_numpy()
            sex[p] = people["sex"].to_numpy()
            fs = people["ila_first_start"]
            has = fs.is_not_null().to_numpy()
            idx = ((fs.dt.year() - first.year) * 12 + fs.dt.month() - first.month).to_numpy()
            first_start[p[has]] = idx[has]
        levels: dict[str, list[str]] = {}
        for c in CATEGORIES:
            levels[c] = sorted(seen[c])
            if levels[c] != seen[c]:  # codes by order of arrival -> codes of the sorted levels
                rank = {v: i for i, v in enumerate(levels[c])}
                lut = np.array([*(rank[v] for v in seen[c]), -1], dtype=np.int16)
                codes[c][...] = lut[codes[c]]  # code -1 takes the last entry, -1
        return cls(
            person_code=person_code,
            sex=sex,
            first_start=first_start,
            months=months,
            series=series,
            codes=codes,
            levels=levels,
            panel_dir=Path(panel_dir),
            source_pid=source_pid,
        )


def _sorted_pids(pids: np.ndarray) -> np.ndarray:
    """``pids`` as int64, checked to be sorted, unique and non-negative."""
    out = np.asarray(pids, dtype=np.int64).ravel()
    if out.size and (out[0] < 0 or (np.diff(out) <= 0).any()):
        raise ValueError("pids must be sorted, unique and non-negative panel pids")
    return out


def pid_rows(loaded: np.ndarray, pids: np.ndarray, into: str) -> np.ndarray:
    """Row of each of ``pids`` among the sorted, unique pids ``loaded`` of a subset of the
    panel's persons (``KeyError`` naming ``into`` if one was not loaded)."""
    pids = np.asarray(pids, dtype=np.int64)
    r = np.minimum(np.searchsorted(loaded, pids), max(loaded.size - 1, 0))
    if pids.size and (loaded.size == 0 or (loaded[r] != pids).any()):
        raise KeyError(f"a person was not loaded into the {into}")
    return r


def _to_rows(source_pid: np.ndarray | None, pid: np.ndarray) -> np.ndarray:
    """Rows of loaded panel pids: the pids themselves, or their positions in ``source_pid``."""
    return pid if source_pid is None else np.searchsorted(source_pid, pid)


_POLARS_DTYPE = {
    np.float32: pl.Float32,
    np.float64: pl.Float64,
    np.int8: pl.Int8,
    np.int16: pl.Int16,
    np.int32: pl.Int32,
}


def _category_codes(s: pl.Series, seen: list[str]) -> np.ndarray:
    """Codes of a Categorical series into ``seen`` (levels in order of arrival, extended in
    place with new levels); nulls get -1."""
    u = s.drop_nulls().unique()
    labels = u.cast(pl.String).to_list()
    ids = u.to_physical().to_numpy().astype(np.int64)
    pos = {v: i for i, v in enumerate(seen)}
    for v in labels:
        if v not in pos:
            pos[v] = len(seen)
            seen.append(v)
    phys = s.to_physical()
    lut = np.full(int(ids.max(initial=-1)) + 2, -1, dtype=np.int16)  # last entry: null
    lut[ids] = [pos[v] for v in labels]
    return lut[phys.fill_null(lut.size - 1).to_numpy()]


def _flat(a: np.ndarray) -> np.ndarray:
    """1-D view of a column-major array (element ``[i, j]`` at ``j * n_rows + i``)."""
    v = a.reshape(-1, order="F")
    if not np.shares_memory(v, a):
        raise ValueError("array is not column-major")
    return v


def _enum(categories: list[str], codes: np.ndarray) -> pl.Series:
    """A polars Enum series of ``categories[codes]`` (no Python string objects per row);
    negative codes become nulls."""
    idx = pl.Series(np.maximum(codes, 0), dtype=pl.UInt32)
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        idx = idx.scatter(missing, None)
    return pl.Series(categories, dtype=pl.Enum(categories)).gather(idx)


def _sorted_lut(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted distinct ``labels`` and the position of each label among them."""
    cats = sorted(set(labels))
    pos = {c: i for i, c in enumerate(cats)}
    return cats, np.array([pos[x] for x in labels], dtype=np.int64)


#: Labels of integer-valued categorical features (``isced_level``, ``skill_level``).
_INT_LABELS = [str(v) for v in range(-128, 128)]


def _int_codes(values: np.ndarray, none_below: int | None = None) -> tuple[list[str], np.ndarray]:
    """Codes of int8-ranged ``values`` as strings (``"none"`` for values < ``none_below``)."""
    labels = list(_INT_LABELS)
    if none_below is not None:
        labels = [*labels, "none"]
    cats, lut = _sorted_lut(labels)
    v = values.astype(np.int64) + 128
    if none_below is not None:
        v = np.where(values < none_below, len(labels) - 1, v)
    return cats, lut[v]


def categorical_levels(arrays: PanelArrays) -> dict[str, list[str]]:
    """Categories of every categorical feature (sorted; the Enum categories of
    :func:`features_at`'s columns, the same for every cohort of ``arrays``)."""
    return {k: v[0] for k, v in _decoders(arrays).items()}


def _decoders(arrays: PanelArrays) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per categorical feature from a panel code: sorted categories and a lookup table from
    the panel's code (last entry: missing, code -1) to the category position."""
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for name, missing in (
        ("isced_field", "unknown"),
        ("region_code", "unknown"),
        ("nace_section", "none"),
        ("sector", "none"),
        ("size_class", "none"),
    ):
        out[name] = _sorted_lut([*arrays.levels[name], missing])
    occ = arrays.levels["occupation_code"]
    out["isco_major"] = _sorted_lut([*(o[:1] for o in occ), "none"])
    out["isco_group"] = _sorted_lut([*(ISCO_GROUPS.get(o[:1], o[:1]) for o in occ), "none"])
    nace = arrays.levels["nace_section"]
    out["nace_group"] = _sorted_lut([*(NACE_A10.get(v, v) for v in nace), "none"])
    field = arrays.levels["isced_field"]
    out["isced_field_group"] = _sorted_lut(
        [*(ISCED_FIELD_GROUPS.get(v, v) for v in field), "unknown"]
    )
    return out


def features_at(arrays: PanelArrays, m: int, pids: np.ndarray) -> pl.DataFrame:
    """Matching features of persons ``pids`` for cohort month index ``m`` (months < m only).

    Parameters
    ----------
    arrays
        The loaded panel.
    m
        Month index of the cohort; needs ``m >= 36`` (36 months of history loaded).
    pids
        Person indices.

    Returns
    -------
    polars.DataFrame
        ``pid`` and the columns of :data:`ALL_NUMERIC_FEATURES`,
        :data:`CATEGORICAL_FEATURES`, :data:`COARSE_FEATURES` and
        :data:`OPTIONAL_CATEGORICAL_FEATURES`. Categorical columns are
        polars ``Enum`` columns whose categories (sorted) depend only on ``arrays``
        (:func:`categorical_levels`), so frames of different cohorts concatenate.
    """
    if m < HISTORY:
        raise ValueError(
            f"cohort month index {m} has less than {HISTORY} months of history "
            "loaded; load the panel from an earlier month"
        )
    pids = np.asarray(pids)
    s = arrays.series
    out: dict[str, np.ndarray] = {"pid": pids.astype(np.int32)}
    earn = s["earnings_real"]
    for k in range(1, 13):
        out[f"earn_l{k}"] = earn[pids, m - k].astype(np.float64)
    # means of 12 float64 values per row (the same summation as over a 36-month block)
    out["earn_m13_24"] = earn[pids, m - 24 : m - 12].astype(np.float64).mean(axis=1)
    out["earn_m25_36"] = earn[pids, m - 36 : m - 24].astype(np.float64).mean(axis=1)
    dense = pids.size * 4 >= arrays.n_persons  # most persons: sum whole columns, then gather

    def window(name: str, lo: int, hi: int) -> np.ndarray:
        """Sum of months ``m-lo .. m-hi-1`` (int32; integer sums are exact in any order)."""
        x = s[name]
        if not dense:
            return x[pids, m - lo : m - hi].sum(axis=1, dtype=np.int32)
        acc = np.zeros(arrays.n_persons, dtype=np.int32)
        for j in range(m - lo, m - hi):
            acc += x[:, j]
        return acc[pids]

    out["days_12"] = window("days_worked", 12, 0)
    out["days_24"] = out["days_12"] + window("days_worked", 24, 12)
    out["days_36"] = out["days_24"] + window("days_worked", 36, 24)
    unemp_12 = window("registered_unemployed", 12, 0)
    ub_12 = window("ub_days", 12, 0)
    out["unemp_months_36"] = unemp_12 + window("registered_unemployed", 36, 12)
    out["ub_days_36"] = ub_12 + window("ub_days", 36, 12)
    sick_12 = window("sick_benefit_days", 12, 0)
    out["sick_days_36"] = sick_12 + window("sick_benefit_days", 36, 12)
    out["sick_days_12"] = sick_12
    l1 = m - 1
    out["employed_l1"] = s["employed"][pids, l1].astype(np.int8)
    out["daily_wage_l1"] = s["daily_wage_real"][pids, l1].astype(np.float64)
    age = s["age"][pids, m].astype(np.int16)  # age at m is known before m (birth date)
    out["age"] = age
    out["dependants"] = s["dependants"][pids, l1].astype(np.int16)
    out["urbanisation"] = s["urbanisation"][pids, l1].astype(np.int16)
    out["prior_learning"] = (s["prior_learning_courses"][pids, l1] > 0).astype(np.int8)
    out["ila_account_l1"] = (s["ila_account"][pids, l1] > 0).astype(np.int8)
    out["registered_l1"] = (s["registered_unemployed"][pids, l1] > 0).astype(np.int8)
    out["unemp_months_12"] = unemp_12
    out["ub_days_12"] = ub_12
    since = months_since_job(arrays, m, pids)
    out["months_since_job"] = since
    frame = pl.DataFrame(out)
    cats = _categoricals(arrays, m, pids, (*CATEGORICAL_FEATURES, *COARSE_FEATURES))
    cats["job_recency"] = _enum(*job_recency_codes(since))  # from ``since``, not read again
    return frame.with_columns(v.alias(k) for k, v in cats.items())


def months_since_job(arrays: PanelArrays, m: int, pids: np.ndarray) -> np.ndarray:
    """Months between the last month with a job and ``m - 1``, over months ``m-36 .. m-1``.

    0: employed in ``m-1``; ``j``: last employed in ``m-1-j``; :data:`HISTORY` (36): no
    month employed in the 36 before ``m``. int16. For most persons at once (a cohort's risk
    set) whole columns are read and the result gathered once, as in :func:`features_at`.
    """
    emp = arrays.series["employed"]
    pids = np.asarray(pids)
    dense = pids.size * 4 >= arrays.n_persons
    out = np.full(arrays.n_persons if dense else pids.size, HISTORY, dtype=np.int16)
    for j in range(HISTORY - 1, -1, -1):  # the most recent month written last
        out[(emp[:, m - 1 - j] if dense else emp[pids, m - 1 - j]) > 0] = j
    return out[pids] if dense else out


def job_recency_codes(since: np.ndarray) -> tuple[list[str], np.ndarray]:
    """``job_recency`` categories and codes from :func:`months_since_job` values."""
    band = np.zeros(since.shape, dtype=np.int64)
    for i, (_, lo, hi) in enumerate(JOB_RECENCY_BANDS):
        band[(since >= lo) & (since <= hi)] = i
    return [label for label, _, _ in JOB_RECENCY_BANDS], band


def _categoricals(
    arrays: PanelArrays, m: int, pids: np.ndarray, names: Sequence[str]
) -> dict[str, pl.Series]:
    """The categorical features ``names`` of ``pids`` at cohort month ``m`` (Enum series)."""
    return {k: _enum(*v) for k, v in categorical_codes(arrays, m, pids, names).items()}


def categorical_codes(
    arrays: PanelArrays, m: int, pids: np.ndarray, names: Sequence[str]
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Categories (sorted) and codes of the categorical features ``names`` of ``pids`` at
    cohort month ``m``, as numpy arrays (what :func:`features_at` turns into Enum columns;
    -1: missing)."""
    s, c = arrays.series, arrays.codes
    l1 = m - 1
    dec = _decoders(arrays)

    def decode(name: str, code_name: str | None = None) -> tuple[list[str], np.ndarray]:
        cats, lut = dec[name]
        code = c[code_name or name][pids, l1]
        return cats, lut[np.where(code < 0, lut.size - 1, code)]

    def sex() -> tuple[list[str], np.ndarray]:
        cats, codes = arrays.sex_codes
        return cats, codes[pids]

    def age_band() -> tuple[list[str], np.ndarray]:
        age = s["age"][pids, m]
        band = np.full(age.shape, len(AGE_BANDS), dtype=np.int64)  # "other"
        for i, (lo, hi) in enumerate(AGE_BANDS):
            band[(age >= lo) & (age <= hi)] = i
        # "18-29" < ... < "50-64" < "other": band order is the sorted order
        return [*(f"{lo}-{hi}" for lo, hi in AGE_BANDS), "other"], band

    def edu_band() -> tuple[list[str], np.ndarray]:
        level = s["isced_level"][pids, l1]
        return ["high", "low", "medium"], np.where(level >= 5, 0, np.where(level >= 3, 2, 1))

    makers = {
        "sex": sex,
        "age_band": age_band,
        "edu_band": edu_band,
        "job_recency": lambda: job_recency_codes(months_since_job(arrays, m, pids)),
        "isced_level": lambda: _int_codes(s["isced_level"][pids, l1]),
        "isced_field": lambda: decode("isced_field"),
        "region_code": lambda: decode("region_code"),
        "nace_section": lambda: decode("nace_section"),
        "isco_major": lambda: decode("isco_major", "occupation_code"),
        "isco_group": lambda: decode("isco_group", "occupation_code"),
        "nace_group": lambda: decode("nace_group", "nace_section"),
        "isced_field_group": lambda: decode("isced_field_group", "isced_field"),
        "skill_level": lambda: _int_codes(s["skill_level"][pids, l1], none_below=1),
        "sector": lambda: decode("sector"),
        "size_class": lambda: decode("size_class"),
    }
    return {k: makers[k]() for k in names}
