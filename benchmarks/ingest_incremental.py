"""Benchmark of incremental ingest: a full ingest, a rerun, a rerun after a small delivery.

From the synthetic delivery under ``ROOT/landing`` (``impact synth --persons N --out ROOT``,
CSV or Parquet; only read) it builds, in ``--work`` (default ``ROOT/ingest_incremental/``,
removed at the end), a first delivery D1 (a copy of the synthetic one without the last
month of the monthly reports) and a small second delivery D2 (that month, plus
``--corrections`` reports of an earlier year resubmitted with another income and a later
submission date). Each step runs in a fresh child process, as a Dagster run would:

a. ``full``: ingest of D1 into an empty folder (every group validated);
b. ``rerun``: the same again, nothing new (every group reused);
c. ``new_delivery``: D2 added, incremental (only the years D2 touches are validated);
d. ``full_reingest``: D1+D2 with ``incremental=False`` into another folder (the cost without
   the cache), whose output must equal (c)'s: reconciliation, rules hit, quarantine and a
   hash of every clean table.

Writes ``benchmarks/results/ingest_incremental.json`` with wall times
(``wall_seconds_process`` includes the start-up and the equality fingerprint), the peak RSS
of each child's ingest (before the fingerprint, which reads every clean table whole), the
groups reused/validated per table and the load averages before and after.

Usage::

    python benchmarks/ingest_incremental.py ROOT [--persons 100000] [--corrections 2000]
        [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from _results import record_run

from impact.manifest import DeliveryManifest

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_incremental.json"
VID = "vid_monthly_reports"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import polars as pl
from impact.ingest import IngestSettings, deliveries_in, ingest
from impact.pseudonym import PseudonymKey
landing, out, incremental = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
t0 = time.perf_counter()
res = ingest(deliveries_in(landing), IngestSettings(out=out, key=PseudonymKey.demo(),
                                                    incremental=incremental))
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # the ingest's own
clean = {}
for name, r in res.items():  # an order-free fingerprint of each clean table
    df = pl.read_parquet(out / "sources" / name / "**" / "*.parquet", hive_partitioning=False)
    clean[name] = [df.height, int(df.hash_rows(seed=1).sum())]
q = {p.stem: pl.read_parquet(p).sort("source_file", "row_number").hash_rows(seed=1).sum()
     for p in sorted((out / "quarantine").glob("*.parquet"))}
print(json.dumps({
    "wall": wall, "peak_rss_gib": peak,
    "tables": {n: {"ok": r.ok, "seconds": r.seconds, "rows_in": r.rows_in,
                   "quarantined": r.quarantined, "groups_reused": r.groups_reused,
                   "groups_validated": r.groups_validated, "failure": r.failure,
                   "files": [vars(f) for f in r.files], "rules_hit": r.rules_hit}
               for n, r in res.items()},
    "clean": clean, "quarantine": {k: int(v) for k, v in q.items()}}))
"""


