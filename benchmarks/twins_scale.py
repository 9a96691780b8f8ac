"""Benchmark of risk-set twin matching on a panel: wall/CPU time and peak memory per stage.

Runs :func:`impact.twins.riskset.match_cohorts` (default settings unless overridden) on the
panel of a data root (``ROOT/panel``, as written by ``impact panel``) in a *child process*,
so that the figures are those of a fresh interpreter, and records per stage:

- ``load_arrays``: :meth:`PanelArrays.load` (person x month arrays of the loaded months);
- ``treated_features``: features of every cohort's treated persons (and the KS grid);
- ``pooled_model``: the propensity model pooled over cohorts (sampled candidates' features
  and the logistic fit);
- ``matching``: per cohort, features of all candidates, score, nearest neighbours, and the
  cohort's balance table;
- ``balance``: balance of the cohort groups and of all cohorts pooled, the result tables.

Per stage: ``wall_seconds``, ``cpu_seconds`` (user + system, ``getrusage``), ``peak_rss_gib``
(largest resident set size during the stage, sampled every 10 ms by a thread) and
``max_rss_so_far_gib`` (``ru_maxrss`` at the end of the stage: the process's peak up to
then). The child's overall peak (``ru_maxrss`` of the child, seen from the parent) is
``peak_rss_gib``. Figures are appended to ``benchmarks/results/twins_scale.json`` (one
record per data root and settings; a re-run replaces it), with the counts (persons, cohorts,
treated, candidates, pairs), the gate result and the machine.

Usage::

    python benchmarks/twins_scale.py /tmp/d100
    python benchmarks/twins_scale.py /tmp/big --first 2021-01-01 --last 2028-06-01
    python benchmarks/twins_scale.py /tmp/d100 --set ratio=3
    python benchmarks/twins_scale.py /tmp/d100 --tile 12   # 1.2 M persons by replication

``--tile K`` replicates every person K times after loading (a stand-in for a national panel
when none is at hand: K times the treated and candidates per cohort, but the matches are full
of exact ties, and the load stage is that of the small panel plus the copy).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import threading
import time
from dataclasses import asdict, fields
from datetime import date
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "twins_scale.json"
GIB = 1024**3


class _Sampler:
    """Largest RSS of this process since the last ``reset`` (sampled by a thread)."""

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def start(self) -> None:
        self.reset()
        self._thread.start()

    def reset(self) -> int:
        peak = max(self.peak, self.proc.memory_info().rss)
        self.peak = self.proc.memory_info().rss
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _parse_setting(text: str, types: dict[str, Any]) -> tuple[str, Any]:
    key, _, raw = text.partition("=")
    if key not in types:
        raise SystemExit(f"unknown TwinSettings field {key!r}")
    if raw in ("None", "none", ""):
        return key, None
    kind = str(types[key])
    if raw.startswith(("(", "[")) or "tuple" in kind:
        items = [x.strip() for x in raw.strip("()[]").split(",") if x.strip()]
        return key, tuple(items)
    for conv in (int, float):
        try:
            return key, conv(raw)
        except ValueError:
            pass
    if raw in ("True", "False"):
        return key, raw == "True"
    return key, raw


def _tile(arrays: Any, k: int) -> Any:
    """``k`` copies of every person (new pids and pseudonyms): a scale-up for timing only."""
    import numpy as np

    from impact.twins.features import PanelArrays

    n = arrays.n_persons
    copy = np.repeat(np.arange(k), n).astype(str).astype(object)
    return PanelArrays(
        person_code=np.tile(arrays.person_code.astype(str), k).astype(object) + "~" + copy,
        sex=np.tile(arrays.sex, k),
        first_start=np.tile(arrays.first_start, k),
        months=arrays.months,
        series={c: np.asfortranarray(np.concatenate([v] * k)) for c, v in arrays.series.items()},
        codes={c: np.asfortranarray(np.concatenate([v] * k)) for c, v in arrays.codes.items()},
        levels=arrays.levels,
    )


def _child(
    root: str, first: str, last: str, overrides: list[str], tile: int, queue: mp.Queue
) -> None:
    from impact.twins.features import PanelArrays
    from impact.twins.riskset import TwinSettings, match_cohorts

    types = {f.name: f.type for f in fields(TwinSettings)}
    settings = TwinSettings(**dict(_parse_setting(o, types) for o in overrides))
    stages: dict[str, dict[str, float]] = {}
    sampler = _Sampler()
    sampler.start()
    clock = {"wall": time.perf_counter(), "cpu": _cpu()}

    def lap(stage: str) -> None:
        now, cpu = time.perf_counter(), _cpu()
        stages[stage] = {
            "wall_seconds": round(now - clock["wall"], 3),
            "cpu_seconds": round(cpu - clock["cpu"], 3),
            "peak_rss_gib": round(sampler.reset() / GIB, 3),
            "max_rss_so_far_gib": round(_maxrss() / GIB, 3),
        }
        print(f"  {stage:18s} {stages[stage]}", flush=True)
        clock["wall"], clock["cpu"] = time.perf_counter(), _cpu()

    arrays = PanelArrays.load(
        Path(root) / "panel", date.fromisoformat(first), date.fromisoformat(last)
    )
    if tile > 1:
        arrays = _tile(arrays, tile)
    lap("load_arrays")
    result = match_cohorts(arrays, settings, progress=lap)
    sampler.stop()
    s = result.summary
    queue.put(
        {
            "stages": stages,
            "persons": arrays.n_persons,
            "months_loaded": len(arrays.months),
            "cohorts": len(result.cohorts),
            "treated": int(s["n_treated"].sum()),
            "matched": int(s["n_matched"].sum()),
            "candidates_per_cohort_max": int(s["n_candidates"].max()),
            "pairs": result.pairs.height,
            "unmatched_share": float(s["n_unmatched"].sum() / max(int(s["n_treated"].sum()), 1)),
            "cohort_groups": int(s["cohort_group"].n_unique()),
            "cohort_groups_failing": int(s.filter(~s["gate_passed"])["cohort_group"].n_unique()),
            "max_abs_smd_pooled": result.pooled_gate.max_abs_smd if result.pooled_gate else None,
            "pooled_gate_passed": bool(result.pooled_gate) if result.pooled_gate else None,
            "settings": {k: v for k, v in asdict(settings).items() if k not in ("features",)},
        }
    )


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, help="data root with panel/")
    ap.add_argument("--first", default="2021-01-01", help="first month loaded")
    ap.add_argument("--last", default="2028-06-01", help="last month loaded")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a TwinSettings field (repeatable)",
    )
    ap.add_argument(
        "--tile",
        type=int,
        default=1,
        help="scale-up for timing: K copies of every person (K times the treated and "
        "candidates; matches are then full of exact ties)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    print(f"twins_scale: {args.root} ({args.first}..{args.last}) {args.set}", flush=True)
    t0 = time.perf_counter()
    child = ctx.Process(
        target=_child, args=(str(args.root), args.first, args.last, args.set, args.tile, queue)
    )
    child.start()
    record = queue.get()
    child.join()
    if child.exitcode:
        raise SystemExit(f"child failed with exit code {child.exitcode}")
    total = time.perf_counter() - t0
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    st = record["stages"]
    matching_stages = [k for k in st if k != "load_arrays"]
    record.update(
        {
            "root": str(args.root),
            "first": args.first,
            "last": args.last,
            "overrides": args.set,
            "tile": args.tile,
            "matching_wall_seconds": round(sum(st[k]["wall_seconds"] for k in matching_stages), 3),
            "total_wall_seconds": round(total, 3),
            "peak_rss_gib": round(peak_child / GIB, 3),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
    )
    load = st["load_arrays"]["wall_seconds"]
    print(
        f"match_cohorts {record['matching_wall_seconds']} s (load {load} s), "
        f"peak RSS {record['peak_rss_gib']} GiB, {record['cohorts']} cohorts, "
        f"{record['treated']} treated, {record['pairs']} pairs"
    )
    runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    fields_ = ("root", "first", "last", "overrides", "tile")
    key = tuple(str(record[f]) for f in fields_)
    runs = [r for r in runs if tuple(str(r.get(f)) for f in fields_) != key]
    runs.append(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
