"""Doses into any state (NONMEM CMT) against the closed forms summed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ckmodel.errors import DatasetError
from ckmodel.population.prepare import dose_target, dosing_history
from ckmodel.simulate import simulate
from ckmodel.solve import SolverOptions, evaluate_outputs, solve_states
from ckmodel.spec import load_model

KA, CL, V, F = 1.2, 5.0, 50.0, 0.8
KE = CL / V
T = np.linspace(0.0, 48.0, 193)
TIGHT = SolverOptions(method="ode", rtol=1e-10, atol=1e-12)


def oral(t, amt, t0):
    tau = t - t0
    c = F * amt * KA / (V * (KA - KE)) * (np.exp(-KE * tau) - np.exp(-KA * tau))
    return np.where(tau >= 0, c, 0.0)


def iv(t, amt, t0):
    tau = t - t0
    return np.where(tau >= 0, amt / V * np.exp(-KE * tau), 0.0)


def conc(amt, dtime, cmt, options=None):
    spec = load_model("one_cmt_oral")
    params = {"ka": np.array([KA]), "cl": np.array([CL]), "v": np.array([V]),
              "f": np.array([F])}
    states = solve_states(spec, params, T, amt=amt, dose_time=dtime, dose_cmt=cmt,
                          options=options)
    return evaluate_outputs(spec, states, params, T)["CP"][0]


def test_oral_then_iv_dose_superposes_by_hand():
    spec = load_model("one_cmt_oral")
    a_c = spec.state_names.index("A_c")
    got = conc(np.array([[300.0, 100.0]]), np.array([[0.0, 12.0]]), np.array([[-1, a_c]]),
               TIGHT)
    hand = oral(T, 300.0, 0.0) + iv(T, 100.0, 12.0)
    np.testing.assert_allclose(got, hand, rtol=1e-7, atol=1e-10)


def test_default_routing_keeps_the_closed_form():
    got = conc(np.array([[300.0, 300.0]]), np.array([[0.0, 24.0]]), None)
    np.testing.assert_allclose(got, oral(T, 300.0, 0.0) + oral(T, 300.0, 24.0), rtol=1e-12)


def test_cmt_names_and_numbers():
    spec = load_model("one_cmt_oral")
    assert dose_target(spec, "A_gut") == -1          # the [dosing] state: f applies
    assert dose_target(spec, "1") == -1 and dose_target(spec, 1.0) == -1
    assert dose_target(spec, "A_c") == 1 and dose_target(spec, "2") == 1
    assert dose_target(spec, None) == -1 and dose_target(spec, np.nan) == -1
    with pytest.raises(ValueError, match="not a state"):
        dose_target(spec, "gut")
    doses = pd.DataFrame({"ID": ["a", "a", "b"], "TIME": [12.0, 0.0, 0.0],
                          "AMT": [100.0, 300.0, 50.0], "CMT": ["A_c", None, "3"],
                          "ROW": [4, 2, 9]})
    with pytest.raises(DatasetError, match="CMT '3'"):
        dosing_history(doses, ["a", "b"], spec=spec)
    d = dosing_history(doses.iloc[:2], ["a"], spec=spec)
    np.testing.assert_array_equal(d.time, [[0.0, 12.0]])      # sorted by time
    np.testing.assert_array_equal(d.cmt, [[-1, 1]])


def test_simulate_iv_dose_into_central():
    spec = load_model("one_cmt_oral")
    ds = simulate(spec, n=1, dose=100.0, times=T, iiv=False, residual=False,
                  dose_state="A_c", options=TIGHT)
    params = dict(spec.typical_values())
    k = params["cl"] / params["v"]
    hand = 100.0 / params["v"] * np.exp(-k * T)
    np.testing.assert_allclose(ds["pred"].sel(analyte="CP").values[0], hand, rtol=1e-7)
    with pytest.raises(ValueError, match="not a state"):
        simulate(spec, n=1, dose_state="nope")
