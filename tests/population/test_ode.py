"""The PyTensor RK4 solver against scipy's solve_ivp, and its gradients against finite
differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest

from ckmodel.data import CKData
from ckmodel.population import prepare
from ckmodel.population.ode import ODEOptions, ode_outputs, step_grid
from ckmodel.solve import SolverOptions, evaluate_outputs, solve_states
from ckmodel.spec import load_model
from ckmodel.testing import simulate_ckdata

TIMES = (1.0, 4.0, 7.0, 10.0, 14.0, 21.0, 28.0, 56.0, 84.0)


@pytest.fixture(scope="module")
def setup():
    spec = load_model("antigen_driven")
    data, truth = simulate_ckdata(spec, n=3, dose=[1.0], seed=3, times=TIMES,
                                  covariates={"BM_BLAST_PCT": 40.0})
    pdata = prepare(data, spec)
    theta = truth["params"].loc[list(pdata.subjects), list(spec.param_names)].to_numpy()
    cov = {"BM_BLAST_PCT": np.full(pdata.n_subjects, 40.0)}
    th = pt.dmatrix("theta")
    out = ode_outputs(spec, pdata, th, cov, ODEOptions())
    f = pytensor.function([th], [out[a] for a in pdata.analytes])
    return spec, pdata, theta, cov, th, out, f


def test_step_grid_contains_observations_and_bounds_steps():
    opts = ODEOptions()
    grid = step_grid(np.array([1.0, 7.3, 50.0, 200.0]), 0.0, opts)
    assert {1.0, 7.3, 50.0, 200.0} <= set(grid)
    steps = np.diff(grid)
    assert np.all(steps[grid[:-1] < 14] <= 0.25 + 1e-12)
    assert np.all(steps[grid[:-1] < 35] <= 0.5 + 1e-12)
    assert np.all(steps <= 5.0 + 1e-12)


def test_rk4_matches_solve_ivp(setup):
    """RK4 with 0.25-day steps vs DOP853 at rtol 1e-10 on the observation records.

    RK4's global error ~ C (h * rate)^4 with rates <= ~1.5/day and h = 0.25 d: (0.375)^4 ~ 2e-2
    times a small constant; observed relative error is below 1e-3, asserted at 2e-3.
    """
    spec, pdata, theta, cov, *_, f = setup
    got = f(theta)
    params = {p: theta[:, j] for j, p in enumerate(spec.param_names)}
    t = np.unique(pdata.time)
    states = solve_states(spec, params, t, amt=pdata.amt[:, 0], covariates=cov,
                          options=SolverOptions(method="ode", ode_method="DOP853", rtol=1e-10,
                                                atol=1e-12))
    ref = evaluate_outputs(spec, states, params, t, cov)
    for a_i, a in enumerate(pdata.analytes):
        sel = pdata.analyte_index == a_i
        want = ref[a][pdata.subject_index[sel], np.searchsorted(t, pdata.time[sel])]
        np.testing.assert_allclose(got[a_i], want, rtol=2e-3)


def test_default_grid_error_over_a_varied_population():
    """antigen_driven's step grid (its ``[solver] max_step``) against DOP853 (rtol 1e-10) on
    200 varied subjects.

    Parameters are drawn with 1.5 times the spec's default IIV (prior medians of the IIV SDs)
    and blasts from 5 to 90 %, so expansion runs fast and slow. Measured when the grid was
    chosen (152 points, 5-day steps after day 100): CAR-T relative error 3.4e-4 at the 99th
    percentile, 3.0e-3 at most; log-blast error 4.4e-4 / 8.4e-4 while blasts are above
    0.1 %. The schedule shipped since 2026-12-08 (175 points here: 0.25-day steps to day 7,
    3-day steps from day 56) gives 4.1e-4 / 3.0e-3 and 4.3e-4 / 8.3e-4. Asserted with 2-3x
    margin.
    """
    from ckmodel.population.ode_kernel import kernel_for

    spec = load_model("antigen_driven")
    rng = np.random.default_rng(5)
    n = 200
    typ = np.array([spec.typical_values()[p] for p in spec.param_names])
    om = np.array([1.5 * p.iiv.median() if p.iiv is not None else 0.0 for p in spec.parameters])
    theta = typ * np.exp(om * rng.standard_normal((n, typ.size)))
    blast = np.round(np.clip(np.exp(rng.normal(np.log(30), 0.8, n)), 5, 90))
    times = np.array([1.0, 4.0, 7.0, 10.0, 14.0, 21.0, 28.0, 42.0, 56.0, 84.0, 180.0, 365.0])
    params = {p: theta[:, j] for j, p in enumerate(spec.param_names)}
    ref = solve_states(spec, params, times, amt=1.0, covariates={"BM_BLAST_PCT": blast},
                       options=SolverOptions(method="ode", ode_method="DOP853", rtol=1e-10,
                                             atol=1e-12))
    grid = step_grid(times, 0.0, ODEOptions.for_spec(spec))
    assert spec.max_step is not None and grid.size < 200  # the model's own schedule
    y0 = np.zeros((n, 5))
    y0[:, 0], y0[:, 3], y0[:, 4] = theta[:, 0], np.log(blast), 1.0
    got, _ = kernel_for(spec, ("BM_BLAST_PCT",)).forward(y0, theta, blast[:, None], grid,
                                                         np.searchsorted(grid, times),
                                                         np.zeros(0, dtype=np.int64))
    car = np.abs(got[:, :, :3].sum(axis=2) / ref[:, :3].sum(axis=1) - 1)
    assert np.quantile(car, 0.99) < 1e-3 and car.max() < 1e-2
    seen = np.exp(ref[:, 3]) > 0.1
    lbl = np.abs(got[:, :, 3] - ref[:, 3])[seen]
    assert np.quantile(lbl, 0.99) < 1e-3 and lbl.max() < 2e-3


def test_rk4_gradient_matches_finite_differences(setup):
    spec, pdata, theta, cov, th, out, _ = setup
    total = sum(pt.log(out[a]).sum() for a in pdata.analytes)
    g = pytensor.function([th], pytensor.grad(total, th))
    val = pytensor.function([th], total)
    grad = g(theta)
    rng = np.random.default_rng(0)
    for _ in range(4):
        d = rng.standard_normal(theta.shape) * theta * 1e-2
        h = 1e-4
        fd = (val(theta + h * d) - val(theta - h * d)) / (2 * h)
        # central differences with h = 1e-4 on a smooth function: error ~ h^2 * f''' ~ 1e-7
        assert np.sum(grad * d) == pytest.approx(fd, rel=1e-5)


def _compiled(spec, pdata, cov, solver, mode=None):
    th = pt.dmatrix("theta")
    out = ode_outputs(spec, pdata, th, cov, ODEOptions(solver=solver))
    total = sum(pt.log(out[a]).sum() for a in pdata.analytes)
    return pytensor.function([th], [total, pytensor.grad(total, th)], mode=mode)


@pytest.mark.slow  # compiling the scan's gradient takes ~35 s
def test_kernel_equals_scan_values_and_gradients(setup):
    """The numba kernel and the PyTensor scan implement the same RK4 scheme on the same grid,
    and the kernel's adjoint is the exact derivative of that scheme: they agree to rounding."""
    spec, pdata, theta, cov, *_ = setup
    v_k, g_k = _compiled(spec, pdata, cov, "kernel")(theta)
    v_s, g_s = _compiled(spec, pdata, cov, "scan")(theta)
    assert v_k == pytest.approx(v_s, rel=1e-12)
    np.testing.assert_allclose(g_k, g_s, rtol=1e-8, atol=1e-10 * np.abs(g_s).max())


