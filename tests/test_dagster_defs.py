"""pipelines/ loads as Dagster definitions, in process and through the Dagster CLI."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]


def _write_manifest(folder: Path) -> Path:
    """A minimal valid delivery manifest (one file entry) in ``folder``."""
    from impact.manifest import DeliveryManifest, FileEntry

    entry = FileEntry(
        table="ref_cpi",
        path="ref_cpi.csv",
        format="csv",
        rows=2,
        bytes=10,
        sha256="0" * 64,
        columns=["month", "cpi"],
    )
    manifest = DeliveryManifest(
        delivery_id=folder.name,
        producer="test",
        period_start="2019-01",
        period_end="2028-06",
        files=[entry],
    )
    return manifest.write(folder)


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    """A throw-away DAGSTER_HOME holding the repository's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_defs_load_with_landing_sources_jobs_and_resource():
    from impact.contracts.model import load_contracts
    from pipelines.definitions import defs

    assert isinstance(defs, dg.Definitions)
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    sources = {f"sources/{t}" for t in load_contracts()}
    research = {"panel", "episodes", "treatment", "near_participants"}
    evaluation = {"twins_plan", "twins_cohort", "outcomes_cohort", "twins", "estimates"}
    publication = {"indicators", "publication", "report"}
    assert keys == {"landing", *sources, *research, *evaluation, *publication}
    assert repo.asset_graph.get(dg.AssetKey("landing")).group_name == "landing"
    assert {repo.asset_graph.get(dg.AssetKey(k)).group_name for k in research} == {"research"}
    # the panel depends on the sources it reads; its columns carry the data dictionary
    panel = repo.asset_graph.get(dg.AssetKey("panel"))
    assert {p.to_user_string() for p in panel.parent_keys} <= sources
    assert "sources/vid_monthly_reports" in {p.to_user_string() for p in panel.parent_keys}

    def job_keys(name):
        job = defs.resolve_job_def(name)
        return {k.to_user_string() for k in job.asset_layer.executable_asset_keys}

    assert job_keys("synth_job") == {"landing"}
    assert job_keys("ingest_job") == {"landing", *sources}
    assert job_keys("research_job") == research
    assert job_keys("twins_plan_job") == {"twins_plan"}
    assert job_keys("twins_cohort_job") == {"twins_cohort", "outcomes_cohort"}
    assert job_keys("evaluation_job") == {"twins", "estimates"}
    assert job_keys("publication_job") == publication
    assert "impact_config" in repo.get_top_level_resources()


def test_impact_config_default_is_the_demo_config(monkeypatch):
    from impact.config import load_config
    from pipelines.resources import ImpactConfig, impact_config_from_env

    monkeypatch.delenv("IMPACT_CONFIG", raising=False)
    resource = impact_config_from_env()
    assert resource.path == "configs/demo.yaml" and resource.data_root is None
    monkeypatch.chdir(REPO)
    loaded = resource.load()
    assert loaded.model_dump() == load_config(REPO / "configs" / "demo.yaml").model_dump()
    assert loaded.source_file == Path("configs/demo.yaml")
    moved = ImpactConfig(path=str(REPO / "configs" / "demo.yaml"), data_root="elsewhere")
    assert str(moved.load().data.landing) == "elsewhere/landing"


def test_instance_config_is_valid(dagster_home):
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert not instance.telemetry_enabled
        assert instance.run_monitoring_enabled
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 2
        assert {"key": "impact/stage", "value": "twins_cohort", "limit": 2} in \
            queue.tag_concurrency_limits
    # SQLite storage under $DAGSTER_HOME (storage: sqlite: base_dir: env: DAGSTER_HOME)
    assert (dagster_home / "history" / "runs.db").exists()


