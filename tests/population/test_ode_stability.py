"""Linear stability of the fits' RK4 step grid (ckmodel.population.ode_stability).

Oracles: the RK4 stability polynomial (its real root and its value on the imaginary axis are
exact numbers); linear chains whose Jacobian eigenvalues are their rate constants, so the
verdict, the rate, the state and the suggested step are known in closed form, and the
blow-up the check predicts is seen in the solve itself against ``exp(-k t)``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq

from ckmodel.errors import SolverWarning, use_cli_hints
from ckmodel.population.ode import ODEOptions, rk4_states
from ckmodel.population.ode_stability import (
    RK4_REAL_LIMIT,
    grid_stability,
    prior_stability,
    rk4_amplification,
)
from ckmodel.spec import load_model, spec_from_dict


def _chain(ka_prior: str = "LogNormal(log(0.1), 0.1)",
           kb_prior: str = "LogNormal(log(0.5), 0.3)") -> object:
    """A -> B -> out: eigenvalues -ka and -kb."""
    return spec_from_dict({
        "name": "chain", "time_unit": "day", "amount_unit": "1e6 cells",
        "states": {"A": {"unit": "cells/uL"}, "B": {"unit": "cells/uL"}},
        "parameters": {
            "ka": {"unit": "1/day", "prior": ka_prior, "value": 0.1},
            "kb": {"unit": "1/day", "prior": kb_prior, "value": 0.5},
        },
        "odes": {"A": "-ka * A", "B": "ka * A - kb * B"},
        "dosing": {"A": "AMT"},
        "outputs": {"CB": {"value": "B", "unit": "cells/uL", "error": "log_normal",
                           "sigma": "HalfNormal(0.5)"}},
    })


def test_rk4_stability_polynomial_exact_values():
    root = brentq(lambda x: rk4_amplification(-x) - 1.0, 2.0, 3.0, xtol=1e-15)
    assert root == pytest.approx(RK4_REAL_LIMIT, abs=1e-12)
    assert rk4_amplification(-1.0) == pytest.approx(0.375, abs=1e-15)  # 1 - 1 + 1/2 - 1/6 + 1/24
    # |R(iy)|^2 = 1 - y^6/72 + y^8/576: exactly 1 at y = 2 sqrt(2)
    assert rk4_amplification(2j * math.sqrt(2)) == pytest.approx(1.0, abs=1e-12)
    assert rk4_amplification(-RK4_REAL_LIMIT - 0.1) > 1 > rk4_amplification(-RK4_REAL_LIMIT + 0.1)


def test_linear_chain_verdict_rate_state_and_step_in_closed_form():
    spec = _chain()
    opts = ODEOptions(max_step=((10.0, 0.5), (np.inf, 5.0)))
    kb = np.array([0.5, 0.55, 0.6, 0.9])           # 5-day steps damp rates up to 0.5571/day
    res = grid_stability(spec, {"ka": 0.1, "kb": kb}, amt=np.ones(4), t_end=200.0,
                         options=opts)
    np.testing.assert_array_equal(res.unstable, [False, False, True, True])
    assert res.fraction == 0.5 and not res.stable
    assert res.worst_rate == pytest.approx(0.9, rel=1e-10)   # the Jacobian's eigenvalue -kb
    assert res.worst_step == 5.0 and res.worst_time >= 10.0
    assert res.worst_state == "B"
    # 80 % of 2.785/0.9 = 2.48 days, rounded down to 2; the first segment was stable
    assert res.suggested == ((10.0, 0.5), (np.inf, 2.0))
    again = grid_stability(spec, {"ka": 0.1, "kb": kb}, amt=np.ones(4), t_end=200.0,
                           options=ODEOptions(max_step=res.suggested))
    assert again.stable
    # the verdict is what the solve does: flagged subjects blow up far past the true peak
    # (exact B below 0.6), the others stay below it (stable, if not accurate at 5-day steps)
    t = np.arange(0.0, 201.0, 5.0)
    b = rk4_states(spec, {"ka": 0.1, "kb": kb}, t, amt=np.ones(4), options=opts)[:, 1, :]
    exact = 0.1 / (kb[:, None] - 0.1) * (np.exp(-0.1 * t) - np.exp(-kb[:, None] * t))
    assert exact.max() < 0.6
    assert np.all(np.abs(b[:2]) < 0.6)
    assert np.all(np.abs(b[2:, -1]) > 50)


def test_near_limit_counts_steps_within_a_fifth_of_the_limit():
    """5-day steps: the limit is 0.557/day; within 20 % of it means above 0.446/day."""
    spec = _chain()
    kb = np.array([0.4, 0.44, 0.45, 0.5])
    res = grid_stability(spec, {"ka": 0.1, "kb": kb}, amt=np.ones(4), t_end=100.0,
                         options=ODEOptions(max_step=((np.inf, 5.0),)))
    assert res.stable
    np.testing.assert_array_equal(res.near_limit, [False, False, True, True])
    assert res.near_fraction == 0.5
    # the schedule suggested keeps a 20 % margin below the limit of 1.25 x 0.5/day: 3.56 -> 3
    assert res.suggested == ((np.inf, 3.0),)


def test_state_named_is_the_fast_one():
    spec = _chain()
    res = grid_stability(spec, {"ka": 0.8, "kb": 0.05}, amt=np.ones(1), t_end=100.0,
                         options=ODEOptions(max_step=((np.inf, 5.0),)))
    assert res.worst_state == "A" and res.worst_rate == pytest.approx(0.8, rel=1e-10)


def test_message_names_the_schedule_for_each_audience():
    spec = _chain()
    res = grid_stability(spec, {"ka": 0.1, "kb": 0.9}, amt=np.ones(1), t_end=100.0,
                         options=ODEOptions(max_step=((np.inf, 5.0),)))
    use_cli_hints(False)   # the hint style is per context; another test may have set it
    msg = res.message()
    assert "0.9/day" in msg and "state B" in msg and "0.557/day" in msg
    assert "[solver] max_step = [[inf, 2]]" in msg and "with_max_step" in msg
    use_cli_hints(True)
    try:
        assert "--max-step inf:2" in res.message()
    finally:
        use_cli_hints(False)


def test_antigen_driven_schedule_is_stable_over_its_priors():
    """Regression: 5-day tail steps made d_x (prior median 0.3/day) explode the solve in about
    2 % of prior draws, where the fits diverged; the shipped 3-day tail is stable."""
    spec = load_model("antigen_driven")
    blasts = {"BM_BLAST_PCT": np.array([5.0, 20.0, 60.0])}
    amt = np.array([0.3, 1.0, 3.0])
    ok = prior_stability(spec, amt=amt, t_end=365.0, n=400, seed=2, covariates=blasts)
    assert ok.stable, ok.message()
    old = ODEOptions(max_step=(*spec.max_step[:-1], (np.inf, 5.0)))
    bad = prior_stability(spec, amt=amt, t_end=365.0, n=400, seed=2, covariates=blasts,
                          options=old)
    assert 0.005 < bad.fraction < 0.05
    assert bad.worst_state == "X" and bad.worst_rate > RK4_REAL_LIMIT / 5.0
    assert bad.suggested[-1][1] <= 3.0 and bad.suggested[:-1] == spec.max_step[:-1]


def test_with_max_step_round_trips_through_toml():
    spec = load_model("antigen_driven").with_max_step([(14, 0.25), (np.inf, 2.5)])
    assert spec.max_step == ((14.0, 0.25), (np.inf, 2.5))
    assert "RK4 steps of ODE fits (at most): 0.25 day to day 14, then 2.5 day after" in (
        spec.to_text())   # what `ckmodel models NAME` prints
    assert spec_from_dict(__import__("tomllib").loads(spec.to_toml())).max_step == spec.max_step
    with pytest.raises(Exception, match="increase"):
        spec.with_max_step([(14, 0.25), (10, 1.0)])


def test_fit_warns_before_sampling_and_records_the_verdict():
    """An ODE fit checks its grid on prior draws, then on posterior draws (MAP: one draw)."""
    from ckmodel.fitting import fit
    from ckmodel.population import PopulationOptions
    from ckmodel.testing import simulate_ckdata

    spec = _chain(kb_prior="LogNormal(log(0.5), 0.2)").with_max_step([(np.inf, 5.0)])
    data, _ = simulate_ckdata(spec, n=4, dose=[1.0], seed=3, times=[1, 3, 7, 14, 28, 60, 90])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(data, spec, sampler="map", seed=1,
                  options=PopulationOptions(method="ode"))
    solver = [str(w.message) for w in caught if issubclass(w.category, SolverWarning)]
    assert any("drawn from its priors" in m and "state B" in m for m in solver), solver
    grid = res.meta["step_grid"]
    assert grid["prior"]["max_step"] == [[math.inf, 5.0]]
    assert 0.1 < grid["prior"]["unstable_fraction"] < 0.7
    assert grid["prior"]["suggested"][0][1] < 5.0
    assert grid["posterior"]["checked"] == 4
    assert 0 <= grid["posterior"]["near_limit_fraction"] <= 1
    note = [n for n in res.summary().notes if n.startswith("RK4 step grid")]
    assert len(note) == 1 and "subjects drawn from the priors" in note[0]


@pytest.mark.parametrize("name, bound", [
    ("expansion_biphasic", 0.01), ("expansion_lag_biphasic", 0.01), ("qpcr_flow_link", 0.01),
    ("one_cmt_oral", 0.0),
    # the exchange rates' broad priors reach 25/day; documented in the model file
    ("blood_marrow", 0.12),
])
def test_catalog_schedules_hold_over_the_priors(name, bound):
    """The schedule each catalog model's ODE fits use (switch fits of the closed forms) is
    stable over a year (365 of the model's time unit) for nearly all prior draws."""
    spec = load_model(name)
    cov = {c: np.array([1.0, 10.0, 40.0]) for c in spec.covariates}
    res = prior_stability(spec, amt=np.array([0.5, 1.0, 5.0]), t_end=365.0, n=400, seed=3,
                          covariates=cov)
    assert res.fraction <= bound, res.message()


def test_fit_with_a_stable_grid_says_nothing():
    """The same fit with rates well inside the 5-day steps' limit: no warning, 0 % recorded."""
    from ckmodel.fitting import fit
    from ckmodel.population import PopulationOptions
    from ckmodel.testing import simulate_ckdata

    spec = _chain(kb_prior="LogNormal(log(0.2), 0.1)").with_max_step([(np.inf, 5.0)])
    data, _ = simulate_ckdata(spec, n=4, dose=[1.0], seed=3, times=[1, 3, 7, 14, 28, 60, 90])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(data, spec, sampler="map", seed=1, options=PopulationOptions(method="ode"))
    assert not [w for w in caught if issubclass(w.category, SolverWarning)]
    grid = res.meta["step_grid"]
    assert grid["prior"]["unstable_fraction"] == 0 == grid["posterior"]["unstable_fraction"]
