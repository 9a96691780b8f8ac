"""Materialise assets in process, without the UI: the engine of `impact run` / `impact demo`.

`run()` returns a plain `RunReport` (no Dagster types) that the CLI prints. It uses the
instance of ``$DAGSTER_HOME`` when that is set (the run then shows in the UI's history),
else an ephemeral in-memory instance. Steps execute in this process one after another; a
failed source stops only the assets downstream of it.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dagster as dg

from pipelines.assets.evaluation import (
    COHORTS,
    EVALUATION_ASSETS,
    OUTCOMES_COHORT_KEY,
    TWINS_COHORT_KEY,
    TWINS_PLAN_KEY,
)
from pipelines.assets.evaluation import GROUP as EVALUATION_GROUP
from pipelines.assets.landing import LANDING_KEY, landing
from pipelines.assets.publication import GROUP as PUBLICATION_GROUP
from pipelines.assets.publication import PUBLICATION_ASSETS
from pipelines.assets.research import GROUP as RESEARCH_GROUP
from pipelines.assets.research import RESEARCH_ASSETS
from pipelines.assets.sources import GROUP, SOURCE_ASSETS, SOURCE_TABLES, source_key
from pipelines.automation import RANGE_END, RANGE_START, contiguous_ranges
from pipelines.resources import ImpactConfig

ALL_ASSETS: list[dg.AssetsDefinition] = [landing, *SOURCE_ASSETS, *RESEARCH_ASSETS,
                                          *EVALUATION_ASSETS, *PUBLICATION_ASSETS]
#: Words --select understands besides table names.
KEYWORDS = ("all", "sources", "landing", "research", "evaluation", "publication")

#: Assets after the sources, selectable by name (``twins``, ``panel`` ...).
ASSET_NAMES = tuple(k.to_user_string() for a in [*RESEARCH_ASSETS, *EVALUATION_ASSETS,
                                                  *PUBLICATION_ASSETS] for k in a.keys)

Status = Literal["ok", "failed", "not run"]


@dataclass
class AssetOutcome:
    """What happened to one selected asset in a run."""

    key: str  # "landing" or "sources/<table>"
    status: Status
    metadata: dict[str, Any] = field(default_factory=dict)  # plain values of the metadata
    message: str | None = None  # failure description, or why the asset did not run
    check_passed: bool | None = None  # the blocking check (`contract` of the sources)
    warnings: list[str] = field(default_factory=list)  # failed non-blocking checks

    @property
    def name(self) -> str:
        """The table name for a source asset, else the key."""
        return self.key.removeprefix(f"{GROUP}/")


@dataclass
class RunReport:
    """The outcome of one in-process run."""

    run_id: str
    success: bool
    outcomes: list[AssetOutcome]
    seconds: float
    instance: str  # "ephemeral" or the DAGSTER_HOME folder
    run_ids: list[str] = field(default_factory=list)  # every Dagster run, in order

    @property
    def failed(self) -> list[AssetOutcome]:
        return [o for o in self.outcomes if o.status != "ok"]


def resolve_selection(select: Sequence[str]) -> list[dg.AssetKey]:
    """Asset keys for ``--select`` values (comma-separated or repeated).

    ``all`` (every asset), ``sources`` (every source table), ``research`` (the panel and the
    episode tables; the sources must have been ingested before), ``evaluation`` (twins and
    estimates; needs the research tables), ``publication`` (indicators, disclosure control
    and the release files; needs the twins and estimates), ``landing``, an asset after
    the sources by name (``panel``, ``twins_plan``, ``twins_cohort``, ``twins`` ...), a table
    name (``employers`` or ``sources/employers``: that table only; the source tables it
    depends on must have been ingested before), ``+TABLE`` (the table and the source tables
    it depends on, transitively; not the landing).

    Raises
    ------
    ValueError
        An unknown name; the message lists close matches and the valid words.
    """
    tokens = [t.strip() for s in select for t in s.split(",") if t.strip()] or ["sources"]
    selection = dg.AssetSelection.assets()  # empty
    for token in tokens:
        upstream = token.startswith("+")
        name = token.removeprefix("+").removeprefix(f"{GROUP}/")
        if name == "all" and not upstream:
            selection |= dg.AssetSelection.all()
        elif name == "sources" and not upstream:
            selection |= dg.AssetSelection.groups(GROUP)
        elif name == "landing" and not upstream:
            selection |= dg.AssetSelection.assets(LANDING_KEY)
        elif name == "research" and not upstream:
            selection |= dg.AssetSelection.groups(RESEARCH_GROUP)
        elif name == "evaluation" and not upstream:
            selection |= dg.AssetSelection.groups(EVALUATION_GROUP)
        elif name == "publication" and not upstream:
            selection |= dg.AssetSelection.groups(PUBLICATION_GROUP)
        elif name in ASSET_NAMES and not upstream:
            selection |= dg.AssetSelection.assets(dg.AssetKey([name]))
        elif name in SOURCE_TABLES:
            one = dg.AssetSelection.assets(source_key(name))
            selection |= (
                (one.upstream() - dg.AssetSelection.assets(LANDING_KEY)) if upstream else one
            )
        else:
            close = difflib.get_close_matches(name, [*KEYWORDS, *ASSET_NAMES, *SOURCE_TABLES],
                                              n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown selection {token!r}.{hint} Use one of {', '.join(KEYWORDS)}, an "
                f"asset ({', '.join(ASSET_NAMES)}) or a source table name (+TABLE adds its "
                f"upstream tables): {', '.join(SOURCE_TABLES)}"
            )
    keys = selection.resolve(ALL_ASSETS)
    order = [k for a in ALL_ASSETS for k in a.keys]  # landing, sources (dependency order),
    # research
    return [k for k in order if k in keys]


@contextmanager
def _instance() -> Iterator[tuple[dg.DagsterInstance, str]]:
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance, os.environ["DAGSTER_HOME"]
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance, "ephemeral"


#: The assets partitioned by cohort month (run together, one run per range of cohorts).
COHORT_KEYS = (TWINS_COHORT_KEY, OUTCOMES_COHORT_KEY)


def _segments(keys: list[dg.AssetKey]) -> tuple[list[dg.AssetKey], list[dg.AssetKey],
                                                  list[dg.AssetKey]]:
    """The selected keys before the cohort partitions, the partitioned assets, the rest.

    ``keys`` are in dependency order; an unpartitioned asset between two partitioned ones
    (``twins``, which needs only ``twins_cohort``) runs after both.
    """
    cohort = [k for k in keys if k in COHORT_KEYS]
    if not cohort:
        return keys, [], []
    i = keys.index(cohort[0])
    return keys[:i], cohort, [k for k in keys[i:] if k not in COHORT_KEYS]


def cohort_ranges(instance: dg.DagsterInstance, resource: ImpactConfig) -> list[tuple[str, str]]:
    """Ranges of the cohort partitions still to match with the stored plan."""
    from impact.twins.plan import cohorts_to_match, read_plan

    cfg = resource.load()
    todo = cohorts_to_match(read_plan(cfg.data.twins), cfg.data.twins)
    return contiguous_ranges(instance.get_dynamic_partitions(COHORTS.name), todo)


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def run(
    config_path: Path | str,
    select: Sequence[str] = ("sources",),
    *,
    data_root: Path | str | None = None,
    log_level: str = "WARNING",
    rematch: bool = False,
    full_ingest: bool = False,
) -> RunReport:
    """Materialise the selected assets in this process and report each one.

    Parameters
    ----------
    config_path
        The evaluation config (``configs/*.yaml``).
    select
        ``--select`` values (see :func:`resolve_selection`).
    data_root
        Replaces the config's ``data.root`` (``impact demo --out``).
    log_level
        Level of Dagster's console log (stderr).
    rematch
        Make a new twins plan even if the stored one is current (every cohort is matched
        again).
    full_ingest
        Validate every group of files of the selected source tables again instead of
        reusing the ingest cache (same output; see :mod:`impact.ingest`).

    Assets run in up to three kinds of Dagster run, in order: the unpartitioned assets up
    to ``twins_plan``; ``twins_cohort`` over the cohorts not yet matched with the current
    plan (one run per contiguous range of them; none when all are current); the rest. A
    failed run stops the later ones (their assets are reported as not run).
    """
    keys = resolve_selection(select)
    resource = ImpactConfig(
        path=str(config_path), data_root=str(data_root) if data_root is not None else None
    )
    loggers = {"console": {"config": {"log_level": log_level}}}

    def run_config(selection: list[dg.AssetKey]) -> dict[str, Any]:
        """Loggers, and op config for the selected ops that take one."""
        ops: dict[str, Any] = {}
        if rematch and TWINS_PLAN_KEY in selection:
            ops["twins_plan"] = {"config": {"rematch": True}}
        if full_ingest:
            ops |= {a.op.name: {"config": {"full_ingest": True}} for a in SOURCE_ASSETS
                    if a.key in selection}
        return {"loggers": loggers, **({"ops": ops} if ops else {})}

    t0 = time.perf_counter()
    events: list[Any] = []
    run_ids: list[str] = []
    success = True
    cohorts_current = False
    with _instance() as (instance, where):

        def go(selection: list[dg.AssetKey], tags: dict[str, str] | None = None) -> bool:
            result = dg.materialize(
                ALL_ASSETS,
                selection=selection,
                resources={"impact_config": resource},
                instance=instance,
                raise_on_error=False,
                run_config=run_config(selection),
                tags={"impact/launched_by": "impact run", **(tags or {})},
            )
            events.extend(result.all_events)
            run_ids.append(result.run_id)
            return result.success

        before, partitioned, after = _segments(keys)
        if before:
            success = go(before)
        if partitioned and success:
            ranges = cohort_ranges(instance, resource)
            cohorts_current = not ranges
            for start, end in ranges:
                success = go(partitioned, {RANGE_START: start, RANGE_END: end})
                if not success:
                    break
        if after and success:
            success = go(after)
    seconds = time.perf_counter() - t0
    run_id = run_ids[0] if run_ids else ""

    # step key (the op's name) -> the selected assets it materialises
    step_of: dict[str, list[dg.AssetKey]] = {}
    for a in ALL_ASSETS:
        for k in a.keys:
            if k in keys:
                step_of.setdefault(a.op.name, []).append(k)
    outcomes = {k: AssetOutcome(key=k.to_user_string(), status="not run") for k in keys}
    cohorts_matched = 0
    for ev in events:
        if ev.event_type_value == "ASSET_MATERIALIZATION" and ev.asset_key == TWINS_COHORT_KEY:
            cohorts_matched += 1
        if ev.event_type_value == "ASSET_MATERIALIZATION" and ev.asset_key in outcomes:
            o = outcomes[ev.asset_key]
            o.status = "ok"
            o.metadata = _plain(ev.event_specific_data.materialization.metadata)
        elif ev.event_type_value == "ASSET_CHECK_EVALUATION":
            data = ev.event_specific_data
            if data.asset_key in outcomes:
                o = outcomes[data.asset_key]
                if not data.blocking:  # non-blocking diagnostics: reported, never fail a run
                    if not data.passed:
                        o.warnings.append(f"check {data.check_name}: {data.description}")
                    continue
                o.check_passed = data.passed
                if not data.passed:
                    o.metadata = o.metadata or _plain(data.metadata)
                    o.message = data.description
        elif ev.event_type_value == "STEP_FAILURE" and ev.step_key in step_of:
            for key in step_of[ev.step_key]:
                o = outcomes[key]
                o.status = "failed"
                failure = ev.step_failure_data
                user = failure.user_failure_data
                o.message = o.message or (
                    user.description if user and user.description else _root_cause(failure.error)
                )
                if user and user.metadata and not o.metadata:
                    o.metadata = _plain(user.metadata)
    if cohorts_current:
        for key, why in ((TWINS_COHORT_KEY, "every cohort already matched with the current "
                          "plan"),
                         (OUTCOMES_COHORT_KEY, "no cohort newly matched; estimates rebuild any "
                          "stale cohort trajectories")):
            if key in outcomes:
                outcomes[key].status, outcomes[key].message = "ok", why
    elif TWINS_COHORT_KEY in outcomes and outcomes[TWINS_COHORT_KEY].status == "ok":
        o = outcomes[TWINS_COHORT_KEY]
        o.metadata = {"cohorts_matched": cohorts_matched, **o.metadata}
    for k, o in outcomes.items():
        if o.status == "ok" and o.check_passed is False:  # defensive: never expected
            o.status = "failed"
        if o.status == "not run":
            deps = _upstream(k)
            blocked = [
                outcomes[d].name for d in deps if d in outcomes and outcomes[d].status != "ok"
            ]
            o.message = (
                f"not run: upstream {', '.join(blocked)} did not materialise"
                if blocked
                else "not run"
            )
    return RunReport(
        run_id=run_id,
        run_ids=run_ids,
        success=success and all(o.status == "ok" for o in outcomes.values()),
        outcomes=list(outcomes.values()),
        seconds=seconds,
        instance=where,
    )


def _root_cause(error: Any) -> str:
    """The innermost error of a step failure (Dagster wraps user code errors)."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _upstream(key: dg.AssetKey) -> list[dg.AssetKey]:
    for a in ALL_ASSETS:
        if key in a.keys:
            return sorted(a.asset_deps[key], key=lambda k: k.to_user_string())
    return []
