"""Side-by-side benchmark: ``impact.estimate.staggered.att_gt`` versus the Python ``csdid``.

Both tools estimate Callaway & Sant'Anna (2021) group-time ATT(g,t) and the dynamic
(event-study) aggregation on the same simulated balanced panel (N units x 48 periods, 24
treatment cohorts plus never-treated units, parallel trends, a homogeneous effect of 1.0),
written once to a Parquet file that each tool reads itself. Options are identical on both
sides: never-treated comparison group, outcome regression (``est_method="reg"``), no
covariates, analytic (influence-function) standard errors (no bootstrap, no uniform bands),
varying base period, no anticipation, ``aggregate("dynamic")`` / ``aggte(typec="dynamic")``.

Each tool runs in a child process of its own (ours in the project venv, ``csdid`` in a
throwaway peer venv, because ``csdid`` is not a project dependency), with
``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=POLARS_MAX_THREADS=1`` so that neither
side gets more than one core for its numerics. Recorded per tool and size:

* ``estimate_seconds``: wall time of estimation + dynamic aggregation inside the child
  (imports and reading the Parquet file excluded); ``estimate_cpu_seconds``: the CPU time of
  the same section (``time.process_time``), less sensitive to other jobs on a shared machine;
* ``process_seconds``: wall time of the whole child process (interpreter start, imports, read);
* ``peak_rss_mib``: the child's maximum resident set size (``os.wait4`` rusage of that child);
* the ATT(g,t) and dynamic-aggregation point estimates, compared between the tools (max
  absolute difference, target <= 1e-6).

A child that exceeds ``--timeout`` seconds is killed and recorded as ``"timeout"``; larger
sizes are then skipped for that tool. Results go to
``benchmarks/results/staggered_vs_csdid.json`` (replaced on every run).

Recreate the peer venv (versions pinned in ``benchmarks/requirements-peers.txt``)::

    python3.11 -m venv /tmp/peers
    /tmp/peers/bin/pip install -r benchmarks/requirements-peers.txt

Usage (from the repository root, with the project venv)::

    /work/venv/bin/python benchmarks/staggered_vs_csdid.py --peer-python /tmp/peers/bin/python
    /work/venv/bin/python benchmarks/staggered_vs_csdid.py --sizes 5000 20000 --timeout 600

The script's top level imports the standard library only: the ``--worker`` modes import
their tool (and numpy/pandas/polars) lazily, so the same file runs in either venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "staggered_vs_csdid.json"
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "POLARS_MAX_THREADS": "1",
}
TOL = 1e-6


# --------------------------------------------------------------------------- data
def simulate(units: int, periods: int, cohorts: int, seed: int, path: Path) -> int:
    """Write the long panel to ``path`` (Parquet); return the number of rows."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    first = periods // 4 + 1
    g_values = np.arange(first, first + cohorts)
    # 30% never treated (g = 0), the rest spread evenly over the cohorts
    g = np.where(rng.random(units) < 0.3, 0, rng.choice(g_values, size=units))
    alpha = rng.normal(size=units)
    t = np.arange(1, periods + 1)
    gamma = 0.05 * t + 0.3 * np.sin(t / 5)
    treated = (g[:, None] > 0) & (t[None, :] >= g[:, None])
    y = alpha[:, None] + gamma[None, :] + 1.0 * treated + rng.normal(size=(units, periods))
    df = pl.DataFrame(
        {
            "id": np.repeat(np.arange(1, units + 1, dtype=np.int64), periods),
            "t": np.tile(t.astype(np.int64), units),
            "g": np.repeat(g.astype(np.int64), periods),
            "y": y.ravel(),
        }
    )
    df.write_parquet(path)
    return df.height


