"""Statistical disclosure control of impact-indicator tables (impact.disclosure)."""

from __future__ import annotations

import json
from math import erf, sqrt
from typing import Any

import numpy as np
import polars as pl
import pytest

from impact.disclosure import (
    DisclosureSettings,
    apply_disclosure_control,
    audit,
)
from impact.disclosure.attack import Auditor
from impact.disclosure.table import prepare

VALUES = ("participants", "twins", "net", "se", "ci_low", "ci_high", "p_value")
KEY = ["indicator", "dimension", "group", "horizon"]


# --------------------------------------------------------------------------- hand-made tables


def table(indicator: str, dims: dict[str, dict[str, tuple[int, int]]], *, kind: str = "rate",
          horizon: int | None = 12, value: tuple[float, float] = (0.5, 0.375),
          extra: dict[tuple[str, str], dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Rows of one (indicator, horizon): the total is the sum of the first dimension.

    Every cell has the same values, so counts and totals add up exactly; ``extra`` adds
    columns (e.g. top contributions) to single cells, keyed by (dimension, group).
    """
    first = next(iter(dims.values()))
    total = (sum(n for n, _ in first.values()),
             max(t for gs in dims.values() for _, t in gs.values()) + 5)
    cells = [("all", "all", total)] + [(d, g, nt) for d, gs in dims.items()
                                       for g, nt in gs.items()]
    p, t = value
    rows = []
    for d, g, (n, nt) in cells:
        row = {"indicator": indicator, "dimension": d, "group": g, "horizon": horizon,
               "kind": kind, "n_participants": n, "n_twins": nt, "participants": p,
               "twins": t, "net": p - t, "se": 0.05, "ci_low": p - t - 0.1,
               "ci_high": p - t + 0.1, "p_value": 0.04}
        rows.append(row | (extra or {}).get((d, g), {}))
    return rows


def frame(*tables: list[dict[str, Any]]) -> pl.DataFrame:
    rows = [r for t in tables for r in t]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return pl.DataFrame([{c: r.get(c) for c in cols} for r in rows],
                        schema_overrides={"horizon": pl.Int64}, infer_schema_length=None)


def reasons(published: pl.DataFrame, indicator: str | None = None) -> dict[tuple[str, str], Any]:
    df = published if indicator is None else published.filter(pl.col("indicator") == indicator)
    return {(d, g): r for d, g, r in df.select("dimension", "group", "suppression_reason")
            .iter_rows()}


def top(arm: str, top1: float, top2: float, total: float) -> dict[str, float]:
    return {f"_top1_{arm}": top1, f"_top2_{arm}": top2, f"_total_{arm}": total}


# --------------------------------------------------------------------------- realistic tables

DIMS = {
    "sex": (["F", "M"], [0.55, 0.45]),
    "age_band": (["16-24", "25-39", "40-54", "55-64"], [0.22, 0.42, 0.35, 0.01]),
    "region": (["Kurzeme", "Latgale", "Riga", "Pieriga", "Vidzeme", "Zemgale"],
               [0.12, 0.1, 0.45, 0.2, 0.124, 0.006]),
}


def realistic_cells(seed: int = 0, persons: int = 900, population: bool = True) -> pl.DataFrame:
    """Indicator cells aggregated from simulated persons and their 1-3 twins.

    Two horizons (10 % attrition by month 12); two rates on all participants, a mean
    (earnings, with one dominant earner in Vidzeme) and a ratio on the 93 % with earnings;
    small cells in age_band 55-64 and region Zemgale. The twin value of a participant is
    the mean of its twins', so every value times n_participants adds up over groups.
    """
    rng = np.random.default_rng(seed)
    attrs = {d: rng.choice(len(g), size=persons, p=p) for d, (g, p) in DIMS.items()}
    pool = 3 * persons
    k = rng.integers(1, 4, size=persons)
    twin_ids = rng.integers(0, pool, size=(persons, 3))
    has = np.arange(3)[None, :] < k[:, None]
    earner = rng.random(persons) < 0.93
    cells = [("all", "all", np.ones(persons, bool))]
    cells += [(d, g, attrs[d] == j) for d, (gs, _) in DIMS.items() for j, g in enumerate(gs)]
    rows = []
    for h in (6, 12):
        seen = rng.random(persons) < (1.0 if h == 6 else 0.9)
        earn = rng.lognormal(7.0, 0.5, persons)
        earn[np.flatnonzero(attrs["region"] == 4)[0]] = 2e6
        series = {
            "eecr06_any": ("rate", "all", (rng.random(persons) < 0.62) * 1.0,
                           (rng.random(pool) < 0.55) * 1.0, seen),
            "benefit_any": ("rate", "all", (rng.random(persons) < 0.08) * 1.0,
                            (rng.random(pool) < 0.1) * 1.0, seen),
            "earnings_real": ("mean", "earners", earn, rng.lognormal(6.9, 0.5, pool),
                              seen & earner),
        }
        series["earnings_roi"] = ("other", "earners", *series["earnings_real"][2:])
        for ind, (kind, pop, p_vals, t_pool, base) in series.items():
            t_vals = np.where(has, t_pool[twin_ids], 0.0).sum(1) / k
            for d, g, m in cells:
                m = m & base
                n = int(m.sum())
                if n == 0:
                    continue
                tw = np.unique(twin_ids[m][has[m]])
                part, twin = float(p_vals[m].mean()), float(t_vals[m].mean())
                se = float(np.sqrt(p_vals[m].var() / n + t_vals[m].var() / n)) or 1e-9
                net = part - twin
                row = {"indicator": ind, "population": pop, "dimension": d, "group": g,
                       "horizon": h, "kind": kind, "n_participants": n, "n_twins": tw.size,
                       "participants": part, "twins": twin, "net": net, "se": se,
                       "ci_low": net - 1.96 * se, "ci_high": net + 1.96 * se,
                       "p_value": 1 - erf(abs(net / se) / sqrt(2))}
                if kind == "other":
                    row |= {"participants": part / twin, "twins": None, "net": None}
                if kind == "mean":
                    for arm, v in (("participants", p_vals[m]), ("twins", t_pool[tw])):
                        v = np.sort(np.abs(v))[::-1]
                        row |= top(arm, v[0], v[1] if v.size > 1 else 0.0, v.sum())
                rows.append(row)
    df = frame(rows)
    return df if population else df.drop("population")


@pytest.fixture(scope="module")
def realistic() -> pl.DataFrame:
    return realistic_cells()


# --------------------------------------------------------------------------- primary


def test_threshold_on_either_arm() -> None:
    cells = frame(table("eecr06_any", {
        "sex": {"F": (60, 100), "M": (40, 9)},        # M: 9 twins
        "age_band": {"a": (91, 110), "b": (9, 15)},   # b: 9 participants
        "region": {"r1": (10, 10), "r2": (90, 110)},  # exactly 10 and 10: published
    }))
    published, report = apply_disclosure_control(cells)
    got = reasons(published)
    assert got[("sex", "M")] == got[("age_band", "b")] == "primary:threshold"
    assert got[("sex", "F")] == got[("age_band", "a")] == "secondary:margin"
    assert got[("region", "r1")] is None and got[("all", "all")] is None
    assert report.suppressed_by_reason == {"primary:threshold": 2, "secondary:margin": 2}
    assert report.ok


def test_dominance_and_p_percent_by_hand() -> None:
    extra = {  # (900 + 100) / 1150 = 0.870 > 0.85; (800 + 150) / 1120 = 0.848 passes
        ("region", "r1"): top("participants", 900, 100, 1150),
        ("region", "r2"): top("participants", 800, 150, 1120),
        ("region", "r3"): top("twins", 1000, 0, 1100),     # twin arm: 0.909 > 0.85
        ("region", "r4"): top("participants", 500, 100, 1000) | top("twins", 300, 200, 1000),
    }
    groups = {"r1": (50, 60), "r2": (40, 60), "r3": (30, 60), "r4": (35, 60), "r9": (12, 60)}
    cells = frame(table("earnings_real", {"region": groups}, kind="mean",
                        value=(1000.0, 900.0), extra=extra))
    got = reasons(apply_disclosure_control(cells)[0])
    assert got[("region", "r1")] == got[("region", "r3")] == "primary:dominance"
    assert got[("region", "r2")] is None and got[("region", "r4")] is None
    # p% alone (dominance off): 990 - 500 - 450 = 40 < 10 % of 500; 1000 - 950 = 50 is not
    extra = {("region", "r1"): top("participants", 500, 450, 990),
             ("region", "r2"): top("participants", 500, 450, 1000)}
    cells = frame(table("earnings_real", {"region": groups}, kind="mean",
                        value=(1000.0, 900.0), extra=extra))
    settings = DisclosureSettings(dominance_k=None)
    got = reasons(apply_disclosure_control(cells, settings)[0])
    assert got[("region", "r1")] == "primary:p_percent"
    assert got[("region", "r2")] is None
    # with dominance_n = 1, k = 0.5: 500 / 990 = 0.505 > 0.5 -> dominance comes first
    settings = DisclosureSettings(dominance_n=1, dominance_k=0.5)
    got = reasons(apply_disclosure_control(cells, settings)[0])
    assert got[("region", "r1")] == "primary:dominance"
    assert got[("region", "r2")] is None  # 500 / 1000 is not > 0.5; p% passes


def test_whole_cell_is_suppressed_and_internal_columns_dropped() -> None:
    extra = {("sex", "M"): top("participants", 5000, 4000, 9500)}
    cells = frame(table("earnings_real", {"sex": {"F": (60, 90), "M": (40, 70)}},
                        kind="mean", value=(1000.0, 900.0), extra=extra))
    published, _ = apply_disclosure_control(cells)
    assert not [c for c in published.columns if c.startswith("_")]
    assert published.columns[-2:] == ["suppressed", "suppression_reason"]
    hidden = published.filter(pl.col("suppressed"))
    assert hidden["group"].to_list() == ["F", "M"]
    for col in (*VALUES, "n_participants", "n_twins"):
        assert hidden[col].null_count() == 2, col
    shown = published.filter(~pl.col("suppressed")).drop("suppressed", "suppression_reason")
    assert shown.equals(cells.filter(pl.col("dimension") == "all").select(shown.columns))


# --------------------------------------------------------------------------- secondary


def test_single_small_group_gets_one_complement() -> None:
    cells = frame(table("eecr06_any", {
        "sex": {"F": (55, 80), "M": (45, 70)},
        "region": {"Riga": (50, 70), "Kurzeme": (30, 50), "Latgale": (15, 30),
                   "Zemgale": (5, 12)},
    }))
    published, report = apply_disclosure_control(cells)
    got = reasons(published)
    assert got[("region", "Zemgale")] == "primary:threshold"
    assert got[("region", "Latgale")] == "secondary:margin"  # smallest published group
    assert sum(r is not None for r in got.values()) == 2
    assert report.ok and report.audit.cells_checked == 2
    # without complementary suppression the margin gives the small cell away
    published, report = apply_disclosure_control(
        cells, DisclosureSettings(secondary=False))
    found = audit(cells, published).filter(pl.col("quantity") == "n_participants")
    assert found.select("group", "lower", "upper", "recovered").row(0) == ("Zemgale", 5, 5, True)
    assert not report.ok and report.audit.recovered >= 1


def test_suppressed_total_needs_a_hidden_group_in_every_dimension() -> None:
    extra = {("all", "all"): top("participants", 90_000, 5_000, 100_000)}
    cells = frame(table("earnings_real", {
        "sex": {"F": (60, 80), "M": (40, 70)},
        "age_band": {"a": (30, 50), "b": (25, 45), "c": (25, 40), "d": (20, 35)},
    }, kind="mean", value=(1000.0, 900.0), extra=extra))
    published, report = apply_disclosure_control(cells)
    assert {k: v for k, v in reasons(published).items() if v} == {
        ("all", "all"): "primary:dominance",
        ("sex", "M"): "secondary:margin",
        ("age_band", "d"): "secondary:margin",
    }
    assert report.ok
    published, _ = apply_disclosure_control(cells, DisclosureSettings(secondary=False))
    found = audit(cells, published)
    total_n = found.filter((pl.col("group") == "all") & (pl.col("quantity") == "n_participants"))
    assert total_n.select("lower", "upper", "recovered").row(0) == (100, 100, True)
    assert found["recovered"].all()  # every total of the arms too


def test_audit_adds_a_complement_when_the_smallest_is_not_enough() -> None:
    # 1 + 10 = 11 hidden; the attacker knows the complement holds >= 10 -> the 1 is exact
    cells = frame(table("eecr06_any", {"region": {"R1": (60, 80), "R2": (10, 20),
                                                  "R3": (1, 3)}}))
    published, report = apply_disclosure_control(cells)
    assert reasons(published) == {("all", "all"): None, ("region", "R1"): "secondary:audit",
                                  ("region", "R2"): "secondary:margin",
                                  ("region", "R3"): "primary:threshold"}
    assert report.ok and report.audit_rounds == 2
    _, report = apply_disclosure_control(cells, DisclosureSettings(max_audit_rounds=0))
    assert not report.ok
    assert ("eecr06_any", "region", "R3", 12, "n_participants") in report.audit.recovered_cells


def test_audit_bounds_by_hand() -> None:
    # a = 50 published, b = 45 (margin) and c = 5 (threshold) hidden, total 100 published:
    # n_b + n_c = 50 with n_b >= 10, 1 <= n_c <= 9; counts (rate 0.5) c_b + c_c = 25
    cells = frame(table("eecr06_any", {"d": {"a": (50, 60), "b": (45, 60), "c": (5, 60)}}))
    published, report = apply_disclosure_control(cells)
    assert {k: v for k, v in reasons(published).items() if v} == {
        ("d", "b"): "secondary:margin", ("d", "c"): "primary:threshold"}
    assert report.ok
    found = {(g, q): (lo, hi) for g, q, lo, hi in audit(cells, published).select(
        "group", "quantity", "lower", "upper").iter_rows()}
    assert found[("b", "n_participants")] == pytest.approx((41, 49))
    assert found[("c", "n_participants")] == pytest.approx((1, 9))
    assert found[("b", "count:participants")] == pytest.approx((16, 25))
    assert found[("c", "count:participants")] == pytest.approx((0, 9))
    assert found[("c", "count:twins")] == pytest.approx((0, 9))  # t_b + t_c = 18.75


def test_incremental_audit_equals_full_audit() -> None:
    """The auditor of the suppression rounds reuses unchanged blocks and skips programmes
    whose width is already proven by feasible points: same decisions as a full audit."""
    recovered = skipped = 0
    for cells, base in ((realistic_cells(seed=4, persons=120), None),
                        (realistic_cells(seed=4, persons=120, population=False), 5),
                        (realistic_cells(seed=1, persons=400, population=False), None)):
        settings = DisclosureSettings(round_base=base)
        auditor = Auditor(prepare(cells, settings), settings, exact=False)
        # published versions as the rounds produce them: after 0, 1, 2, 3 audit rounds
        versions = [apply_disclosure_control(cells, settings.model_copy(
            update={"max_audit_rounds": rounds}))[0] for rounds in range(4)]
        versions.append(apply_disclosure_control(
            cells, settings.model_copy(update={"secondary": False}))[0])
        audited = 0
        for published in versions:
            fast, full = auditor(published), audit(cells, published, settings)
            assert fast.drop("lower", "upper", "width").equals(
                full.drop("lower", "upper", "width"))
            # bounds are exact for narrow intervals, else feasible (inner) bounds
            narrow = (full["width"] < full["required_width"]).to_numpy()
            for col in ("lower", "upper"):
                assert fast[col].to_numpy()[narrow] == pytest.approx(
                    full[col].to_numpy()[narrow], rel=1e-9, abs=1e-9)
            assert (fast["lower"] >= full["lower"] - 1e-6).all()
            assert (fast["upper"] <= full["upper"] + 1e-6).all()
            assert (fast["width"] >= fast["required_width"]).to_numpy()[~narrow].all()
            recovered += fast["recovered"].sum()
            skipped += (fast["upper"] < full["upper"]).sum()
            audited += fast.select("indicator", "horizon").unique().height
        assert 0 < auditor.blocks_solved < audited  # unchanged blocks were not solved again
    assert recovered > 0 and skipped > 0


def test_cross_indicator_population_consistency() -> None:
    groups = {"R1": (50, 70), "R2": (45, 60), "R3": (40, 60), "R4": (30, 50), "R5": (20, 40)}
    dom = {("region", "R3"): top("participants", 9000, 500, 10_000),
           ("region", "R4"): top("participants", 9000, 500, 10_000)}
    rate = table("eecr06_any", {"region": groups})
    mean = table("earnings_real", {"region": groups}, kind="mean", value=(1000.0, 900.0),
                 extra=dom)
    cells = frame(rate, mean)
    published, report = apply_disclosure_control(cells)
    a, b = reasons(published, "eecr06_any"), reasons(published, "earnings_real")
    assert a[("region", "R3")] == a[("region", "R4")] == "secondary:population"
    assert {k for k, v in a.items() if v} == {k for k, v in b.items() if v}
    assert report.ok
    # the attacker reads n of earnings_real's hidden cells off eecr06_any ...
    with_pop = cells.with_columns(pl.lit("all").alias("population"))
    off = DisclosureSettings(secondary=False)
    published, _ = apply_disclosure_control(with_pop, off)
    found = audit(with_pop, published).filter(pl.col("quantity") == "n_participants")
    assert found.filter(pl.col("recovered"))["group"].to_list() == ["R3", "R4"]
    # ... which it cannot when the indicators are different populations
    published, _ = apply_disclosure_control(cells, off)
    assert not audit(cells, published)["recovered"].any()
    # and with secondary suppression the declared population is protected too
    assert apply_disclosure_control(with_pop)[1].ok


def test_rounding_half_up_and_audit_allows_half_a_base() -> None:
    cells = frame(table("eecr06_any", {"region": {
        "a": (17, 13), "b": (13, 18), "c": (15, 25), "d": (5, 12), "e": (11, 14)}}))
    published, report = apply_disclosure_control(cells, DisclosureSettings(round_base=5))
    n = dict(zip(published["group"], published["n_participants"], strict=True))
    assert n == {"all": 60, "a": 15, "b": 15, "c": 15, "d": None, "e": None}  # 61 -> 60
    t = dict(zip(published["group"], published["n_twins"], strict=True))
    assert t == {"all": 30, "a": 15, "b": 20, "c": 25, "d": None, "e": None}
    assert report.ok
    published, _ = apply_disclosure_control(cells, DisclosureSettings(round_base=10))
    n = dict(zip(published["group"], published["n_participants"], strict=True))
    assert (n["all"], n["a"], n["b"], n["c"]) == (60, 20, 10, 20)  # the tie 15 goes up


# --------------------------------------------------------------------------- realistic


def test_realistic_tables_attacker_and_protection(realistic: pl.DataFrame) -> None:
    published, report = apply_disclosure_control(realistic, DisclosureSettings(secondary=False))
    assert report.audit.recovered > 0
    exact = audit(realistic, published).filter(
        (pl.col("quantity") == "n_participants") & (pl.col("lower") == pl.col("true_value"))
        & (pl.col("upper") == pl.col("true_value")))
    assert exact.height > 0  # a hidden small cell recovered to the person

    published, report = apply_disclosure_control(realistic)
    assert report.ok and report.audit.recovered == 0 and report.audit.cells_checked > 20
    by = report.suppressed_by_reason
    assert by["primary:threshold"] > 0 and by["primary:dominance"] > 0
    assert by["secondary:margin"] > 0 and by["secondary:population"] > 0
    again = audit(realistic, published)
    assert again.height == report.audit.quantities_checked and not again["recovered"].any()
    # same population, same pattern: the two rates hide the same cells
    hidden = published.filter(pl.col("suppressed"))
    rates = [set(hidden.filter(pl.col("indicator") == i).select(KEY[1:]).iter_rows())
             for i in ("eecr06_any", "benefit_any")]
    assert rates[0] == rates[1]
    # no equation with a single hidden term
    groups = hidden.filter(pl.col("dimension") != "all").group_by(
        "indicator", "horizon", "dimension").len()
    assert (groups["len"] >= 2).all()
    assert hidden.select([*VALUES, "n_participants", "n_twins"]).null_count().row(0) == tuple(
        [hidden.height] * (len(VALUES) + 2))
    _, report = apply_disclosure_control(realistic, DisclosureSettings(round_base=5))
    assert report.ok


def test_small_populations_need_and_get_audit_rounds() -> None:
    cells = realistic_cells(seed=4, persons=120)
    _, report = apply_disclosure_control(cells, DisclosureSettings(max_audit_rounds=0))
    assert report.audit.recovered > 0  # rare outcomes: hidden counts known to be 0
    _, report = apply_disclosure_control(cells)
    assert report.ok and report.suppressed_by_reason["secondary:audit"] > 0


def test_deterministic(realistic: pl.DataFrame) -> None:
    first, rep1 = apply_disclosure_control(realistic)
    shuffled = realistic.sample(fraction=1.0, shuffle=True, seed=3).select(
        reversed(realistic.columns))
    second, rep2 = apply_disclosure_control(shuffled)
    third, _ = apply_disclosure_control(realistic)
    assert first.write_csv() == third.write_csv()
    assert first.select(second.columns).write_csv() == second.write_csv()
    assert json.dumps(rep1.to_dict()) == json.dumps(rep2.to_dict())
    md = rep1.to_markdown()
    assert "Result: **pass**" in md and "| earnings_real | region | Vidzeme | 6 | primary:" in md


# --------------------------------------------------------------------------- validation


def _base() -> pl.DataFrame:
    return frame(table("eecr06_any", {"sex": {"F": (60, 80), "M": (40, 70)}}))


@pytest.mark.parametrize(("mutate", "column", "problem"), [
    (lambda df: df.drop("n_twins"), "n_twins", "missing"),
    (lambda df: df.with_columns(pl.when(pl.col("group") == "M").then(-1)
                                .otherwise(pl.col("n_twins")).alias("n_twins")),
     "n_twins", "negative"),
    (lambda df: pl.concat([df, df.tail(1)]), "group", "duplicate"),
    (lambda df: df.with_columns(pl.when(pl.col("group") == "M").then(41)
                                .otherwise(pl.col("n_participants")).alias("n_participants")),
     "n_participants", "add up to 101, the total has 100"),
    (lambda df: df.with_columns(pl.lit("ratio").alias("kind")), "kind", "unknown kind"),
    (lambda df: df.filter(pl.col("dimension") != "all"), "dimension", "no total row"),
    (lambda df: df.with_columns(pl.when(pl.col("group") == "M").then(1.5)
                                .otherwise(pl.col("participants")).alias("participants")),
     "participants", r"outside \[0, 1\]"),
    (lambda df: df.with_columns(pl.when(pl.col("group") == "F").then(90)
                                .otherwise(pl.col("n_twins")).alias("n_twins")),
     "n_twins", "more distinct twins"),
    (lambda df: df.with_columns(_top1_participants=pl.lit(1.0), _top2_participants=pl.lit(2.0),
                                _total_participants=pl.lit(5.0)),
     "_top2_participants", "sorted"),
])
def test_malformed_input_is_rejected(mutate: Any, column: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as err:
        apply_disclosure_control(mutate(_base()))
    assert repr(column) in str(err.value)
    if problem != "missing":
        assert "e.g. row {'indicator': 'eecr06_any'" in str(err.value)


def test_population_with_unequal_n_is_rejected() -> None:
    a = table("eecr06_any", {"sex": {"F": (60, 80), "M": (40, 70)}})
    b = table("benefit_any", {"sex": {"F": (61, 80), "M": (39, 70)}})
    cells = frame(a, b).with_columns(pl.lit("all").alias("population"))
    with pytest.raises(ValueError, match="same population"):
        apply_disclosure_control(cells)
