"""Dagster against a real PostgreSQL server and through its web UI.

A throw-away PostgreSQL server (Debian's ``postgresql`` package: ``initdb``/``pg_ctl``) is
started for the module, with the team instance configuration
``configs/dagster/postgres.yaml``. Then:

- ``impact run`` records a run and its event log there;
- a schedule switched on is stored in the schedule storage;
- ``dagster dev`` (webserver + daemon) serves the asset graph over GraphQL, and a
  materialisation launched through GraphQL is dequeued by the daemon and succeeds.

Without PostgreSQL binaries the module is skipped, unless ``IMPACT_REQUIRE_POSTGRES=1`` (set
by ``.ci/run``, which installs the package), in which case it fails.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PERSONS = 800


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(cands[-1]).parent if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_pg_user() -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> Iterator[dict[str, str]]:
    pg = _pg_bin()
    if pg is None:
        if os.environ.get("IMPACT_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) not found but "
                        "IMPACT_REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL binaries not found (Debian package postgresql)")
    # not under pytest's tmp folders: they are private to the user running the tests, and the
    # server runs as ``postgres`` when the tests run as root
    base = Path(tempfile.mkdtemp(prefix="impact-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    run = _as_pg_user()
    subprocess.run([*run, str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "impact",
                    "-E", "UTF8", "--no-locale"], check=True, capture_output=True, timeout=120)
    log = base / "server.log"
    if os.geteuid() == 0:
        log.touch()
        shutil.chown(log, "postgres")
    subprocess.run([*run, str(pg / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t",
                    "60", "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {base}",
                    "start"], check=True, capture_output=True, timeout=120)
    try:
        subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "impact", "dagster"], check=True, capture_output=True, timeout=60)
        yield {"DAGSTER_PG_URL": f"postgresql+psycopg2://impact@127.0.0.1:{port}/dagster"}
    finally:
        subprocess.run([*run, str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def home(postgres, tmp_path_factory) -> dict[str, str]:
    """DAGSTER_HOME with the Postgres instance config and a small synthetic evaluation."""
    base = tmp_path_factory.mktemp("dagster_pg")
    dh = base / "home"
    dh.mkdir()
    shutil.copy(REPO / "configs" / "dagster" / "postgres.yaml", dh / "dagster.yaml")
    cfg = base / "small.yaml"
    cfg.write_text(f"data: {{root: {base / 'data'}}}\nsynth: {{persons: {PERSONS}, seed: 3}}\n"
                   "ingest: {key: {source: demo}}\n")
    env = {**os.environ, **postgres, "DAGSTER_HOME": str(dh), "IMPACT_CONFIG": str(cfg),
           "PYTHONPATH": str(REPO)}
    return env


def _instance(env: dict[str, str]):
    code = ("import json, dagster as dg\n"
            "with dg.DagsterInstance.get() as i:\n"
            "    runs = i.get_runs()\n"
            "    out = {'runs': [(r.job_name, r.status.value) for r in runs],\n"
            "           'storage': type(i.run_storage).__name__,\n"
            "           'materialized': sorted({k.to_user_string() for r in runs for k in\n"
            "               [e.dagster_event.asset_key for e in i.all_logs(r.run_id)\n"
            "                if e.dagster_event and e.dagster_event.is_step_materialization]}),\n"
            "           'instigators': [(s.name, s.status.value) for s in\n"
            "                           i.all_instigator_state()]}\n"
            "print(json.dumps(out))\n")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_runs_event_logs_and_schedules_in_postgres(home) -> None:
    env = home
    p = subprocess.run([sys.executable, "-m", "impact.cli", "run", "--config",
                        env["IMPACT_CONFIG"], "--select", "landing,+employers"], env=env,
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"instance: {env['DAGSTER_HOME']}" in p.stdout
    dagster = str(Path(sys.executable).parent / "dagster")
    s = subprocess.run([dagster, "schedule", "start", "monthly_refresh", "-m",
                        "pipelines.definitions"], env=env, capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert s.returncode == 0, s.stdout + s.stderr
    got = _instance(env)
    assert got["storage"] == "PostgresRunStorage"
    assert [status for _, status in got["runs"]] == ["SUCCESS"]
    assert {"landing", "sources/employers"} <= set(got["materialized"])
    assert ["monthly_refresh", "RUNNING"] in got["instigators"]


def _gql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.loads(r.read())
    assert "errors" not in body, body
    return body["data"]


def test_ui_serves_the_asset_graph_and_runs_a_materialisation(home, tmp_path) -> None:
    env = home
    port = _free_port()
    dagster = str(Path(sys.executable).parent / "dagster")
    log = open(tmp_path / "dev.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([dagster, "dev", "-m", "pipelines.definitions", "-h", "127.0.0.1",
                             "-p", str(port)], env=env, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info",
                                            timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            assert time.time() < deadline, "the webserver did not start in 240 s"
            time.sleep(2)
        nodes = _gql(port, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"landing", "panel", "twins", "indicators", "publication"} <= keys
        repos = _gql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { "
                           "name location { name } } } } }")
        repo = repos["repositoriesOrError"]["nodes"][0]
        launched = _gql(port, """
            mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
              __typename ... on LaunchRunSuccess { run { runId } }
              ... on PythonError { message } } }""", {"p": {
            "selector": {"repositoryLocationName": repo["location"]["name"],
                         "repositoryName": repo["name"], "jobName": "synth_job"},
            "runConfigData": {}}})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = None
        deadline = time.time() + 300
        while time.time() < deadline:
            status = _gql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { "
                                "status } } }", {"id": run_id})["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(3)
        assert status == "SUCCESS", (tmp_path / "dev.log").read_text()[-3000:]
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
