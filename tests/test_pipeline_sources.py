"""Source assets: one per contract, a blocking `contract` check, failure isolation, `impact run`.

One small synthetic delivery (800 persons) is generated per module; a corrupted copy of it
has the column `sector` deleted from `employers.csv`. The corrupted copy's manifest is
updated (SHA-256, bytes, columns) so that checksum verification stays ON and the failure
under test is the missing column, as a provider would deliver it, not a checksum mismatch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from impact.contracts.model import load_contracts
from impact.manifest import DeliveryManifest
from impact.synth import SynthConfig, generate
from pipelines.assets.sources import CHECK_NAME, SOURCE_ASSETS, source_key
from pipelines.definitions import defs
from pipelines.resources import ImpactConfig

REPO = Path(__file__).resolve().parents[1]
PERSONS, SEED = 800, 1
TABLES = sorted(load_contracts())
BROKEN_TABLE, BROKEN_COLUMN = "employers", "sector"
#: tables whose contracts need `employers` (directly or through another table)
DEPENDENTS = {"vid_monthly_reports"}


def _write_config(path: Path, root: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(root)},
                "synth": {"persons": PERSONS, "seed": SEED},
                "ingest": {"key": {"source": "demo"}, "verify_checksums": True},
            }
        ),
        encoding="utf-8",
    )
    return path


def _drop_column(delivery: Path, file: str, column: str) -> None:
    """Delete a column from one CSV and keep the manifest consistent with the new file."""
    df = pl.read_csv(delivery / file, infer_schema=False).drop(column)
    df.write_csv(delivery / file)
    DeliveryManifest.read(delivery).refreshed(delivery, [file], df.columns).write(delivery)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    """An untouched synthetic delivery (landing/ + truth/) to copy from."""
    root = tmp_path_factory.mktemp("delivery")
    generate(SynthConfig(persons=PERSONS, seed=SEED), root)
    return root


def _copy_landing(delivery: Path, root: Path) -> Path:
    shutil.copytree(delivery / "landing", root / "landing")
    return root


@pytest.fixture(scope="module")
def good(delivery, tmp_path_factory):
    """The whole ingest_job of the definitions (landing + every source) on a good delivery."""
    root = _copy_landing(delivery, tmp_path_factory.mktemp("good"))
    config = _write_config(root / "config.yaml", root)
    local = dg.Definitions(
        assets=list(defs.assets),
        jobs=list(defs.jobs),
        resources={"impact_config": ImpactConfig(path=str(config))},
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = local.resolve_job_def("ingest_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
        yield root, config, result, instance


@pytest.fixture(scope="module")
def bad(delivery, tmp_path_factory):
    """Every source on a delivery whose employers.csv lacks a required column."""
    root = _copy_landing(delivery, tmp_path_factory.mktemp("bad"))
    (landing,) = (root / "landing").iterdir()
    _drop_column(landing, f"{BROKEN_TABLE}.csv", BROKEN_COLUMN)
    config = _write_config(root / "config.yaml", root)
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            list(defs.assets),
            selection=dg.AssetSelection.groups("sources"),
            resources={"impact_config": ImpactConfig(path=str(config))},
            instance=instance,
            raise_on_error=False,
        )
        yield root, config, result, instance


def _materialized(result) -> dict[str, dict]:
    return {
        ev.asset_key.to_user_string(): {
            k: v.value for k, v in ev.event_specific_data.materialization.metadata.items()
        }
        for ev in result.get_asset_materialization_events()
    }


def _checks(result) -> dict[str, object]:
    return {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}


# --------------------------------------------------------------------------- good delivery


def test_every_source_materialises_with_a_passing_blocking_check(good):
    root, _, result, instance = good
    assert result.success
    mats = _materialized(result)
    assert set(mats) == {"landing", *(f"sources/{t}" for t in TABLES)}
    checks = _checks(result)
    assert set(checks) == set(TABLES)
    assert all(c.passed and c.check_name == CHECK_NAME for c in checks.values())
    # recorded in the instance, not only in the event stream
    for table in TABLES:
        key = dg.AssetCheckKey(source_key(table), CHECK_NAME)
        (record,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
        assert record.status.value == "SUCCEEDED"
    for table in TABLES:
        assert any((root / "sources" / table).rglob("*.parquet")), table


def test_metadata_carries_the_reconciliation(good):
    root, _, result, _ = good
    mats = _materialized(result)
    manifest = DeliveryManifest.read(next((root / "landing").iterdir()))
    rows_by_table = manifest.rows_by_table()
    for table in TABLES:
        md = mats[f"sources/{table}"]
        assert md["rows_in"] == rows_by_table[table]
        files = md["files"]
        assert files and all(f["balanced"] for f in files)
        for f in files:
            parts = f["accepted"] + f["quarantined"] + f["duplicates"] + f["superseded"]
            assert f["rows_in"] == parts
        assert (
            md["rows_in"]
            == md["accepted"] + md["quarantined"] + md["duplicates"] + md["superseded"]
        )
        assert "| rows in | accepted | quarantined |" in md["reconciliation"]
        assert all(f["file"] in md["reconciliation"] for f in files)
        assert md["output"] == str(root / "sources" / table)
        assert isinstance(md["rules_hit"], dict)
        assert md["seconds"] >= 0
        assert md["dagster/row_count"] == md["accepted"]
    landing = mats["landing"]
    assert landing["synthetic"] is True and landing["rows_by_table"] == rows_by_table


def test_source_assets_follow_the_contracts():
    contracts = load_contracts()
    graph = defs.get_repository_def().asset_graph
    for table, contract in contracts.items():
        node = graph.get(source_key(table))
        assert node.group_name == "sources"
        assert node.description.startswith(contract.description)
        parents = {k.to_user_string() for k in node.parent_keys}
        assert parents == {"landing", *(f"sources/{t}" for t in contract.depends_on)}
        (spec,) = [s for a in SOURCE_ASSETS if source_key(table) in a.keys for s in a.check_specs]
        assert spec.name == CHECK_NAME and spec.blocking
        schema = node.metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == contract.names


# --------------------------------------------------------------------------- corrupted file


def test_missing_column_fails_its_asset_with_file_column_and_rule(bad):
    _, _, result, instance = bad
    assert not result.success
    step = "sources__" + BROKEN_TABLE
    assert result.is_node_failed(step)
    (failure,) = [e for e in result.get_step_failure_events() if e.step_key == step]
    message = failure.step_failure_data.user_failure_data.description
    assert f"{BROKEN_TABLE}.csv" in message  # file
    assert f"'{BROKEN_COLUMN}'" in message  # column
    assert "rule 'columns'" in message  # rule
    # the blocking check is recorded as failed, with the same message
    check = _checks(result)[BROKEN_TABLE]
    assert not check.passed and check.description == message
    key = dg.AssetCheckKey(source_key(BROKEN_TABLE), CHECK_NAME)
    (record,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
    assert record.status.value == "FAILED"
    # and the unusable table is not recorded as materialised
    assert instance.get_latest_materialization_event(source_key(BROKEN_TABLE)) is None


def test_other_sources_still_materialise(bad):
    _, _, result, _ = bad
    mats = _materialized(result)
    independent = set(TABLES) - {BROKEN_TABLE} - DEPENDENTS
    assert {"ref_cpi", "pmlp_persons"} <= independent
    assert {f"sources/{t}" for t in independent} == set(mats)
    assert all(_checks(result)[t].passed for t in independent)
    for t in DEPENDENTS:  # downstream of the failed table: not run at all
        assert f"sources/{t}" not in mats and t not in _checks(result)


def test_dependents_of_employers_are_what_the_contracts_say():
    contracts = load_contracts()
    needs = {t for t, c in contracts.items() if BROKEN_TABLE in c.depends_on}
    assert needs == DEPENDENTS


def test_invalid_config_fails_the_asset_naming_file_and_field(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("data: {root: x}\ningest: {key: {source: vault}}\n", encoding="utf-8")
    (asset,) = [a for a in SOURCE_ASSETS if source_key("ref_cpi") in a.keys]
    result = dg.materialize(
        [asset], resources={"impact_config": ImpactConfig(path=str(config))}, raise_on_error=False
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert str(config) in message and "ingest.key.source" in message
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- Dagster semantics
# Why the asset yields the failed check and then raises (pipelines/assets/sources.py): pinned
# here on toy assets, so a Dagster upgrade that changes either behaviour shows up.


def _toy(mode: str) -> list[dg.AssetsDefinition]:
    bad_key, down_key = dg.AssetKey("toy_bad"), dg.AssetKey("toy_down")

    @dg.asset(key=bad_key, check_specs=[dg.AssetCheckSpec("c", asset=bad_key, blocking=True)])
    def toy_bad():
        if mode == "yield_then_raise":
            yield dg.AssetCheckResult(passed=False, description="why")
            raise dg.Failure(description="why")
        yield dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=False)])

    @dg.asset(key=down_key, deps=[bad_key])
    def toy_down():
        return None

    return [toy_bad, toy_down]


@pytest.mark.parametrize("mode", ["yield_then_raise", "return_failed_check"])
def test_blocking_check_semantics(mode):
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(_toy(mode), instance=instance, raise_on_error=False)
        (check,) = result.get_asset_check_evaluations()
        assert not check.passed  # recorded either way
        assert result.is_node_failed("toy_bad")  # the step fails either way
        assert not result.is_node_success("toy_down")  # downstream never runs
        materialised = instance.get_latest_materialization_event(dg.AssetKey("toy_bad"))
        (failure,) = result.get_step_failure_events()
        if mode == "yield_then_raise":  # our choice: no materialisation, our message
            assert materialised is None
            assert failure.step_failure_data.user_failure_data.description == "why"
        else:  # recorded as materialised, generic error without the reason
            assert materialised is not None
            assert "blocking asset check failed" in failure.step_failure_data.error.message


# --------------------------------------------------------------------------- impact run


def _impact_run(config: Path, cwd: Path, env: dict[str, str], *select: str):
    args = [sys.executable, "-m", "impact.cli", "run", "--config", str(config)]
    for s in select:
        args += ["--select", s]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "IMPACT_CONFIG")}
    return {**env, **extra}


def test_impact_run_good_delivery(delivery, tmp_path):
    """Exit 0, one line per table; run from outside the repository (pipelines/ is found in
    the project checkout)."""
    root = _copy_landing(delivery, tmp_path / "data")
    config = _write_config(tmp_path / "good.yaml", root)
    proc = _impact_run(config, tmp_path, _env(), "sources")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    for table in TABLES:
        assert lines[table][1] == "ok", proc.stdout
    assert f"{len(TABLES)} ok, 0 failed, 0 not run" in proc.stdout
    assert "instance: ephemeral" in proc.stdout
    rows = DeliveryManifest.read(next((root / "landing").iterdir())).rows_by_table()
    assert lines["pmlp_persons"][2] == f"{rows['pmlp_persons']:,}"  # rows in


def test_run_records_in_dagster_home(delivery, tmp_path, monkeypatch):
    """With DAGSTER_HOME set, `impact run` (pipelines.run) records the run in that instance."""
    from pipelines.run import run

    root = _copy_landing(delivery, tmp_path / "data")
    config = _write_config(tmp_path / "good.yaml", root)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    report = run(config, ["ref_cpi,ref_isco"])
    assert report.success and report.instance == str(home)
    assert [o.key for o in report.outcomes] == ["sources/ref_cpi", "sources/ref_isco"]
    assert all(o.status == "ok" and o.check_passed for o in report.outcomes)
    with dg.DagsterInstance.get() as instance:
        (stored,) = instance.get_runs()
        assert stored.run_id == report.run_id and stored.is_success
        assert instance.get_latest_materialization_event(source_key("ref_cpi")) is not None


def test_impact_run_corrupted_delivery(delivery, tmp_path):
    root = _copy_landing(delivery, tmp_path / "data")
    (landing,) = (root / "landing").iterdir()
    _drop_column(landing, f"{BROKEN_TABLE}.csv", BROKEN_COLUMN)
    config = _write_config(tmp_path / "bad.yaml", root)
    proc = _impact_run(config, REPO, _env(), "sources")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines[BROKEN_TABLE][1] == "FAILED"
    assert lines["vid_monthly_reports"][1:3] == ["NOT", "RUN"]
    assert lines["ref_cpi"][1] == "ok" and lines["pmlp_persons"][1] == "ok"
    failures = out.split("failures:")[1]
    assert f"{BROKEN_TABLE}: " in failures and f"column '{BROKEN_COLUMN}'" in failures
    assert "rule 'columns'" in failures and f"{BROKEN_TABLE}.csv" in failures
    assert "upstream employers did not materialise" in out


def test_impact_run_rejects_a_bad_config_before_running(tmp_path):
    config = tmp_path / "typo.yaml"
    root = tmp_path / "data"
    config.write_text(
        f"data: {{root: {root}}}\nsynth: {{persons: 800}}\ningest: {{key: {{source: demo}}, "
        "verify_checksum: false}\n",
        encoding="utf-8",
    )
    proc = _impact_run(config, REPO, _env(), "all")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(config) in proc.stderr and "ingest.verify_checksum: unknown field" in proc.stderr
    assert not root.exists()  # nothing ran: no landing generated, no sources written


def test_impact_demo_generates_then_ingests(tmp_path):
    """The README's main command (small population): delivery, every source, the panel,
    twins and estimates; with 800 persons the twins cannot pass their balance gate, so the
    publication is refused, with the reason, and the exit code says so."""
    out = tmp_path / "demo"
    args = [
        sys.executable,
        "-m",
        "impact.cli",
        "demo",
        "--persons",
        str(PERSONS),
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        args, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "impact demo: synthetic registers" in proc.stdout
    assert f"{len(TABLES) + 10} ok, 1 failed, 1 not run" in proc.stdout  # report: not run
    assert "publication: impact.release.PublicationBlocked: the statistical twins failed " \
        "their balance gate" in proc.stdout
    assert (out / "indicators" / "indicators.parquet").is_file()
    assert not (out / "publish").exists()
    for table in TABLES:
        assert any((out / "sources" / table).rglob("*.parquet")), table
    assert len(list((out / "panel").glob("year=*/part-*.parquet"))) == 10  # 2019..2028
    for table in ("episodes", "treatment", "near_participants"):
        assert (out / "research" / f"{table}.parquet").is_file(), table
    assert (out / "twins" / "summary.parquet").is_file()
    assert (out / "estimates" / "headline.json").is_file()
    # and researchers can query it
    q = subprocess.run(
        [sys.executable, "-m", "impact.cli", "query", "--root", str(out),
         "SELECT count(DISTINCT person_code) AS persons FROM panel"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stderr
    assert f"{PERSONS}" in q.stdout
