"""The estimates stage on the persons it needs (participants, twins, a sample) only.

:func:`impact.evaluate.load_estimation_arrays` loads a subset of the panel
(:meth:`PanelArrays.load` with ``pids``); every estimate must equal that of the whole-panel
arrays, except the naive comparison (its candidate means are over the sample), which must
equal it too when the sample is everyone.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from impact import evaluate
from impact.indicators import read_pairs
from impact.twins.features import PanelArrays, categorical_codes, features_at
from impact.twins.riskset import TwinSettings, risk_set

REPS = 99
SEED = 3
SAMPLE = 1_000  # of the 4,000 persons of the research fixture
TABLES = ("event_study", "staggered_dynamic", "comparison", "subgroups", "sector_benchmark")


@pytest.fixture(scope="module")
def runs(research, tmp_path_factory):
    """Twins on the whole panel; estimates on the whole panel and on the subset."""
    out = tmp_path_factory.mktemp("estimation_arrays")
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    full = evaluate.load_arrays(research.root / "panel", tr)
    evaluate.run_twins(full, TwinSettings(gate_min_treated=10), out / "twins")
    pairs = read_pairs(out / "twins")
    sources = research.root / "sources"
    evaluate.run_estimates(full, pairs, tr, sources, out / "full", reps=REPS, seed=SEED)
    sub, sub_pairs = evaluate.load_estimation_arrays(research.root / "panel", tr, pairs,
                                                     naive_sample=SAMPLE, seed=SEED)
    evaluate.run_estimates(sub, sub_pairs, tr, sources, out / "subset", reps=REPS, seed=SEED)
    return out, tr, full, pairs, sub, sub_pairs


def _assert_frames_equal(a: pl.DataFrame, b: pl.DataFrame, skip: tuple[str, ...] = ()) -> None:
    assert a.columns == b.columns and a.height == b.height
    for c in a.columns:
        if any(s in c for s in skip):
            continue
        if a[c].dtype.is_float():
            x, y = a[c].to_numpy(), b[c].to_numpy()
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=c)
            np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=1e-9, atol=1e-9,
                                       err_msg=c)
        else:
            assert a[c].equals(b[c]), c


def _drop_naive(x):
    """A JSON value without its naive comparison entries and timings."""
    if isinstance(x, dict):
        return {k: _drop_naive(v) for k, v in x.items()
                if "naive" not in k and not k.startswith("seconds")}
    if isinstance(x, list):
        return [_drop_naive(v) for v in x]
    return x


def _assert_json_close(a, b, where: str) -> None:
    """Equal JSON values, numbers to 1e-9."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_json_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_json_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9, nan_ok=True), where
    else:
        assert a == b, where


def test_subset_holds_the_matched_persons_and_the_sample(runs, research) -> None:
    _, _, full, pairs, sub, sub_pairs = runs
    matched = np.union1d(pairs["treated_pid"].to_numpy(), pairs["twin_pid"].to_numpy())
    assert sub.source_pid is not None and full.source_pid is None
    assert int(sub.population_sample.sum()) == SAMPLE
    assert sub.n_persons == np.union1d(matched, sub.source_pid[sub.population_sample]).size
    assert matched.size + SAMPLE >= sub.n_persons > max(matched.size, SAMPLE)
    assert sub.n_persons < full.n_persons
    for a in (*sub.series.values(), *sub.codes.values()):
        assert a.shape == (sub.n_persons, len(full.months))
    assert sub.months == full.months
    # the rows are the persons' panel rows, in pid order; the pairs point at them
    rows = sub.source_pid
    np.testing.assert_array_equal(sub.person_code, full.person_code[rows])
    np.testing.assert_array_equal(sub.first_start, full.first_start[rows])
    for k in full.series:
        np.testing.assert_array_equal(sub.series[k], full.series[k][rows], err_msg=k)
    for k in full.codes:  # codes into each object's own levels
        lv_s, lv_f = np.array([*sub.levels[k], ""]), np.array([*full.levels[k], ""])
        np.testing.assert_array_equal(lv_s[sub.codes[k]], lv_f[full.codes[k][rows]], err_msg=k)
    np.testing.assert_array_equal(sub.source_pid[sub_pairs["treated_pid"].to_numpy()],
                                  pairs["treated_pid"].to_numpy())
    np.testing.assert_array_equal(sub.source_pid[sub_pairs["twin_pid"].to_numpy()],
                                  pairs["twin_pid"].to_numpy())
    np.testing.assert_array_equal(sub.rows(pairs["twin_pid"].to_numpy()),
                                  sub_pairs["twin_pid"].to_numpy())
    with pytest.raises(KeyError):
        sub.rows(np.setdiff1d(np.arange(full.n_persons), sub.source_pid)[:1])


