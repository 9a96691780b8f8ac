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


@pytest.fixture(scope="session")
def publication(research: Research, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete publication folder of the 4,000-person evaluation (read-only for tests).

    Twins, estimates (99 bootstrap reps), indicators, disclosure control and the release
    files, as in tests/test_release.py; the balance gate of this small sample's handful of
    participants is waived. Returns ``data.publish/<run_id>``.
    """
    import json

    from impact import evaluate, release
    from impact.config import EvaluationConfig

    root = tmp_path_factory.mktemp("publication")
    for part in ("landing", "sources", "panel", "research"):
        (root / part).symlink_to(research.root / part, target_is_directory=True)
    cfg = EvaluationConfig.model_validate({
        "data": {"root": str(root)}, "synth": {"persons": 4000, "seed": 41},
        "ingest": {"key": {"source": "demo"}}, "estimates": {"reps": 99},
        "twins": {"gate_min_treated": 10},
        "publish": {"pretrend_outcomes": ["earnings_real", "days_worked"]}})
    tr = pl.read_parquet(cfg.data.research / "treatment.parquet")
    arrays = evaluate.load_arrays(cfg.data.panel, tr)
    tw = evaluate.run_twins(arrays, cfg.twins.settings(), cfg.data.twins)
    evaluate.run_estimates(arrays, tw.pairs, tr, cfg.data.sources, cfg.data.estimates,
                           reps=99, seed=0)
    settings = json.loads((cfg.data.twins / "settings.json").read_text())
    settings["failures"] = []
    (cfg.data.twins / "settings.json").write_text(json.dumps(settings))
    release.run_indicators(cfg)
    return release.run_publication(cfg).path
