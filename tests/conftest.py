"""Shared fixtures: one small synthetic evaluation, ingested and built, for the whole session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from impact import panel
from impact.ingest import IngestSettings, deliveries_in, ingest
from impact.pseudonym import PseudonymKey
from impact.synth import SynthConfig, generate

KEY = PseudonymKey.demo()


@dataclass(frozen=True)
class Research:
    """A synthetic evaluation after ingest, panel and episodes (read-only for tests)."""

    root: Path
    result: panel.PanelResult
    panel: pl.DataFrame


@pytest.fixture(scope="session")
def research(tmp_path_factory: pytest.TempPathFactory) -> Research:
    """4,000 synthetic persons (seed 41): landing, truth, sources, panel, research tables."""
    root = tmp_path_factory.mktemp("research")
    generate(SynthConfig(persons=4_000, seed=41), root)
    ingest(deliveries_in(root / "landing"), IngestSettings(out=root, key=KEY, gx_sample=0))
    res = panel.build(root / "sources", root / "panel")
    panel.build_episodes(root / "sources", root / "research")
    df = pl.read_parquet(root / "panel" / "**" / "*.parquet", hive_partitioning=False)
    return Research(root=root, result=res, panel=df)
