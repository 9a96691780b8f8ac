"""The matched sample the indicators are computed on: participants, twins, and their months.

Every indicator is a rule applied to one person over calendar months fixed by a
participant: the **entry month** (month of the first course start, the cohort) and the
**leaving month** (end month of that course). Twins take their participant's months, so a
rule is applied to a participant and to each of their twins over the same calendar months
("the same rule applied to twins over the same calendar months").

A value is *observable* in month ``m`` for a person when ``m`` lies inside the data, the
person has a panel row (alive and resident) and, for a twin, ``m`` is before the twin's
own first ILA start (from then on it is no longer an untreated comparison: censored).
Unobservable values are NaN and the person drops out of that indicator; a window
aggregate (a sum over months) needs every month of the window observable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from impact.indicators.subpanel import SubPanel, month_index

__all__ = ["Arm", "MatchedSample", "build_sample"]

_NEVER = np.iinfo(np.int64).max // 4
#: Month index of a missing anchor (no leaving month yet): far outside the data, so every
#: month counted from it is unobservable.
NO_MONTH = -(10**6)


@dataclass(frozen=True)
class Arm:
    """Persons of one arm with the months their rules are evaluated over.

    Attributes
    ----------
    sub
        The sub-panel holding the persons.
    row : ndarray, shape (n,)
        Row of each person in ``sub``.
    entry, leave : ndarray, shape (n,)
        Month index of the (participant's) entry and leaving month.
    censor : ndarray, shape (n,)
        First month that is not observable for the person's role (twins: own first start).
    """

    sub: SubPanel
    row: np.ndarray
    entry: np.ndarray
    leave: np.ndarray
    censor: np.ndarray

    @property
    def n(self) -> int:
        return int(self.row.size)

    def observable(self, month: np.ndarray) -> np.ndarray:
        """Whether each person's value in ``month`` (array, one per person) is observable."""
        m = np.asarray(month, dtype=np.int64)
        inside = (m >= 0) & (m < self.sub.n_months) & (m < self.censor)
        mc = np.clip(m, 0, self.sub.n_months - 1)
        return inside & self.sub.in_panel[self.row, mc]

    def num(self, column: str, month: np.ndarray) -> np.ndarray:
        """Numeric value in ``month`` (NaN if unobservable or missing)."""
        m = np.asarray(month, dtype=np.int64)
        mc = np.clip(m, 0, self.sub.n_months - 1)
        v = self.sub.numeric[column][self.row, mc]
        return np.where(self.observable(m), v, np.nan)

    def code(self, column: str, month: np.ndarray) -> np.ndarray:
        """Text code in ``month`` (``-1`` if unobservable or missing)."""
        m = np.asarray(month, dtype=np.int64)
        mc = np.clip(m, 0, self.sub.n_months - 1)
        v = self.sub.codes[column][self.row, mc]
        return np.where(self.observable(m), v, -1)

    def window(self, column: str, first: np.ndarray, length: int) -> np.ndarray:
        """``(n, length)`` values of months ``first .. first + length - 1``."""
        return np.stack([self.num(column, first + k) for k in range(length)], axis=1)

    def window_sum(self, column: str, first: np.ndarray, length: int) -> np.ndarray:
        """Sum over ``length`` months from ``first``; NaN unless every month is observable
        (a missing value inside an observable month, e.g. a daily wage without work, counts
        as 0 only for columns that are never missing in the panel)."""
        w = self.window(column, first, length)
        ok = np.stack([self.observable(first + k) for k in range(length)], axis=1).all(axis=1)
        return np.where(ok, np.nansum(w, axis=1), np.nan)

    def window_mean(self, column: str, first: np.ndarray, length: int) -> np.ndarray:
        """Mean over the observable months of the window (NaN if none)."""
        w = self.window(column, first, length)
        n = np.isfinite(w).sum(axis=1)
        s = np.where(np.isfinite(w), w, 0.0).sum(axis=1)
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


@dataclass(frozen=True)
class MatchedSample:
    """Participants with their twins, ready for indicator rules.

    Attributes
    ----------
    treated, twins
        The two arms; ``twins`` has one row per (participant, twin) pair.
    pair_treated : ndarray, shape (n_pairs,)
        Row of each pair's participant in ``treated``.
    weight : ndarray, shape (n_pairs,)
        Matching weight of the pair (renormalised per indicator among observed twins).
    twin_pid : ndarray, shape (n_pairs,)
        Panel ``pid`` of each twin (pairs of the same twin person are pooled for variance).
    info : polars.DataFrame
        One row per participant (same order as ``treated``): ``pid``, ``person_code``,
        ``cohort``, ``end_month`` and the treatment table's programme and cost columns.
    """

    treated: Arm
    twins: Arm
    pair_treated: np.ndarray
    weight: np.ndarray
    twin_pid: np.ndarray
    info: pl.DataFrame

    @property
    def n_treated(self) -> int:
        return self.treated.n

    def subset(self, keep: np.ndarray) -> MatchedSample:
        """Participants with ``keep`` (bool per participant) and their twins."""
        keep = np.asarray(keep, dtype=bool)
        new_row = np.cumsum(keep) - 1
        pk = keep[self.pair_treated]

        def cut(arm: Arm, k: np.ndarray) -> Arm:
            return Arm(arm.sub, arm.row[k], arm.entry[k], arm.leave[k], arm.censor[k])

        return MatchedSample(
            treated=cut(self.treated, keep), twins=cut(self.twins, pk),
            pair_treated=new_row[self.pair_treated[pk]], weight=self.weight[pk],
            twin_pid=self.twin_pid[pk], info=self.info.filter(pl.Series(keep)))


def build_sample(sub: SubPanel, pairs: pl.DataFrame, treatment: pl.DataFrame) -> MatchedSample:
    """Join the twins table with the treatment table on the sub-panel's months.

    Parameters
    ----------
    sub
        Sub-panel holding every treated person and twin of ``pairs``.
    pairs
        Twins (``cohort``, ``treated_pid``, ``treated_code``, ``twin_pid``, ``weight``), as
        written by :func:`impact.twins.riskset.write`.
    treatment
        ``research/treatment.parquet``: ``person_code``, ``cohort``, ``end_month``,
        programme and cost columns. Participants without an end month (still in training
        at the end of the data) have no leaving month; their post-leaving rules are missing.

    Assumptions: each treated person appears in one cohort; the cohort of the pairs
    equals the treatment table's cohort (checked).
    """
    need = {"cohort", "treated_pid", "treated_code", "twin_pid", "weight"}
    missing = need - set(pairs.columns)
    if missing:
        raise KeyError(f"pairs lack columns {sorted(missing)}")
    p = pairs.sort("treated_pid", "twin_pid")
    tp = p["treated_pid"].to_numpy().astype(np.int64)
    treated_pid, first_row, pair_treated = np.unique(tp, return_index=True, return_inverse=True)
    heads = p[first_row.tolist()].select(
        pl.col("treated_pid").alias("pid"), pl.col("treated_code").alias("person_code"),
        pl.col("cohort").alias("_pair_cohort"))
    info = heads.join(treatment, on="person_code", how="left", maintain_order="left")
    if info["cohort"].null_count():
        bad = info.filter(pl.col("cohort").is_null())["person_code"][0]
        raise ValueError(f"a matched participant is missing from the treatment table "
                         f"(person pseudonym {bad[:8]}...)")
    if (info["cohort"] != info["_pair_cohort"]).any():
        raise ValueError("the twins' cohort differs from the treatment table's cohort")
    info = info.drop("_pair_cohort")
    first = sub.months[0]
    entry = month_index(info["cohort"], first)
    leave = month_index(info["end_month"], first)
    leave = np.where(info["end_month"].is_null().to_numpy(), NO_MONTH, leave)
    t_row = sub.rows(treated_pid)
    twin_pid = p["twin_pid"].to_numpy().astype(np.int64)
    j_row = sub.rows(twin_pid)
    own = sub.first_start[j_row]
    censor_j = np.where(own >= 0, own, _NEVER)
    if (censor_j <= entry[pair_treated]).any():
        raise ValueError("a twin started ILA learning by its participant's entry month")
    treated = Arm(sub, t_row, entry, leave, np.full(t_row.size, _NEVER))
    twins = Arm(sub, j_row, entry[pair_treated], leave[pair_treated], censor_j)
    return MatchedSample(treated=treated, twins=twins, pair_treated=pair_treated,
                         weight=p["weight"].to_numpy().astype(np.float64), twin_pid=twin_pid,
                         info=info)
