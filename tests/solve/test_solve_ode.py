"""ODE integration: methods agree, chunking, dose events, time-varying switches."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.special import expit

from ckmodel.errors import SolverError
from ckmodel.solve import SolverOptions, solve_states
from ckmodel.spec import load_model

BLASTS = np.array([2.0, 20.0, 50.0, 85.0])  # % marrow blasts, one per subject
T_YEAR = np.linspace(0.0, 365.0, 74)


@pytest.fixture(scope="module")
def antigen():
    return load_model("antigen_driven")


@pytest.fixture(scope="module")
def antigen_subjects(antigen):
    rng = np.random.default_rng(11)
    return {p.name: p.value * np.exp(0.3 * rng.standard_normal(BLASTS.size))
            for p in antigen.parameters}


@pytest.fixture(scope="module")
def antigen_solutions(antigen, antigen_subjects):
    cov = {"BM_BLAST_PCT": BLASTS}
    return {m: solve_states(antigen, antigen_subjects, T_YEAR, amt=1.0, covariates=cov,
                            options=SolverOptions(method="ode", ode_method=m, rtol=1e-8,
                                                  atol=1e-10))
            for m in ("RK45", "DOP853", "LSODA", "BDF")}


def test_antigen_driven_solution_is_plausible(antigen, antigen_solutions):
    y = antigen_solutions["DOP853"]
    assert y.shape == (BLASTS.size, 5, T_YEAR.size)
    i = {s: k for k, s in enumerate(antigen.state_names)}
    lin = [i[s] for s in ("E", "M", "X", "N")]  # lL is log blasts, any sign
    assert np.all(np.isfinite(y)) and np.all(y[:, lin] > -1e-9)  # non-negative up to atol
    # blasts stay within (0, 100] % of marrow cells
    assert np.all(y[:, i["lL"]] <= np.log(100.0) + 1e-9)
    np.testing.assert_allclose(np.exp(y[:, i["lL"], 0]), BLASTS, rtol=1e-14)  # [initial] lL
    np.testing.assert_allclose(y[:, i["N"], 0], 1.0, rtol=1e-14)     # [initial] N
    # antigen drives expansion: CAR-T rise well above the infused level in every subject
    assert np.all(y[:, i["E"]].max(axis=1) > 10 * y[:, i["E"], 0])


@pytest.mark.parametrize("method", ["RK45", "LSODA", "BDF"])
def test_ode_methods_agree(antigen_solutions, method):
    # Each solve runs at rtol 1e-8, whose global error on this system is ~1e-5 at most
    # (measured); states that fall below 1e-9 (blasts cleared, exhausted cells) are controlled
    # only by the absolute tolerance 1e-10, hence atol 1e-9 in the comparison.
    np.testing.assert_allclose(antigen_solutions[method], antigen_solutions["DOP853"],
                               rtol=1e-4, atol=1e-9)


def test_chunking_does_not_change_results_beyond_tolerance(antigen, antigen_subjects):
    cov = {"BM_BLAST_PCT": BLASTS}
    runs = {c: solve_states(antigen, antigen_subjects, T_YEAR, amt=1.0, covariates=cov,
                            options=SolverOptions(method="ode", rtol=1e-8, atol=1e-10, chunk=c))
            for c in (3, 1000)}
    # Stacked subjects share one adaptive step sequence (RMS error norm over the stack), so
    # chunks of 3 and 1000 give the same answer to solver accuracy, not bit for bit: measured
    # max relative difference ~1e-6 at rtol 1e-8.
    np.testing.assert_allclose(runs[3], runs[1000], rtol=1e-5, atol=1e-9)
    # a chunk is solved on its own: same subjects in the same chunk split give equal results
    first = solve_states(antigen, {k: v[:3] for k, v in antigen_subjects.items()}, T_YEAR,
                         amt=1.0, covariates={"BM_BLAST_PCT": BLASTS[:3]},
                         options=SolverOptions(method="ode", rtol=1e-8, atol=1e-10))
    np.testing.assert_array_equal(runs[3][:3], first)


def test_covariate_is_required(antigen, antigen_subjects):
    with pytest.raises(KeyError, match="BM_BLAST_PCT"):
        solve_states(antigen, antigen_subjects, T_YEAR, amt=1.0)


def test_bad_inputs(antigen, antigen_subjects):
    cov = {"BM_BLAST_PCT": BLASTS}
    with pytest.raises(ValueError, match="non-decreasing"):
        solve_states(antigen, antigen_subjects, [0.0, 2.0, 1.0], amt=1.0, covariates=cov)
    with pytest.raises(ValueError, match="doses given for 3 subjects"):
        solve_states(antigen, antigen_subjects, T_YEAR, amt=[1.0, 1.0, 1.0], covariates=cov)
    with pytest.raises(KeyError, match="no value for parameter 'r_exp'"):
        solve_states(antigen, {k: v for k, v in antigen_subjects.items() if k != "r_exp"},
                     T_YEAR, amt=1.0, covariates=cov)
    bad = dict(antigen_subjects, r_exp=np.ones(3))
    with pytest.raises(ValueError, match="different lengths"):
        solve_states(antigen, bad, T_YEAR, amt=1.0, covariates=cov)


def test_failed_solve_raises_solver_error(antigen, antigen_subjects):
    # no saturation (Emax huge) and a huge expansion rate: effectors overflow at once
    p = dict(antigen_subjects, r_exp=np.full(BLASTS.size, 1e300), Emax=np.full(BLASTS.size, 1e300))
    with np.errstate(all="ignore"), pytest.raises(SolverError, match="ODE solve"):
        solve_states(antigen, p, T_YEAR, amt=1.0, covariates={"BM_BLAST_PCT": BLASTS},
                     options=SolverOptions(method="ode"))


# --------------------------------------------------------------------------- switches
SWITCH_MODEL = """
name = "elimination_with_switch"
description = "first-order loss whose rate is multiplied by fk from a subject's onset on"
time_unit = "day"

