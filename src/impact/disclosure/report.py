"""The output-checking report of one disclosure-control run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import polars as pl

from impact.disclosure.settings import DisclosureSettings

__all__ = ["AuditSummary", "DisclosureReport", "SuppressedCell", "build_report"]


@dataclass(frozen=True)
class SuppressedCell:
    """One suppressed cell and the first reason it was suppressed for."""

    indicator: str
    dimension: str
    group: str
    horizon: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"indicator": self.indicator, "dimension": self.dimension,
                "group": self.group, "horizon": self.horizon, "reason": self.reason}


@dataclass(frozen=True)
class AuditSummary:
    """What the intruder audit found on the published table."""

    cells_checked: int
    quantities_checked: int
    recovered: int
    infeasible: int
    recovered_cells: tuple[tuple[str, str, str, int | None, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"cells_checked": self.cells_checked,
                "quantities_checked": self.quantities_checked,
                "recovered": self.recovered, "infeasible": self.infeasible,
                "recovered_cells": [
                    {"indicator": i, "dimension": d, "group": g, "horizon": h, "quantity": q}
                    for i, d, g, h, q in self.recovered_cells]}

    @classmethod
    def from_frame(cls, result: pl.DataFrame) -> AuditSummary:
        """Summarise the frame returned by :func:`impact.disclosure.attack.audit`."""
        keys = ["indicator", "dimension", "group", "horizon"]
        rec = result.filter(pl.col("recovered"))
        return cls(
            cells_checked=result.select(keys).unique().height,
            quantities_checked=result.height,
            recovered=rec.height,
            infeasible=result.filter(pl.col("status") != "optimal").height,
            recovered_cells=tuple(rec.select(*keys, "quantity").iter_rows()))


@dataclass(frozen=True)
class DisclosureReport:
    """Settings, cell counts, every suppressed cell with its reason, and the audit.

    ``ok`` is True when the audit recovered nothing and every programme was solvable.
    """

    settings: DisclosureSettings
    cells_in: int
    cells_published: int
    cells_suppressed: int
    suppressed_by_reason: dict[str, int]
    suppressed_cells: tuple[SuppressedCell, ...]
    audit: AuditSummary
    audit_rounds: int

    @property
    def ok(self) -> bool:
        return self.audit.recovered == 0 and self.audit.infeasible == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, deterministically ordered."""
        return {
            "settings": self.settings.model_dump(mode="json"),
            "cells_in": self.cells_in,
            "cells_published": self.cells_published,
            "cells_suppressed": self.cells_suppressed,
            "suppressed_by_reason": dict(sorted(self.suppressed_by_reason.items())),
            "suppressed_cells": [c.to_dict() for c in self.suppressed_cells],
            "audit": self.audit.to_dict(),
            "audit_rounds": self.audit_rounds,
            "ok": self.ok,
        }

    def to_markdown(self) -> str:
        """A human-readable output-checking note."""
        s = self.settings
        lines = [
            "# Disclosure control report", "",
            f"Result: **{'pass' if self.ok else 'FAIL'}** "
            f"(audit recovered {self.audit.recovered} hidden value(s), "
            f"{self.audit.infeasible} unsolvable programme(s)).", "",
            "## Settings", "", "| setting | value |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in s.model_dump(mode="json").items()], "",
            "## Cells", "", "| | cells |", "|---|---:|",
            f"| in | {self.cells_in} |", f"| published | {self.cells_published} |",
            f"| suppressed | {self.cells_suppressed} |",
            *[f"| {r} | {k} |" for r, k in sorted(self.suppressed_by_reason.items())], "",
            "## Intruder audit", "",
            f"{self.audit.cells_checked} suppressed cells, {self.audit.quantities_checked} "
            f"hidden values checked by linear programming in {self.audit_rounds} round(s); "
            f"recovered: {self.audit.recovered}.", "",
        ]
        if self.audit.recovered_cells:
            lines += ["| indicator | dimension | group | horizon | quantity |",
                      "|---|---|---|---:|---|",
                      *[f"| {i} | {d} | {g} | {'' if h is None else h} | {q} |"
                        for i, d, g, h, q in self.audit.recovered_cells], ""]
        lines += ["## Suppressed cells", "",
                  "| indicator | dimension | group | horizon | reason |",
                  "|---|---|---|---:|---|",
                  *[f"| {c.indicator} | {c.dimension} | {c.group} | "
                    f"{'' if c.horizon is None else c.horizon} | {c.reason} |"
                    for c in self.suppressed_cells]]
        return "\n".join(lines) + "\n"


def build_report(published: pl.DataFrame, audit_result: pl.DataFrame,
                 settings: DisclosureSettings, audit_rounds: int) -> DisclosureReport:
    """The report of a published table (rows in canonical order) and its audit."""
    sup = published.filter(pl.col("suppressed"))
    cells = tuple(SuppressedCell(*row) for row in sup.select(
        "indicator", "dimension", "group", "horizon", "suppression_reason").iter_rows())
    return DisclosureReport(
        settings=settings, cells_in=published.height,
        cells_published=published.height - sup.height, cells_suppressed=sup.height,
        suppressed_by_reason=dict(sorted(Counter(c.reason for c in cells).items())),
        suppressed_cells=cells, audit=AuditSummary.from_frame(audit_result),
        audit_rounds=audit_rounds)
