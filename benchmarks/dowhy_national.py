"""DoWhy's propensity score matching and this module's twins, side by side on one cohort.

One cohort month of a data root (default: the cohort with the most eligible treated
persons), its treated persons and *all* its candidates (risk set "not yet treated",
features strictly before the month, :func:`impact.twins.riskset.cohort_frame`), matched:

``impact_default``
    :func:`impact.twins.riskset.match_cohort` with the default settings but a propensity
    model fitted on this cohort (``TwinSettings(ps_scope="per_cohort")``, the counterpart of
    DoWhy fitting its own model): exact strata, caliper 0.2 SD of the logit, 5 twins with
    replacement; balance table of the module.
``impact_like_for_like``
    the same with DoWhy's matching rule: no strata, no caliper, 1 twin with replacement
    (``exact=(), caliper=None, ratio=1``). Differences that remain: impact matches on the
    logit of an unpenalised GLM on standardised features; DoWhy on the probability of
    scikit-learn's default ``LogisticRegression()`` (L2 penalty C=1, lbfgs, 100 iterations,
    unscaled features).
``dowhy``
    ``CausalModel(data, treatment="treated", outcome=..., common_causes=DEFAULT_FEATURES)``,
    ``identify_effect``, ``estimate_effect(method_name="backdoor.propensity_score_matching",
    target_units="att")`` on a pandas frame (categoricals as pandas ``category``, which DoWhy
    one-hot encodes with the first level dropped).

How DoWhy 0.14 matches (``PropensityScoreMatchingEstimator.estimate_effect``): it fits the
model on the one-hot design, writes ``propensity_score`` into the data, fits
``NearestNeighbors(n_neighbors=1, algorithm="ball_tree")`` on the controls' scores and
queries the treated (ATT: mean treated-minus-neighbour outcome); it also computes the ATC
(a ball tree on the treated queried by every control) whatever ``target_units`` is. It does
not return the matched indices; they are replicated here from the scores it wrote, with the
same call, and checked: the replicated ATT must equal DoWhy's estimate to 1e-9. Each
control's weight is the number of treated it serves, and the post-match max |SMD| comes
from :func:`impact.balance.balance_table` over the same covariates (one-hot levels
included, treated-SD denominator, ``smd_binary`` as the module's default), so both sides'
max |SMD| are the same statistic.

Outcome (for the two ATTs): real earnings ``--horizon`` months after the cohort month (12;
a pre-period covariate, earnings in ``m-1``, if the panel ends earlier). Not censored for
twins who start later: the same naive outcome on both sides, to compare the estimates with
each other, not with the truth.

Every side runs in its own child process (``spawn``), so its figures are its own:
``wall_seconds`` (the timed section), ``peak_rss_gib`` (the child's ``ru_maxrss``, loaded
panel arrays included for impact), ``peak_rss_increase_gib`` (largest RSS during the timed
section, sampled every 10 ms, minus the RSS at its start). impact's timed section is
``match_cohort`` (features of the cohort's persons from the panel arrays, model, matching,
balance table); ``features_seconds`` is the feature build alone, measured separately.
DoWhy's is ``CausalModel`` + ``identify_effect`` + ``estimate_effect`` from a ready pandas
frame. The DoWhy child runs under ``RLIMIT_AS`` (``--dowhy-mem-gib``, address space, 16 GiB
by default), a parent watchdog on its RSS (same figure) and a time budget
(``--timeout-min``); if it fails, it is rerun on random candidate subsamples (all treated
persons, ``--sizes`` candidates) up to the first failure, so the largest candidate count it
handled and the one it failed at are recorded (``--scaling`` runs the subsamples anyway).

DoWhy's ``identify_effect`` (method "default") finds the maximal backdoor set (all common
causes) and then searches for a minimal one by size: with 38 common causes it checks every
subset of up to 5 of them (584,936 d-separation checks, about 2.5 minutes at the 100k test,
before logging "Max number of iterations 100000 reached"), a cost that depends on the
graph only, not on the sample size; the set used is still all 38. Subsample and hash-seed
runs use ``method_name="maximal-adjustment"`` (the same set, found at once).

Its logistic fit (scikit-learn defaults on unscaled features) stops at lbfgs's 100
iterations unconverged, and the order of its one-hot columns follows the adjustment set, a
Python set of strings, whose order changes with ``PYTHONHASHSEED``; so do its scores, its
matches and its ATT. DoWhy children run with ``PYTHONHASHSEED`` fixed (``--hash-seeds``:
the first is the timed run, further seeds rerun the whole cohort for the spread of its ATT
and max |SMD|).

Results: ``benchmarks/results/dowhy_national.json`` (one record per root, cohort and label).

Usage::

    python benchmarks/dowhy_national.py /tmp/d100 --label 100k --hash-seeds 0,1,2 --scaling
        --sizes 10000,30000
    python benchmarks/dowhy_national.py /tmp/big --label 1.2M --hash-seeds 0,1,2 --scaling
    python benchmarks/dowhy_national.py ROOT [--cohort 2025-06] [--sizes 100000,300000,600000]
        [--scaling] [--hash-seeds 0,1,2] [--dowhy-mem-gib 16] [--timeout-min 30]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "dowhy_national.json"
GIB = 1024**3
POOL = "not_yet_treated"
OUTCOME = "outcome"


# --------------------------------------------------------------------------- child helpers


class _Sampler:
    """Largest RSS of this process since the last ``reset`` (sampled by a thread)."""

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def reset(self) -> int:
        """Peak since the last reset (the current RSS included); restarts from now."""
        now = self.rss()
        peak = max(self.peak, now)
        self.peak = now
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _maxrss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # KiB on Linux


def _vm_gib() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmSize", "VmRSS"):
            out[key] = round(int(val.split()[0]) * 1024 / GIB, 3)
    return out


def _load_arrays(root: str) -> Any:
    import polars as pl

    from impact.evaluate import load_arrays

    root_p = Path(root)
    treatment = pl.read_parquet(root_p / "research" / "treatment.parquet")
    return load_arrays(root_p / "panel", treatment)


def _pick_cohort(arrays: Any, cohort: str | None) -> int:
    """Month index of ``cohort`` (YYYY-MM), or of the cohort with most eligible treated."""
    import numpy as np

    from impact.twins.features import HISTORY
    from impact.twins.riskset import cohort_months

    if cohort:
        from datetime import date

        y, mo = (int(x) for x in cohort.split("-")[:2])
        m = arrays.month_index(date(y, mo, 1))
        if m < HISTORY:
            raise SystemExit(f"cohort {cohort} has less than {HISTORY} months of history")
        return m
    months = cohort_months(arrays)
    if not months:
        raise SystemExit("no cohort with 36 months of history")
    fs = arrays.first_start
    pid = np.flatnonzero(fs >= HISTORY)
    ok = arrays.series["eligible"][pid, fs[pid]] == 1
    counts = np.bincount(fs[pid][ok], minlength=len(arrays.months))
    return int(np.argmax(counts))  # the earliest of equally large cohorts


def _outcome(arrays: Any, m: int, horizon: int) -> tuple[int, str]:
    """Month index and description of the outcome (earnings ``horizon`` months after m)."""
    if m + horizon < len(arrays.months):
        month = arrays.months[m + horizon].strftime("%Y-%m")
        return m + horizon, f"earnings_real in {month} (cohort month + {horizon})"
    month = arrays.months[m - 1].strftime("%Y-%m")
    return m - 1, f"earnings_real in {month} (m-1: a pre-period covariate; panel ends earlier)"


def _full_frame(arrays: Any, m: int, horizon: int) -> Any:
    """The cohort frame (treated and all candidates) with the outcome column."""
    import numpy as np
    import polars as pl

    from impact.twins.riskset import cohort_frame

    frame, _ = cohort_frame(arrays, m, POOL)
    t, _ = _outcome(arrays, m, horizon)
    y = arrays.series["earnings_real"][frame["pid"].to_numpy(), t].astype(np.float64)
    return frame.with_columns(pl.Series(OUTCOME, y))


def _impact_child(
    root: str,
    cohort: str | None,
    variant: str,
    frame_path: str | None,
    horizon: int,
    q: Any,
) -> None:
    """Time ``match_cohort`` on one cohort (``variant``: "default" or "like_for_like")."""
    try:
        import warnings

        import numpy as np
        import polars as pl

        from impact.balance import balance_table
        from impact.twins.features import features_at
        from impact.twins.riskset import TwinSettings, match_cohort, risk_set

        load0 = os.getloadavg()
        sampler = _Sampler()
        t0 = time.perf_counter()
        arrays = _load_arrays(root)
        load_seconds = time.perf_counter() - t0
        m = _pick_cohort(arrays, cohort)
        treated, cand, ineligible = risk_set(arrays, m, POOL)
        info: dict[str, Any] = {
            "cohort": arrays.months[m].strftime("%Y-%m"),
            "persons": arrays.n_persons,
            "months_loaded": [arrays.months[0].isoformat(), arrays.months[-1].isoformat()],
            "n_treated": int(treated.size),
            "n_treated_ineligible": ineligible,
            "n_candidates": int(cand.size),
            "outcome": _outcome(arrays, m, horizon)[1],
        }
        if frame_path:  # the cohort frame for the DoWhy children
            _full_frame(arrays, m, horizon).write_parquet(frame_path)
            gc.collect()
        # the feature build alone (match_cohort's first step), timed on its own
        t0 = time.perf_counter()
        ft = features_at(arrays, m, treated)
        fc = features_at(arrays, m, cand)
        features_seconds = time.perf_counter() - t0
        del ft, fc
        gc.collect()

        if variant == "default":
            s = TwinSettings(ps_scope="per_cohort")
        else:
            s = TwinSettings(ps_scope="per_cohort", exact=(), coarsen=(), caliper=None, ratio=1)
        rss0 = sampler.reset()
        cpu0 = _cpu()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            c = match_cohort(arrays, m, s)
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        peak = sampler.reset()
        sampler.stop()

        bal = c.balance
        max_smd = float(bal["smd_after"].abs().max())
        worst = bal.sort(pl.col("smd_after").abs(), descending=True, nulls_last=True).row(
            0, named=True
        )
        # ATT on the outcome: matched treated minus their twins (matching weights)
        f = c.frame
        t_out, _ = _outcome(arrays, m, horizon)
        y = arrays.series["earnings_real"][f["pid"].to_numpy(), t_out].astype(np.float64)
        w = f["weight"].to_numpy()
        d = f["treated"].to_numpy()
        mt, mc = d & (w > 0), ~d & (w > 0)
        att = float(np.average(y[mt], weights=w[mt]) - np.average(y[mc], weights=w[mc]))
        # check: balance_table on the whole cohort frame with these weights gives the same
        # SMDs as the module's table (the statistic the DoWhy side is measured with)
        full = _full_frame(arrays, m, horizon)
        wmap = np.zeros(arrays.n_persons)
        wmap[f["pid"].to_numpy()] = w
        tab = balance_table(
            full,
            treatment="treated",
            covariates=list(s.covariates),
            weights=wmap[full["pid"].to_numpy()],
            binary=s.smd_binary,
        )
        joined = tab.select("covariate", pl.col("smd_after").alias("b")).join(
            bal.select("covariate", pl.col("smd_after").alias("a")), on="covariate", how="full"
        )
        gap = float((joined["a"] - joined["b"]).abs().max() or 0.0)
        sm = c.result.summary()
        prop = c.result.propensity
        q.put(
            {
                "ok": True,
                "info": info,
                "side": {
                    "settings": {
                        "ps_scope": s.ps_scope,
                        "exact": list(s.exact),
                        "caliper": s.caliper,
                        "ratio": s.ratio,
                        "replace": s.replace,
                        "distance": "logit of an unpenalised GLM (newton-cholesky)",
                    },
                    "wall_seconds": round(wall, 3),
                    "cpu_seconds": round(cpu, 3),
                    "features_seconds": round(features_seconds, 3),
                    "wall_seconds_excl_features": round(wall - features_seconds, 3),
                    "load_arrays_seconds": round(load_seconds, 3),
                    "peak_rss_gib": round(_maxrss_gib(), 3),
                    "rss_at_start_gib": round(rss0 / GIB, 3),
                    "peak_rss_increase_gib": round((peak - rss0) / GIB, 3),
                    "max_abs_smd_after": max_smd,
                    "worst_covariate": worst["covariate"],
                    "n_balance_rows": bal.height,
                    "max_abs_smd_before": float(bal["smd_before"].abs().max()),
                    "balance_table_check_max_gap": gap,
                    "n_treated": sm["n_treated"],
                    "n_matched": sm["n_matched"],
                    "n_unmatched": sm["n_unmatched"],
                    "unmatched_by_reason": sm["unmatched_by_reason"],
                    "n_controls_used": sm["n_controls_used"],
                    "control_ess": round(sm["control_ess"], 1),
                    "n_strata": sm["n_strata"],
                    "ps_model_iterations": getattr(prop, "n_iter_", None),
                    "ps_model_aliased": list(getattr(prop, "aliased_", []) or []),
                    "att": att,
                    "loadavg_start": load0,
                    "loadavg_end": os.getloadavg(),
                },
            }
        )
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        q.put({"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _dowhy_child(
    frame_path: str,
    n_candidates: int | None,
    seed: int,
    identify: str,
    mem_gib: float,
    q: Any,
) -> None:
    """DoWhy's PSM (ATT) on the cohort frame, or on all treated and ``n_candidates`` random
    candidates; then its matches replicated from its scores and their balance."""
    limit = int(mem_gib * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stage = "prepare"
    try:
        import logging
        import warnings

        import numpy as np
        import polars as pl

        from impact.balance import balance_table
        from impact.twins.riskset import DEFAULT_FEATURES, TwinSettings

        load0 = os.getloadavg()
        logging.disable(logging.WARNING)
        t0 = time.perf_counter()
        frame = pl.read_parquet(frame_path)
        d_all = frame["treated"].to_numpy()
        rows = np.arange(frame.height)
        if n_candidates is not None and n_candidates < int((~d_all).sum()):
            rng = np.random.default_rng(seed)
            cand = np.flatnonzero(~d_all)
            take = np.sort(rng.choice(cand, size=n_candidates, replace=False))
            rows = np.concatenate([np.flatnonzero(d_all), take])
            frame = frame[rows]
        features = list(DEFAULT_FEATURES)
        pdf = frame.select(features).to_pandas()
        pdf["treated"] = frame["treated"].cast(pl.Int64).to_numpy()
        pdf[OUTCOME] = frame[OUTCOME].to_numpy()
        n_t = int(frame["treated"].sum())
        n_c = frame.height - n_t
        del frame
        gc.collect()
        t_import = time.perf_counter()
        from dowhy import CausalModel
        from sklearn.neighbors import NearestNeighbors

        import_seconds = time.perf_counter() - t_import
        prepare_seconds = time.perf_counter() - t0 - import_seconds

        stage = "dowhy"
        q.put({"phase": stage})  # the parent's time budget runs from here
        sampler = _Sampler()
        vm0 = _vm_gib()
        rss0 = sampler.reset()
        cpu0 = _cpu()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            model = CausalModel(
                data=pdf, treatment="treated", outcome=OUTCOME, common_causes=features
            )
            t1 = time.perf_counter()
            estimand = model.identify_effect(method_name=identify, proceed_when_unidentifiable=True)
            t2 = time.perf_counter()
            est = model.estimate_effect(
                estimand, method_name="backdoor.propensity_score_matching", target_units="att"
            )
            t3 = time.perf_counter()
        cpu = _cpu() - cpu0
        peak = sampler.reset()
        sampler.stop()
        stage = "replicate"
        q.put({"phase": stage})
        value = float(est.value)
        estimator = est.estimator
        design_columns = list(estimator._observed_common_causes.columns)
        lr = estimator.propensity_score_model
        n_iter = int(np.max(lr.n_iter_)) if hasattr(lr, "n_iter_") else None
        adjustment = list(estimand.get_adjustment_set())
        ps = np.asarray(est.propensity_scores, dtype=np.float64)
        d = pdf["treated"].to_numpy() == 1
        y = pdf[OUTCOME].to_numpy()
        del model, est, estimator, pdf
        gc.collect()
        messages = sorted(
            {f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught}
        )

        # DoWhy's matching step, replicated from its scores with the same call
        tpos, cpos = np.flatnonzero(d), np.flatnonzero(~d)
        nn = NearestNeighbors(n_neighbors=1, algorithm="ball_tree").fit(ps[cpos].reshape(-1, 1))
        _, idx = nn.kneighbors(ps[tpos].reshape(-1, 1))
        twin = cpos[idx.ravel()]
        att_rep = float(np.mean(y[tpos] - y[twin]))
        weight = np.zeros(d.size)
        weight[tpos] = 1.0
        weight += np.bincount(twin, minlength=d.size)
        stage = "balance"
        frame = pl.read_parquet(frame_path)[rows]
        s = TwinSettings()
        tab = balance_table(
            frame,
            treatment="treated",
            covariates=list(s.covariates),
            weights=weight,
            binary=s.smd_binary,
        )
        worst = tab.sort(pl.col("smd_after").abs(), descending=True, nulls_last=True).row(
            0, named=True
        )
        logit = np.log(ps / (1 - ps))
        q.put(
            {
                "ok": True,
                "side": {
                    "n_treated": n_t,
                    "n_candidates": n_c,
                    "identify_method": identify,
                    "python_hash_seed": os.environ.get("PYTHONHASHSEED"),
                    "wall_seconds": round(t3 - t0, 3),
                    "cpu_seconds": round(cpu, 3),
                    "model_seconds": round(t1 - t0, 3),
                    "identify_seconds": round(t2 - t1, 3),
                    "estimate_seconds": round(t3 - t2, 3),
                    "prepare_seconds": round(prepare_seconds, 3),
                    "import_seconds": round(import_seconds, 3),
                    "peak_rss_gib": round(_maxrss_gib(), 3),
                    "rss_at_start_gib": round(rss0 / GIB, 3),
                    "vm_at_start_gib": vm0.get("VmSize"),
                    "peak_rss_increase_gib": round((peak - rss0) / GIB, 3),
                    "rlimit_as_gib": mem_gib,
                    "max_abs_smd_after": float(tab["smd_after"].abs().max()),
                    "worst_covariate": worst["covariate"],
                    "n_balance_rows": tab.height,
                    "max_abs_smd_before": float(tab["smd_before"].abs().max()),
                    "n_matched": n_t,
                    "n_unmatched": 0,
                    "n_controls_used": int((weight[cpos] > 0).sum()),
                    "control_ess": round(
                        float(weight[cpos].sum() ** 2 / (weight[cpos] ** 2).sum()), 1
                    ),
                    "att": value,
                    "att_replicated": att_rep,
                    "replication_abs_gap": abs(att_rep - value),
                    "replication_ok": abs(att_rep - value) <= 1e-9,
                    "adjustment_set_size": len(adjustment),
                    "adjustment_set_order_head": adjustment[:5],
                    "design_columns": len(design_columns),
                    "lbfgs_iterations": n_iter,
                    "lbfgs_max_iter": getattr(lr, "max_iter", None),
                    "ps_min": float(ps.min()),
                    "ps_max": float(ps.max()),
                    "ps_logit_sd_treated": float(np.std(logit[tpos], ddof=1)) if n_t > 1 else None,
                    "warnings": messages,
                    "loadavg_start": load0,
                    "loadavg_end": os.getloadavg(),
                },
            }
        )
    except MemoryError as e:
        q.put(
            {
                "ok": False,
                "memory": True,
                "stage": stage,
                "error": f"MemoryError: {e}",
                "vm": _vm_gib(),
                "maxrss_gib": _maxrss_gib(),
            }
        )
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        q.put(
            {
                "ok": False,
                "memory": False,
                "stage": stage,
                "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc()[-3000:],
                "vm": _vm_gib(),
                "maxrss_gib": _maxrss_gib(),
            }
        )


# --------------------------------------------------------------------------- parent


def _run(
    target: Any,
    args: tuple,
    *,
    timeout: float | None = None,
    rss_limit_gib: float | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``target(*args, queue)`` in a spawned child; kill it past ``rss_limit_gib`` of RSS
    or ``timeout`` seconds in its ``"dowhy"`` phase (from the child's ``{"phase": "dowhy"}``
    message to its next phase message: imports, data preparation and the replication are not
    limited). Returns the child's final message, or a failure record."""
    import psutil

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})  # inherited by the spawned interpreter
    try:
        child = ctx.Process(target=target, args=(*args, q))
        t0 = time.perf_counter()
        child.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    proc = psutil.Process(child.pid)
    peak = 0
    msg: dict[str, Any] | None = None
    killed = None
    phase, t_phase = "start", t0
    while msg is None:
        try:
            got = q.get(timeout=0.2)
            if "phase" in got:
                phase, t_phase = got["phase"], time.perf_counter()
                continue
            msg = got
            break
        except queue_mod.Empty:
            pass
        try:
            rss = proc.memory_info().rss
            peak = max(peak, rss)
        except psutil.Error:
            rss = 0
        elapsed = time.perf_counter() - t_phase
        if not child.is_alive():
            try:
                while msg is None:
                    got = q.get(timeout=2)
                    if "phase" not in got:
                        msg = got
                    else:
                        phase = got["phase"]
            except queue_mod.Empty:
                pass
            break
        if timeout is not None and phase == "dowhy" and elapsed > timeout:
            killed = f"time budget {timeout:.0f} s exceeded"
        elif rss_limit_gib is not None and rss > rss_limit_gib * GIB:
            killed = f"RSS {rss / GIB:.2f} GiB above the {rss_limit_gib} GiB limit"
        if killed:
            child.kill()  # this child only (started here)
            break
    child.join()
    elapsed = time.perf_counter() - t0
    if msg is None:
        msg = {
            "ok": False,
            "memory": killed is not None and "RSS" in killed,
            "timeout": killed is not None and "time" in killed,
            "error": killed
            or f"child died with exit code {child.exitcode} (no message; -9: killed, e.g. by "
            "the kernel's OOM killer; -6/-11: a native abort/crash, e.g. a failed allocation "
            "under the address-space limit)",
            "stage": phase,
        }
    msg["child_seconds"] = round(elapsed, 3)
    msg["child_peak_rss_sampled_gib"] = round(peak / GIB, 3)
    msg["exitcode"] = child.exitcode
    return msg


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("dowhy", "scikit-learn", "pandas", "numpy", "polars", "scipy", "networkx"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "-"
    return out


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b > 0:
        return None
    return round(a / b, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, help="data root with panel/ and research/treatment.parquet")
    ap.add_argument("--cohort", help="cohort month YYYY-MM (default: most eligible treated)")
    ap.add_argument("--label", default="", help="label of the run (e.g. 1.2M)")
    ap.add_argument(
        "--horizon",
        type=int,
        default=12,
        help="outcome: earnings this many months after the cohort month",
    )
    ap.add_argument(
        "--dowhy-mem-gib",
        type=float,
        default=16.0,
        help="address-space limit of the DoWhy child (and RSS watchdog)",
    )
    ap.add_argument("--timeout-min", type=float, default=30.0, help="DoWhy time budget")
    ap.add_argument(
        "--sizes",
        default="100000,300000,600000",
        help="candidate subsample sizes for DoWhy if the full run fails",
    )
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="run the DoWhy subsamples even if the full cohort succeeds",
    )
    ap.add_argument(
        "--identify", default="default", help="DoWhy identify_effect method of the full run"
    )
    ap.add_argument(
        "--hash-seeds",
        default="0",
        help="PYTHONHASHSEED of the DoWhy runs: the first is the timed run, "
        "further ones rerun the full cohort (maximal-adjustment) for the spread",
    )
    ap.add_argument("--seed", type=int, default=0, help="subsample seed")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    import psutil

    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    hash_seeds = [s.strip() for s in args.hash_seeds.split(",") if s.strip()]
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    tmp = Path(tempfile.mkdtemp(prefix="dowhy_national_"))
    frame_path = str(tmp / "cohort.parquet")
    budget = args.timeout_min * 60
    print(f"dowhy_national: {args.root} load {load_start}", flush=True)
    try:
        r = _run(_impact_child, (str(args.root), args.cohort, "default", frame_path, args.horizon))
        if not r["ok"]:
            raise SystemExit(f"impact (default) failed: {r.get('error')}\n{r.get('trace', '')}")
        info = r["info"]
        imp = r["side"]
        print(
            f"  cohort {info['cohort']}: {info['n_treated']} treated, "
            f"{info['n_candidates']} candidates",
            flush=True,
        )
        print(
            f"  impact default       {imp['wall_seconds']:8.2f} s  "
            f"max|SMD| {imp['max_abs_smd_after']:.4f}  matched {imp['n_matched']}",
            flush=True,
        )
        r = _run(
            _impact_child, (str(args.root), info["cohort"], "like_for_like", None, args.horizon)
        )
        if not r["ok"]:
            raise SystemExit(f"impact (like for like) failed: {r.get('error')}")
        l4l = r["side"]
        print(
            f"  impact like-for-like {l4l['wall_seconds']:8.2f} s  "
            f"max|SMD| {l4l['max_abs_smd_after']:.4f}",
            flush=True,
        )

        def dowhy(n: int | None, identify: str, hash_seed: str) -> dict[str, Any]:
            res = _run(
                _dowhy_child,
                (frame_path, n, args.seed, identify, args.dowhy_mem_gib),
                timeout=budget,
                rss_limit_gib=args.dowhy_mem_gib,
                env={"PYTHONHASHSEED": hash_seed},
            )
            tag = "all" if n is None else n
            if res["ok"]:
                sd = res["side"]
                print(
                    f"  dowhy [{tag} cand, hash {hash_seed}, {identify}] "
                    f"{sd['wall_seconds']:8.2f} s (identify {sd['identify_seconds']} s, "
                    f"estimate {sd['estimate_seconds']} s)  max|SMD| "
                    f"{sd['max_abs_smd_after']:.4f}  ATT {sd['att']:.2f} "
                    f"(replicated, gap {sd['replication_abs_gap']:.1e})",
                    flush=True,
                )
            else:
                print(f"  dowhy [{tag} cand] FAILED: {res.get('error')}", flush=True)
            return res

        full = dowhy(None, args.identify, hash_seeds[0])
        dw = full["side"] if full["ok"] else None
        spread = []
        if full["ok"]:
            spread.append(
                {
                    k: dw[k]
                    for k in (
                        "python_hash_seed",
                        "att",
                        "max_abs_smd_after",
                        "lbfgs_iterations",
                        "worst_covariate",
                    )
                }
            )
            for hs in hash_seeds[1:]:
                res = dowhy(None, "maximal-adjustment", hs)
                if res["ok"]:
                    sd = res["side"]
                    spread.append(
                        {
                            k: sd[k]
                            for k in (
                                "python_hash_seed",
                                "att",
                                "max_abs_smd_after",
                                "lbfgs_iterations",
                                "worst_covariate",
                            )
                        }
                    )
        subsamples = []
        if not full["ok"] or args.scaling:
            for n in [s for s in sizes if s < info["n_candidates"]]:
                res = dowhy(n, "maximal-adjustment", hash_seeds[0])
                row: dict[str, Any] = {"n_candidates": n, "ok": res["ok"]}
                if res["ok"]:
                    sd = res["side"]
                    row.update(
                        {
                            k: sd[k]
                            for k in (
                                "wall_seconds",
                                "cpu_seconds",
                                "identify_seconds",
                                "estimate_seconds",
                                "peak_rss_gib",
                                "peak_rss_increase_gib",
                                "max_abs_smd_after",
                                "att",
                                "replication_ok",
                                "lbfgs_iterations",
                            )
                        }
                    )
                else:
                    row.update(
                        {
                            k: res.get(k)
                            for k in ("error", "stage", "memory", "child_peak_rss_sampled_gib")
                        }
                    )
                subsamples.append(row)
                if not res["ok"]:
                    break
        handled = [s["n_candidates"] for s in subsamples if s["ok"]]
        failed = [s["n_candidates"] for s in subsamples if not s["ok"]]
        dowhy_failure = None
        if not full["ok"]:
            dowhy_failure = {
                "error": full.get("error"),
                "stage": full.get("stage"),
                "memory": full.get("memory"),
                "timeout": bool(full.get("timeout")),
                "exitcode": full.get("exitcode"),
                "rlimit_as_gib": args.dowhy_mem_gib,
                "vm_at_failure_gib": full.get("vm"),
                "maxrss_at_failure_gib": full.get("maxrss_gib"),
                "child_seconds": full.get("child_seconds"),
                "peak_rss_sampled_gib": full.get("child_peak_rss_sampled_gib"),
                "failed_at_candidates": min(failed) if failed else info["n_candidates"],
                "largest_candidates_handled": max(handled) if handled else None,
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    vm = psutil.virtual_memory()
    record: dict[str, Any] = {
        "root": str(args.root),
        "label": args.label,
        "cohort": info["cohort"],
        "n_treated": info["n_treated"],
        "n_treated_ineligible": info["n_treated_ineligible"],
        "n_candidates": info["n_candidates"],
        "persons": info["persons"],
        "months_loaded": info["months_loaded"],
        "outcome": info["outcome"],
        "impact_default": imp,
        "impact_like_for_like": l4l,
        "dowhy": dw,
        "dowhy_failure": dowhy_failure,
        "dowhy_subsamples": subsamples,
        "dowhy_hash_seed_spread": spread,
        "wall_ratio_dowhy_over_impact": {
            "default": _ratio(dw and dw["wall_seconds"], imp["wall_seconds"]),
            "like_for_like": _ratio(dw and dw["wall_seconds"], l4l["wall_seconds"]),
            # the sample-size-dependent parts: DoWhy's estimate_effect (model, matching) vs
            # impact's match_cohort without its feature build
            "estimate_only_default": _ratio(
                dw and dw["estimate_seconds"], imp["wall_seconds_excl_features"]
            ),
            "estimate_only_like_for_like": _ratio(
                dw and dw["estimate_seconds"], l4l["wall_seconds_excl_features"]
            ),
        },
        # CPU seconds (user + system) of the same sections: less sensitive to other jobs
        # on a shared machine than wall time (both sides may use more than one thread)
        "cpu_ratio_dowhy_over_impact": {
            "default": _ratio(dw and dw["cpu_seconds"], imp["cpu_seconds"]),
            "like_for_like": _ratio(dw and dw["cpu_seconds"], l4l["cpu_seconds"]),
        },
        "settings": {
            "dowhy_mem_gib": args.dowhy_mem_gib,
            "timeout_min": args.timeout_min,
            "sizes": sizes,
            "scaling": args.scaling,
            "identify": args.identify,
            "hash_seeds": hash_seeds,
            "seed": args.seed,
            "horizon": args.horizon,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "mem_total_gib": round(vm.total / GIB, 1),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "versions": _versions(),
        },
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "commit": _commit(),
        "started": started,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    key = ("root", "cohort", "label")
    runs = [x for x in runs if any(x.get(k) != record[k] for k in key)]
    runs.append(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2, default=str) + "\n")

    wr = record["wall_ratio_dowhy_over_impact"]
    print(
        f"\ncohort {record['cohort']} of {args.root}: {record['n_treated']} treated, "
        f"{record['n_candidates']} candidates; outcome {record['outcome']}"
    )
    print(f"{'':22s}{'wall s':>9s}{'peak+ GiB':>10s}{'max|SMD|':>10s}{'matched':>9s}{'ATT':>10s}")
    for name, sd in (("impact default", imp), ("impact like-for-like", l4l), ("dowhy", dw)):
        if sd is None:
            print(f"{name:22s} failed: {dowhy_failure}")
            continue
        print(
            f"{name:22s}{sd['wall_seconds']:9.2f}{sd['peak_rss_increase_gib']:10.3f}"
            f"{sd['max_abs_smd_after']:10.4f}{sd['n_matched']:9d}{sd['att']:10.2f}"
        )
    cr = record["cpu_ratio_dowhy_over_impact"]
    print(
        f"wall ratio dowhy/impact: default {wr['default']}, like-for-like "
        f"{wr['like_for_like']} (estimate only: {wr['estimate_only_default']}, "
        f"{wr['estimate_only_like_for_like']}); CPU ratio {cr['default']}, "
        f"{cr['like_for_like']}"
    )
    for row in subsamples:
        if row["ok"]:
            print(
                f"dowhy on {row['n_candidates']} candidates: {row['wall_seconds']} s "
                f"(estimate {row['estimate_seconds']} s, CPU {row['cpu_seconds']} s), "
                f"max|SMD| {row['max_abs_smd_after']:.4f}"
            )
        else:
            print(f"dowhy on {row['n_candidates']} candidates: failed ({row.get('error')})")
    if len(spread) > 1:
        atts = [s["att"] for s in spread]
        smds = [s["max_abs_smd_after"] for s in spread]
        print(
            f"dowhy over PYTHONHASHSEED {[s['python_hash_seed'] for s in spread]}: ATT "
            f"{min(atts):.2f}..{max(atts):.2f}, max|SMD| {min(smds):.4f}..{max(smds):.4f}"
        )
    print(f"load {load_start} -> {record['loadavg_end']}; written to {args.out}")
    if any(math.isnan(x) for x in (imp["max_abs_smd_after"],)):
        print("warning: impact max |SMD| is NaN")


if __name__ == "__main__":
    main()
