"""Matching features of every person at a cohort month, measured strictly before it.

The panel is loaded once into dense person x month arrays (:class:`PanelArrays`; pid from
the panel's ``pid`` column, month index from the first loaded month). The features of
cohort month ``m`` are then array slices over months ``< m``: there is no way for a value
of month ``m`` or later to reach them (tests/test_twins_riskset.py plants such a change).

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
``employed_l1``, ``daily_wage_l1``
    Employed in month ``m-1``; real daily wage then (0 if not employed).
``nace_section``, ``isco_major``, ``skill_level``, ``sector``, ``size_class``
    Main job in month ``m-1`` ("none" if not employed).
``isced_level``, ``edu_band``, ``isced_field``, ``age``, ``age_band``, ``sex``,
``region_code``, ``urbanisation``, ``dependants``, ``prior_learning``
    Person at ``m-1`` (age at ``m``). ``edu_band``: low (ISCED 0-2), medium (3-4), high (5+).

Assumptions
-----------
* Months in which a person is not in the panel (not yet resident) count as no earnings,
  no days and no benefits.
* Categorical values of ``m-1`` missing in the registers become ``"none"``/``"unknown"``
  rather than nulls, so that every eligible person can be matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
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
    "sick_days_36",
    "sick_days_12",
    "employed_l1",
    "daily_wage_l1",
    "age",
    "dependants",
    "urbanisation",
    "prior_learning",
)
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
#: Months of history the features need.
HISTORY = 36

AGE_BANDS = ((18, 29), (30, 39), (40, 49), (50, 64))


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
    """

    person_code: np.ndarray
    sex: np.ndarray
    first_start: np.ndarray
    months: list[date]
    series: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    levels: dict[str, list[str]]

    @property
    def n_persons(self) -> int:
        return int(self.person_code.size)

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
        cls, panel_dir: Path, first: date | None = None, last: date | None = None
    ) -> PanelArrays:
        """Read the panel's year partitions between ``first`` and ``last`` into arrays."""
        scan = pl.scan_parquet(panel_dir / "**" / "*.parquet", hive_partitioning=False)
        bounds = scan.select(
            pl.col("month").min().alias("a"),
            pl.col("month").max().alias("b"),
            pl.col("pid").max().alias("n"),
        ).collect()
        first = first or bounds["a"][0]
        last = last or bounds["b"][0]
        n = int(bounds["n"][0]) + 1
        months = pl.date_range(first, last, "1mo", eager=True).to_list()
        t = len(months)
        series = {c: np.zeros((n, t), dtype=d) for c, d in SERIES.items()}
        series["age"][:] = -1
        codes = {c: np.full((n, t), -1, dtype=np.int16) for c in CATEGORIES}
        levels: dict[str, list[str]] = {}
        for c in CATEGORIES:
            values = scan.select(pl.col(c).drop_nulls().unique().sort()).collect()[c]
            levels[c] = values.to_list()
        person_code = np.empty(n, dtype=object)
        sex = np.empty(n, dtype=object)
        first_start = np.full(n, -1, dtype=np.int32)
        cols = ["pid", "month", "person_code", "sex", "ila_first_start", *SERIES, *CATEGORIES]
        for year in range(first.year, last.year + 1):
            part = scan.filter(
                (pl.col("month").dt.year() == year) & pl.col("month").is_between(first, last)
            ).select(cols)
            df = part.with_columns(
                *[
                    pl.col(c).cast(pl.Enum(levels[c])).to_physical().cast(pl.Int16).fill_null(-1)
                    for c in CATEGORIES
                ],
                (
                    (pl.col("month").dt.year() - first.year) * 12
                    + pl.col("month").dt.month()
                    - first.month
                )
                .cast(pl.Int32)
                .alias("__t"),
            ).collect()
            if df.height == 0:
                continue
            pid = df["pid"].to_numpy()
            ti = df["__t"].to_numpy()
            for c, dtype in SERIES.items():
                series[c][pid, ti] = df[c].fill_null(0).to_numpy().astype(dtype)
            for c in CATEGORIES:
                codes[c][pid, ti] = df[c].to_numpy()
            people = df.unique("pid", keep="first")
            p = people["pid"].to_numpy()
            person_code[p] = people["person_code"].to_numpy()
            sex[p] = people["sex"].to_numpy()
            fs = people["ila_first_start"]
            has = fs.is_not_null().to_numpy()
            idx = ((fs.dt.year() - first.year) * 12 + fs.dt.month() - first.month).to_numpy()
            first_start[p[has]] = idx[has]
        return cls(
            person_code=person_code,
            sex=sex,
            first_start=first_start,
            months=months,
            series=series,
            codes=codes,
            levels=levels,
        )


