"""The whole evaluation end to end at a given population: wall time and peak RSS per stage.

Stages, each in its own child process (so its peak RSS is its own), in pipeline order and
calling the same library functions as the Dagster assets:

``generate``
    the synthetic delivery (``impact synth``); not part of the end-to-end figure. With
    ``--landing DIR`` an existing delivery is linked instead.
``ingest``
    every source table: contracts, pseudonymisation, quarantine, reconciliation.
``panel``, ``episodes``
    the person-month panel and the ILA episode tables.
``twins``
    the twins plan, every cohort, the combination (:mod:`impact.twins.plan`); with
    ``--person-chunk N`` the panel is read N persons at a time (``twins.person_chunk``;
    ``benchmarks/twins_memory.py`` compares chunk sizes).
``estimates``
    matched event studies of every outcome (bootstrap ``--reps``), the staggered
    cross-check, refutation, subgroups; the panel loaded for the matched persons and the
    naive comparison's sample only (``estimates.naive_sample``;
    ``benchmarks/estimates_memory.py`` compares it with the whole-panel load).
``indicators``
    every indicator and breakdown cell.
``publication``
    disclosure control (with the intruder audit) and the release files.
``report``
    the evaluator's HTML report.

Usage::

    python benchmarks/national.py ROOT --persons 1200000 [--landing DIR] [--reps 999]
    python benchmarks/national.py --scaling

Results: ``benchmarks/results/national.json`` (one record per population); ``--scaling``
adds the log-log slope of the end-to-end time (and peak memory) over the recorded
populations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _results import record_run

RESULTS = Path(__file__).resolve().parent / "results" / "national.json"
STAGES = ("ingest", "panel", "episodes", "twins", "estimates", "indicators", "publication",
          "report")
#: Targets of the national run (issue "National scale"): end to end, per stage, memory.
TARGET_E2E_S = 15 * 60
TARGET_STAGE_S = 4 * 60
TARGET_RSS_GIB = 16

PRELUDE = r"""
import json, resource, sys, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from impact.config import load_config
cfg = load_config(sys.argv[1])
extra = {}
t0 = time.perf_counter()
"""
EPILOGUE = r"""
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                  "extra": extra}, default=str))
"""
CODE = {
    "generate": r"""
from impact.synth import generate
generate(cfg.synth.synth_config(), cfg.data.root)
""",
    "ingest": r"""
from impact.ingest import deliveries_in, ingest
res = ingest(deliveries_in(cfg.data.landing), cfg.ingest_settings(full=True))  # a first ingest
extra["rows_in"] = sum(r.rows_in for r in res.values())
extra["quarantined"] = sum(r.quarantined for r in res.values())
extra["failed"] = [n for n, r in res.items() if not r.ok]
""",
    "panel": r"""
from impact import panel
res = panel.build(cfg.data.sources, cfg.data.panel, cpi_base_year=cfg.panel.cpi_base_year,
                  block_persons=cfg.panel.block_persons)
extra["rows"], extra["persons"] = res.rows, res.persons
""",
    "episodes": r"""
from impact import panel
extra.update(panel.build_episodes(cfg.data.sources, cfg.data.research))
""",
    "twins": r"""
import polars as pl
from impact.twins.plan import (combine_planned, match_planned_cohorts, plan_window,
                               update_plan, write_cohort)
from impact.twins.riskset import Population
# argv[2]: twins.person_chunk ("" or absent: the config's)
chunk = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else cfg.twins.person_chunk
extra["person_chunk"] = chunk
tr = pl.read_parquet(cfg.data.research / "treatment.parquet")
pop = Population.read(cfg.data.panel, plan_window(tr["cohort"].min().replace(day=1)), None,
                      chunk)
