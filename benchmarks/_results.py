"""Shared by the benchmark scripts: one record per configuration in a results file, outputs
compared in a child process, and the error summary of replicated estimates."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def record_run(path: Path, record: dict[str, Any], keys: Sequence[str]) -> None:
    """Add ``record`` to ``path``'s ``runs``, replacing a run with the same ``keys`` values."""
    existing = json.loads(path.read_text()) if path.exists() else {"runs": []}
    existing["runs"] = [r for r in existing["runs"]
                        if any(r.get(k) != record.get(k) for k in keys)]
    existing["runs"].append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2) + "\n")


def fingerprint_in_child(script: str, path: Path) -> Any:
    """Run ``script --fingerprint PATH`` in a child process and return the JSON it prints.

    Benchmarks that spawn one child per variant compare the outputs in yet another child:
    on Linux a process's peak RSS survives ``fork`` and ``exec``, so a parent that had read
    a whole output would raise the peak recorded by every later child.
    """
    proc = subprocess.run([sys.executable, script, "--fingerprint", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def error_summary(
    est: np.ndarray,
    se: np.ndarray,
    truth: np.ndarray | float,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
) -> dict[str, float]:
    """Bias, RMSE and 95 % CI coverage of replicated estimates, with Monte Carlo SEs.

    ``truth`` is one value or one per replication; without ``lo``/``hi`` the interval is
    ``est +- 1.96 se``. Replications whose estimate or SE is not finite are left out
    (``n_ok`` counts the rest).
    """
    truth_arr = np.broadcast_to(np.asarray(truth, dtype=float), est.shape)
    ok = np.isfinite(est) & np.isfinite(se)
    est, se, truth_arr = est[ok], se[ok], truth_arr[ok]
    if lo is None or hi is None:
        lo, hi = est - 1.959963984540054 * se, est + 1.959963984540054 * se
    else:
        lo, hi = lo[ok], hi[ok]
    err = est - truth_arr
    r = est.size
    cover = float(np.mean((lo <= truth_arr) & (truth_arr <= hi)))
    return {
        "n_ok": int(r),
        "mean_estimate": float(est.mean()),
        "truth": float(truth_arr.mean()),
        "bias": float(err.mean()),
        "bias_mcse": float(err.std(ddof=1) / math.sqrt(r)),
        "rmse": float(math.sqrt(np.mean(err**2))),
        "coverage": cover,
        "coverage_mcse": float(math.sqrt(cover * (1 - cover) / r)),
        "mean_se": float(se.mean()),
        "sd_estimate": float(est.std(ddof=1)),
        "sd_error": float(err.std(ddof=1)),
    }
