"""Determinism of the whole library pipeline: same delivery -> same publication, byte for byte.

One synthetic delivery (3,000 persons) goes through ingest, panel, episodes, statistical
twins, estimates, indicators, disclosure control and publication three times, each in its
own data root and its own process (``second`` and ``shuffled`` in subprocesses with fixed,
different ``PYTHONHASHSEED`` values, so that nothing may depend on the iteration order of
a set of strings, which changes from process to process):

``first`` and ``second``
    the delivery as generated (two independent runs);
``shuffled``
    the same delivery with the rows of every file in a random order (the manifest's
    checksums rewritten, as a producer re-exporting the same extract would).

What may legitimately differ, and why
-------------------------------------
* Between ``first`` and ``second``: nothing. Every file of the publication folder,
  ``manifest.json`` included, is byte-identical, and the run id is the same.
* For ``shuffled``: the delivery files have other SHA-256 checksums, so the run id (a hash
  of the input checksums, :func:`impact.publish.run_id`) differs. It appears in
  ``manifest.json`` (also with the input checksums, and the checksums of the files that
  quote the run id), ``indicators.json`` (metadata), ``open_data/README.md`` and
  ``open_data/datapackage.json``; these are compared with the run id replaced by a
  placeholder, ``manifest.json`` field by field. Every table (CSV and Parquet) and the
  disclosure report must be byte-identical.
* Secure-area tables: the clean source tables keep the row order of the delivery (they
  are a faithful copy of it), so only their sorted content is compared; every table built
  from them (panel, episode tables, twins, estimates, indicators before disclosure control)
  must be identical row for row, except the ``seconds`` timing column of
  ``twins/summary.parquet`` and the float columns of ``estimates/sector_benchmark.parquet``
  (compared to 1e-9 relative: :func:`impact.sector_benchmark.division_month_means` takes
  means with polars' *streaming* group-by, whose partial sums are combined in thread order,
  so the last bits change from call to call even on the same panel; not published). Not
  compared: ``estimates/headline.json`` (wall-clock
  timings) and ``estimates/refutation.json`` (DoWhy refuter diagnostics, none published:
  they differ in about the 13th significant digit between processes, because
  ``MatchedWeightedEstimator.fit`` in impact.estimate.refute takes the covariates in the
  iteration order of DoWhy's adjustment *set*, which depends on ``PYTHONHASHSEED``).

The tables published for 3,000 persons are mostly suppressed (too few participants), which
is why the secure-area tables, with every value, are compared as well.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from impact import evaluate, panel, release
from impact.config import EvaluationConfig, PublishSection
from impact.ingest import IngestSettings, deliveries_in, ingest
from impact.manifest import DeliveryManifest
from impact.pseudonym import PseudonymKey
from impact.synth import SynthConfig, generate

PERSONS, SEED = 3_000, 7
#: secure-area tables whose floats are only reproducible to rounding (see the docstring)
FLOAT_NOISE = ("estimates/sector_benchmark.parquet",)
REPO = Path(__file__).resolve().parents[1]
#: files of a publication that quote its run id
QUOTE_RUN_ID = ("indicators.json", "manifest.json", "open_data/README.md",
                "open_data/datapackage.json")


def _config(root: Path) -> EvaluationConfig:
    # the gates are not what is tested: a small population's handful of participants fails
    # them or cannot be tested (require_parallel_trends exists only in newer configs)
    publish = {"require_balance": False}
    if "require_parallel_trends" in PublishSection.model_fields:
        publish["require_parallel_trends"] = False
    return EvaluationConfig.model_validate({
        "data": {"root": str(root)}, "synth": {"persons": PERSONS, "seed": SEED},
        "ingest": {"key": {"source": "demo"}}, "estimates": {"reps": 99},
        "twins": {"gate_min_treated": 10}, "publish": publish})


def _run_pipeline(root: Path) -> Path:
    """Every stage of the library pipeline on ``root/landing``; the publication folder."""
    cfg = _config(root)
    ingest(deliveries_in(cfg.data.landing),
           IngestSettings(out=root, key=PseudonymKey.demo(), gx_sample=0))
    panel.build(cfg.data.sources, cfg.data.panel, cpi_base_year=cfg.panel.cpi_base_year)
    panel.build_episodes(cfg.data.sources, cfg.data.research)
    treatment = pl.read_parquet(cfg.data.research / "treatment.parquet")
    arrays = evaluate.load_arrays(cfg.data.panel, treatment)
    twins = evaluate.run_twins(arrays, cfg.twins.settings(), cfg.data.twins)
    evaluate.run_estimates(arrays, twins.pairs, treatment, cfg.data.sources,
                           cfg.data.estimates, reps=cfg.estimates.reps,
                           seed=cfg.estimates.seed)
    release.run_indicators(cfg)
    return release.run_publication(cfg).path


def _shuffle_rows(delivery: Path, seed: int) -> None:
    """Put the rows of every file of ``delivery`` in a random order; rewrite the manifest."""
    manifest = DeliveryManifest.read(delivery)
    rng = random.Random(seed)
    for entry in manifest.files:
        path = delivery / entry.path
        before = path.read_bytes()
        if entry.format == "csv":
            header, *rows = before.split(b"\n")
            assert rows[-1] == b"", f"{entry.path}: no final newline"
            rows = rows[:-1]
            # one line per row (no quoted line breaks), else a line shuffle would break rows
            assert len(rows) == entry.rows, entry.path
            rng.shuffle(rows)
            path.write_bytes(b"\n".join([header, *rows, b""]))
        else:
            df = pl.read_parquet(path)
            df.sample(fraction=1.0, shuffle=True, seed=rng.randrange(2**32)).write_parquet(path)
        if entry.rows > 1:
            assert path.read_bytes() != before, f"{entry.path}: shuffling changed nothing"
    manifest.refreshed(delivery, [f.path for f in manifest.files]).write(delivery)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic delivery (``<root>/landing``) all three runs start from (read-only)."""
    root = tmp_path_factory.mktemp("delivery")
    generate(SynthConfig(persons=PERSONS, seed=SEED), root)
    return root / "landing"


