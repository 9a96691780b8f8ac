"""Tests for impact.publish: complete, deterministic, atomic publications."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from impact import publish as pub
from impact.publish import (
    InputFile,
    Labels,
    PublicationError,
    RunMeta,
    config_hash,
    latest_publication,
    publish,
    run_id,
    verify_publication,
)

SHA = "ab" * 32


def indicators() -> pl.DataFrame:
    """Two indicators, total and by sex, two horizons; one suppressed cell."""
    rows = [
        # indicator, dimension, group, horizon, n_p, n_t, participants, twins, suppressed
        ("employed", "total", "all", 6, 120, 480, 0.61, 0.55, False),
        ("employed", "total", "all", 12, 118, 470, 0.64, 0.56, False),
        ("employed", "sex", "f", 12, 70, 280, 0.66, 0.57, False),
        ("employed", "sex", "m", 12, None, None, None, None, True),
        ("earnings", "total", "all", 12, 118, 470, 910.5, 870.25, False),
        ("earnings", "sex", "f", 12, 70, 280, float("nan"), 850.0, False),
    ]
    df = pl.DataFrame(
        rows,
        schema={"indicator": pl.String, "dimension": pl.String, "group": pl.String,
                "horizon": pl.Int64, "n_participants": pl.Int64, "n_twins": pl.Int64,
                "participants": pl.Float64, "twins": pl.Float64, "suppressed": pl.Boolean},
        orient="row",
    )
    df = df.with_columns(
        kind=pl.lit("effect"),
        unit=pl.when(pl.col("indicator") == "earnings").then(pl.lit("EUR")).otherwise(
            pl.lit("share")),
        net=pl.col("participants") - pl.col("twins"),
        se=pl.when(pl.col("suppressed")).then(None).otherwise(pl.lit(0.01)),
        p_value=pl.when(pl.col("suppressed")).then(None).otherwise(pl.lit(1e-7)),
        suppression_reason=pl.when(pl.col("suppressed")).then(pl.lit("n_participants < 10")),
    )
    return df.reverse()  # publish must sort


class FakeReport:
    def __init__(self, markdown: str = "# Disclosure control\n\n1 cell suppressed.\n") -> None:
        self.markdown = markdown

    def to_dict(self) -> dict[str, Any]:
        return {"suppressed_cells": 1, "rules": {"min_persons": 10}, "ratio": float("nan")}

    def to_markdown(self) -> str:
        return self.markdown


LABELS = Labels.from_dict({
    "indicator": {
        "employed": {"en": "Employed", "lv": "Nodarbināts", "definition_en": "Share employed",
                     "definition_lv": "Nodarbināto īpatsvars", "unit": "share",
                     "population": "ILA participants"},
        "earnings": {"en": "Monthly earnings", "lv": "Mēneša ienākumi", "unit": "EUR"},
    },
    "dimension": {"total": {"en": "Total", "lv": "Kopā"}, "sex": {"en": "Sex", "lv": "Dzimums"}},
    "group": {"total": {"all": {"en": "All", "lv": "Visi"}},
              "sex": {"f": {"en": "Women", "lv": "Sievietes"}}},  # "m": falls back to id
})


def meta(**config: Any) -> RunMeta:
    return RunMeta(
        data_vintage="2025-06",
        config={"twins": {"ratio": 5, "caliper": 0.2}, **config},
        code_version="c507b87",
        input_files=[InputFile("landing/d1/vid.csv", SHA, 1234), ("landing/d1/nva.csv", SHA, 99)],
        seeds={"twins": 0, "bootstrap": 0},
        estimator={"name": "matched DiD", "reps": 999},
        control_group={"name": "statistical twins", "pool": "not_yet_treated"},
        libraries={"polars": "2.1.0"},
    )


def curves() -> pl.DataFrame:
    return pl.DataFrame({"indicator": ["employed"] * 3, "event_time": [-1, 0, 1],
                         "net": [0.0, 0.02, 0.05], "n_participants": [120, 120, 118],
                         "suppressed": [False, False, False]})


def all_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def do_publish(root: Path, m: RunMeta | None = None, **kw: Any) -> Path:
    return publish(indicators(), kw.pop("report", FakeReport()), LABELS, m or meta(), root, **kw)


# --------------------------------------------------------------------------- tests


def test_files_present_and_latest(tmp_path: Path) -> None:
    out = do_publish(tmp_path, extra_tables={"event_study": curves()})
    rid = run_id(meta())
    assert out == tmp_path / rid and rid.startswith("2025-06-") and len(rid) == 20
    assert set(all_bytes(out)) == {
        "indicators.csv", "indicators.parquet", "indicators.json",
        "tables/event_study.csv", "tables/event_study.parquet",
        "disclosure_report.json", "disclosure_report.md",
        "open_data/indicators.csv", "open_data/README.md", "open_data/datapackage.json",
        "manifest.json",
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == sorted(set(all_bytes(out)) - {
        "manifest.json"})
    assert manifest["config_hash"] == config_hash(meta().config)
    assert manifest["input_files"][0] == {"path": "landing/d1/nva.csv", "sha256": SHA,
                                          "bytes": 99}
    assert verify_publication(out) == []
    assert os.readlink(tmp_path / "latest") == rid
    assert (tmp_path / "LATEST").read_text() == rid + "\n"
    assert latest_publication(tmp_path) == out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    # indicators.json: metadata with definitions, NaN -> null, same rows as the CSV
    doc = json.loads((out / "indicators.json").read_text())
    assert doc["metadata"]["indicators"]["employed"]["definition_lv"] == "Nodarbināto īpatsvars"
    assert doc["metadata"]["indicators"]["earnings"]["definition_en"] is None
    assert doc["metadata"]["run_id"] == rid
    assert doc["metadata"]["control_group"]["pool"] == "not_yet_treated"
    assert len(doc["rows"]) == 6
    assert any(r["participants"] is None and not r["suppressed"] for r in doc["rows"])
    assert json.loads((out / "disclosure_report.json").read_text())["ratio"] is None
    back = pl.read_parquet(out / "indicators.parquet")
    assert back.equals(pl.read_csv(out / "indicators.csv", schema=back.schema))
    for text in [p.read_text() for p in out.rglob("*.json")] + [(out / "indicators.csv")
                                                                 .read_text()]:
        assert "NaN" not in text


def test_csv_has_both_label_languages_sorted(tmp_path: Path) -> None:
    out = do_publish(tmp_path)
    raw = (out / "indicators.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r\n" not in raw
    df = pl.read_csv(out / "indicators.csv")
    assert df.columns[:9] == [
        "indicator", "indicator_label_en", "indicator_label_lv",
        "dimension", "dimension_label_en", "dimension_label_lv",
        "group", "group_label_en", "group_label_lv"]
    emp = df.filter(pl.col("indicator") == "employed")
    assert set(emp["indicator_label_lv"]) == {"Nodarbināts"}
    assert emp.filter(pl.col("group") == "f")["group_label_lv"].item() == "Sievietes"
    assert emp.filter(pl.col("group") == "m")["group_label_en"].item() == "m"  # fallback
    keys = df.select("indicator", "dimension", "group", "horizon")
    assert keys.equals(keys.sort(keys.columns))


def test_republish_is_deterministic(tmp_path: Path) -> None:
    a = do_publish(tmp_path / "a", extra_tables={"event_study": curves()})
    first = all_bytes(a)
    a2 = do_publish(tmp_path / "a", extra_tables={"event_study": curves()})
    b = do_publish(tmp_path / "b", extra_tables={"event_study": curves()})
    assert a2 == a and b.name == a.name
    assert all_bytes(a2) == first
    assert all_bytes(b) == first  # rendered afresh elsewhere: byte-identical
    assert pub._parquet_bytes(curves()) == pub._parquet_bytes(curves())


def test_changed_config_new_id_and_latest_moves(tmp_path: Path) -> None:
    first = do_publish(tmp_path)
    second = do_publish(tmp_path, meta(estimates={"reps": 499}))
    assert first.name != second.name
    assert first.is_dir() and second.is_dir()
    assert latest_publication(tmp_path) == second
    assert os.readlink(tmp_path / "latest") == second.name
    assert (tmp_path / "LATEST").read_text().strip() == second.name


def test_failed_publish_keeps_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = do_publish(tmp_path)
    real = pub._write_file
    calls = {"n": 0}

    def flaky(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full (simulated)")
        real(path, data)

    monkeypatch.setattr(pub, "_write_file", flaky)
    m2 = meta(estimates={"reps": 499})
    with pytest.raises(OSError, match="simulated"):
        do_publish(tmp_path, m2)
    assert calls["n"] == 4
    assert not (tmp_path / run_id(m2)).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert latest_publication(tmp_path) == first
    assert os.readlink(tmp_path / "latest") == first.name
    assert (tmp_path / "LATEST").read_text().strip() == first.name
    assert verify_publication(first) == []


def test_stale_tmp_dir_removed_and_never_latest(tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-2025-06-aaaaaaaaaaaa-999999999-dead"
    (stale / "tables").mkdir(parents=True)
    (stale / "indicators.csv").write_text("half written")
    (tmp_path / "LATEST").write_text(stale.name)  # a reader must not accept this
    assert latest_publication(tmp_path) is None
    out = do_publish(tmp_path)
    assert not stale.exists()
    assert latest_publication(tmp_path) == out


def test_lost_old_publication_is_restored(tmp_path: Path) -> None:
    out = do_publish(tmp_path)
    aside = tmp_path / f".old-{out.name}-999999999-dead"
    out.rename(aside)  # as if killed between the two renames of a replacement
    do_publish(tmp_path, meta(estimates={"reps": 499}))
    assert not aside.exists() and verify_publication(out) == []


def test_verify_detects_tampering(tmp_path: Path) -> None:
    out = do_publish(tmp_path)
    csv = out / "indicators.csv"
    csv.write_bytes(csv.read_bytes().replace(b"0.61", b"0.71"))
    (out / "extra.txt").write_text("x")
    (out / "open_data" / "README.md").unlink()
    problems = verify_publication(out)
    assert any(p.startswith("indicators.csv: sha256") for p in problems)
    assert "extra.txt: not listed in manifest.json" in problems
    assert "open_data/README.md: missing" in problems
    # a republish replaces the tampered folder with a correct one
    assert verify_publication(do_publish(tmp_path)) == []


def test_refuses_underscore_columns(tmp_path: Path) -> None:
    with pytest.raises(PublicationError, match="_weight"):
        publish(indicators().with_columns(_weight=pl.lit(1.0)), FakeReport(), LABELS, meta(),
                tmp_path)
    with pytest.raises(PublicationError, match="_pid"):
        do_publish(tmp_path, extra_tables={"km": curves().with_columns(_pid=pl.lit("x"))})
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_refuses_small_unsuppressed_cell(tmp_path: Path) -> None:
    df = indicators().with_columns(
        n_twins=pl.when(pl.col("group") == "f").then(7).otherwise(pl.col("n_twins")))
    with pytest.raises(PublicationError, match=r"n_twins.*indicator=\w+, dimension=sex, group=f"):
        publish(df, FakeReport(), LABELS, meta(), tmp_path)
    with pytest.raises(PublicationError, match="suppressed"):
        publish(indicators().drop("suppressed"), FakeReport(), LABELS, meta(), tmp_path)
    assert latest_publication(tmp_path) is None


def test_refuses_unlabelled_indicator_and_code_shaped_values(tmp_path: Path) -> None:
    df = indicators().with_columns(indicator=pl.lit("unknown"))
    with pytest.raises(PublicationError, match="without labels.*unknown"):
        publish(df, FakeReport(), LABELS, meta(), tmp_path)
    leak = indicators().with_columns(group=pl.lit("P" + "0123456789abcdef" * 2))
    with pytest.raises(PublicationError, match="pseudonym"):
        publish(leak, FakeReport(), LABELS, meta(), tmp_path)


def test_privacy_scan_refuses_raw_code(tmp_path: Path) -> None:
    first = do_publish(tmp_path)
    report = FakeReport("# Report\n\nExample person: 120785-12347\n")
    with pytest.raises(PublicationError, match="privacy scan"):
        do_publish(tmp_path, meta(estimates={"reps": 499}), report=report,
                   raw_codes=["12078512347"])
    assert latest_publication(tmp_path) == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert do_publish(tmp_path, raw_codes=["12078512347"]) == first  # clean: passes


def test_open_data_only_unsuppressed_with_datapackage(tmp_path: Path) -> None:
    out = do_publish(tmp_path, extra_tables={"event_study": curves()},
                     open_data=["indicators", "event_study"])
    od = pl.read_csv(out / "open_data" / "indicators.csv")
    assert od.height == 5 and not od["suppressed"].any()
    assert {"indicator_label_en", "indicator_label_lv", "group_label_lv"} <= set(od.columns)
    package = json.loads((out / "open_data" / "datapackage.json").read_text())
    resources = {r["name"]: r for r in package["resources"]}
    assert set(resources) == {"indicators", "event_study"}
    fields = resources["indicators"]["schema"]["fields"]
    assert [f["name"] for f in fields] == od.columns
    types = {f["name"]: f["type"] for f in fields}
    assert types["n_participants"] == "integer" and types["net"] == "number"
    assert types["suppressed"] == "boolean" and types["indicator_label_lv"] == "string"
    assert resources["indicators"]["path"] == "indicators.csv"
    readme = (out / "open_data" / "README.md").read_text()
    assert "n_twins" in readme and "Dalībnieku skaits" in readme
    with pytest.raises(PublicationError, match="unknown tables"):
        do_publish(tmp_path, open_data=["nope"])


def test_run_meta_validation() -> None:
    with pytest.raises(PublicationError, match="YYYY-MM"):
        RunMeta(data_vintage="2025-13", config={}, code_version="x")
    with pytest.raises(PublicationError, match="relative"):
        RunMeta(data_vintage="2025-06", config={}, code_version="x",
                input_files=[("/abs/file.csv", SHA, 1)])
    with pytest.raises(PublicationError, match="JSON-safe"):
        RunMeta(data_vintage="2025-06", config={"root": Path("x")}, code_version="x")
    # input order does not matter; input content does
    m = meta()
    shuffled = RunMeta(**{**m.__dict__, "input_files": list(reversed(m.input_files))})
    assert run_id(shuffled) == run_id(m)
    changed = RunMeta(**{**m.__dict__, "input_files": [("landing/d1/vid.csv", "cd" * 32, 1)]})
    assert run_id(changed) != run_id(m)
    assert "polars" in pub.library_versions()