@pytest.mark.parametrize("mode", ["NUMBA", "JAX"])
def test_kernel_backends_agree(setup, mode):
    """nutpie compiles through numba and numpyro/blackjax through JAX: both dispatches of the
    solver Op give the values and gradients of the Python/C path."""
    if mode == "JAX":
        pytest.importorskip("jax")
    spec, pdata, theta, cov, *_ = setup
    v_c, g_c = _compiled(spec, pdata, cov, "kernel")(theta)
    v_b, g_b = _compiled(spec, pdata, cov, "kernel", mode=mode)(theta)
    assert float(v_b) == pytest.approx(v_c, rel=1e-10)
    np.testing.assert_allclose(np.asarray(g_b), g_c, rtol=1e-7, atol=1e-10 * np.abs(g_c).max())


def test_switch_in_fit_solver_matches_numpy_solver():
    """A time-varying switch (e.g. ADA from its onset day) in the fitting solver against the
    NumPy simulator's solve_ivp with the same smooth switch; subjects without onset never switch.
    """
    base = load_model("antigen_driven")
    raw = dict(base.raw)
    raw["parameters"] = dict(raw["parameters"], ada_factor={
        "unit": "-", "prior": "LogNormal(log(3), 0.3)", "value": 3.0,
        "description": "effector death rate multiplier once anti-CAR antibodies appear"})
    raw["switches"] = {"ada": {"onset": "ADA_TIME", "parameter": "d_e", "factor": "ada_factor",
                               "width": 0.5}}
    from ckmodel.spec import spec_from_dict

    spec = spec_from_dict(raw)
    data, truth = simulate_ckdata(base, n=3, dose=[1.0], seed=3, times=TIMES,
                                  covariates={"BM_BLAST_PCT": 40.0})
    outcomes = pd.DataFrame({"ID": list(data.subjects), "ADA_TIME": [10.0, np.nan, 20.0]})
    data = CKData.from_frames(data.observations, data.doses, data.covariates,
                              outcomes=outcomes.set_index("ID"),
                              analytes={"BM_BLAST": "% of marrow cells"})
    pdata = prepare(data, spec)
    assert np.isnan(pdata.onsets["ada"][1])
    tp = truth["params"].loc[list(pdata.subjects)].assign(ada_factor=3.0)
    theta = tp[list(spec.param_names)].to_numpy()
    cov = {"BM_BLAST_PCT": np.full(pdata.n_subjects, 40.0)}
    th = pt.dmatrix("theta")
    out = ode_outputs(spec, pdata, th, cov, ODEOptions())
    got = pytensor.function([th], out["PB_QPCR"])(theta)
    params = {p: theta[:, j] for j, p in enumerate(spec.param_names)}
    t = np.unique(pdata.time)
    states = solve_states(spec, params, t, amt=pdata.amt[:, 0], covariates=cov,
                          onsets={"ada": pdata.onsets["ada"]},
                          options=SolverOptions(method="ode", ode_method="DOP853", rtol=1e-10,
                                                atol=1e-12))
    ref = evaluate_outputs(spec, states, params, t, cov)["PB_QPCR"]
    sel = pdata.analyte_index == list(pdata.analytes).index("PB_QPCR")
    want = ref[pdata.subject_index[sel], np.searchsorted(t, pdata.time[sel])]
    np.testing.assert_allclose(got, want, rtol=2e-3)
    # the switch matters: without it the ADA subjects' late levels are higher
    states0 = solve_states(base, params, t, amt=pdata.amt[:, 0], covariates=cov)
    late = t >= 28
    assert np.all(evaluate_outputs(base, states0, params, t, cov)["PB_QPCR"][0, late]
                  > 1.5 * ref[0, late])


