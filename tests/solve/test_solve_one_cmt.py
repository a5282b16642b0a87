"""one_cmt_oral: the Bateman function, superposition of repeated doses and dose events."""

from __future__ import annotations

import numpy as np
import pytest

from ckmodel.solve import SolverOptions, evaluate_outputs, solve_states
from ckmodel.spec import load_model

CLOSED = SolverOptions(method="closed")
ODE = SolverOptions(method="ode", ode_method="DOP853", rtol=1e-11, atol=1e-12)
DOSE_TIMES = np.array([0.0, 12.0, 24.0])  # hours


@pytest.fixture(scope="module")
def spec():
    return load_model("one_cmt_oral")


def bateman(t, dose, ka, cl, v, f):
    """Concentration after one oral dose at t = 0 (mg/L), by hand; 0 before the dose."""
    ke = cl / v
    tt = np.maximum(t, 0.0)
    c = f * dose * ka / (v * (ka - ke)) * (np.exp(-ke * tt) - np.exp(-ka * tt))
    return np.where(t >= 0, c, 0.0)


def test_bateman_closed_form(spec, random_subjects):
    p = random_subjects(spec, n=15)
    t = np.linspace(0, 48, 193)
    y = solve_states(spec, p, t, amt=100.0, options=CLOSED)
    cp = evaluate_outputs(spec, y, p, t)["CP"]
    for i in range(15):
        exp = bateman(t, 100.0, p["ka"][i], p["cl"][i], p["v"][i], p["f"][i])
        np.testing.assert_allclose(cp[i], exp, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(y[i, 0], p["f"][i] * 100.0 * np.exp(-p["ka"][i] * t),
                                   rtol=1e-13)
    # mass balance: what left the gut and is not in the central compartment was eliminated,
    # so A_gut + A_c <= f * AMT with equality at t = 0
    total = y[:, 0] + y[:, 1]
    assert np.all(total <= p["f"][:, None] * 100.0 * (1 + 1e-14))
    np.testing.assert_allclose(total[:, 0], p["f"] * 100.0, rtol=1e-15)


def test_tmax_and_cmax_of_typical_subject(spec):
    p = spec.typical_values()  # ka 1/h, ke 0.1/h
    t = np.linspace(0, 24, 240001)
    cp = evaluate_outputs(spec, solve_states(spec, p, t, amt=100.0), p, t)["CP"][0]
    ka, ke = p["ka"], p["cl"] / p["v"]
    tmax = np.log(ka / ke) / (ka - ke)  # 2.558 h
    assert t[np.argmax(cp)] == pytest.approx(tmax, abs=1e-4)
    assert cp.max() == pytest.approx(bateman(tmax, 100.0, ka, p["cl"], p["v"], p["f"]),
                                     rel=1e-9)


def test_repeated_doses_superpose_and_equal_ode(spec, random_subjects):
    n = 6
    p = random_subjects(spec, n=n)
    amt = np.array([100.0, 50.0, 75.0]) * np.linspace(0.5, 1.5, n)[:, None]  # (n, 3)
    dose_time = np.broadcast_to(DOSE_TIMES, (n, 3))
    t = np.linspace(0, 48, 97)
    closed = solve_states(spec, p, t, amt=amt, dose_time=dose_time, options=CLOSED)
    auto = solve_states(spec, p, t, amt=amt, dose_time=dose_time)
    ode = solve_states(spec, p, t, amt=amt, dose_time=dose_time, options=ODE)
    np.testing.assert_array_equal(auto, closed)
    # superposition by hand
    cp = evaluate_outputs(spec, closed, p, t)["CP"]
    for i in range(n):
        exp = sum(bateman(t - d, a, p["ka"][i], p["cl"][i], p["v"][i], p["f"][i])
                  for a, d in zip(amt[i], DOSE_TIMES, strict=True))
        np.testing.assert_allclose(cp[i], exp, rtol=1e-12, atol=1e-15)
    # ODE with dose events: rtol 1e-11 per piece, three pieces; 1e-8 leaves margin. atol:
    # the gut amount decays to ~1e-10 mg at 48 h for fast absorbers, ODE atol is 1e-12 mg.
    np.testing.assert_allclose(ode, closed, rtol=1e-8, atol=1e-10)


def test_state_jumps_by_f_amt_at_each_dose(spec, random_subjects):
    n = 4
    p = random_subjects(spec, n=n)
    amt = np.tile([100.0, 40.0, 60.0], (n, 1))
    eps = 1e-7
    t = np.sort(np.concatenate([DOSE_TIMES, DOSE_TIMES[1:] - eps, [36.0]]))
    for opts in (CLOSED, ODE):
        y = solve_states(spec, p, t, amt=amt, dose_time=np.tile(DOSE_TIMES, (n, 1)),
                         options=opts)
        gut = y[:, 0]
        assert np.allclose(gut[:, 0], p["f"] * 100.0, rtol=1e-14)  # at the first dose time
        for k, d in enumerate(DOSE_TIMES[1:], start=1):
            after, before = np.searchsorted(t, d), np.searchsorted(t, d - eps)
            jump = gut[:, after] - gut[:, before]
            # the gut drains at ka * A_gut <= 3 * 100 mg/h, i.e. < 3e-5 mg over eps = 1e-7 h
            np.testing.assert_allclose(jump, p["f"] * amt[:, k], rtol=0, atol=1e-4)
            # the central compartment is continuous through a dose into the gut
            np.testing.assert_allclose(y[:, 1, after], y[:, 1, before], rtol=1e-5)


def test_dose_time_shape_contract(spec):
    p = {k: np.full(4, v) for k, v in spec.typical_values().items()}
    t = np.array([0.0, 13.0])
    amt = np.full((4, 3), 10.0)
    a = solve_states(spec, p, t, amt=amt, dose_time=np.tile(DOSE_TIMES, (4, 1)))
    b = solve_states(spec, p, t, amt=amt, dose_time=DOSE_TIMES[None, :])
    np.testing.assert_array_equal(a, b)
    # NaN pads unequal dose counts: a NaN third dose is no dose
    amt2 = amt.copy()
    amt2[:, 2] = np.nan
    c = solve_states(spec, p, t, amt=amt2, dose_time=np.tile(DOSE_TIMES, (4, 1)))
    np.testing.assert_array_equal(c, a)  # the third dose (24 h) is after both output times


def test_one_d_dose_times_with_two_d_amounts_are_per_dose_or_refused(spec):
    p = {k: np.full(3, v) for k, v in spec.typical_values().items()}
    t = np.array([0.0, 13.0, 30.0])
    amt = np.full((3, 3), 10.0)
    ref = solve_states(spec, p, t, amt=amt, dose_time=np.tile(DOSE_TIMES, (3, 1)))
    try:
        got = solve_states(spec, p, t, amt=amt, dose_time=DOSE_TIMES)
    except ValueError:
        return
    np.testing.assert_allclose(got, ref, rtol=1e-12)
