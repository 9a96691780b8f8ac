"""The public entry point: primary, secondary suppression, rounding, audit, report."""

from __future__ import annotations

import polars as pl

from impact.disclosure.attack import Auditor
from impact.disclosure.report import DisclosureReport, build_report
from impact.disclosure.rules import primary_reasons
from impact.disclosure.secondary import propagate, strengthen
from impact.disclosure.settings import DisclosureSettings
from impact.disclosure.table import KEY, build_index, prepare, value_columns

__all__ = ["apply_disclosure_control", "publish"]


def publish(full: pl.DataFrame, reasons: list[str | None],
            settings: DisclosureSettings) -> pl.DataFrame:
    """The publishable table of a prepared table and its suppression reasons.

    Suppressed rows get null ``n_participants``, ``n_twins`` and value columns; published
    counts are rounded to ``round_base`` (half up: with base 10, 15 -> 20); columns
    starting with ``_`` are dropped; ``suppressed`` and ``suppression_reason`` are added.
    """
    hidden = pl.col("suppression_reason").is_not_null()
    nulled = [*value_columns(full, settings), "n_participants", "n_twins"]
    df = full.with_columns(pl.Series("suppression_reason", reasons, dtype=pl.String))
    df = df.with_columns(
        *[pl.when(hidden).then(None).otherwise(pl.col(c)).alias(c) for c in nulled],
        hidden.alias("suppressed"))
    if settings.round_base is not None:
        b = settings.round_base
        df = df.with_columns(((pl.col(c) + b // 2) // b * b).alias(c)
                             for c in ("n_participants", "n_twins"))
    keep = [c for c in df.columns if not c.startswith("_") and c not in
            ("suppressed", "suppression_reason")]
    return df.select(*keep, "suppressed", "suppression_reason")


def apply_disclosure_control(
    cells: pl.DataFrame, settings: DisclosureSettings | None = None
) -> tuple[pl.DataFrame, DisclosureReport]:
    """Suppress, round and audit a cell table of impact indicators for publication.

    Steps: validation (:func:`impact.disclosure.table.prepare`); primary suppression
    (:mod:`impact.disclosure.rules`); if ``settings.secondary``, margin and population
    suppression to a fixed point (:mod:`impact.disclosure.secondary`), then up to
    ``max_audit_rounds`` rounds of the intruder audit (:mod:`impact.disclosure.attack`),
    each recovered value getting one more complementary cell; rounding; a final audit.

    Parameters
    ----------
    cells
        One row per cell, see :mod:`impact.disclosure`. Not modified.
    settings
        Rules and protection widths; defaults if None.

    Returns
    -------
    (published, report)
        ``published`` in canonical key order (deterministic: same input, same bytes),
        without ``_`` columns, suppressed cells nulled, with ``suppressed`` and
        ``suppression_reason``; ``report`` of the run including the final audit
        (``report.ok`` False if a value is still recoverable).

    Raises
    ------
    ValueError
        Malformed input; the message names the column and an example row.
    """
    settings = settings or DisclosureSettings()
    full = prepare(cells, settings)
    reasons = primary_reasons(full, settings)
    rounds = 0
    result = None
    # one auditor for all rounds: blocks without new suppressions are not solved again;
    # only ``recovered`` and ``status`` are used, so bounds need not be exact
    auditor = Auditor(full, settings, exact=False)
    if settings.secondary:
        index = build_index(full)
        propagate(index, reasons)
        position = {key: i for i, key in enumerate(index.keys)}
        while True:
            published = publish(full, reasons, settings)
            result = auditor(published)
            rounds += 1
            hit = result.filter(pl.col("recovered")).select(KEY).iter_rows()
            if rounds > settings.max_audit_rounds or not strengthen(
                    index, reasons, [position[k] for k in hit]):
                break
            propagate(index, reasons)
    else:
        published = publish(full, reasons, settings)
    if result is None:
        result = auditor(published)
        rounds += 1
    return published, build_report(published, result, settings, rounds)