@pytest.mark.parametrize("student", [False, True], ids=["fused", "student_t"])
def test_ode_potentials_share_one_solver_and_equal_the_pointwise_model(student):
    """``build_model(fused=True)`` on an ODE model: the same log density and gradient as the
    model with observed variables. With fusable error models all analytes are one compiled
    likelihood call (solve, records, one adjoint); with a Student-t analyte each analyte's
    pointwise terms are a potential, sharing one solver node and one adjoint."""
    from pytensor.graph.traversal import io_toposort

    from ckmodel.population import build_model
    from ckmodel.population.model import PopulationOptions
    from ckmodel.population.ode_loglik import ODELogLikOp
    from ckmodel.population.ode_op import ODESolveOp, ODEVJPOp

    spec = load_model("antigen_driven")
    data, _ = simulate_ckdata(spec, n=4, dose=[1.0], seed=2, times=TIMES,
                              covariates={"BM_BLAST_PCT": 30.0},
                              lloq={"PB_QPCR": 50.0, "BM_QPCR": 50.0, "BM_BLAST": 0.1})
    pdata = prepare(data, spec)
    assert len(pdata.analytes) == 3 and pdata.blq.any()
    opts = PopulationOptions(method="ode", error={"BM_QPCR": "student_t"} if student else {})
    models = {f: build_model(spec, pdata, options=opts, fused=f) for f in (False, True)}
    want = [f"loglik_{a}" for a in pdata.analytes] if student else ["loglik"]
    assert [p.name for p in models[True].potentials] == want
    assert not models[True].observed_RVs
    assert ({v.name for v in models[True].free_RVs} == {v.name for v in models[False].free_RVs})
    counts, fns = {}, {}
    for f, m in models.items():
        lp = m.logp()
        grads = pytensor.grad(lp, m.value_vars)
        ops = [type(n.op) for n in io_toposort(m.value_vars, grads)]
        counts[f] = {k: ops.count(k) for k in (ODESolveOp, ODEVJPOp, ODELogLikOp)}
        fns[f] = pytensor.function(m.value_vars, [lp, *grads])  # one compile per model
    if student:
        # one adjoint for all analytes (the observed-variable model has one per analyte: 3
        # with PyMC 5.28, which builds each observed variable's log density on its own copy)
        assert counts[True][ODEVJPOp] == 1 <= counts[False][ODEVJPOp]
        assert counts[True][ODELogLikOp] == 0
    else:
        assert counts[True] == {ODESolveOp: 0, ODEVJPOp: 0, ODELogLikOp: 1}
    ip = models[False].initial_point()
    names = [v.name for v in models[False].value_vars]
    assert names == [v.name for v in models[True].value_vars]
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = [ip[k] + rng.uniform(-0.3, 0.3, np.shape(ip[k])) for k in names]
        out = {f: fn(*x) for f, fn in fns.items()}
        assert out[True][0] == pytest.approx(out[False][0], rel=1e-12)
        for a, b in zip(out[True][1:], out[False][1:], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_kernel_solves_each_subject_only_to_its_last_needed_point():
    """``upto``: a subject is solved to its last needed saved point only; later saved points
    are copies of that state and their adjoints land on it. Against the full solve: the same
    states where needed (bitwise: the same operations), and the gradient of the copy
    semantics (adjoints moved onto the last needed point by hand) to rounding."""
    from ckmodel.population.ode_kernel import kernel_for

    spec = load_model("antigen_driven")
    k = kernel_for(spec, ("BM_BLAST_PCT",))
    rng = np.random.default_rng(2)
    n = 5
    typ = np.array([spec.typical_values()[p] for p in spec.param_names])
    theta = typ * np.exp(0.2 * rng.standard_normal((n, typ.size)))
    blast = np.array([[10.0], [30.0], [50.0], [70.0], [20.0]])
    times = np.array([1.0, 7.0, 14.0, 28.0, 90.0, 180.0])
    grid = step_grid(times, 0.0, ODEOptions.for_spec(spec))
    save = np.searchsorted(grid, times)
    y0 = np.column_stack([theta[:, 0], np.zeros(n), np.zeros(n), np.log(blast[:, 0]),
                          np.ones(n)])
    upto = np.array([6, 4, 1, 0, 2], dtype=np.int64)
    full, traj_full = k.forward(y0, theta, blast, grid, save, np.zeros(0, dtype=np.int64))
    part, traj = k.forward(y0, theta, blast, grid, save, upto)
    gout = rng.standard_normal(full.shape)
    moved = gout.copy()
    for s, ks in enumerate(upto):
        if ks:
            np.testing.assert_array_equal(part[s, :ks], full[s, :ks])
            np.testing.assert_array_equal(part[s, ks:], np.broadcast_to(full[s, ks - 1],
                                                                        part[s, ks:].shape))
            moved[s, ks - 1] += gout[s, ks:].sum(axis=0)
            moved[s, ks:] = 0.0
        else:
            np.testing.assert_array_equal(part[s], np.broadcast_to(y0[s], part[s].shape))
    gy_p, gp_p = k.backward(traj, theta, blast, grid, save, gout, upto)
    gy_f, gp_f = k.backward(traj_full, theta, blast, grid, save, moved,
                            np.zeros(0, dtype=np.int64))
    rows = upto > 0
    np.testing.assert_allclose(gy_p[rows], gy_f[rows], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gp_p[rows], gp_f[rows], rtol=1e-12, atol=1e-14)
    # no saved point needed: the copies are of the initial state
    np.testing.assert_allclose(gy_p[3], gout[3].sum(axis=0), rtol=1e-14)
    assert np.all(gp_p[3] == 0.0)
