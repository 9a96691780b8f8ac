"""Primary suppression: threshold, (n,k) dominance and the p%-rule.

Each rule is evaluated per arm (participants, twins); a cell fails when either arm fails.
The reason recorded is the first failing rule in the order threshold, dominance, p%.

* **threshold** -- ``n_participants < min_persons`` or ``n_twins < min_persons``.
* **(n,k) dominance** -- ``top1 + ... + top_n > k * total`` (strictly), where ``total`` is
  the sum of the absolute contributions of the arm (``_total_<arm>``).
* **p%-rule** -- ``total - top1 - top2 < p/100 * top1`` (strictly): the second largest
  contributor could estimate the largest to within p %.

The magnitude rules apply to a cell only where ``_total_<arm>`` is not null (null for
rates); a cell whose arm total is 0 has nothing to protect and passes.
"""

from __future__ import annotations

import polars as pl

from impact.disclosure.settings import DisclosureSettings
from impact.disclosure.table import ARMS

__all__ = ["DOMINANCE", "P_PERCENT", "THRESHOLD", "primary_reasons"]

THRESHOLD = "primary:threshold"
DOMINANCE = "primary:dominance"
P_PERCENT = "primary:p_percent"


def _dominance(df: pl.DataFrame, settings: DisclosureSettings) -> pl.Expr:
    fails = pl.lit(False)
    if settings.dominance_k is None:
        return fails
    for arm in ARMS:
        total = f"_total_{arm}"
        if total not in df.columns:
            continue
        top = pl.sum_horizontal([f"_top{i}_{arm}" for i in range(1, settings.dominance_n + 1)])
        fails = fails | (top > settings.dominance_k * pl.col(total)).fill_null(False)
    return fails


def _p_percent(df: pl.DataFrame, settings: DisclosureSettings) -> pl.Expr:
    fails = pl.lit(False)
    if settings.p_percent is None:
        return fails
    for arm in ARMS:
        total = f"_total_{arm}"
        if total not in df.columns:
            continue
        top1, top2 = pl.col(f"_top1_{arm}"), pl.col(f"_top2_{arm}")
        rest = pl.col(total) - top1 - top2
        fails = fails | (rest < settings.p_percent / 100 * top1).fill_null(False)
    return fails


def primary_reasons(df: pl.DataFrame, settings: DisclosureSettings) -> list[str | None]:
    """The primary suppression reason of every row of a prepared table (None = passes).

    Parameters
    ----------
    df
        A table returned by :func:`impact.disclosure.table.prepare` (so the top
        contribution columns the enabled rules need exist and are consistent).
    settings
        ``min_persons``, ``dominance_n``/``dominance_k`` and ``p_percent``.
    """
    m = settings.min_persons
    small = (pl.col("n_participants") < m) | (pl.col("n_twins") < m)
    reason = (pl.when(small).then(pl.lit(THRESHOLD))
              .when(_dominance(df, settings)).then(pl.lit(DOMINANCE))
              .when(_p_percent(df, settings)).then(pl.lit(P_PERCENT))
              .otherwise(pl.lit(None, dtype=pl.String)))
    return df.select(reason.alias("reason"))["reason"].to_list()
