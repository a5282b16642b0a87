"""Clopper-Pearson and Kaplan-Meier against textbook cases and R's published output.

Tolerances: the estimators are deterministic closed forms, so hand computations agree to 1e-12;
published R output is printed to 3-4 significant digits, so it is compared at half a unit of
the last printed digit.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ckmodel.response import KM_COLUMNS, clopper_pearson, kaplan_meier, km_at, km_median

# Freireich et al. (1963) 6-MP trial, weeks of remission (Gehan 1965; survival::gehan).
MP_TIME = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
MP_EVENT = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
PLACEBO_TIME = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]

# summary(survfit(Surv(time, cens) ~ 1, data = gehan, subset = treat == "6-MP")):
# time n.risk n.event survival std.err lower 95% CI upper 95% CI
MP_SURVFIT = np.array([
    [6, 21, 3, 0.857, 0.0764, 0.720, 1.000],
    [7, 17, 1, 0.807, 0.0869, 0.653, 0.996],
    [10, 15, 1, 0.753, 0.0963, 0.586, 0.968],
    [13, 12, 1, 0.690, 0.1068, 0.510, 0.935],
    [16, 11, 1, 0.627, 0.1141, 0.439, 0.896],
    [22, 7, 1, 0.538, 0.1282, 0.337, 0.858],
    [23, 6, 1, 0.448, 0.1346, 0.249, 0.807],
])


# --- Clopper-Pearson ------------------------------------------------------------------------
@pytest.mark.parametrize(("x", "n", "lower", "upper"), [
    (0, 10, 0.0, 0.3085),            # binom.test(0, 10): upper 1 - 0.025^(1/10)
    (3, 10, 0.0667, 0.6525),
    (5, 10, 0.1871, 0.8129),
    (10, 10, 0.6915, 1.0),           # x = n: upper limit exactly 1
    (682, 925, 0.7076683, 0.7654066),  # the example of R's ?binom.test
])
def test_clopper_pearson_known_values(x, n, lower, upper):
    lo, hi = clopper_pearson(x, n)
    digits = len(str(lower).split(".")[1]) if lower else 4
    assert lo == pytest.approx(lower, abs=0.5 * 10 ** -digits)
    assert hi == pytest.approx(upper, abs=0.5 * 10 ** -digits)


def test_clopper_pearson_edges_are_closed_forms():
    # x = 0: (0, 1 - (a/2)^(1/n)); x = n: ((a/2)^(1/n), 1)
    for n in (1, 4, 30):
        lo, hi = clopper_pearson(0, n)
        assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-12)
        lo, hi = clopper_pearson(n, n)
        assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / n), abs=1e-12)


def test_clopper_pearson_inverts_the_binomial_tails():
    x, n = np.arange(1, 12), 12
    lo, hi = clopper_pearson(x, n)
    # lower: P(X >= x | p = lower) = 0.025; upper: P(X <= x | p = upper) = 0.025
    np.testing.assert_allclose(stats.binom.sf(x - 1, n, lo), 0.025, atol=1e-10)
    np.testing.assert_allclose(stats.binom.cdf(x, n, hi), 0.025, atol=1e-10)


def test_clopper_pearson_vectorised_level_and_errors():
    lo, hi = clopper_pearson([0, 3], [10, 10], conf_level=0.9)
    assert lo.shape == (2,) and hi[1] < clopper_pearson(3, 10)[1]
    assert np.isnan(clopper_pearson(0, 0)).all()
    with pytest.raises(ValueError, match="0 <= x <= n"):
        clopper_pearson(4, 3)
    with pytest.raises(ValueError, match="whole numbers"):
        clopper_pearson(1.5, 3)
    with pytest.raises(ValueError, match="conf_level"):
        clopper_pearson(1, 3, conf_level=95)


# --- Kaplan-Meier ---------------------------------------------------------------------------
def test_km_freireich_6mp_matches_survfit():
    km = kaplan_meier(MP_TIME, MP_EVENT)
    assert tuple(km.columns) == KM_COLUMNS
    assert km["time"].tolist() == sorted(set(MP_TIME))  # every distinct time, as survfit
    ev = km[km["n_event"] > 0].to_numpy(dtype=float)
    np.testing.assert_array_equal(ev[:, :3], MP_SURVFIT[:, :3])
    np.testing.assert_allclose(ev[:, 4], MP_SURVFIT[:, 3], atol=5e-4)  # survival
    np.testing.assert_allclose(ev[:, 5], MP_SURVFIT[:, 4], atol=5e-5)  # std.err
    np.testing.assert_allclose(ev[:, 6:], MP_SURVFIT[:, 5:], atol=5e-4)  # limits
    # print(survfit(...)): n = 21, events = 9, median 23, 0.95LCL 16, 0.95UCL NA
    med, lo, hi = km_median(km)
    assert (med, lo) == (23.0, 16.0) and np.isnan(hi)
    assert km.attrs == {"conf_level": 0.95, "n": 21}


def test_km_freireich_placebo_median_and_the_end_of_the_curve():
    km = kaplan_meier(PLACEBO_TIME, np.ones(21))
    assert km_median(km) == (8.0, 4.0, 12.0)  # survfit: median 8, CI (4, 12)
    row8 = km.set_index("time").loc[8.0]
    assert row8["n_risk"] == 12 and row8["n_event"] == 4
    assert row8["survival"] == pytest.approx(8 / 21, abs=1e-12)
    last = km.iloc[-1]  # S = 0: survfit gives no standard error and no limits
    assert last["survival"] == 0.0
    assert np.isnan(last[["std_err", "lower", "upper"]].to_numpy(dtype=float)).all()


def test_km_aml_medians_match_survfit():
    # print(survfit(Surv(time, status) ~ x, data = aml)):
    # Maintained: median 31 (18, NA); Nonmaintained: median 23 (8, NA)
    mt = [9, 13, 13, 18, 23, 28, 31, 34, 45, 48, 161]
    me = [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0]
    nt = [5, 5, 8, 8, 12, 16, 23, 27, 30, 33, 43, 45]
    ne = [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1]
    m = km_median(kaplan_meier(mt, me))
    n = km_median(kaplan_meier(nt, ne))
    assert m[:2] == (31.0, 18.0) and np.isnan(m[2])
    assert n[:2] == (23.0, 8.0) and np.isnan(n[2])


def test_km_ties_and_greenwood_by_hand():
    # at t=2 two events and one censoring: the censored subject is still at risk at 2
    t = [1, 2, 2, 2, 3, 4, 4, 5]
    e = [1, 1, 1, 0, 0, 1, 0, 1]
    km = kaplan_meier(t, e).set_index("time")
    assert km["n_risk"].tolist() == [8, 7, 4, 3, 1]
    assert km["n_event"].tolist() == [1, 2, 0, 1, 1]
    assert km["n_censor"].tolist() == [0, 1, 1, 1, 0]
    surv = [Fraction(7, 8), Fraction(7, 8) * Fraction(5, 7)]
    surv += [surv[-1], surv[-1] * Fraction(2, 3), Fraction(0)]
    np.testing.assert_allclose(km["survival"], [float(s) for s in surv], atol=1e-12)
    gw = np.cumsum([1 / (8 * 7), 2 / (7 * 5), 0, 1 / (3 * 2)])  # sum d / (n (n - d))
    s = np.array([float(v) for v in surv[:4]])
    np.testing.assert_allclose(km["std_err"].to_numpy()[:4], s * np.sqrt(gw), atol=1e-12)
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(km["lower"].to_numpy()[:4], s * np.exp(-z * np.sqrt(gw)),
                               atol=1e-12)
    np.testing.assert_allclose(km["upper"].to_numpy()[:4],
                               np.minimum(s * np.exp(z * np.sqrt(gw)), 1), atol=1e-12)


def test_km_without_censoring_is_one_minus_the_ecdf():
    rng = np.random.default_rng(3)
    t = np.round(rng.exponential(10, 40), 1)
    km = kaplan_meier(t, np.ones_like(t))
    ecdf = np.array([(t <= u).mean() for u in km["time"]])
    np.testing.assert_allclose(km["survival"], 1 - ecdf, atol=1e-12)


def test_km_times_equal_up_to_roundoff_are_one_time():
    km = kaplan_meier([0.1 + 0.2, 0.3, 1.0], [1, 0, 1])  # survfit's aeqSurv merges them
    assert len(km) == 2 and km["n_event"].iloc[0] == 1 and km["n_censor"].iloc[0] == 1


def test_km_errors_name_the_problem():
    with pytest.raises(ValueError, match="differ in length"):
        kaplan_meier([1, 2], [1])
    with pytest.raises(ValueError, match="finite"):
        kaplan_meier([1, np.nan], [1, 0])
    with pytest.raises(ValueError, match="0 \\(censored\\) or 1"):
        kaplan_meier([1, 2], [1, 2])


# --- the median rules -----------------------------------------------------------------------
def test_median_flat_at_one_half_takes_the_midpoint():
    assert km_median(kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1]))[0] == 2.5
    # survfit(Surv(1:100) ~ 1): S(50) = 0.5 up to roundoff, median 50.5
    assert km_median(kaplan_meier(np.arange(1, 101), np.ones(100)))[0] == 50.5


def test_median_flat_at_one_half_to_the_end_is_where_it_got_there():
    # S = 0.5 from t = 2 and never lower: print.survfit reports 2 (no later drop to average)
    assert km_median(kaplan_meier([1, 2, 3, 4], [1, 1, 0, 0]))[0] == 2.0


def test_median_never_reached_is_nan():
    med, lo, hi = km_median(kaplan_meier([1, 2, 3, 4, 5], [1, 0, 0, 0, 0]))
    assert np.isnan(med) and np.isnan(hi)


def test_median_interval_is_where_the_confidence_curves_cross_one_half():
    km = kaplan_meier(PLACEBO_TIME, np.ones(21))
    first_below = [float(km["time"][km[c] < 0.5].iloc[0]) for c in ("lower", "upper")]
    assert km_median(km)[1:] == tuple(first_below)


# --- values at stated times -----------------------------------------------------------------
def test_km_at_gives_the_step_function_and_the_number_at_risk():
    km = kaplan_meier(MP_TIME, MP_EVENT)
    at = km_at(km, [0, 6, 12, 23, 35, 40])
    assert at["n_risk"].tolist() == [21, 21, 12, 6, 1, 0]  # time >= t
    assert at["n_event"].tolist() == [0, 3, 5, 9, 9, 9]
    exp = [1.0, 18 / 21, float(km.set_index("time").loc[11, "survival"])]
    np.testing.assert_allclose(at["survival"].to_numpy()[:3], exp, atol=1e-12)
    assert np.isnan(at["survival"].iat[-1])  # after the last (censored) time: unknown
    assert isinstance(at, pd.DataFrame) and list(at.columns)[:3] == ["time", "n_risk",
                                                                     "n_event"]


def test_empty_data_give_an_empty_table_and_unknown_values():
    km = kaplan_meier([], [])
    assert list(km.columns) == list(KM_COLUMNS) and len(km) == 0
    assert np.isnan(km_median(km)).all()
    at = km_at(km, [1.0])
    assert at["n_risk"].tolist() == [0] and np.isnan(at["survival"]).all()