[states]
A = "amount"

[parameters.k]
prior = "LogNormal(log(0.1), 0.5)"
value = 0.1

[parameters.fk]
prior = "LogNormal(log(3), 0.5)"
value = 3.0

[odes]
A = "-k * A"

[dosing]
A = "AMT"

[solution]
A = "AMT * exp(-k * t)"

[outputs.C]
value = "A"

[switches.toci]
onset = "TOCI_TIME"
parameter = "k"
factor = "fk"
width = 0.25
"""


@pytest.fixture(scope="module")
def switch_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "switch.toml"
    path.write_text(SWITCH_MODEL, encoding="utf-8")
    return load_model(path)


def _hand_switch(k, fk, onset, w, t):
    def rhs(tt, y):
        return [-k * (1 + (fk - 1) * expit((tt - onset) / w)) * y[0]]

    s = solve_ivp(rhs, (0.0, t[-1]), [1.0], t_eval=t, method="DOP853", rtol=1e-12,
                  atol=1e-14)
    assert s.success
    return s.y[0]


def test_switch_model_parses(switch_spec):
    (sw,) = switch_spec.switches
    assert (sw.name, sw.onset, sw.parameter, sw.factor, sw.width) == ("toci", "TOCI_TIME", "k",
                                                                      "fk", 0.25)
    assert "### Time-varying switches" in switch_spec.to_markdown()


def test_switch_off_and_on(switch_spec):
    t = np.linspace(0.0, 30.0, 301)
    k, fk, w = np.array([0.1, 0.1, 0.2]), np.array([3.0, 3.0, 0.5]), 0.25
    onset = np.array([np.nan, 5.0, 12.0])
    opts = SolverOptions(method="auto", ode_method="DOP853", rtol=1e-11, atol=1e-13)
    y = solve_states(switch_spec, {"k": k, "fk": fk}, t, amt=1.0, onsets={"toci": onset},
                     options=opts)[:, 0]
    # no onset: the unswitched model (closed form A = exp(-k t))
    np.testing.assert_allclose(y[0], np.exp(-0.1 * t), rtol=1e-12)
    # no onsets at all: the same
    y0 = solve_states(switch_spec, {"k": 0.1, "fk": 3.0}, t, amt=1.0)[0, 0]
    np.testing.assert_allclose(y0, np.exp(-0.1 * t), rtol=1e-15)
    for i in (1, 2):
        ref = _hand_switch(k[i], fk[i], onset[i], w, t)
        # both integrations at rtol ~1e-11 over 30 d
        np.testing.assert_allclose(y[i], ref, rtol=1e-8, atol=0)
        # before the onset the subject follows the unswitched rate: 4 d = 16 widths before it
        # the gate has added k |fk - 1| w exp(-16) < 6e-9 to the log amount
        before = t < onset[i] - 4.0
        assert before.sum() >= 10
        np.testing.assert_allclose(y[i, before], np.exp(-k[i] * t[before]), rtol=1e-7)
        # ... and well after it the multiplied one: log-slope -k * fk
        late = t > onset[i] + 10 * w
        slope = np.polyfit(t[late], np.log(y[i, late]), 1)[0]
        assert slope == pytest.approx(-k[i] * fk[i], rel=1e-4)


def test_closed_method_refuses_an_active_switch(switch_spec):
    with pytest.raises(SolverError, match="active"):
        solve_states(switch_spec, {"k": 0.1, "fk": 3.0}, [0.0, 1.0], amt=1.0,
                     onsets={"toci": 0.5}, options=SolverOptions(method="closed"))


def test_late_onset_does_not_warn(switch_spec):
    t = np.array([0.0, 100.0, 300.0])
    y = solve_states(switch_spec, {"k": 0.01, "fk": 3.0}, t, amt=1.0, onsets={"toci": 250.0})
    assert y[0, 0, 1] == pytest.approx(np.exp(-1.0), rel=1e-6)


def test_ode_solve_stops_with_a_clear_error_past_its_evaluation_budget(antigen):
    """Extreme rates make RK45 crawl; the solve stops at ``max_rhs_evals`` and says where."""
    params = {p: np.array([antigen.typical_values()[p]]) for p in antigen.param_names}
    cov = {"BM_BLAST_PCT": np.array([30.0])}
    t = np.array([1.0, 28.0, 365.0])
    ok = solve_states(antigen, params, t, amt=1.0, covariates=cov,
                      options=SolverOptions(method="ode"))
    assert np.all(np.isfinite(ok))
    with pytest.raises(SolverError, match=r"stopped at t=.* after 50 right-hand-side "
                                          r"evaluations.*max_rhs_evals"):
        solve_states(antigen, params, t, amt=1.0, covariates=cov,
                     options=SolverOptions(method="ode", max_rhs_evals=50))
    fast = dict(params, r_exp=np.array([1e6]), d_e=np.array([1e6]))  # stiff: rates of 1e6/day
    with pytest.raises(SolverError, match="right-hand-side evaluations"):
        solve_states(antigen, fast, t, amt=1.0, covariates=cov,
                     options=SolverOptions(method="ode", max_rhs_evals=20_000))
