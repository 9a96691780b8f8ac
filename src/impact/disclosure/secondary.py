"""Secondary (complementary) suppression on the partitions of a cell table.

The reasons list (one entry per row of a prepared table, None = published) is extended
in place, monotonically, so every loop below terminates.

Rules
-----
* **margin** -- every equation ``n(total) = sum of n(groups)`` of a table and dimension
  (the same equations hold for counts ``rate * n`` and totals ``mean * n``) must have 0 or
  at least 2 suppressed terms, the total counting as a term. One suppressed group gets
  the published group of the same dimension with the smallest ``n_participants`` (then
  group name) as complement, or the total if no group is left; a suppressed total gets
  the smallest group of every dimension of its table. A threshold-suppressed total needs
  nothing extra: all its groups are below the threshold too.
* **population** -- rows describing the same persons in different indicators
  (:attr:`CellIndex.population_groups`) share ``n_participants``, so a population cell is
  suppressed in every indicator or in none.
* **audit** -- when the intruder audit still narrows a suppressed value to less than the
  protection width (e.g. a group of 1 whose complement is known to hold at least
  ``min_persons``), :func:`strengthen` adds one more published cell of the same equation.

:func:`propagate` alternates the first two rules until nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from impact.disclosure.table import CellIndex, Equation

__all__ = ["AUDIT", "MARGIN", "POPULATION", "propagate", "strengthen"]

MARGIN = "secondary:margin"
POPULATION = "secondary:population"
AUDIT = "secondary:audit"


def _published(rows: Iterable[int], reasons: list[str | None]) -> list[int]:
    return [i for i in rows if reasons[i] is None]


def _complement(index: CellIndex, eq: Equation, reasons: list[str | None]) -> int | None:
    """The cell to suppress in an equation with a single suppressed term."""
    groups = sorted(_published(eq.groups, reasons), key=index.sort_key)
    if groups:
        return groups[0]
    return eq.total if reasons[eq.total] is None else None


def _population_pass(index: CellIndex, reasons: list[str | None]) -> bool:
    changed = False
    for rows in index.population_groups:
        if any(reasons[i] is not None for i in rows):
            for i in _published(rows, reasons):
                reasons[i] = POPULATION
                changed = True
    return changed


def _margin_pass(index: CellIndex, reasons: list[str | None]) -> bool:
    changed = False
    for eq in index.equations:
        terms = (eq.total, *eq.groups)
        if sum(reasons[i] is not None for i in terms) != 1:
            continue
        pick = _complement(index, eq, reasons)
        if pick is not None:
            reasons[pick] = MARGIN
            changed = True
    return changed


def propagate(index: CellIndex, reasons: list[str | None]) -> int:
    """Apply the margin and population rules until stable; return the passes made."""
    passes = 0
    while True:
        passes += 1
        changed = _population_pass(index, reasons)
        changed = _margin_pass(index, reasons) or changed
        if not changed:
            return passes


def strengthen(index: CellIndex, reasons: list[str | None], recovered: Iterable[int]) -> bool:
    """Suppress one more cell next to each recovered row; False if none could be added.

    For a recovered group the candidates are the published groups of its dimension, then
    its total; for a recovered total, the published groups of all its dimensions. The
    smallest ``n_participants`` (then dimension, group) is taken. An equation gets at most
    one extra cell per call (the next audit shows whether that was enough).
    """
    changed = False
    touched: set[int] = set()
    for row in sorted(set(recovered)):
        if touched.intersection(index.equations_of[row]):
            continue
        touched.update(index.equations_of[row])
        cands: set[int] = set()
        for e in index.equations_of[row]:
            eq = index.equations[e]
            cands.update(_published(eq.groups, reasons))
        cands.discard(row)
        pick = min(cands, key=index.sort_key) if cands else None
        if pick is None:
            totals = _published((index.equations[e].total for e in index.equations_of[row]),
                                reasons)
            pick = totals[0] if totals else None
        if pick is not None:
            reasons[pick] = AUDIT
            changed = True
    return changed