def _copy_tree(src: Path, dst: Path, skip: set[str]) -> None:
    """``dst`` with copies of ``src``'s files except ``skip`` (written afterwards)."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file() and p.name not in skip:
            shutil.copy2(p, dst / p.name)


def _read(path: Path, fmt: str) -> pl.DataFrame:
    return pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, infer_schema=False)


def _write(df: pl.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        df.write_parquet(path)
    else:
        df.write_csv(path)


def build(root: Path, work: Path, corrections: int) -> dict[str, object]:
    """Write D1 to ``work/landing`` and D2 to ``work/pending``; describe them."""
    (src,) = sorted(p.parent for p in (root / "landing").glob("*/manifest.json"))
    manifest = DeliveryManifest.read(src)
    vid = sorted((f for f in manifest.files if f.table == VID),
                 key=lambda f: (f.year or 0, f.path))
    last, earlier = vid[-1], vid[len(vid) // 2]
    new_month = manifest.period_end
    d1 = work / "landing" / "d1"
    _copy_tree(src, d1, {last.path, "manifest.json"})
    rows = _read(src / last.path, last.format)
    month = pl.col("period").cast(pl.String).str.slice(0, 7)
    _write(rows.filter(month != new_month), d1 / last.path, last.format)
    y, m = map(int, new_month.split("-"))
    before = f"{y - (m == 1)}-{(m - 2) % 12 + 1:02d}"
    manifest.model_copy(update={"delivery_id": "d1", "period_end": before}).refreshed(
        d1, [last.path]).write(d1)
    d2 = work / "pending" / "d2"
    d2.mkdir(parents=True)
    _write(rows.filter(month == new_month), d2 / last.path, last.format)
    fixes = _read(src / earlier.path, earlier.format).sample(corrections, seed=1)
    fixes = fixes.with_columns(
        (pl.col("gross_income").cast(pl.Float64) * 1.1).round(2)
        .cast(fixes.schema["gross_income"]),
        pl.lit(f"{new_month}-10").str.to_date().cast(fixes.schema["submitted_on"])
        .alias("submitted_on"))
    _write(fixes, d2 / earlier.path, earlier.format)
    manifest.model_copy(update={
        "delivery_id": "d2", "period_start": new_month, "period_end": new_month,
        "files": [last, earlier]}).refreshed(d2, [last.path, earlier.path]).write(d2)
    return {"new_month": new_month,
            "new_month_rows": int(rows.select((month == new_month).sum()).item()),
            "corrected_file": earlier.path, "corrections": corrections,
            "format": last.format}


def _child(landing: Path, out: Path, incremental: bool) -> dict[str, object]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(landing), str(out),
                           "1" if incremental else "0"], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    got["wall_process"] = time.perf_counter() - t0
    return got


def _summary(step: dict[str, object]) -> dict[str, object]:
    tables = step["tables"]
    return {
        "wall_seconds_ingest": round(step["wall"], 1),
        "wall_seconds_process": round(step["wall_process"], 1),
        "peak_rss_gib": round(step["peak_rss_gib"], 2),
        "all_ok": all(t["ok"] for t in tables.values()),
        "groups_reused": sum(len(t["groups_reused"]) for t in tables.values()),
        "groups_validated": sum(len(t["groups_validated"]) for t in tables.values()),
        "vid_groups_validated": tables[VID]["groups_validated"],
        "seconds_by_table": {n: t["seconds"] for n, t in tables.items()},
    }


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    strip = ("seconds", "groups_reused", "groups_validated")
    ta = {n: {k: v for k, v in t.items() if k not in strip} for n, t in a["tables"].items()}
    tb = {n: {k: v for k, v in t.items() if k not in strip} for n, t in b["tables"].items()}
    return ta == tb and a["clean"] == b["clean"] and a["quarantine"] == b["quarantine"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--persons", type=int, default=None, help="label for the results")
    ap.add_argument("--corrections", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=None,
                    help="working folder (default ROOT/ingest_incremental; removed at the end)")
    args = ap.parse_args()
    work = args.work or args.root / "ingest_incremental"
    if work.exists():
        shutil.rmtree(work)
    scenario = build(args.root, work, args.corrections)
    landing, out = work / "landing", work / "out"
    load_before = os.getloadavg()  # other jobs on the machine slow the run down
    steps = {"full": _child(landing, out, True), "rerun": _child(landing, out, True)}
    shutil.move(work / "pending" / "d2", landing / "d2")
    steps["new_delivery"] = _child(landing, out, True)
    steps["full_reingest"] = _child(landing, work / "out_full", False)
    load_after = os.getloadavg()
    record = {
        "persons": args.persons,
        "format": scenario["format"],
        "scenario": scenario,
        "steps": {k: _summary(v) for k, v in steps.items()},
        "new_delivery_equals_full_reingest": _same(steps["new_delivery"],
                                                   steps["full_reingest"]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
                    "load_avg_1_5_15_after": [round(x, 2) for x in load_after]},
    }
    print(json.dumps(record, indent=2))
    record_run(RESULTS, record, keys=("persons", "format"))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
