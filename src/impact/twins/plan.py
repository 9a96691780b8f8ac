"""Twins one cohort month at a time: the plan, one cohort's matching, the combination.

:func:`impact.twins.riskset.match_cohorts` matches every cohort in one call. For scheduled
operation (a new cohort is matched without redoing the old ones; cohorts run in parallel
processes) the same work is split in three steps that communicate through files under the
twins folder:

1. :func:`make_plan` / :func:`write_plan` -- what every cohort shares: the settings, the
   cohort months, the pooled propensity model (when ``ps_scope="pooled"``) and the KS grid
   of the balance tables (every treated value of every cohort, so that the cohorts' balance
   inputs can be merged). ``plan.pkl`` and a readable ``plan.json``.
2. :func:`match_planned` / :func:`write_cohort` -- one cohort month: its pairs
   (``pairs/cohort=YYYY-MM/part-0.parquet``, what the later stages read) and its
   :class:`~impact.twins.riskset.CohortOutput` (``cohorts/YYYY-MM.pkl``). Cohorts are
   independent of each other given the plan.
3. :func:`combine_planned` -- the cohort groups, their balance gate, pooled balance and the
   pre-period trajectories from the cohorts' outputs, written as by
   :func:`impact.twins.riskset.write`.

The three steps give the same twins, balance tables and gate as ``match_cohorts`` on the same
panel (tested). Every cohort output records the fingerprint of the plan it was matched with;
combining outputs of different plans is refused.

Incremental operation
---------------------
Features are measured strictly before the cohort month, so a new month of register data
does not change an existing cohort's twins unless it corrects the past. What ties the
cohorts together is the plan: :func:`plan_is_current` tells whether a stored plan still
holds (same settings, same cohorts, same panel months), and :func:`update_plan` keeps it
then, so the cohorts already matched stay valid and only new or changed ones need matching.
A new cohort changes the plan (the pooled model is refitted on all cohorts), which is what
a pooled model means; ``ps_scope="per_cohort"`` makes the model part of each cohort instead.

Memory: each step takes the arrays of every person or a chunked
:class:`~impact.twins.riskset.Population` (``twins.person_chunk``), and a cohort step needs
only its months (:func:`cohort_window`); see :mod:`impact.twins.riskset`.

The pickles hold numpy arrays, polars frames and a fitted model written by this package in
the same secure data folder; they are read back only from there (never from outside input).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from impact.atomic import write_json
from impact.faults import checkpoint
from impact.twins.features import HISTORY, PanelArrays
from impact.twins.propensity import PropensityModel
from impact.twins.riskset import (
    CohortMatch,
    CohortOutput,
    Population,
    TwinSettings,
    TwinsResult,
    _month_number,
    cohort_key,
    cohort_output,
    cohorts_inputs,
    combine_cohorts,
    match_inputs,
    prepare_and_fit,
    prepare_cohorts,
    shift_month,
    write,
    write_pairs,
)

PLAN_FILE = "plan.pkl"
PLAN_SUMMARY = "plan.json"
COHORTS_DIR = "cohorts"


class PlanError(RuntimeError):
    """The plan is missing, stale, or does not cover a cohort; the message says what to run."""


@dataclass(frozen=True)
class TwinsPlan:
    """What every cohort's matching shares (see the module docstring).

    Attributes
    ----------
    settings
        The twin settings.
    cohorts, n_treated
        The cohort months (first days) and their eligible treated persons.
    first_month, last_month
        The panel months the plan was made from (36 months before the first cohort to the
        panel's last). Cohorts may be matched on any months that cover their own window
        (:func:`cohort_window`): nothing of the plan depends on the first loaded month.
    model
        The pooled propensity model (None unless ``distance="glm"`` and
        ``ps_scope="pooled"``).
    grid
        The KS grid: per numeric balance covariate, its sorted distinct treated values over
        all cohorts.
    treated_digest
        SHA-256 of the treated persons' features of every cohort: a correction of their past
        register months makes the plan stale (see :func:`plan_is_current`).
    fingerprint
        SHA-256 of all of the above (hex); a cohort output matched with this plan carries it.
    """

    settings: TwinSettings
    cohorts: tuple[date, ...]
    n_treated: tuple[int, ...]
    first_month: date
    last_month: date
    model: PropensityModel | None
    grid: dict[str, np.ndarray]
    treated_digest: str = ""
    fingerprint: str = ""

    @property
    def keys(self) -> list[str]:
        """The cohorts as ``YYYY-MM`` (the partition keys)."""
        return [cohort_key(c) for c in self.cohorts]

    def cohort(self, key: str) -> date:
        """The cohort month of a partition key; PlanError if the plan does not have it."""
        for c in self.cohorts:
            if cohort_key(c) == key:
                return c
        raise PlanError(
            f"cohort {key} is not in the twins plan (cohorts {', '.join(self.keys) or 'none'}); "
            "re-materialise twins_plan after the treatment table changed"
        )


def _digest(plan: TwinsPlan) -> str:
    h = hashlib.sha256()
    h.update(repr(sorted(dataclasses.asdict(plan.settings).items())).encode())
    h.update(repr((plan.cohorts, plan.n_treated, plan.first_month, plan.last_month,
                   plan.treated_digest)).encode())
    if plan.model is not None:
        m = plan.model
        h.update(repr((m.feature_names_, m.intercept_)).encode())
        h.update(np.ascontiguousarray(m.coef_, dtype=np.float64).tobytes())
    for name in sorted(plan.grid):
        h.update(name.encode())
        h.update(np.ascontiguousarray(plan.grid[name], dtype=np.float64).tobytes())
    return h.hexdigest()


def _treated_digest(treated: dict[date, pl.DataFrame], first: date) -> str:
    """Hash of the treated persons' features by cohort (its month index from ``first``, the
    plan's first month: the digest of plans made before cohorts were dates)."""
    h = hashlib.sha256()
    for c in sorted(treated):
        h.update(str(_month_number(c) - _month_number(first)).encode())
        for s in treated[c].get_columns():
            h.update(s.name.encode())
            h.update(s.hash(seed=0).to_numpy().tobytes())
    return h.hexdigest()


def _population(source: PanelArrays | Population) -> Population:
    return source if isinstance(source, Population) else Population.of(source)


def plan_window(first_cohort: date) -> date:
    """The first panel month a plan needs: 36 months before the first cohort month."""
    return shift_month(first_cohort, -HISTORY)


def make_plan(source: PanelArrays | Population, s: TwinSettings) -> TwinsPlan:
    """The plan of every cohort month of the arrays or population ``source`` (treated
    features, KS grid, model); the same for every person chunking of a population."""
    pop = _population(source)
    cohorts = pop.cohort_months()
    treated, grid, model = prepare_and_fit(pop, s, cohorts)
    digest = _treated_digest(treated, pop.first)
    plan = TwinsPlan(
        settings=s,
        cohorts=tuple(cohorts),
        n_treated=tuple(int(treated[c].height) for c in cohorts),
        first_month=pop.first,
        last_month=pop.last,
        model=model,
        grid=grid,
        treated_digest=digest,
    )
    return dataclasses.replace(plan, fingerprint=_digest(plan))


def plan_is_current(plan: TwinsPlan, source: PanelArrays | Population,
                    s: TwinSettings) -> bool:
    """The stored ``plan`` still holds for this panel and these settings.

    Same settings, same first panel month, same cohorts, and the same features of every
    cohort's treated persons (so a register correction of their history, or a person
    added to or removed from a cohort, makes a new plan). A correction that touches only
    candidates' history is not detected here; re-materialise the plan after such a
    delivery (``impact run --select evaluation`` with ``--rematch``).
    """
    pop = _population(source)
    if plan.settings != s or plan.first_month != pop.first:
        return False
    cohorts = pop.cohort_months()
    if plan.cohorts != tuple(cohorts):
        return False
    treated, _ = prepare_cohorts(pop, s, cohorts)
    return plan.treated_digest == _treated_digest(treated, pop.first)


def update_plan(source: PanelArrays | Population, s: TwinSettings, out: Path, *,
                force: bool = False) -> tuple[TwinsPlan, bool]:
    """The stored plan if :func:`plan_is_current` (and not ``force``), else a new one
    (written to ``out``). Returns the plan and whether it was made anew.
    """
    path = out / PLAN_FILE
    if path.exists() and not force:
        old = read_plan(out)
        if plan_is_current(old, source, s):
            if not (out / PLAN_SUMMARY).exists():
                _write_summary(old, out)
            return old, False
    plan = make_plan(source, s)
    write_plan(plan, out)
    return plan, True


def _write_pickle(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    checkpoint(path)
    tmp.replace(path)


def write_plan(plan: TwinsPlan, out: Path) -> None:
    """A readable ``out/plan.json`` (cohorts, counts, model, digest), then ``out/plan.pkl``
    (written last: a plan is there only once both are)."""
    _write_summary(plan, out)
    _write_pickle(plan, out / PLAN_FILE)


def _write_summary(plan: TwinsPlan, out: Path) -> None:
    model = None
    if plan.model is not None:
        model = {"intercept": plan.model.intercept_,
                 "coefficients": dict(zip(plan.model.feature_names_,
                                          map(float, plan.model.coef_), strict=True)),
                 "aliased": plan.model.aliased_}
    write_json({
        "fingerprint": plan.fingerprint,
        "cohorts": dict(zip(plan.keys, plan.n_treated, strict=True)),
        "panel_months": [plan.first_month, plan.last_month],
        "settings": dataclasses.asdict(plan.settings),
        "propensity_model": model,
    }, out / PLAN_SUMMARY)


def read_plan(out: Path) -> TwinsPlan:
    """The plan stored under ``out``; PlanError naming the step to run if there is none."""
    path = out / PLAN_FILE
    if not path.exists():
        raise PlanError(f"no twins plan at {path}: materialise twins_plan first")
    with path.open("rb") as f:
        plan = pickle.load(f)  # written by write_plan in this data folder
    if not isinstance(plan, TwinsPlan):
        raise PlanError(f"{path} does not hold a twins plan")
    return plan


def match_planned(source: PanelArrays | Population, plan: TwinsPlan,
                  cohort: date) -> CohortOutput:
    """Match one cohort of ``plan`` (with its pre-period trajectories)."""
    return match_planned_cohorts(source, plan, [cohort])[0]


def cohort_window(cohorts: list[date]) -> tuple[date, date]:
    """The panel months that matching ``cohorts`` needs: 36 months before the first to the
    last (features, risk sets and pre-period trajectories read nothing else)."""
    return plan_window(min(cohorts)), max(cohorts)


def match_planned_cohorts(source: PanelArrays | Population, plan: TwinsPlan,
                          cohorts: list[date]) -> list[CohortOutput]:
    """Match the ``cohorts`` of ``plan`` (with their pre-period trajectories), in order.

    ``source`` holds every person over (at least) :func:`cohort_window` of the cohorts, from
    any first month: the plan's model, grid and seeds do not depend on it, so the result is
    the same as with arrays loaded from the plan's first month (tested). With a chunked
    :class:`~impact.twins.riskset.Population` the cohorts' features are built one chunk of
    persons at a time, in one pass over the chunks (months 36 before the first cohort to the
    last) whose features are spilled to a temporary folder and read back one cohort at a
    time (:func:`~impact.twins.riskset.cohorts_inputs`); the treated persons' and twins'
    arrays (codes, pre-period paths) are then loaded once for all the cohorts.
    """
    for c in cohorts:
        if c not in plan.cohorts:
            plan.cohort(cohort_key(c))  # raises PlanError with the cohorts it has
    if not cohorts:
        return []
    pop = _population(source)
    s = plan.settings
    pop.prefetch(cohorts, s.pool)
    done: list[CohortMatch] = []
    with tempfile.TemporaryDirectory(prefix="twins-chunks-") as tmp:
        # chunked, several cohorts: one pass over the chunks, each cohort's features spilled
        spill = Path(tmp) if pop.chunk is not None and len(cohorts) > 1 else None
        for inputs in cohorts_inputs(pop, cohorts, s, spill=spill):
            done.append(match_inputs(inputs, s, plan.model, grid=plan.grid,
                                     employers=pop.employers))
            del inputs
    first, last = cohort_window(cohorts)
    units = pop.units(np.concatenate([m.frame["pid"].to_numpy() for m in done]), first, last)
    return [cohort_output(units, m, s.pool, pre=True) for m in done]


def _cohort_path(out: Path, cohort: date) -> Path:
    return out / COHORTS_DIR / f"{cohort_key(cohort)}.pkl"


def write_cohort(output: CohortOutput, plan: TwinsPlan, out: Path) -> None:
    """Write one cohort's pairs (for the later stages) and its output (for the combination)."""
    write_pairs(output.pairs, output.cohort, out)
    _write_pickle((plan.fingerprint, output), _cohort_path(out, output.cohort))


def _stored_fingerprint(path: Path) -> str | None:
    if not path.exists():
        return None
    with path.open("rb") as f:
        fingerprint, _ = pickle.load(f)  # written by write_cohort in this folder
    return fingerprint


def combined_plan(out: Path) -> str | None:
    """The fingerprint of the plan whose cohorts were last combined under ``out`` (None if
    the twins there were not combined from a plan)."""
    import json

    path = out / "settings.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("plan")


def cohorts_to_match(plan: TwinsPlan, out: Path) -> list[str]:
    """Partition keys of the plan's cohorts not yet matched with this plan (missing or
    matched with an earlier one), in date order."""
    return [cohort_key(c) for c in plan.cohorts
            if _stored_fingerprint(_cohort_path(out, c)) != plan.fingerprint]


def read_cohorts(plan: TwinsPlan, out: Path) -> list[CohortOutput]:
    """Every cohort output of ``plan``; PlanError naming missing or stale cohorts."""
    outputs, missing, stale = [], [], []
    for c in plan.cohorts:
        path = _cohort_path(out, c)
        if not path.exists():
            missing.append(cohort_key(c))
            continue
        with path.open("rb") as f:
            fingerprint, output = pickle.load(f)  # written by write_cohort in this folder
        if fingerprint != plan.fingerprint:
            stale.append(cohort_key(c))
        outputs.append(output)
    problems = []
    if missing:
        problems.append(f"cohorts not matched yet: {', '.join(missing)}")
    if stale:
        problems.append(f"cohorts matched with an earlier plan: {', '.join(stale)}")
    if problems:
        raise PlanError("; ".join(problems) + ": materialise twins_cohort for these partitions")
    return outputs


def combine_planned(plan: TwinsPlan, out: Path) -> TwinsResult:
    """Combine the cohorts of ``plan`` (gate per cohort group and pooled) and write the
    twins tables under ``out`` (the cohorts' pairs stay as they were written)."""
    result = combine_cohorts(read_cohorts(plan, out), plan.settings, model=plan.model)
    write(result, out, pairs=False, meta={"plan": plan.fingerprint})
    keep = {f"{k}.pkl" for k in plan.keys}
    for p in (out / COHORTS_DIR).glob("*.pkl"):
        if p.name not in keep:
            p.unlink()
    return result


def align_pairs(pairs: pl.DataFrame, person_code: np.ndarray | pl.Series) -> pl.DataFrame:
    """``pairs`` with ``treated_pid``/``twin_pid`` re-derived from the pseudonymous codes.

    ``person_code[pid]`` is the code of ``pid`` in the panel at hand (e.g.
    :attr:`PanelArrays.person_code`). A person's ``pid`` is their row in the population
    register sorted by code, which a later delivery (new residents) can shift; the codes do
    not change. Twins matched on an earlier panel are thereby valid on a newer one. Raises
    ValueError if a person of the pairs is not in the panel (no code is printed).
    """
    if pairs.height == 0:
        return pairs
    codes = pl.Series("code", np.asarray(person_code).astype(str))
    lut = pl.DataFrame({"code": codes, "pid": np.arange(codes.len(), dtype=np.int64)})
    out = pairs
    for side in ("treated", "twin"):
        out = out.join(lut.rename({"code": f"{side}_code", "pid": f"__{side}_pid"}),
                       on=f"{side}_code", how="left", maintain_order="left")
        missing = out.filter(pl.col(f"__{side}_pid").is_null())
        if missing.height:
            raise ValueError(
                f"{missing.height} {side} persons of the twins are not in the panel (first "
                f"cohort {missing['cohort'][0]}): re-run the twins on this panel")
        out = out.with_columns(pl.col(f"__{side}_pid").cast(pairs.schema[f"{side}_pid"])
                               .alias(f"{side}_pid")).drop(f"__{side}_pid")
    return out
