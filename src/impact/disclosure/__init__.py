"""Statistical disclosure control of published impact-indicator tables.

Input is a *cell table*, one row per published cell, keyed by ``(indicator, dimension,
group, horizon)``; within one ``(indicator, horizon)`` the row ``dimension = group =
"all"`` is the total and the groups of every other dimension partition it. Columns:
``kind`` ("rate", "mean" or "other"), ``n_participants``, ``n_twins``, value columns
(``participants``, ``twins``, ``net``, ``se``, ``ci_low``, ``ci_high``, ``p_value``),
optionally ``population`` (rows with equal population, dimension, group and horizon
describe the same persons) and internal ``_top<i>_<arm>`` / ``_total_<arm>`` columns of
magnitude contributions for the dominance and p% rules (never published).

Design decisions
----------------
* A cell is suppressed whole: n, value and inference columns together.
* Suppressed totals: the total is one more unknown of every ``total = sum of groups``
  equation of its table, so each dimension then hides at least one group (the smallest).
  A total below the threshold needs nothing extra: its groups are all below it too.
* Cross-indicator consistency: a *population cell* (equal ``population``, dimension,
  group, horizon; without a ``population`` column, equal dimension, group, horizon and
  ``n_participants`` in different indicators) is suppressed in every indicator or in
  none, so a hidden n is never published elsewhere.
* Margin and population rules run to a fixed point; then the intruder audit (LP with
  worst-case side knowledge) runs, and every still-recoverable value gets one more
  complementary cell, until nothing is recoverable (``report.ok``).
* Output rows are in key order and nothing is random: same input, same bytes.

Modules: :mod:`~impact.disclosure.settings`, :mod:`~impact.disclosure.table`
(validation, partitions), :mod:`~impact.disclosure.rules` (primary),
:mod:`~impact.disclosure.secondary` (complementary), :mod:`~impact.disclosure.attack`
(LP intruder audit), :mod:`~impact.disclosure.report`, :mod:`~impact.disclosure.control`
(:func:`apply_disclosure_control`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impact.disclosure.settings import DisclosureSettings

if TYPE_CHECKING:
    from impact.disclosure.attack import audit
    from impact.disclosure.control import apply_disclosure_control
    from impact.disclosure.report import AuditSummary, DisclosureReport, SuppressedCell

_LAZY = {"audit": "attack", "apply_disclosure_control": "control", "AuditSummary": "report",
         "DisclosureReport": "report", "SuppressedCell": "report"}

__all__ = [
    "AuditSummary",
    "DisclosureReport",
    "DisclosureSettings",
    "SuppressedCell",
    "apply_disclosure_control",
    "audit",
]


def __getattr__(name: str) -> Any:
    """Lazy exports: ``import impact.disclosure`` (for the settings) does not load scipy."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"impact.disclosure.{_LAZY[name]}"), name)
    raise AttributeError(name)
