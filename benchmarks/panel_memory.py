"""Panel memory by ``panel.block_persons``: wall time and peak RSS of a panel build.

Builds the person-month panel from the ``sources`` of an evaluated root once per
``block_persons`` value, each in its own child process (peak RSS is the child's) writing to
a scratch folder, and compares every build with the first (``none``: everyone at once): per
year the number of rows and an order-independent digest (sums of two seeded row hashes),
and the rows' order (the digest of ``pid`` and ``month`` in file order).

Usage::

    python benchmarks/panel_memory.py /tmp/nat1200 --blocks none,300000,100000 \
        --scratch /tmp/panel_memory [--lock /tmp/bigjob.lock]

Results: ``benchmarks/results/panel_memory.json`` (one record per population and value).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from _results import fingerprint_in_child, record_run

RESULTS = Path(__file__).resolve().parent / "results" / "panel_memory.json"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from impact import panel
sources, out = Path(sys.argv[1]), Path(sys.argv[2])
block = int(sys.argv[3]) if sys.argv[3] else None
t0 = time.perf_counter()
res = panel.build(sources, out, block_persons=block)
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": res.rows,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""


def _fingerprint(panel: Path) -> dict[str, list[int]]:
    """Per year: rows, two order-independent row-hash sums, and a digest of the row order."""
    got = {}
    for year in sorted(panel.glob("year=*")):
        files = sorted(str(p) for p in year.glob("*.parquet"))
        lf = pl.scan_parquet(files, hive_partitioning=False)
        row = pl.struct(pl.all())
        order = pl.struct("pid", "month").hash(seed=3) * pl.int_range(1, pl.len() + 1,
                                                                       dtype=pl.UInt64)
        got[year.name] = list(lf.select(
            pl.len().alias("rows"),
            (row.hash(seed=1) % 1_000_000_007).cast(pl.Int64).sum().alias("h1"),
            (row.hash(seed=2) % 998_244_353).cast(pl.Int64).sum().alias("h2"),
            (order % 1_000_000_009).cast(pl.Int64).sum().alias("order"),
        ).collect(engine="streaming").row(0))
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, nargs="?", help="a root with sources/ and national.yaml")
    ap.add_argument("--blocks", default="none,300000,100000",
                    help="comma-separated block_persons values; none = everyone at once")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/panel_memory"))
    ap.add_argument("--lock", default=None, help="run each child under flock LOCK")
    ap.add_argument("--fingerprint", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fingerprint is not None:
        print(json.dumps(_fingerprint(args.fingerprint)))
        return
    values = [None if v.strip() == "none" else int(v) for v in args.blocks.split(",")]
    prefix = ("flock", args.lock) if args.lock else ()
    import yaml

    persons = yaml.safe_load((args.root / "national.yaml").read_text())["synth"]["persons"]
    first: dict[str, list[int]] | None = None
    for value in values:
        out = args.scratch / f"block_{value or 'none'}"
        shutil.rmtree(out, ignore_errors=True)
        load_start = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run([*prefix, sys.executable, "-c", CHILD, str(args.root / "sources"),
                               str(out), str(value or "")], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-4000:])
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        rec = {"root": str(args.root), "block_persons": value, "persons": persons,
               "seconds": round(child["seconds"], 1),
               "peak_rss_gib": round(child["peak_rss_gib"], 2), "rows": child["rows"],
               "wall_with_lock_wait_seconds": round(time.perf_counter() - t0, 1),
               "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
               "cpus": os.cpu_count()}
        got = fingerprint_in_child(__file__, out)
        if first is None:
            first = got
        else:
            rec["same_rows_and_order_as_first"] = got == first
        record_run(RESULTS, rec, keys=("root", "block_persons"))
        print(f"block {value or 'none':>8}  {rec['seconds']:7.1f} s  {rec['peak_rss_gib']:5.2f} "
              f"GiB  same {rec.get('same_rows_and_order_as_first', '-')}  load {load_start}",
              flush=True)
        if value is not None:
            shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
