"""Shared by the twins tests: two twins folders hold the same tables and pairs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal


def assert_same_twins(a: Path, b: Path) -> None:
    """The twins folders ``a`` and ``b`` (``impact.twins.riskset.write``) agree: summary,
    balance, unmatched and pre-trajectories to 1e-12 (wall-clock ``seconds`` left out), and
    the same non-empty set of pairs files with equal contents."""
    for name in ("summary", "balance", "unmatched", "pre_trajectories"):
        x = pl.read_parquet(a / f"{name}.parquet").drop("seconds", strict=False)
        y = pl.read_parquet(b / f"{name}.parquet").drop("seconds", strict=False)
        assert_frame_equal(x, y, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)
    files = sorted(p.relative_to(a) for p in (a / "pairs").rglob("*.parquet"))
    assert files and files == sorted(p.relative_to(b) for p in (b / "pairs").rglob("*.parquet"))
    for f in files:
        assert_frame_equal(pl.read_parquet(a / f), pl.read_parquet(b / f))