extra["load_seconds"] = time.perf_counter() - t0
plan, _ = update_plan(pop, cfg.twins.settings(), cfg.data.twins, force=True)
extra["plan_seconds"] = time.perf_counter() - t0 - extra["load_seconds"]
extra["peak_rss_after_plan_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
t1 = time.perf_counter()
for out in match_planned_cohorts(pop, plan, list(plan.cohorts)):
    write_cohort(out, plan, cfg.data.twins)
extra["cohorts_seconds"] = time.perf_counter() - t1
res = combine_planned(plan, cfg.data.twins)
extra.update(cohorts=len(plan.cohorts), treated=int(res.summary["n_treated"].sum()),
             unmatched=int(res.summary["n_unmatched"].sum()), pairs=res.pairs.height,
             gate_passed=res.passed, plan=plan.fingerprint[:16])
""",
    "estimates": r"""
import polars as pl
from impact.evaluate import load_estimation_arrays, run_estimates
from impact.indicators import read_pairs
tr = pl.read_parquet(cfg.data.research / "treatment.parquet")
arrays, pairs = load_estimation_arrays(cfg.data.panel, tr, read_pairs(cfg.data.twins),
                                       naive_sample=cfg.estimates.naive_sample,
                                       seed=cfg.estimates.seed)
extra["load_seconds"] = time.perf_counter() - t0
extra["persons_loaded"] = arrays.n_persons
res = run_estimates(arrays, pairs, tr, cfg.data.sources, cfg.data.estimates,
                    reps=cfg.estimates.reps, seed=cfg.estimates.seed,
                    bias_correction=cfg.bias_correction_features())
extra.update(parts=res.seconds, treated=res.n_treated,
             headline={h: {k: r[k] for k in ("att", "se")} for h, r in res.headline.items()})
""",
    "indicators": r"""
from impact.release import run_indicators
res = run_indicators(cfg)
extra.update(cells=res["cells"], n_treated=res["n_treated"])
""",
    "publication": r"""
from impact.release import run_publication
res = run_publication(cfg)
extra["path"] = str(res.path)
""",
    "report": r"""
from impact.publish import latest_publication
from impact.report import write_report
pub = latest_publication(cfg.data.publish)
out = write_report(pub, cfg.data.reports / pub.name / "report.html")
extra["bytes"] = Path(out).stat().st_size
""",
}


def _config(root: Path, persons: int, seed: int, reps: int,
            settings: dict[str, object] | None = None) -> Path:
    """The run's config; ``settings``: more values by dotted name (``panel.block_persons``)."""
    import yaml

    doc: dict = {"data": {"root": str(root)}, "synth": {"persons": persons, "seed": seed},
                 "ingest": {"key": {"source": "demo"}}, "estimates": {"reps": reps},
                 # speed is measured here; whether the twins pass their gate is recorded
                 "publish": {"require_balance": False}}
    for name, value in (settings or {}).items():
        section, key = name.split(".", 1)
        doc.setdefault(section, {})[key] = value
    path = root / "national.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def settings_label(settings: dict[str, object]) -> str:
    """``default``, or the settings as ``name=value`` joined by commas (a results key)."""
    return ",".join(f"{k}={v}" for k, v in sorted(settings.items())) or "default"


def run_stage(name: str, config: Path, args: tuple[str, ...] = (),
              prefix: tuple[str, ...] = ()) -> dict:
    """Run one stage in a child process; its seconds, peak RSS and details. ``args``: more
    arguments of the stage's code (the twins stage: ``person_chunk``); ``prefix``: a command
    the child runs under (e.g. ``flock LOCK``; its wait counts in ``process_seconds`` only)."""
    t0 = time.perf_counter()
    proc = subprocess.run([*prefix, sys.executable, "-c", PRELUDE + CODE[name] + EPILOGUE,
                           str(config), *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds": round(out["seconds"], 1), "process_seconds": round(wall, 1),
            "peak_rss_gib": round(out["peak_rss_gib"], 2), **out["extra"]}


def national(root: Path, persons: int, seed: int, reps: int, landing: Path | None,
             stages: tuple[str, ...], person_chunk: int | None = None,
             settings: dict[str, object] | None = None) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    settings = settings or {}
    config = _config(root.resolve(), persons, seed, reps, settings)
    record: dict = {"persons": persons, "seed": seed, "reps": reps, "root": str(root),
                    "settings": settings, "settings_label": settings_label(settings),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_avg_start": os.getloadavg()},
                    "stages": {}}
    if landing is not None:
        if not (root / "landing").exists():
            (root / "landing").symlink_to(landing.resolve(), target_is_directory=True)
        record["landing"] = str(landing)
    elif not (root / "landing").exists():
        record["generate"] = run_stage("generate", config)
        print(f"generate {record['generate']['seconds']} s", flush=True)
    for name in stages:
        args = (str(person_chunk),) if name == "twins" and person_chunk else ()
        record["stages"][name] = r = run_stage(name, config, args)
        print(f"{name:12s} {r['seconds']:8.1f} s  {r['peak_rss_gib']:6.2f} GiB", flush=True)
    done = record["stages"].values()
    record["end_to_end_seconds"] = round(sum(r["seconds"] for r in done), 1)
    record["end_to_end_process_seconds"] = round(sum(r["process_seconds"] for r in done), 1)
    record["peak_rss_gib"] = max(r["peak_rss_gib"] for r in done)
    record["slowest_stage"] = max(record["stages"], key=lambda k: record["stages"][k]["seconds"])
    record["targets"] = {
        "end_to_end_le_15_min": record["end_to_end_process_seconds"] <= TARGET_E2E_S,
        "every_stage_le_4_min": all(r["seconds"] <= TARGET_STAGE_S for r in done),
        "peak_rss_le_16_gib": record["peak_rss_gib"] <= TARGET_RSS_GIB,
    }
    record["machine"]["load_avg_end"] = os.getloadavg()
    return record


def scaling(records: list[dict]) -> dict:
    """Least-squares slope of log(cost) on log(persons) over the records."""
    def slope(xs: list[float], ys: list[float]) -> float:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs)

    x = [math.log(r["persons"]) for r in records]
    out = {"persons": [r["persons"] for r in records],
           "end_to_end_seconds": [r["end_to_end_process_seconds"] for r in records],
           "exponent_time": round(slope(x, [math.log(r["end_to_end_process_seconds"])
                                            for r in records]), 3),
           "exponent_peak_rss": round(slope(x, [math.log(r["peak_rss_gib"]) for r in records]),
                                      3),
           "exponent_by_stage": {s: round(slope(x, [math.log(max(r["stages"][s]["seconds"], 0.1))
                                                    for r in records]), 3)
                                 for s in STAGES if all(s in r["stages"] for r in records)}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, nargs="?")
    ap.add_argument("--persons", type=int, default=1_200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=999)
    ap.add_argument("--landing", type=Path, default=None,
                    help="an existing delivery folder to link instead of generating one")
    ap.add_argument("--stages", default=",".join(STAGES),
                    help="comma-separated subset (default: all, in order)")
    ap.add_argument("--person-chunk", type=int, default=None,
                    help="twins stage: twins.person_chunk (persons read at a time; default: "
                    "the config's, everyone at once)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a config value for every stage, e.g. ingest.bucket_rows=1000000 "
                    "(repeatable; the value is read as YAML)")
    ap.add_argument("--scaling", action="store_true",
                    help="only compute the scaling exponents over the recorded populations "
                    "(per combination of --set values)")
    args = ap.parse_args()
    if args.scaling:
        data = json.loads(RESULTS.read_text())
        full = [r for r in data["runs"] if set(STAGES) <= set(r["stages"])]
        labels = sorted({r.get("settings_label", "default") for r in full})
        data["scaling_by_settings"] = {}
        for label in labels:
            runs = sorted((r for r in full if r.get("settings_label", "default") == label),
                          key=lambda r: r["persons"])
            if len(runs) >= 2:
                data["scaling_by_settings"][label] = scaling(runs)
        data["scaling"] = data["scaling_by_settings"].get("default", data.get("scaling"))
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")
        print(json.dumps(data["scaling_by_settings"], indent=2))
        return
    if args.root is None:
        ap.error("ROOT is required")
    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    import yaml

    settings = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if "." not in name or not _:
            ap.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        settings[name] = yaml.safe_load(value)
    rec = national(args.root, args.persons, args.seed, args.reps, args.landing, stages,
                   args.person_chunk, settings)
    record_run(RESULTS, rec, keys=("persons", "settings_label"))
    print(json.dumps({k: rec[k] for k in ("end_to_end_seconds", "end_to_end_process_seconds",
                                          "peak_rss_gib", "slowest_stage", "targets")}))


if __name__ == "__main__":
    main()