def test_dagster_definitions_validate_cli(dagster_home):
    """`dagster definitions validate` from the repo root finds [tool.dagster] in pyproject.toml.

    (`dg check defs` cannot resolve a root module outside src/ in dagster-dg 1.13; see the
    comment in pyproject.toml.)
    """
    dagster_exe = Path(sys.executable).with_name("dagster")
    if not dagster_exe.exists():
        pytest.skip(f"dagster CLI not installed next to {sys.executable}")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    proc = subprocess.run(
        [str(dagster_exe), "definitions", "validate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Validation successful for code location impact" in out, out


def test_landing_asset_generates_the_synthetic_delivery(monkeypatch, tmp_path, dagster_home):
    """A synthetic config: the asset builds SynthConfig from the config's synth section,
    calls generate into data.root, reports metadata."""
    from types import SimpleNamespace

    import impact.synth
    from pipelines.assets.landing import landing
    from pipelines.resources import ImpactConfig

    calls = []

    def generate(config, out):
        calls.append((config, out))
        delivery = out / "landing" / "2028-06"
        delivery.mkdir(parents=True)
        _write_manifest(delivery)
        return SimpleNamespace(
            landing_dir=delivery,
            truth_dir=out / "truth",
            manifest_path=delivery / "manifest.json",
            row_counts={"pmlp_persons": 2_000, "vid_monthly_reports": 50_000},
            seconds=1.5,
            injected_errors={},
        )

    monkeypatch.setattr(impact.synth, "generate", generate)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{root: {tmp_path / 'data'}}}\n"
        "synth: {persons: 2000, seed: 9, format: parquet}\n"
        "ingest: {key: {source: demo}}\n",
        encoding="utf-8",
    )
    result = dg.materialize([landing], resources={"impact_config": ImpactConfig(path=str(config))})
    assert result.success

    ((synth_config, out),) = calls
    assert out == tmp_path / "data"
    assert (synth_config.persons, synth_config.seed, synth_config.fmt) == (2_000, 9, "parquet")
    (mat,) = result.asset_materializations_for_node("landing")
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["deliveries"] == ["2028-06"]
    assert md["manifest"] == str(tmp_path / "data" / "landing" / "2028-06" / "manifest.json")
    assert md["seconds"] == 1.5
    assert md["synthetic"] is True


def test_landing_asset_for_real_data_records_the_deliveries(tmp_path, monkeypatch):
    """No synth section: nothing is generated; the deliveries present are recorded."""
    from pipelines.assets.landing import landing
    from pipelines.resources import ImpactConfig

    monkeypatch.setenv("TEST_IMPACT_KEY", "ab" * 32)
    config = tmp_path / "real.yaml"
    config.write_text(
        f"data: {{root: {tmp_path}}}\n"
        "ingest: {key: {source: env, variable: TEST_IMPACT_KEY}}\n",
        encoding="utf-8",
    )
    resources = {"impact_config": ImpactConfig(path=str(config))}
    empty = dg.materialize([landing], resources=resources, raise_on_error=False)
    assert not empty.success
    (failure,) = empty.get_step_failure_events()
    assert "no complete delivery" in failure.step_failure_data.user_failure_data.description

    for name in ("2026-12", "2027-06"):
        (tmp_path / "landing" / name).mkdir(parents=True)
        _write_manifest(tmp_path / "landing" / name)
    (tmp_path / "landing" / "incomplete").mkdir()  # no manifest yet: not a delivery
    result = dg.materialize([landing], resources=resources)
    (mat,) = result.asset_materializations_for_node("landing")
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["deliveries"] == ["2026-12", "2027-06"]
    assert "synthetic" not in md
    assert not (tmp_path / "truth").exists()


def test_impact_config_reads_the_environment(monkeypatch, tmp_path):
    from pipelines.resources import impact_config_from_env

    monkeypatch.setenv("IMPACT_CONFIG", str(tmp_path / "national.yaml"))
    resource = impact_config_from_env()
    assert isinstance(resource.path, dg.EnvVar)
    assert resource.path.get_value() == str(tmp_path / "national.yaml")