# --------------------------------------------------------------------------- workers
def worker_impact(data: Path, out: Path) -> None:
    import numpy as np
    import polars as pl

    from impact.estimate.staggered import att_gt

    df = pl.read_parquet(data)
    c0, t0 = time.process_time(), time.perf_counter()
    res = att_gt(
        df,
        y="y",
        t="t",
        g="g",
        id="id",
        control_group="never_treated",
        est_method="reg",
        base_period="varying",
        bootstrap=False,
        cband=False,
    )
    dyn = res.aggregate("dynamic", bootstrap=False, cband=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    tab, dtab = res.table, dyn.table
    _write(
        out,
        seconds,
        cpu,
        group=tab["group"].to_numpy().astype(float),
        time_=tab["time"].to_numpy().astype(float),
        att=tab["att"].to_numpy(),
        se=tab["se"].to_numpy(),
        e=dtab["event_time"].to_numpy().astype(float),
        att_e=dtab["att"].to_numpy(),
        se_e=dtab["se"].to_numpy(),
        overall=(float(dyn.att), float(dyn.se)),
        np=np,
    )


def worker_csdid(data: Path, out: Path) -> None:
    import warnings

    import numpy as np
    import pandas as pd
    from csdid.att_gt import ATTgt

    df = pd.read_parquet(data)
    c0, t0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        att = ATTgt(
            yname="y",
            tname="t",
            idname="id",
            gname="g",
            data=df,
            control_group="nevertreated",
            xformla=None,
            panel=True,
            cband=False,
        ).fit(est_method="reg", base_period="varying", bstrap=False)
        att.aggte(typec="dynamic", bstrap=False, cband=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    r, a = att.results, att.atte
    _write(
        out,
        seconds,
        cpu,
        group=np.asarray(r["group"], dtype=float),
        time_=np.asarray(r["year"], dtype=float),
        att=np.asarray(r["att"], dtype=float),
        se=np.asarray(r["se"], dtype=float),
        e=np.asarray(a["egt"], dtype=float),
        att_e=np.asarray(a["att_egt"], dtype=float),
        se_e=np.asarray(a["se_egt"], dtype=float).ravel(),
        overall=(float(np.ravel(a["overall_att"])[0]), float(np.ravel(a["overall_se"])[0])),
        np=np,
    )


def _write(
    out: Path, seconds: float, cpu: float, *, overall: tuple[float, float], np, **arrays
) -> None:
    payload = {
        "estimate_seconds": seconds,
        "estimate_cpu_seconds": cpu,
        "overall_att": overall[0],
        "overall_se": overall[1],
    }
    payload |= {k: np.asarray(v, dtype=float).tolist() for k, v in arrays.items()}
    out.write_text(json.dumps(payload))


# --------------------------------------------------------------------------- driver
def run_child(python: str, tool: str, data: Path, out: Path, timeout: float) -> dict:
    """Run one worker; wall time and peak RSS of that child only (``os.wait4``)."""
    env = os.environ | THREAD_ENV
    cmd = [python, str(Path(__file__).resolve()), "--worker", tool, str(data), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    status, rusage, timed_out = None, None, False
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            _, status, rusage = os.wait4(proc.pid, 0)
            timed_out = True
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    rec = {
        "process_seconds": round(wall, 2),
        "peak_rss_mib": round(rusage.ru_maxrss / 1024, 1),
        "cpu_seconds": round(rusage.ru_utime + rusage.ru_stime, 2),
    }
    if timed_out:
        return rec | {"status": "timeout", "error": f"killed after {timeout:.0f} s"}
    if proc.returncode != 0 or not out.exists():
        tail = stderr.strip().splitlines()[-5:]
        return rec | {"status": "failed", "returncode": proc.returncode, "error": tail}
    res = json.loads(out.read_text())
    rec["status"] = "ok"
    rec["estimate_seconds"] = round(res.pop("estimate_seconds"), 3)
    rec["estimate_cpu_seconds"] = round(res.pop("estimate_cpu_seconds"), 3)
    rec["_res"] = res
    return rec


def compare(a: dict, b: dict) -> dict:
    """Max |difference| of matched ATT(g,t), dynamic elements and overall (ours vs csdid)."""
    import numpy as np

    def keyed(res: dict, keys: tuple[str, ...], val: str) -> dict:
        cols = [res[k] for k in keys]
        return {tuple(row[:-1]): row[-1] for row in zip(*cols, res[val], strict=True)}

    out = {}
    for name, keys, val in (
        ("att_gt", ("group", "time_"), "att"),
        ("att_gt_se", ("group", "time_"), "se"),
        ("dynamic", ("e",), "att_e"),
        ("dynamic_se", ("e",), "se_e"),
    ):
        ka, kb = keyed(a, keys, val), keyed(b, keys, val)
        common = sorted(set(ka) & set(kb))
        d = np.array([ka[k] - kb[k] for k in common], dtype=float)
        finite = np.isfinite(d)
        out[f"{name}_max_abs_diff"] = float(np.max(np.abs(d[finite]))) if finite.any() else None
        out[f"{name}_matched"] = len(common)
        out[f"{name}_only_one_side"] = len(set(ka) ^ set(kb))
        out[f"{name}_nonfinite_diffs"] = int((~finite).sum())
    out["dynamic_overall_abs_diff"] = abs(a["overall_att"] - b["overall_att"])
    out["dynamic_overall_se_abs_diff"] = abs(a["overall_se"] - b["overall_se"])
    out["within_1e-6"] = all(
        out[k] is not None and out[k] <= TOL
        for k in ("att_gt_max_abs_diff", "dynamic_max_abs_diff", "dynamic_overall_abs_diff")
    )
    return out


def versions(python: str, modules: list[str]) -> dict:
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({p: (m.version(p) if p != 'python' else sys.version.split()[0])"
        f" for p in {modules!r}}}))"
    )
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(r.stdout)
    except (subprocess.CalledProcessError, OSError, json.JSONDecodeError) as exc:
        return {"error": str(exc)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000, 100_000])
    ap.add_argument("--periods", type=int, default=48)
    ap.add_argument("--cohorts", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--peer-python", default="/tmp/peers/bin/python")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per child process")
    ap.add_argument("--worker", nargs=3, metavar=("TOOL", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        tool, data, out = args.worker
        {"impact": worker_impact, "csdid": worker_csdid}[tool](Path(data), Path(out))
        return

    pythons = {"impact": sys.executable, "csdid": args.peer_python}
    stopped: dict[str, str] = {}
    runs = []
    with tempfile.TemporaryDirectory(prefix="staggered_vs_csdid_") as tmp:
        for n in sorted(args.sizes):
            data = Path(tmp) / f"panel_{n}.parquet"
            t0 = time.perf_counter()
            rows = simulate(n, args.periods, args.cohorts, args.seed, data)
            rec: dict = {
                "units": n,
                "periods": args.periods,
                "cohorts": args.cohorts,
                "rows": rows,
                "simulate_seconds": round(time.perf_counter() - t0, 2),
                "load_average_1min_before": round(os.getloadavg()[0], 2),
            }
            for tool, python in pythons.items():
                if tool in stopped:
                    rec[tool] = {"status": "skipped", "error": stopped[tool]}
                    continue
                r = run_child(python, tool, data, Path(tmp) / f"{tool}_{n}.json", args.timeout)
                if r["status"] != "ok":
                    stopped[tool] = f"{r['status']} at {n} units"
                rec[tool] = r
                shown = {k: v for k, v in r.items() if k != "_res"}
                print(f"[{n} units] {tool}: {json.dumps(shown)}", flush=True)
            ours, peer = rec["impact"], rec["csdid"]
            if ours["status"] == "ok" and peer["status"] == "ok":
                rec["speed_ratio_estimate"] = round(
                    peer["estimate_seconds"] / max(ours["estimate_seconds"], 1e-9), 2
                )
                rec["speed_ratio_estimate_cpu"] = round(
                    peer["estimate_cpu_seconds"] / max(ours["estimate_cpu_seconds"], 1e-9), 2
                )
                rec["speed_ratio_process"] = round(
                    peer["process_seconds"] / ours["process_seconds"], 2
                )
                rec["rss_ratio"] = round(peer["peak_rss_mib"] / ours["peak_rss_mib"], 2)
                rec["agreement"] = compare(ours["_res"], peer["_res"])
                rec["n_cells"] = len(ours["_res"]["att"])
                rec["dynamic_overall_att"] = {
                    "impact": ours["_res"]["overall_att"],
                    "csdid": peer["_res"]["overall_att"],
                }
            elif peer["status"] != "ok" and ours["status"] == "ok":
                rec["lower_bound_speed_ratio_process"] = round(
                    peer["process_seconds"] / ours["process_seconds"], 2
                )
            for tool in pythons:
                rec[tool].pop("_res", None)
            rec["load_average_1min_after"] = round(os.getloadavg()[0], 2)
            runs.append(rec)

    result = {
        "benchmark": "staggered_vs_csdid",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "options": {
            "control_group": "never_treated (csdid: 'nevertreated')",
            "est_method": "reg",
            "covariates": [],
            "inference": "analytic standard errors, no bootstrap, no uniform bands",
            "base_period": "varying",
            "anticipation": 0,
            "aggregation": "dynamic",
            "threads": THREAD_ENV,
            "timeout_seconds": args.timeout,
        },
        "timing_notes": (
            "estimate_seconds: att_gt + dynamic aggregation inside the child, imports and "
            "Parquet read excluded (estimate_cpu_seconds: its CPU time); process_seconds: "
            "whole child process; peak_rss_mib: the child's ru_maxrss (os.wait4). speed "
            "ratios are csdid / impact (>1: impact faster)."
        ),
        "versions": {
            "impact": versions(sys.executable, ["python", "impact", "numpy", "polars", "scipy"]),
            "csdid": versions(
                args.peer_python, ["python", "csdid", "drdid", "numpy", "pandas", "scipy"]
            ),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print_table(runs)


def print_table(runs: list[dict]) -> None:
    def fmt(r: dict, key: str) -> str:
        return f"{r[key]:.2f}" if r.get("status") == "ok" and key in r else r.get("status", "-")

    head = (
        f"{'units':>8} {'impact s':>9} {'csdid s':>9} {'ratio':>6} {'impact MiB':>11} "
        f"{'csdid MiB':>10} {'max|dATT(g,t)|':>15} {'max|dDyn|':>10}"
    )
    print(head)
    print("-" * len(head))
    for rec in runs:
        o, p, ag = rec["impact"], rec["csdid"], rec.get("agreement", {})
        ratio = rec.get("speed_ratio_estimate")
        d1, d2 = ag.get("att_gt_max_abs_diff"), ag.get("dynamic_max_abs_diff")
        print(
            f"{rec['units']:>8} {fmt(o, 'estimate_seconds'):>9} {fmt(p, 'estimate_seconds'):>9} "
            f"{'-' if ratio is None else f'{ratio:.1f}x':>6} "
            f"{o.get('peak_rss_mib', '-'):>11} {p.get('peak_rss_mib', '-'):>10} "
            f"{'-' if d1 is None else f'{d1:.1e}':>15} {'-' if d2 is None else f'{d2:.1e}':>10}"
        )


if __name__ == "__main__":
    main()