def test_features_risk_set_and_sector_wage_work_on_the_subset(runs) -> None:
    from impact.outcomes import sector_daily_wage_table

    _, _, full, pairs, sub, _ = runs
    cohort = full.month_index(pairs["cohort"].min())
    f_full = features_at(full, cohort, sub.source_pid)
    f_sub = features_at(sub, cohort, np.arange(sub.n_persons))
    for c in f_full.columns:
        if c == "pid":
            continue
        assert f_full[c].cast(pl.Utf8).equals(f_sub[c].cast(pl.Utf8)), c
    names = ["sex", "nace_section", "isco_major"]
    a = categorical_codes(full, cohort, sub.source_pid, names)
    b = categorical_codes(sub, cohort, np.arange(sub.n_persons), names)
    for k in names:
        np.testing.assert_array_equal(np.array(a[k][0])[a[k][1]], np.array(b[k][0])[b[k][1]])
    t_full, c_full, _ = risk_set(full, cohort, "not_yet_treated")
    t_sub, c_sub, _ = risk_set(sub, cohort, "not_yet_treated")
    np.testing.assert_array_equal(sub.source_pid[t_sub], np.intersect1d(t_full, sub.source_pid))
    assert np.isin(pairs.filter(pl.col("cohort") == pairs["cohort"].min())["treated_pid"],
                   sub.source_pid[t_sub]).all()
    np.testing.assert_array_equal(sub.source_pid[c_sub], np.intersect1d(c_full, sub.source_pid))
    # the sector wage table is the whole panel's (bit for bit), by section name
    w_full, w_sub = sector_daily_wage_table(full), sector_daily_wage_table(sub)
    pos = np.searchsorted(full.levels["nace_section"], sub.levels["nace_section"])
    np.testing.assert_array_equal(w_sub, w_full[pos])
    assert sector_daily_wage_table(sub) is w_sub  # cached


def test_estimates_on_the_subset_equal_the_whole_panel_ones(runs) -> None:
    out, _, _, _, _, _ = runs
    for name in TABLES:
        a = pl.read_parquet(out / "full" / f"{name}.parquet")
        b = pl.read_parquet(out / "subset" / f"{name}.parquet")
        _assert_frames_equal(a, b, skip=("naive",))
    for name in ("refutation", "headline", "pretrend"):
        a = json.loads((out / "full" / f"{name}.json").read_text())
        b = json.loads((out / "subset" / f"{name}.json").read_text())
        _assert_json_close(_drop_naive(a), _drop_naive(b), name)
    es = pl.read_parquet(out / "subset" / "event_study.parquet")
    naive = es.filter(pl.col("outcome") == "earnings_real")["att_naive"].to_numpy()
    assert np.isfinite(naive).any(), "the sample gave no naive comparison"


def test_naive_comparison_equals_when_the_sample_is_everyone(runs, research) -> None:
    """A subset object holding every person, all of them sampled, gives the whole-panel
    naive comparison; the loader returns the whole-panel arrays for such a sample."""
    from dataclasses import replace

    from impact.estimate.matched_did import matched_event_study
    from impact.outcomes import build_trajectories
    from impact.twins.plan import align_pairs

    _, tr, full, pairs, _, _ = runs
    loaded, _ = evaluate.load_estimation_arrays(
        research.root / "panel", tr, pairs, naive_sample=10 * full.n_persons, seed=SEED)
    assert loaded.source_pid is None and loaded.n_persons == full.n_persons
    every = PanelArrays.load(research.root / "panel", first=full.months[0],
                             pids=np.arange(full.n_persons))
    every = replace(every, population_sample=np.ones(every.n_persons, bool))
    every_pairs = align_pairs(pairs, every.person_code)
    assert every.source_pid is not None and every.n_persons == full.n_persons
    for clock in ("start", "end"):
        res = [matched_event_study(build_trajectories(a, p, tr, outcomes=["earnings_real"]),
                                   "earnings_real", clock, reps=REPS, seed=SEED, arrays=a)
               for a, p in ((full, pairs), (every, every_pairs))]
        _assert_frames_equal(res[0].table(), res[1].table())
        assert np.isfinite(res[1].table()["att_naive"].to_numpy()).any()


def test_subset_load_checks_its_pids(research) -> None:
    with pytest.raises(ValueError, match="sorted, unique"):
        PanelArrays.load(research.root / "panel", pids=np.array([5, 3]))
    with pytest.raises(ValueError, match="naive_sample"):
        evaluate.load_estimation_arrays(research.root / "panel", pl.DataFrame(
            {"cohort": [None]}), pl.DataFrame(), naive_sample=-1)


def test_moved_pids_are_found_by_their_codes(runs, research) -> None:
    """Twins matched on an earlier panel (other pids, same codes) load the same persons."""
    _, tr, _, pairs, sub, sub_pairs = runs
    moved = pairs.with_columns((pl.col("treated_pid") + 1) % 4000, (pl.col("twin_pid") + 7) % 4000)
    again, again_pairs = evaluate.load_estimation_arrays(research.root / "panel", tr, moved,
                                                         naive_sample=SAMPLE, seed=SEED)
    np.testing.assert_array_equal(again.source_pid, sub.source_pid)
    assert again_pairs.equals(sub_pairs)
