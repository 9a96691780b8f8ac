"""A run killed with SIGKILL in the middle of a stage, started again, gives the same outputs.

One evaluation (800 synthetic persons, publication gate relaxed) is run without faults as
the reference. A second copy of the same delivery is run with ``IMPACT_FAULT_KILL_AT`` set
(:mod:`impact.faults`): the process kills itself just before the rename of one chosen final
file, once in each stage (ingest, panel, twins, indicators, publication). After every kill no
final path holds a partial file (every Parquet file reads; ``publish/latest``, if present,
is a complete publication). Then the run is started again without a fault and every output
must equal the reference: the same Parquet tables (compared as data, wall-time columns
aside) and the same publication files byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from impact.faults import KILL_ENV, LOG_ENV
from impact.publish import latest_publication, verify_publication
from impact.synth import SynthConfig, generate

REPO = Path(__file__).resolve().parents[1]
PERSONS = 2500
SELECT = "sources,research,evaluation,publication"
#: first write into each of these folders is a kill point (one per stage)
STAGES = ("sources", "panel", "twins", "indicators", "publish")


def _config(tmp: Path, root: Path) -> Path:
    path = tmp / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"root": str(root)},
        "synth": {"persons": PERSONS, "seed": 41},
        "ingest": {"key": {"source": "demo"}},
        "twins": {"gate_min_treated": 10},
        "estimates": {"reps": 99},
        # 800 persons cannot pass the balance gate nor test pre-trends with any power
        "publish": {"require_balance": False, "require_parallel_trends": False},
    }))
    return path


def _run(config: Path, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, LOG_ENV, "DAGSTER_HOME")}
    return subprocess.run([sys.executable, "-m", "impact.cli", "run", "--config", str(config),
                           "--select", SELECT], env={**e, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _tables(root: Path) -> dict[str, Path]:
    skip = ("landing", "truth")
    return {str(p.relative_to(root)): p for p in root.rglob("*.parquet")
            if p.relative_to(root).parts[0] not in skip}


def _no_debris(root: Path) -> None:
    for p in _tables(root).values():
        pl.read_parquet(p)  # raises on a partial file
    pub = root / "publish"
    if pub.exists():
        latest = latest_publication(pub)
        if latest is not None:
            assert verify_publication(latest) == [], latest


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    ref = tmp / "ref"
    generate(SynthConfig(persons=PERSONS, seed=41), ref)
    log = tmp / "writes.log"
    proc = _run(_config(tmp, ref), **{LOG_ENV: str(log)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    writes = [Path(line) for line in log.read_text().splitlines()]
    return tmp, ref, writes


def test_kill_in_every_stage_then_resume_gives_identical_outputs(reference) -> None:
    tmp, ref, writes = reference
    run = tmp / "run"
    generate(SynthConfig(persons=PERSONS, seed=41), run)
    config = _config(tmp, run)
    # the 2nd write into each stage's folder (the 1st into publish/): counted per folder,
    # because a resumed run skips what is still valid (e.g. twins cohorts already matched)
    kills = [(stage, f"{stage}:{1 if stage == 'publish' else 2}") for stage in STAGES]
    for stage in STAGES:
        assert sum(p.relative_to(ref).parts[0] == stage for p in writes) >= 2, stage
    for stage, k in kills:
        proc = _run(config, **{KILL_ENV: k})
        assert proc.returncode == -9, (stage, k, proc.returncode, proc.stdout[-2000:])
        _no_debris(run)
    proc = _run(config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("publication: ")

    a, b = _tables(ref), _tables(run)
    assert sorted(a) == sorted(b)
    for rel in a:
        x, y = pl.read_parquet(a[rel]), pl.read_parquet(b[rel])
        timing = [c for c in x.columns if c == "seconds"]  # wall time per cohort: not data
        assert x.drop(timing).equals(y.drop(timing)), rel
    pa, pb = latest_publication(ref / "publish"), latest_publication(run / "publish")
    assert pa is not None and pb is not None and pa.name == pb.name
    fa = {p.relative_to(pa): p.read_bytes() for p in pa.rglob("*") if p.is_file()}
    fb = {p.relative_to(pb): p.read_bytes() for p in pb.rglob("*") if p.is_file()}
    assert fa == fb
    assert not list((run / "publish").glob(".tmp-*"))