def _band(values: np.ndarray, bands: tuple[tuple[int, int], ...], other: str) -> np.ndarray:
    out = np.full(values.shape, other, dtype=object)
    for lo, hi in bands:
        out[(values >= lo) & (values <= hi)] = f"{lo}-{hi}"
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
        ``pid`` and the columns of :data:`NUMERIC_FEATURES` and :data:`CATEGORICAL_FEATURES`.
    """
    if m < HISTORY:
        raise ValueError(
            f"cohort month index {m} has less than {HISTORY} months of history "
            "loaded; load the panel from an earlier month"
        )
    s, c = arrays.series, arrays.codes
    earn = s["earnings_real"][pids, m - 36 : m].astype(np.float64)  # column 35 = m-1
    days = s["days_worked"][pids, m - 36 : m].astype(np.int32)
    out: dict[str, np.ndarray] = {"pid": pids.astype(np.int32)}
    for k in range(1, 13):
        out[f"earn_l{k}"] = earn[:, 36 - k]
    out["earn_m13_24"] = earn[:, 12:24].mean(axis=1)
    out["earn_m25_36"] = earn[:, 0:12].mean(axis=1)
    out["days_12"] = days[:, 24:].sum(axis=1)
    out["days_24"] = days[:, 12:].sum(axis=1)
    out["days_36"] = days.sum(axis=1)
    out["unemp_months_36"] = s["registered_unemployed"][pids, m - 36 : m].sum(
        axis=1, dtype=np.int32
    )
    out["ub_days_36"] = s["ub_days"][pids, m - 36 : m].sum(axis=1, dtype=np.int32)
    sick = s["sick_benefit_days"][pids, m - 36 : m]
    out["sick_days_36"] = sick.sum(axis=1, dtype=np.int32)
    out["sick_days_12"] = sick[:, 24:].sum(axis=1, dtype=np.int32)
    l1 = m - 1
    out["employed_l1"] = s["employed"][pids, l1].astype(np.int8)
    out["daily_wage_l1"] = s["daily_wage_real"][pids, l1].astype(np.float64)
    age = s["age"][pids, m].astype(np.int16)  # age at m is known before m (birth date)
    out["age"] = age
    out["dependants"] = s["dependants"][pids, l1].astype(np.int16)
    out["urbanisation"] = s["urbanisation"][pids, l1].astype(np.int16)
    out["prior_learning"] = (s["prior_learning_courses"][pids, l1] > 0).astype(np.int8)
    level = s["isced_level"][pids, l1]
    cat: dict[str, np.ndarray] = {
        "sex": arrays.sex[pids].astype(object),
        "age_band": _band(age, AGE_BANDS, "other"),
        "edu_band": np.where(level >= 5, "high", np.where(level >= 3, "medium", "low")).astype(
            object
        ),
        "isced_level": level.astype(str).astype(object),
    }

    def decode(name: str, missing: str) -> np.ndarray:
        code = c[name][pids, l1]
        lv = np.array([*arrays.levels[name], missing], dtype=object)
        return lv[np.where(code < 0, len(lv) - 1, code)]

    cat["isced_field"] = decode("isced_field", "unknown")
    cat["region_code"] = decode("region_code", "unknown")
    cat["nace_section"] = decode("nace_section", "none")
    occ = decode("occupation_code", "none")
    cat["isco_major"] = np.array([o[:1] if o != "none" else o for o in occ], dtype=object)
    skill = s["skill_level"][pids, l1]
    cat["skill_level"] = np.where(skill > 0, skill.astype(str), "none").astype(object)
    cat["sector"] = decode("sector", "none")
    cat["size_class"] = decode("size_class", "none")
    frame = pl.DataFrame(out)
    return frame.with_columns(pl.Series(k, v.tolist(), dtype=pl.Utf8) for k, v in cat.items())
