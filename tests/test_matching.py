"""Statistical-twin matching engine (impact.twins): rules, determinism, strata, caliper.

The engine's vectorised searches are checked against brute-force reference implementations
(Python loops over the all-pairs distances, fine on a few hundred units) that state the
matching rules literally: k nearest by (distance, tie key) within the caliper, with
replacement; and the sequential greedy rule (in order, each treated unit takes its nearest
available control) without replacement, in MatchIt's rounds for ratio > 1.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impact.twins import MatchOptions, PropensityModel, _nn, match, tie_order


def _frame(n: int = 600, seed: int = 0, share: float = 0.25) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    sex = rng.choice(["f", "m"], size=n)
    region = rng.choice(["riga", "kurzeme", "latgale"], size=n)
    lin = np.log(share / (1 - share)) + 0.9 * x1 - 0.6 * x2 + 0.4 * (sex == "f")
    d = rng.random(n) < 1 / (1 + np.exp(-lin))
    return pl.DataFrame(
        {
            "pid": rng.permutation(n) * 3 + 11,
            "d": d,
            "x1": x1,
            "x2": x2,
            "sex": sex,
            "region": region,
        }
    )


def _key_rank(df: pl.DataFrame, seed: int) -> dict:
    order = tie_order(df["pid"], seed)
    return {pid: r for r, pid in enumerate(df["pid"].gather(order).to_list())}


def _pairs_set(res) -> set[tuple]:
    return set(res.pairs.select("treated_id", "control_id").iter_rows())


# --------------------------------------------------------------------------- reference rules


def _reference_with_replacement(df, score, k, caliper, exact, seed):
    key = _key_rank(df, seed)
    rows = df.with_columns(pl.Series("s", score)).to_dicts()
    out = set()
    for t in (r for r in rows if r["d"]):
        cands = [
            (abs(t["s"] - c["s"]), key[c["pid"]], c["pid"])
            for c in rows
            if not c["d"] and all(c[e] == t[e] for e in exact)
        ]
        cands.sort()
        out |= {(t["pid"], pid) for dist, _, pid in cands[:k] if dist <= caliper}
    return out


def _reference_greedy(df, score, k, caliper, exact, seed, descending=True):
    key = _key_rank(df, seed)
    rows = df.with_columns(pl.Series("s", score)).to_dicts()
    treated = sorted(
        (r for r in rows if r["d"]),
        key=lambda r: ((-r["s"] if descending else r["s"]), key[r["pid"]]),
    )
    used: set = set()
    out = set()
    active = treated
    for _ in range(k):
        nxt = []
        for t in active:
            cands = [
                (abs(t["s"] - c["s"]), key[c["pid"]], c["pid"])
                for c in rows
                if not c["d"] and c["pid"] not in used and all(c[e] == t[e] for e in exact)
            ]
            if not cands:
                continue
            dist, _, pid = min(cands)
            if dist <= caliper:
                used.add(pid)
                out.add((t["pid"], pid))
                nxt.append(t)
        active = nxt
    return out


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("exact", [[], ["region"]])
@pytest.mark.parametrize("decimals", [1, 2, 12])
def test_with_replacement_equals_brute_force(k: int, exact: list[str], decimals: int) -> None:
    df = _frame(400, seed=1)
    # a coarse score creates many exact ties: the tie key must decide them like the reference
    score = np.round(np.random.default_rng(2).normal(size=df.height), decimals)
    df = df.with_columns(pl.Series("ps", score))
    opts = MatchOptions(
        ps_model="precomputed",
        ratio=k,
        caliper=0.05,
        std_caliper=False,
        exact=exact or None,
        seed=7,
    )
    res = match(df, treatment="d", id="pid", score="ps", options=opts)
    assert _pairs_set(res) == _reference_with_replacement(df, score, k, 0.05, exact, seed=7)
    assert res.pairs.height > 0


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("m_order", ["largest", "smallest"])
@pytest.mark.parametrize("stall", [0.0, 1.0], ids=["passes", "sequential"])
def test_greedy_without_replacement_equals_sequential_rule(
    k: int, m_order: str, stall: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # few controls per treated unit -> many collisions, the hard case for the batched greedy;
    # stall=0 forces the vectorised passes only, stall=1 hands over to the sequential step
    monkeypatch.setattr(_nn, "STALL_FRACTION", stall)
    df = _frame(300, seed=3, share=0.4)
    score = np.round(np.random.default_rng(4).normal(size=df.height), 2)
    df = df.with_columns(pl.Series("ps", score))
    opts = MatchOptions(
        ps_model="precomputed",
        ratio=k,
        caliper=0.1,
        std_caliper=False,
        replace=False,
        m_order=m_order,
        exact=["sex"],
        seed=3,
    )
    res = match(df, treatment="d", id="pid", score="ps", options=opts)
    expected = _reference_greedy(df, score, k, 0.1, ["sex"], 3, descending=m_order == "largest")
    assert _pairs_set(res) == expected
    assert res.pairs["control_id"].is_unique().all()


@pytest.mark.parametrize("stall", [0.0, 1.0], ids=["passes", "sequential"])
def test_mahalanobis_greedy_equals_sequential_rule(
    stall: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_nn, "STALL_FRACTION", stall)
    df = _frame(200, seed=24, share=0.4)
    res = match(
        df,
        treatment="d",
        id="pid",
        features=["x1", "x2"],
        options=MatchOptions(distance="mahalanobis", ratio=2, replace=False, caliper=0.5),
    )
    x = df.select("x1", "x2").to_numpy()
    d = df["d"].to_numpy()
    pooled = (np.cov(x[d].T) * (d.sum() - 1) + np.cov(x[~d].T) * ((~d).sum() - 1)) / (len(d) - 2)
    inv = np.linalg.inv(pooled)
    key = _key_rank(df, 0)
    pid = df["pid"].to_list()
    treated = sorted((i for i in range(df.height) if d[i]), key=lambda i: key[pid[i]])
    used: set[int] = set()
    expected = set()
    active = treated
    for _ in range(2):
        nxt = []
        for i in active:
            free = [j for j in range(df.height) if not d[j] and j not in used]
            if not free:
                continue
            dist = [float(np.sqrt((x[i] - x[j]) @ inv @ (x[i] - x[j]))) for j in free]
            best = min(zip(dist, free, strict=True))
            if best[0] <= 0.5:
                used.add(best[1])
                expected.add((pid[i], pid[best[1]]))
                nxt.append(i)
        active = nxt
    assert _pairs_set(res) == expected


def test_mahalanobis_with_replacement_equals_brute_force() -> None:
    df = _frame(300, seed=5)
    res = match(
        df,
        treatment="d",
        id="pid",
        features=["x1", "x2"],
        options=MatchOptions(distance="mahalanobis", ratio=2, caliper=0.3),
    )
    x = df.select("x1", "x2").to_numpy()
    d = df["d"].to_numpy()
    pooled = (np.cov(x[d].T) * (d.sum() - 1) + np.cov(x[~d].T) * ((~d).sum() - 1)) / (len(d) - 2)
    inv = np.linalg.inv(pooled)
    diff = x[d][:, None, :] - x[~d][None, :, :]
    dist = np.sqrt(np.einsum("tci,ij,tcj->tc", diff, inv, diff))
    expected = set()
    pid = df["pid"].to_numpy()
    for i, row in enumerate(dist):
        for j in np.argsort(row, kind="stable")[:2]:
            if row[j] <= 0.3:
                expected.add((pid[d][i], pid[~d][j]))
    assert _pairs_set(res) == expected
    pos_t = {p: i for i, p in enumerate(pid[d])}
    pos_c = {p: j for j, p in enumerate(pid[~d])}
    brute = [
        dist[pos_t[t], pos_c[c]]
        for t, c in res.pairs.select("treated_id", "control_id").iter_rows()
    ]
    np.testing.assert_allclose(res.pairs["distance"].to_numpy(), brute, rtol=1e-9)
    assert (res.pairs["distance"] <= 0.3).all()


def test_mahalanobis_greedy_never_reuses_and_is_order_free() -> None:
    df = _frame(500, seed=6, share=0.3)
    opts = MatchOptions(
        distance="mahalanobis", ratio=2, replace=False, caliper=None, exact=["region"]
    )
    a = match(df, treatment="d", id="pid", features=["x1", "x2", "sex"], options=opts)
    b = match(
        df.sample(fraction=1.0, shuffle=True, seed=1),
        treatment="d",
        id="pid",
        features=["x1", "x2", "sex"],
        options=opts,
    )
    assert a.pairs["control_id"].is_unique().all()
    assert a.pairs.equals(b.pairs)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("replace", [True, False])
def test_same_seed_same_twins_and_row_order_does_not_matter(replace: bool) -> None:
    df = _frame(800, seed=8)
    opts = MatchOptions(ratio=3, replace=replace, exact=["sex"], seed=11)
    feats = ["x1", "x2", "region"]
    a = match(df, treatment="d", id="pid", features=feats, options=opts)
    b = match(df, treatment="d", id="pid", features=feats, options=opts)
    c = match(
        df.sample(fraction=1.0, shuffle=True, seed=2),
        treatment="d",
        id="pid",
        features=feats,
        options=opts,
    )
    assert a.pairs.equals(b.pairs)
    assert a.pairs.equals(c.pairs)
    assert a.unmatched.equals(c.unmatched)
    assert a.units.equals(c.units)


def test_seed_only_changes_the_choice_among_equidistant_controls() -> None:
    df = _frame(500, seed=9)
    df = df.with_columns(pl.Series("ps", np.round(df["x1"].to_numpy(), 0)))  # massive ties
    res = {
        seed: match(
            df,
            treatment="d",
            id="pid",
            score="ps",
            options=MatchOptions(ps_model="precomputed", ratio=2, seed=seed),
        )
        for seed in (1, 2)
    }
    assert _pairs_set(res[1]) != _pairs_set(res[2])
    dist = {s: r.pairs.sort("treated_id", "rank")["distance"].to_numpy() for s, r in res.items()}
    np.testing.assert_array_equal(dist[1], dist[2])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), perm_seed=st.integers(0, 10_000), replace=st.booleans())
def test_property_row_order_never_changes_twins(seed: int, perm_seed: int, replace: bool) -> None:
    df = _frame(120, seed=seed)
    if df["d"].sum() in (0, df.height):
        return
    opts = MatchOptions(ratio=2, replace=replace, caliper=0.5, seed=seed)
    a = match(df, treatment="d", id="pid", features=["x1", "sex"], options=opts)
    b = match(
        df.sample(fraction=1.0, shuffle=True, seed=perm_seed),
        treatment="d",
        id="pid",
        features=["x1", "sex"],
        options=opts,
    )
    assert a.pairs.equals(b.pairs)


def test_string_ids_and_pandas_input() -> None:
    df = _frame(300, seed=10).with_columns(pl.format("p{}", pl.col("pid")).alias("pid"))
    opts = MatchOptions(ratio=2)
    a = match(df, treatment="d", id="pid", features=["x1", "x2"], options=opts)
    b = match(
        df.to_pandas().sample(frac=1.0, random_state=0),
        treatment="d",
        id="pid",
        features=["x1", "x2"],
        options=opts,
    )
    assert a.pairs.equals(b.pairs)


# --------------------------------------------------------------------------- rules


def test_twins_always_share_the_exact_stratum() -> None:
    df = _frame(1000, seed=12)
    res = match(
        df,
        treatment="d",
        id="pid",
        features=["x1", "x2"],
        options=MatchOptions(ratio=4, exact=["sex", "region"]),
    )
    keyed = df.select("pid", "sex", "region")
    joined = res.pairs.join(keyed.rename({"pid": "treated_id"}), on="treated_id").join(
        keyed.rename({"pid": "control_id"}), on="control_id", suffix="_c"
    )
    assert joined.height == res.pairs.height > 0
    assert (joined["sex"] == joined["sex_c"]).all()
    assert (joined["region"] == joined["region_c"]).all()
    assert res.strata.height == 6
    assert set(res.strata.columns) >= {"sex", "region", "n_treated", "n_matched", "n_unmatched"}


@pytest.mark.parametrize("replace", [True, False])
def test_caliper_is_respected_in_sd_of_the_logit(replace: bool) -> None:
    df = _frame(1000, seed=13)
    res = match(
        df,
        treatment="d",
        id="pid",
        features=["x1", "x2", "sex"],
        options=MatchOptions(ratio=5, caliper=0.05, replace=replace),
    )
    # recompute the logit independently: statsmodels-free, from the fitted coefficients
    logit = res.propensity.logit(df)
    sd = np.std(logit, ddof=1)
    assert res.caliper_distance == pytest.approx(0.05 * sd)
    s = dict(zip(df["pid"].to_list(), logit, strict=True))
    gap = np.abs(
        np.array([s[t] - s[c] for t, c in res.pairs.select("treated_id", "control_id").iter_rows()])
    )
    assert gap.max() <= 0.05 * sd + 1e-12
    np.testing.assert_allclose(
        np.sort(gap), np.sort(res.pairs["distance"].to_numpy()), rtol=1e-12, atol=1e-12
    )


def test_without_replacement_never_reuses_a_control() -> None:
    df = _frame(600, seed=14, share=0.35)
    res = match(
        df,
        treatment="d",
        id="pid",
        features=["x1", "x2"],
        options=MatchOptions(ratio=3, replace=False, caliper=None),
    )
    assert res.pairs["control_id"].is_unique().all()
    assert res.pairs.group_by("treated_id").len()["len"].max() <= 3
    # more treated x ratio than controls: the last rounds run out, never silently
    assert res.n_matched + res.n_unmatched == res.n_treated


def test_weights_are_att_weights() -> None:
    df = _frame(500, seed=15)
    res = match(
        df,
        treatment="d",
        id="pid",
        features=["x1", "x2"],
        options=MatchOptions(ratio=3, caliper=0.1),
    )
    per_t = res.pairs.group_by("treated_id").agg(pl.col("weight").sum(), pl.len())
    np.testing.assert_allclose(per_t["weight"].to_numpy(), 1.0)
    assert (
        res.pairs["weight"]
        == 1 / res.pairs.join(per_t.select("treated_id", "len"), on="treated_id")["len"]
    ).all()
    ctrl = res.pairs.group_by("control_id").agg(pl.col("weight").sum().alias("w"))
    units = res.units.filter(~pl.col("treated") & (pl.col("weight") > 0))
    cmp = units.join(ctrl, left_on="id", right_on="control_id")
    assert cmp.height == units.height == ctrl.height
    np.testing.assert_allclose(cmp["weight"].to_numpy(), cmp["w"].to_numpy())
    t = res.units.filter(pl.col("treated"))
    assert t["weight"].sum() == res.n_matched
    assert res.units.filter(~pl.col("treated"))["weight"].sum() == pytest.approx(res.n_matched)


def test_unmatched_treated_are_reported_with_their_reason() -> None:
    rng = np.random.default_rng(0)
    n = 400
    df = pl.DataFrame(
        {
            "pid": np.arange(n),
            "d": np.r_[np.ones(40, bool), np.zeros(n - 40, bool)],
            "ps": np.r_[rng.normal(size=38), 25.0, 0.0, rng.normal(size=n - 40)],
            "g": ["a"] * 39 + ["lonely"] + ["a"] * (n - 40),
        }
    )
    # a 3-treated / 1-control stratum without replacement: 2 treated find none left
    extra = pl.DataFrame(
        {
            "pid": [1000, 1001, 1002, 1003],
            "d": [True, True, True, False],
            "ps": [0.0, 0.1, 0.2, 0.05],
            "g": ["tiny"] * 4,
        }
    )
    df = pl.concat([df, extra])
    res = match(
        df,
        treatment="d",
        id="pid",
        score="ps",
        options=MatchOptions(
            ps_model="precomputed",
            ratio=1,
            replace=False,
            caliper=1.0,
            std_caliper=False,
            exact=["g"],
        ),
    )
    um = {r["treated_id"]: r["reason"] for r in res.unmatched.iter_rows(named=True)}
    assert um[38] == "caliper"  # score 25, far from every control
    assert um[39] == "no_controls"  # its stratum has no control
    assert sorted(r for t, r in um.items() if t >= 1000) == ["exhausted", "exhausted"]
    assert res.n_unmatched == len(um) == 4
    assert res.n_matched == res.n_treated - 4
    row = res.strata.filter(pl.col("g") == "lonely")
    assert row["n_unmatched_no_controls"].item() == 1 and row["n_controls"].item() == 0
    assert res.strata["n_unmatched"].sum() == 4
    assert res.summary()["unmatched_by_reason"] == {"no_controls": 1, "caliper": 1, "exhausted": 2}
    nearest = res.unmatched.filter(pl.col("treated_id") == 38)["nearest_distance"].item()
    assert nearest > 1.0


def test_precomputed_pooled_score_and_pooled_sd() -> None:
    pooled = pl.concat(
        [_frame(400, seed=s).with_columns(pl.lit(s).alias("cohort")) for s in (20, 21)]
    ).with_columns((pl.col("pid") * 10 + pl.col("cohort")).alias("pid"))
    model = PropensityModel().fit(pooled, treatment="d", features=["x1", "x2", "sex"])
    pooled = pooled.with_columns(pl.Series("ps", model.logit(pooled)))
    sd = float(pooled["ps"].std())
    cohort = pooled.filter(pl.col("cohort") == 20)
    res = match(
        cohort,
        treatment="d",
        id="pid",
        score="ps",
        score_sd=sd,
        options=MatchOptions(ps_model="precomputed", ratio=2),
    )
    assert res.caliper_distance == pytest.approx(0.2 * sd)
    assert res.propensity is None
    assert (res.pairs["distance"] <= 0.2 * sd).all()


def test_propensity_model_is_the_unpenalised_glm() -> None:
    import statsmodels.api as sm

    df = _frame(2000, seed=22)
    model = PropensityModel().fit(df, treatment="d", features=["x1", "x2", "sex"])
    x = np.column_stack([np.ones(df.height), df["x1"], df["x2"], (df["sex"] == "m")])
    glm = sm.Logit(df["d"].to_numpy().astype(float), x).fit(disp=0)
    np.testing.assert_allclose(model.logit(df), x @ glm.params, rtol=1e-6, atol=1e-6)
    assert model.feature_names_ == ["x1", "x2", "sex=m"]


def test_options_are_validated_early() -> None:
    with pytest.raises(ValueError, match="ratio"):
        MatchOptions(ratio=0)
    with pytest.raises(ValueError, match="caliper"):
        MatchOptions(caliper=-1)
    with pytest.raises(ValueError, match="estimand"):
        MatchOptions(estimand="ATE")
    with pytest.raises(ValueError, match="m_order"):
        MatchOptions(distance="mahalanobis", m_order="largest")
    assert MatchOptions(exact=["a", "b"]).exact == ("a", "b")
    assert MatchOptions().m_order == "largest"
    df = _frame(50)
    with pytest.raises(ValueError, match="not unique"):
        match(pl.concat([df, df.head(1)]), treatment="d", id="pid", features=["x1"])
    with pytest.raises(ValueError, match="nulls"):
        match(
            df.with_columns(
                pl.when(pl.col("x1") > 1).then(None).otherwise(pl.col("x1")).alias("x1")
            ),
            treatment="d",
            id="pid",
            features=["x1"],
        )
    with pytest.raises(ValueError, match="precomputed"):
        match(
            df,
            treatment="d",
            id="pid",
            features=["x1"],
            options=MatchOptions(ps_model="precomputed"),
        )


def test_without_an_id_row_numbers_are_ids_and_threads_change_nothing() -> None:
    df = _frame(400, seed=23)
    opts = MatchOptions(ratio=2, exact=["region"])
    a = match(df.drop("pid"), treatment="d", features=["x1", "x2"], options=opts)
    b = match(df.drop("pid"), treatment="d", features=["x1", "x2"], options=opts, n_jobs=2)
    assert a.pairs.equals(b.pairs)
    assert a.id_column == "_row"
    weighted = a.attach_weights(df.drop("pid"))
    assert weighted.columns == [*df.drop("pid").columns, "weight"]
    assert weighted["weight"].sum() == pytest.approx(2 * a.n_matched)


def test_constant_and_collinear_features_are_aliased_like_glm() -> None:
    import warnings

    df = _frame(800, seed=25).with_columns(
        pl.lit(3.0).alias("const"), (2 * pl.col("x1") - pl.col("x2")).alias("combo")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no singular-Hessian fallback warning from sklearn
        full = PropensityModel().fit(df, treatment="d", features=["x1", "x2", "const", "combo"])
    base = PropensityModel().fit(df, treatment="d", features=["x1", "x2"])
    assert full.aliased_ == ["const", "combo"]
    np.testing.assert_allclose(full.logit(df), base.logit(df), atol=1e-8)


# --------------------------------------------------------------------------- mahvars


def _reference_mahvars(df, score, caliper, k, exact, seed, mahvars):
    """Literal MatchIt mahvars rule: among the controls within the score caliper (same
    stratum), the k nearest in Mahalanobis distance (pooled within-group covariance of the
    standardised features), ties by tie key."""
    key = _key_rank(df, seed)
    x = df.select(mahvars).to_numpy().astype(float)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    d = df["d"].to_numpy()
    cov = (
        np.cov(x[d], rowvar=False) * (d.sum() - 1) + np.cov(x[~d], rowvar=False) * ((~d).sum() - 1)
    ) / (len(d) - 2)
    prec = np.linalg.inv(cov)
    rows = df.with_columns(pl.Series("s", score)).with_row_index("_i").to_dicts()
    out = set()
    for t in (r for r in rows if r["d"]):
        cands = []
        for c in rows:
            if c["d"] or abs(t["s"] - c["s"]) > caliper:
                continue
            if not all(c[e] == t[e] for e in exact):
                continue
            diff = x[t["_i"]] - x[c["_i"]]
            cands.append((float(np.sqrt(diff @ prec @ diff)), key[c["pid"]], c["pid"]))
        cands.sort()
        out |= {(t["pid"], pid) for _, _, pid in cands[:k]}
    return out


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("exact", [[], ["sex"]])
def test_mahvars_take_the_mahalanobis_nearest_within_the_score_caliper(k, exact) -> None:
    df = _frame(500, seed=31).with_columns(
        pl.Series("x3", np.random.default_rng(5).normal(size=500))
    )
    score = 0.8 * df["x1"].to_numpy() - 0.5 * df["x2"].to_numpy()
    df = df.with_columns(pl.Series("ps", score))
    caliper = 0.3
    opts = MatchOptions(
        ps_model="precomputed",
        mahvars=("x1", "x3"),
        mahvars_candidates=10_000,  # every control of the caliper is a candidate
        caliper=caliper,
        std_caliper=False,
        ratio=k,
        exact=exact or None,
        seed=3,
    )
    res = match(df, treatment="d", id="pid", score="ps", options=opts)
    expected = _reference_mahvars(df, score, caliper, k, exact, 3, ["x1", "x3"])
    assert _pairs_set(res) == expected and expected
    # every pair within the score caliper, distance = Mahalanobis distance
    s = dict(zip(df["pid"].to_list(), score.tolist(), strict=True))
    gaps = [abs(s[t] - s[c]) for t, c in _pairs_set(res)]
    assert max(gaps) <= caliper
    # the same treated are matched as with the score alone (the caliper decides)
    plain = match(
        df,
        treatment="d",
        id="pid",
        score="ps",
        options=MatchOptions(
            ps_model="precomputed",
            caliper=caliper,
            std_caliper=False,
            ratio=k,
            exact=exact or None,
            seed=3,
        ),
    )
    assert set(res.pairs["treated_id"]) == set(plain.pairs["treated_id"])
    assert res.unmatched["treated_id"].to_list() == plain.unmatched["treated_id"].to_list()


def test_mahvars_with_few_candidates_stay_within_the_caliper_and_improve_the_match() -> None:
    df = _frame(2000, seed=32)
    score = df["x1"].to_numpy() + 0.1 * df["x2"].to_numpy()
    df = df.with_columns(pl.Series("ps", score))
    base = {"ps_model": "precomputed", "caliper": 0.5, "std_caliper": False, "ratio": 2}
    maha = match(
        df,
        treatment="d",
        id="pid",
        score="ps",
        options=MatchOptions(**base, mahvars=("x2",), mahvars_candidates=20),
    )
    plain = match(df, treatment="d", id="pid", score="ps", options=MatchOptions(**base))
    s = dict(zip(df["pid"].to_list(), score.tolist(), strict=True))
    x2 = dict(zip(df["pid"].to_list(), df["x2"].to_list(), strict=True))
    assert all(abs(s[t] - s[c]) <= 0.5 for t, c in _pairs_set(maha))

    def gap(res):
        return np.mean([abs(x2[t] - x2[c]) for t, c in _pairs_set(res)])

    assert gap(maha) < 0.5 * gap(plain)  # x2 is matched closely among score neighbours


def test_mahvars_options_are_validated() -> None:
    with pytest.raises(ValueError, match="caliper"):
        MatchOptions(mahvars=("x1",), caliper=None)
    with pytest.raises(ValueError, match="replace"):
        MatchOptions(mahvars=("x1",), replace=False)
    with pytest.raises(ValueError, match="glm"):
        MatchOptions(distance="mahalanobis", m_order="random", mahvars=("x1",))
    with pytest.raises(ValueError, match="mahvars_candidates"):
        MatchOptions(mahvars=("x1",), mahvars_candidates=0)
    assert MatchOptions(mahvars=()).mahvars is None


def test_logit_without_the_design_matrix_and_enum_features() -> None:
    df = _frame(800, seed=33)
    model = PropensityModel().fit(df, treatment="d", features=["x1", "x2", "sex", "region"])
    x = model.spec_.transform(df)
    np.testing.assert_allclose(model.logit(df), x @ model.coef_ + model.intercept_, atol=1e-12)
    # Enum columns (with unused categories) give the same design as strings
    cats = ["kurzeme", "latgale", "riga", "vidzeme"]
    enum = df.with_columns(
        pl.col("region").cast(pl.Enum(cats)), pl.col("sex").cast(pl.Enum(["f", "m"]))
    )
    e_model = PropensityModel().fit(enum, treatment="d", features=["x1", "x2", "sex", "region"])
    assert e_model.feature_names_ == model.feature_names_
    np.testing.assert_allclose(e_model.logit(enum), model.logit(df), atol=1e-10)
    with pytest.raises(ValueError, match="unseen"):
        model.logit(enum.with_columns(pl.lit("vidzeme").cast(pl.Enum(cats)).alias("region")))


# --------------------------------------------------------------------------- coarsening passes


def _fallback_frame() -> pl.DataFrame:
    """Treated units in fine strata (sex x region x band) of which some have no or few
    controls, so a second pass on sex x region has work to do."""
    df = _frame(900, seed=31, share=0.3)
    band = np.random.default_rng(32).integers(0, 4, df.height)
    df = df.with_columns(pl.Series("band", band))
    # empty the controls of two fine strata: their treated can only be matched by coarsening
    empty = ((pl.col("band") == 3) & (pl.col("region") == "riga")) | (
        (pl.col("band") == 2) & (pl.col("sex") == "f")
    )
    df = df.filter(~(empty & ~pl.col("d")))
    return df.with_columns(pl.Series("ps", np.random.default_rng(33).normal(size=df.height)))


@pytest.mark.parametrize("k", [1, 3])
def test_fallback_pass_equals_a_coarse_match_of_the_units_left_over(k: int) -> None:
    df = _fallback_frame()
    fine, coarse = ["sex", "region", "band"], ["sex", "region"]
    sd = float(df["ps"].std())
    base = {"ps_model": "precomputed", "ratio": k, "caliper": 0.1, "seed": 3}
    one = match(df, treatment="d", id="pid", score="ps",
                options=MatchOptions(exact=fine, **base))
    two = match(df, treatment="d", id="pid", score="ps",
                options=MatchOptions(exact=fine, exact_fallback=[coarse], **base))
    assert one.n_unmatched > 20  # the emptied strata leave work for the second pass
    # the first pass is the one-pass match, pair for pair
    first = two.pairs.filter(pl.col("match_pass") == 0)
    assert set(first.select("treated_id", "control_id").iter_rows()) == _pairs_set(one)
    # the second pass is a coarse match of exactly the treated left over, on every control
    left = one.unmatched["treated_id"]
    sub = df.filter(~pl.col("d") | pl.col("pid").is_in(left.implode()))
    alone = match(sub, treatment="d", id="pid", score="ps", score_sd=sd,
                  options=MatchOptions(exact=coarse, **base))
    second = two.pairs.filter(pl.col("match_pass") == 1)
    assert set(second.select("treated_id", "control_id").iter_rows()) == _pairs_set(alone)
    assert second.height > 0
    # counts reconcile: every treated unit once, matched in one pass or reported unmatched
    assert two.n_treated == one.n_treated
    assert two.n_matched_by_pass() == [one.n_matched, alone.n_matched]
    assert two.n_matched == one.n_matched + alone.n_matched
    assert set(two.unmatched["treated_id"]) == set(alone.unmatched["treated_id"])
    assert two.summary()["n_matched_by_pass"] == [one.n_matched, alone.n_matched]
    # every twin shares the coarse keys, and the fine keys in the first pass
    keys = df.select("pid", *fine)
    pairs = (two.pairs.join(keys, left_on="treated_id", right_on="pid")
             .join(keys, left_on="control_id", right_on="pid", suffix="_c"))
    for c in coarse:
        assert (pairs[c] == pairs[f"{c}_c"]).all()
    p0 = pairs.filter(pl.col("match_pass") == 0)
    assert (p0["band"] == p0["band_c"]).all()
    assert (pairs.filter(pl.col("match_pass") == 1)["band"]
            != pairs.filter(pl.col("match_pass") == 1)["band_c"]).any()
    # weights: matched treated 1, controls the sum of 1/k' over both passes
    w = two.units.filter(~pl.col("treated"))["weight"].sum()
    assert w == pytest.approx(two.n_matched)
    # the strata table: pass 1 holds only strata with treated left, band null there
    s1 = two.strata.filter(pl.col("match_pass") == 1)
    assert s1["band"].null_count() == s1.height and (s1["n_treated"] > 0).all()
    assert s1["n_treated"].sum() == one.n_unmatched
    assert two.strata["stratum"].n_unique() == two.strata.height


def test_fallback_without_replacement_uses_only_controls_left_free() -> None:
    df = _fallback_frame()
    opts = MatchOptions(ps_model="precomputed", ratio=2, caliper=0.5, replace=False,
                        exact=["sex", "region", "band"], exact_fallback=[["sex"], []])
    res = match(df, treatment="d", id="pid", score="ps", options=opts)
    assert res.pairs["control_id"].n_unique() == res.pairs.height  # never reused
    assert len(res.n_matched_by_pass()) == 3 and res.n_matched_by_pass()[1] > 0
    assert sum(res.n_matched_by_pass()) == res.n_matched


def test_fallback_levels_are_validated() -> None:
    with pytest.raises(ValueError, match="strict subset"):
        MatchOptions(exact=["sex", "region"], exact_fallback=[["sex", "region"]])
    with pytest.raises(ValueError, match="strict subset"):
        MatchOptions(exact=["sex", "region"], exact_fallback=[["sex"], ["region"]])
    with pytest.raises(ValueError, match="needs exact"):
        MatchOptions(exact_fallback=[[]])
    with pytest.raises(TypeError):
        MatchOptions(exact=["sex"], exact_fallback="sex")
    opts = MatchOptions(exact=["sex", "region"], exact_fallback=[["sex"], []])
    assert opts.exact_levels == (("sex", "region"), ("sex",), ())
    assert MatchOptions(exact=["sex"]).exact_levels == (("sex",),)
