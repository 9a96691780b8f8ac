"""Wall time and peak memory of the indicator and publication stages on an evaluated root.

Stages, as the Dagster assets run them: ``compute_indicators`` (sub-panel scan, rules,
every breakdown cell, curves) and disclosure control of the indicator table and the income
curves (``apply_disclosure_control``, with the intruder audit). The publication writer
itself is measured by writing to a scratch folder.

Usage::

    python benchmarks/indicators_scale.py ROOT [--twins ROOT/twins] [--label 1.2M]

``ROOT`` holds ``panel/``, ``research/``, ``sources/`` and the twins (``twins/pairs`` or
``--twins``). Results: ``benchmarks/results/indicators_scale.json`` (one record per label).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import polars as pl
from _results import record_run

from impact.disclosure import DisclosureSettings, apply_disclosure_control
from impact.indicators import compute_indicators, read_pairs
from impact.publish import RunMeta, publish
from impact.release import _curves_cells, _km_thresholded, labels

RESULTS = Path(__file__).resolve().parent / "results" / "indicators_scale.json"
_DESCRIPTIVE = {"indicator", "family", "dimension", "group", "horizon", "kind", "unit",
                "contrast", "n_participants", "n_twins"}


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _settings(table: pl.DataFrame) -> DisclosureSettings:
    cols = tuple(c for c in table.columns if c not in _DESCRIPTIVE and not c.startswith("_"))
    return DisclosureSettings(value_columns=cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--twins", type=Path, default=None)
    ap.add_argument("--label", default=None)
    args = ap.parse_args()
    root = args.root.resolve()
    twins = (args.twins or root / "twins").resolve()
    rec: dict = {"label": args.label or str(root), "root": str(root),
                 "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_avg_start": os.getloadavg()}}
    pairs = read_pairs(twins)
    treatment = pl.read_parquet(root / "research" / "treatment.parquet")
    t0 = time.perf_counter()
    res = compute_indicators(root / "panel", pairs, treatment, root / "sources")
    rec["compute_indicators_s"] = time.perf_counter() - t0
    rec["rss_after_indicators_gib"] = _rss_gib()
    rec.update(n_treated=res.n_treated, n_pairs=res.n_pairs, cells=res.table.height,
               indicators=len(res.specs))
    t0 = time.perf_counter()
    pub, rep = apply_disclosure_control(res.table, _settings(res.table))
    rec["disclosure_indicators_s"] = time.perf_counter() - t0
    curves = _curves_cells(res.income_curves)
    t0 = time.perf_counter()
    cpub, crep = apply_disclosure_control(curves, _settings(curves))
    rec["disclosure_curves_s"] = time.perf_counter() - t0
    rec.update(suppressed=int(pub["suppressed"].sum()), audit_recovered=rep.audit.recovered
               + crep.audit.recovered)
    definitions = {k: vars(s) for k, s in res.specs.items()}
    meta = RunMeta(data_vintage="2028-06", config={"benchmark": True}, code_version="bench")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        publish(pub, rep, labels(definitions, res.table), meta, Path(tmp),
                extra_tables={"income_curves": cpub,
                              "career_step_km": _km_thresholded(res.career_step_km, 10)})
    rec["publish_s"] = time.perf_counter() - t0
    rec["peak_rss_gib"] = _rss_gib()
    rec["machine"]["load_avg_end"] = os.getloadavg()
    record_run(RESULTS, rec, ["label"])
    print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rec.items()})


if __name__ == "__main__":
    main()
