"""After a full ingest run, no raw personal code is anywhere but in the landing zone.

Scans every artifact the run writes: clean sources, quarantine, reconciliation,
GX validation reports, the Dagster instance (run storage, event logs, compute
logs) and the captured console output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import yaml

from impact.privacy_scan import scan_for_codes, scan_for_key
from impact.pseudonym import PseudonymKey
from impact.synth import SynthConfig, generate

REPO = Path(__file__).resolve().parents[1]


def test_no_raw_code_or_key_in_any_artifact_of_a_run(tmp_path, monkeypatch, capsys) -> None:
    from pipelines.run import run

    root = tmp_path / "data"
    generate(SynthConfig(persons=800, seed=31, inject_errors=True), root)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"root": str(root)},
        "synth": {"persons": 800, "seed": 31},
        "ingest": {"key": {"source": "demo"}},
    }))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    report = run(config, ["sources"])
    assert report.success
    console = tmp_path / "console.txt"
    captured = capsys.readouterr()
    console.write_text(captured.out + captured.err)

    landing = next((root / "landing").iterdir())
    codes = pl.read_csv(landing / "pmlp_persons.csv", infer_schema=False)["person_code"]
    codes = codes.drop_nulls().to_list()
    # the scanner does see them where they legitimately are
    assert scan_for_codes([landing / "pmlp_persons.csv"], codes[:50])
    artifacts = [p for p in root.iterdir() if p.name not in ("landing", "truth")]
    artifacts += [home, console]
    assert any((root / "quarantine").iterdir())  # injected errors were quarantined
    assert scan_for_codes(artifacts, codes) == []
    assert scan_for_key(artifacts, PseudonymKey.demo()) == []