def _root_with(landing: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(landing, root / "landing")
    return root


@pytest.fixture(scope="module")
def first(delivery: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run_pipeline(_root_with(delivery, tmp_path_factory, "first"))


def _run_in_subprocess(root: Path, hash_seed: int) -> Path:
    """:func:`_run_pipeline` in a new Python process with ``PYTHONHASHSEED=hash_seed``."""
    code = ("import sys; from pathlib import Path; from tests.test_determinism import "
            "_run_pipeline; print(_run_pipeline(Path(sys.argv[1])))")
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    done = subprocess.run([sys.executable, "-c", code, str(root)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def second(delivery: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run_in_subprocess(_root_with(delivery, tmp_path_factory, "second"), 101)


@pytest.fixture(scope="module")
def shuffled(delivery: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _root_with(delivery, tmp_path_factory, "shuffled")
    (folder,) = deliveries_in(root / "landing")
    _shuffle_rows(folder, seed=20250601)
    return _run_in_subprocess(root, 202)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_runs_give_byte_identical_publications(first: Path, second: Path) -> None:
    assert first.name == second.name  # the run id: same inputs, config, seeds and code
    a, b = _files(first), _files(second)
    assert sorted(a) == sorted(b)
    assert any(name.startswith("tables/") for name in a) and "indicators.parquet" in a
    different = [name for name in a if a[name] != b[name]]
    assert different == []


def test_shuffled_delivery_gives_the_same_publication(first: Path, shuffled: Path) -> None:
    assert first.name != shuffled.name  # other input checksums, other run id
    a, b = _files(first), _files(shuffled)
    assert sorted(a) == sorted(b)
    tables = [n for n in a if n.endswith((".csv", ".parquet"))]
    assert len(tables) >= 17
    different = [n for n in a if n not in QUOTE_RUN_ID and a[n] != b[n]]
    assert different == [], f"order of the delivery's rows changed {different}"
    for name in QUOTE_RUN_ID:
        if name == "manifest.json":
            continue
        assert a[name].replace(first.name.encode(), b"<run>") == \
            b[name].replace(shuffled.name.encode(), b"<run>"), name

    ma, mb = json.loads(a["manifest.json"]), json.loads(b["manifest.json"])
    assert (ma.pop("run_id"), mb.pop("run_id")) == (first.name, shuffled.name)
    # the same input files and sizes (a row shuffle keeps every byte), other checksums
    ins_a, ins_b = ma.pop("input_files"), mb.pop("input_files")
    assert [(f["path"], f["bytes"]) for f in ins_a] == [(f["path"], f["bytes"]) for f in ins_b]
    assert all(x["sha256"] != y["sha256"] for x, y in zip(ins_a, ins_b, strict=True))
    # the publication's own files: equal checksums except for those quoting the run id
    out_a, out_b = ma.pop("files"), mb.pop("files")
    assert [f["path"] for f in out_a] == [f["path"] for f in out_b]
    assert [f["path"] for f in out_a if f not in out_b] == [
        n for n in QUOTE_RUN_ID if n != "manifest.json"]
    assert ma == mb  # config, seeds, code and library versions, estimator, disclosure


def _secure_tables(root: Path) -> dict[str, pl.DataFrame]:
    tables = {}
    for part in ("panel", "research", "twins", "estimates", "indicators"):
        for path in sorted((root / part).rglob("*.parquet")):
            tables[path.relative_to(root).as_posix()] = pl.read_parquet(
                path, hive_partitioning=False)
    tables["twins/summary.parquet"] = tables["twins/summary.parquet"].drop("seconds")
    return tables


def test_shuffled_delivery_gives_the_same_secure_tables(first: Path, shuffled: Path) -> None:
    """Every value before disclosure control, row for row (the publication hides most)."""
    root_a, root_b = first.parents[1], shuffled.parents[1]
    a, b = _secure_tables(root_a), _secure_tables(root_b)
    assert sorted(a) == sorted(b)
    assert {"panel", "research", "twins", "estimates", "indicators"} == {
        n.split("/")[0] for n in a}
    different = [n for n in a if n not in FLOAT_NOISE and not a[n].equals(b[n], null_equal=True)]
    assert different == []
    for name in FLOAT_NOISE:
        if name in a:
            assert_frame_equal(a[name], b[name], check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    for name in ("twins/settings.json", "estimates/pretrend.json", "indicators/definitions.json"):
        if (root_a / name).exists():
            assert (root_a / name).read_bytes() == (root_b / name).read_bytes(), name
    # the clean sources keep the delivery's row order: equal once sorted
    for folder in sorted((root_a / "sources").iterdir()):
        sa = pl.read_parquet(folder / "**" / "*.parquet", hive_partitioning=False)
        sb = pl.read_parquet(root_b / "sources" / folder.name / "**" / "*.parquet",
                             hive_partitioning=False)
        assert sa.sort(sa.columns).equals(sb.sort(sb.columns), null_equal=True), folder.name
