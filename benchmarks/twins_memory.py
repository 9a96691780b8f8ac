"""Twins stage memory by ``twins.person_chunk``: wall time and peak RSS of plan + cohorts.

Runs the twins stage of ``benchmarks/national.py`` (the plan, every cohort, the combination,
in one child process whose peak RSS is its own) on an evaluated root (its panel and research
tables) once per chunk size, each writing its twins to a scratch root of its own (panel and
research linked), so the root's twins are left as they are. The twins of every chunk size
are then compared with those of the first (``none``: everyone at once): same plan
fingerprint, and equal pairs, summary, balance, unmatched and pre-trajectories
(``tests/twins_files.py``).

Usage::

    python benchmarks/twins_memory.py /tmp/nat1200 --chunks none,300000,100000 \
        --scratch /tmp/twins_memory [--lock /tmp/bigjob.lock]

``--single-cohort`` adds, per chunk size, one ``twins_cohort`` run over the plan's last
cohort alone (the month window: 36 months before it to it). Every child runs under
``flock LOCK`` when ``--lock`` is given (a shared machine); load
averages are recorded before and after each run. Results:
``benchmarks/results/twins_memory.json`` (one record per population and chunk size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from _results import record_run
from national import CODE, run_stage

#: One ``twins_cohort`` run over the plan's last cohort only (argv[2]: person_chunk, argv[3]:
#: the twins folder holding the plan): only the months it needs (36 before it .. it).
CODE["twins_cohort"] = r"""
from datetime import date
from impact.twins.plan import cohort_window, match_planned_cohorts, read_plan
from impact.twins.riskset import Population
chunk = int(sys.argv[2]) if sys.argv[2] else None
plan = read_plan(Path(sys.argv[3]))
cohort = plan.cohorts[-1]
first, last = cohort_window([cohort])
pop = Population.read(cfg.data.panel, first, last, chunk)
out = match_planned_cohorts(pop, plan, [cohort])[0]
extra.update(person_chunk=chunk, cohort=str(cohort), months=[str(first), str(last)],
             treated=out.n_treated, matched=out.n_matched, pairs=out.pairs.height)
"""

RESULTS = Path(__file__).resolve().parent / "results" / "twins_memory.json"


def _scratch_root(root: Path, scratch: Path, label: str) -> Path:
    """A root under ``scratch`` whose panel and research are ``root``'s (links) and whose
    config is ``root``'s with ``data.root`` changed."""
    import yaml

    out = scratch / label
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for part in ("panel", "research", "sources"):
        if (root / part).exists():
            (out / part).symlink_to((root / part).resolve(), target_is_directory=True)
    cfg = yaml.safe_load((root / "national.yaml").read_text(encoding="utf-8"))
    cfg.setdefault("data", {})["root"] = str(out)
    (out / "national.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return out


def _same(a: Path, b: Path) -> bool:
    """The twins folders agree (tests/twins_files.py) and came from the same plan."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.twins_files import assert_same_twins

    try:
        assert_same_twins(a, b)
    except AssertionError:
        return False
    plan = [json.loads((d / "plan.json").read_text())["fingerprint"] for d in (a, b)]
    return plan[0] == plan[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, help="an evaluated root with national.yaml")
    ap.add_argument("--chunks", default="none,300000,100000",
                    help="comma-separated person_chunk values; none = everyone at once")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/twins_memory"))
    ap.add_argument("--lock", default=None, help="run each child under flock LOCK")
    ap.add_argument("--keep", action="store_true", help="keep the scratch twins folders")
    ap.add_argument("--single-cohort", action="store_true",
                    help="also time one twins_cohort run over the last cohort per chunk size")
    ap.add_argument("--skip-main", action="store_true",
                    help="only the --single-cohort runs, with the plan of an earlier "
                    "--keep run under --scratch")
    args = ap.parse_args()
    chunks = [None if c.strip() == "none" else int(c) for c in args.chunks.split(",")]
    prefix = ("flock", args.lock) if args.lock else ()
    import yaml

    persons = yaml.safe_load((args.root / "national.yaml").read_text())["synth"]["persons"]
    first: Path | None = args.scratch / "chunk_none" / "twins" if args.skip_main else None
    for chunk in [] if args.skip_main else chunks:
        label = f"chunk_{chunk or 'none'}"
        root = _scratch_root(args.root, args.scratch, label)
        load_start = os.getloadavg()
        t0 = time.perf_counter()
        r = run_stage("twins", root / "national.yaml", (str(chunk or ""),), prefix)
        rec = {"root": str(args.root), "person_chunk": chunk, "persons": persons,
               "run": "plan_all_cohorts_combination", **r,
               "wall_with_lock_wait_seconds": round(time.perf_counter() - t0, 1),
               "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
               "cpus": os.cpu_count()}
        out = root / "twins"
        if first is None:
            first = out
        else:
            rec["identical_to_unchunked"] = _same(first, out)
        record_run(RESULTS, rec, keys=("root", "person_chunk", "run"))
        print(f"{label:14s} {r['seconds']:8.1f} s  {r['peak_rss_gib']:6.2f} GiB  "
              f"plan {r['plan_seconds']:.1f} s  cohorts {r['cohorts_seconds']:.1f} s  "
              f"identical {rec.get('identical_to_unchunked', '-')}  load {load_start}",
              flush=True)
    if args.single_cohort and first is not None:
        for chunk in chunks:
            load_start = os.getloadavg()
            r = run_stage("twins_cohort", args.scratch / "chunk_none" / "national.yaml",
                          (str(chunk or ""), str(first)), prefix)
            rec = {"root": str(args.root), "person_chunk": chunk, "persons": persons,
                   "run": "twins_cohort_last_cohort", **r, "load_avg_start": load_start,
                   "load_avg_end": os.getloadavg(), "cpus": os.cpu_count()}
            record_run(RESULTS, rec, keys=("root", "person_chunk", "run"))
            print(f"last cohort, chunk {chunk}: {r['seconds']:.1f} s  "
                  f"{r['peak_rss_gib']:.2f} GiB  load {load_start}", flush=True)
    if not args.keep:
        for chunk in chunks[1:]:
            shutil.rmtree(args.scratch / f"chunk_{chunk or 'none'}", ignore_errors=True)


if __name__ == "__main__":
    main()
