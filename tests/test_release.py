"""Indicators to publication on the small synthetic evaluation: gates, disclosure, files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from impact import evaluate, release
from impact.config import EvaluationConfig
from impact.publish import latest_publication, verify_publication


def _config(root: Path) -> EvaluationConfig:
    return EvaluationConfig.model_validate({
        "data": {"root": str(root)}, "synth": {"persons": 4000, "seed": 41},
        "ingest": {"key": {"source": "demo"}}, "estimates": {"reps": 99},
        "twins": {"gate_min_treated": 10},
        # ~30 participants: employment's pre-trend test is not computable; these two are
        "publish": {"pretrend_outcomes": ["earnings_real", "days_worked"]}})


@pytest.fixture(scope="module")
def released(research, tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    for part in ("landing", "sources", "panel", "research"):
        (root / part).symlink_to(research.root / part, target_is_directory=True)
    cfg = _config(root)
    tr = pl.read_parquet(cfg.data.research / "treatment.parquet")
    arrays = evaluate.load_arrays(cfg.data.panel, tr)
    tw = evaluate.run_twins(arrays, cfg.twins.settings(), cfg.data.twins)
    evaluate.run_estimates(arrays, tw.pairs, tr, cfg.data.sources, cfg.data.estimates,
                           reps=99, seed=0)
    # the balance gate of 4,000 persons' handful of participants is not what is tested here
    meta = json.loads((cfg.data.twins / "settings.json").read_text())
    meta["failures"] = []
    (cfg.data.twins / "settings.json").write_text(json.dumps(meta))
    summary = release.run_indicators(cfg)
    result = release.run_publication(cfg)
    return cfg, summary, result, tw


def test_publication_files_and_latest(released) -> None:
    cfg, summary, result, _ = released
    assert summary["indicators"] >= 40
    path = result.path
    assert latest_publication(cfg.data.publish) == path
    for name in ("indicators.csv", "indicators.parquet", "indicators.json", "manifest.json",
                 "disclosure_report.json", "disclosure_report.md",
                 "tables/income_curves.csv", "tables/career_step_km.csv",
                 "tables/event_study.csv", "tables/balance.csv", "tables/twins_groups.csv",
                 "tables/pre_trajectories.csv", "tables/data_quality.csv",
                 "open_data/indicators.csv", "open_data/datapackage.json"):
        assert (path / name).is_file(), name
    assert verify_publication(path) == []
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["run_id"] == result.run_id
    assert "root" not in manifest["config"]["data"]
    assert any(f["path"].endswith("manifest.json") for f in manifest["input_files"])


def test_no_published_cell_below_the_threshold_and_suppressed_cells_are_empty(released
                                                                               ) -> None:
    cfg, _, result, _ = released
    t = pl.read_parquet(result.path / "indicators.parquet")
    shown = t.filter(~pl.col("suppressed"))
    assert shown.height > 0
    assert (shown["n_participants"] >= cfg.disclosure.min_persons).all()
    assert (shown["n_twins"] >= cfg.disclosure.min_persons).all()
    hidden = t.filter(pl.col("suppressed"))
    assert hidden.height > 0
    for c in ("n_participants", "participants", "twins", "net", "se", "ci_low", "p_value",
              "twins_ess", "p_holm", "participants_pre"):
        assert hidden[c].null_count() == hidden.height, c
    assert not any(c.startswith("_") for c in t.columns)
    report = json.loads((result.path / "disclosure_report.json").read_text())
    assert result.recovered == 0
    assert json.dumps(report).count("recovered") >= 1
    od = pl.read_csv(result.path / "open_data" / "indicators.csv")
    assert od.height == shown.height
    es = pl.read_parquet(result.path / "tables" / "event_study.parquet")
    assert es.height > 0 and (es.filter(~pl.col("suppressed"))["n_participants"]
                              >= cfg.disclosure.min_persons).all()
    for name in ("twins_groups", "balance"):
        t = pl.read_parquet(result.path / "tables" / f"{name}.parquet")
        n = "n_matched" if name == "twins_groups" else "n_treated_after"
        assert (t[n] >= cfg.disclosure.min_persons).all(), name
    # persons matched in coarser strata: a count only from the disclosure threshold on
    g = pl.read_parquet(result.path / "tables" / "twins_groups.parquet")
    fb = g["n_matched_fallback"].drop_nulls()
    assert (fb >= cfg.disclosure.min_persons).all()
    assert g["fallback_share"].is_between(0, 1).all()


def test_group_labels_depend_on_the_dimension(released) -> None:
    _, _, result, _ = released
    t = pl.read_parquet(result.path / "indicators.parquet").select(
        "dimension", "group", "group_label_en", "group_label_lv").unique()
    sex = t.filter(pl.col("dimension") == "sex")
    assert set(sex["group_label_en"]) <= {"men", "women", "unknown"}
    sec = t.filter(pl.col("dimension") == "sector_at_entry", pl.col("group").is_in(["F", "M"]))
    assert sec.height > 0 and (sec["group_label_en"] == sec["group"]).all()


def test_re_running_gives_byte_identical_tables(released) -> None:
    cfg, _, result, _ = released
    before = {p.relative_to(result.path): p.read_bytes()
              for p in result.path.rglob("*") if p.is_file()}
    again = release.run_publication(cfg)
    assert again.path == result.path and again.run_id == result.run_id
    after = {p.relative_to(again.path): p.read_bytes()
             for p in again.path.rglob("*") if p.is_file()}
    assert before == after


PARTS = ("landing", "sources", "panel", "research", "twins", "estimates", "indicators")


def _variant(cfg: EvaluationConfig, root: Path, copy: str) -> Path:
    """A data root linking every stage folder of ``cfg`` except ``copy``, which is copied
    (to be edited by the test)."""
    root.mkdir()
    for part in PARTS:
        if part != copy:
            (root / part).symlink_to(cfg.data.root / part, target_is_directory=True)
    shutil.copytree(cfg.data.root / copy, root / copy, symlinks=True)
    return root


def test_failed_balance_gate_blocks_publication(released, tmp_path) -> None:
    cfg, _, _, _ = released
    root = _variant(cfg, tmp_path / "blocked", "twins")
    meta = json.loads((root / "twins" / "settings.json").read_text())
    meta["failures"] = ["cohort group 2025-01..2025-03: |SMD| 0.31 > 0.1 (earn_l1)"]
    (root / "twins" / "settings.json").write_text(json.dumps(meta))
    blocked = _config(root)
    with pytest.raises(release.PublicationBlocked, match="balance gate"):
        release.run_publication(blocked)
    assert not (root / "publish").exists()
    relaxed = blocked.model_copy(update={"publish": blocked.publish.model_copy(
        update={"require_balance": False})})
    assert release.run_publication(relaxed).path.is_dir()


def test_rejected_pre_trend_blocks_publication(released, tmp_path) -> None:
    cfg, _, _, _ = released
    root = _variant(cfg, tmp_path / "pretrend", "estimates")
    tests = json.loads((root / "estimates" / "pretrend.json").read_text())
    assert tests["earnings_real"]["computed"] and tests["days_worked"]["computed"]
    tests["days_worked"]["pvalue"] = 0.001  # below 0.05 / 2
    (root / "estimates" / "pretrend.json").write_text(json.dumps(tests))
    blocked = _config(root)
    with pytest.raises(release.PublicationBlocked, match=r"pre-trend test over event times "
                       r"-36..-13 rejects \(F = .*p = 0.001 < 0.025\)"):
        release.run_publication(blocked)
    assert not (root / "publish").exists()
    tests["days_worked"]["pvalue"] = 0.03  # above the Bonferroni level
    (root / "estimates" / "pretrend.json").write_text(json.dumps(tests))
    assert release.run_publication(blocked).path.is_dir()


def test_key_fingerprint_in_the_run_id_and_mixed_keys_refused(released, tmp_path) -> None:
    from impact.ingest import KEY_RECORD
    from impact.pseudonym import PseudonymKey

    cfg, _, result, _ = released
    demo = PseudonymKey.demo().fingerprint
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert demo in json.dumps(manifest)  # recorded with the seeds
    assert release.key_fingerprint(cfg.data.sources) == demo
    root = _variant(cfg, tmp_path / "other_key", "sources")
    records = sorted((root / "sources").glob(f"*/{KEY_RECORD}"))
    assert len(records) >= 15
    records[0].write_text(json.dumps({"fingerprint": "0badc0de"}))
    with pytest.raises(release.PublicationBlocked, match="different keys"):
        release.run_publication(_config(root))
    assert not (root / "publish").exists()
    for r in records:  # every table of the other key: published, under another run id
        r.write_text(json.dumps({"fingerprint": "0badc0de"}))
    other = release.run_publication(_config(root))
    assert other.path.name != result.path.name


def test_no_raw_code_or_key_in_anything_the_evaluation_writes(released, tmp_path) -> None:
    """Sources, panel, research tables, twins, estimates, indicators, the publication and
    the report: no raw personal code and no key material anywhere."""
    from impact.privacy_scan import scan_for_codes, scan_for_key
    from impact.pseudonym import PseudonymKey
    from impact.report import write_report

    cfg, _, result, _ = released
    report = write_report(result.path, cfg.data.reports / result.run_id / "report.html")
    landing = next((cfg.data.landing).iterdir())
    codes = pl.read_csv(landing / "pmlp_persons.csv", infer_schema=False)["person_code"]
    codes = codes.drop_nulls().to_list()
    assert scan_for_codes([landing / "pmlp_persons.csv"], codes[:50])  # the scanner works
    artifacts = [p.resolve() for p in cfg.data.root.iterdir()
                 if p.name not in ("landing", "truth")]
    assert {p.name for p in artifacts} >= {"sources", "panel", "research", "twins",
                                           "estimates", "indicators", "publish", "reports"}
    assert report.is_file()
    assert scan_for_codes(artifacts, codes) == []
    assert scan_for_key(artifacts, PseudonymKey.demo()) == []
