"""Ingest memory by ``ingest.bucket_rows``: wall time and peak RSS of a first ingest.

Runs the ingest stage of ``benchmarks/national.py`` (every table, no cached group: a first
ingest) on the delivery of an evaluated root once per ``bucket_rows`` value, each in its
own child process (peak RSS is the child's) writing to a scratch root of its own whose
``landing`` links to the root's. The output of every value is then compared with that of
the first (``none``: each year at once): per table the number of clean rows and an
order-independent digest of them (sums of two seeded row hashes), the same for the
quarantine, and the reconciliation (without run times and paths).

Usage::

    python benchmarks/ingest_memory.py /tmp/nat1200 --buckets none,2000000,1000000 \
        --scratch /tmp/ingest_memory [--lock /tmp/bigjob.lock] [--parallel-groups 2]

Results: ``benchmarks/results/ingest_memory.json`` (one record per population, value and
``parallel_groups``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import polars as pl
from _results import fingerprint_in_child, record_run
from national import run_stage

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_memory.json"
#: reconciliation fields that describe the run, not the data
RUN_FIELDS = ("seconds", "groups_reused", "groups_validated", "output")


def _scratch_root(root: Path, scratch: Path, label: str, bucket_rows: int | None,
                  parallel_groups: int) -> Path:
    import yaml

    out = scratch / label
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "landing").symlink_to((root / "landing").resolve(), target_is_directory=True)
    cfg = yaml.safe_load((root / "national.yaml").read_text(encoding="utf-8"))
    cfg.setdefault("data", {})["root"] = str(out)
    ingest = cfg.setdefault("ingest", {})
    ingest["bucket_rows"] = bucket_rows
    ingest["parallel_groups"] = parallel_groups
    (out / "national.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return out


def _digest(files: str) -> list[int]:
    """Rows and two order-independent sums of row hashes of the Parquet ``files``."""
    row = pl.struct(pl.all())
    return list(pl.scan_parquet(files, hive_partitioning=False).select(
        pl.len().alias("rows"),
        (row.hash(seed=1) % 1_000_000_007).cast(pl.Int64).sum().alias("h1"),
        (row.hash(seed=2) % 998_244_353).cast(pl.Int64).sum().alias("h2")).collect().row(0))


def _fingerprint(out: Path) -> dict[str, object]:
    """What the ingest produced, independent of file layout and row order."""
    got: dict[str, object] = {}
    for table in sorted(p.name for p in (out / "sources").iterdir() if p.is_dir()
                        and not p.name.startswith(".")):
        got[f"clean/{table}"] = _digest(str(out / "sources" / table / "**" / "*.parquet"))
    for q in sorted((out / "quarantine").glob("*.parquet")):
        got[f"quarantine/{q.stem}"] = _digest(str(q))
    report = json.loads((out / "reconciliation.json").read_text())
    for r in report.values():
        for f in RUN_FIELDS:
            r.pop(f, None)
    got["reconciliation"] = report
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, nargs="?", help="a root with national.yaml and landing/")
    ap.add_argument("--buckets", default="none,2000000,1000000",
                    help="comma-separated bucket_rows values; none = each group at once")
    ap.add_argument("--parallel-groups", type=int, default=2)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/ingest_memory"))
    ap.add_argument("--lock", default=None, help="run each child under flock LOCK")
    ap.add_argument("--keep", action="store_true", help="keep the scratch roots")
    ap.add_argument("--fingerprint", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fingerprint is not None:
        print(json.dumps(_fingerprint(args.fingerprint)))
        return
    values = [None if v.strip() == "none" else int(v) for v in args.buckets.split(",")]
    prefix = ("flock", args.lock) if args.lock else ()
    import yaml

    persons = yaml.safe_load((args.root / "national.yaml").read_text())["synth"]["persons"]
    first: dict[str, object] | None = None
    for value in values:
        label = f"buckets_{value or 'none'}_p{args.parallel_groups}"
        root = _scratch_root(args.root, args.scratch, label, value, args.parallel_groups)
        load_start = os.getloadavg()
        t0 = time.perf_counter()
        r = run_stage("ingest", root / "national.yaml", (), prefix)
        rec = {"root": str(args.root), "bucket_rows": value, "persons": persons,
               "parallel_groups": args.parallel_groups, **r,
               "wall_with_lock_wait_seconds": round(time.perf_counter() - t0, 1),
               "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
               "cpus": os.cpu_count()}
        got = fingerprint_in_child(__file__, root)
        if first is None:
            first = got
        else:
            rec["same_output_as_first"] = got == first
            rec["differing"] = sorted(k for k in first if got.get(k) != first[k])
        record_run(RESULTS, rec, keys=("root", "bucket_rows", "parallel_groups"))
        print(f"{label:28s} {r['seconds']:8.1f} s  {r['peak_rss_gib']:6.2f} GiB  "
              f"same {rec.get('same_output_as_first', '-')}  load {load_start}", flush=True)
        if not args.keep and value is not None:
            shutil.rmtree(root, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
