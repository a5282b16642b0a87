"""The fused closed-form kernel against the NumPy closed form, finite differences and the plain
PyTensor graph it replaces (values and gradients of the whole model log density)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.graph.traversal import ancestors

from ckmodel.population import prepare
from ckmodel.population.closed_kernel import ClosedFormKernel, ClosedFormOp
from ckmodel.population.model import PopulationOptions, build_model
from ckmodel.solve import evaluate_outputs, solve_states
from ckmodel.spec import load_model
from ckmodel.testing import simulate_ckdata

ROOT = Path(__file__).resolve().parents[2]


def _theta(spec, n_s, rng):
    base = np.array([p.value for p in spec.parameters])
    return base * np.exp(rng.normal(0.0, 0.3, (n_s, base.size)))


def _multi_dose(n_s, rng):
    """Three subjects with 1-3 doses at different times (NaN pads), records before and after."""
    amt = np.array([[100.0, np.nan, np.nan], [50.0, 80.0, np.nan], [20.0, 30.0, 40.0]])[:n_s]
    dose_time = np.array([[0.0, np.nan, np.nan], [0.0, 12.0, np.nan], [2.0, 5.0, 30.0]])[:n_s]
    times = np.array([0.0, 0.5, 1.0, 3.0, 6.0, 12.0, 12.5, 24.0, 31.0, 48.0])
    sidx = np.repeat(np.arange(n_s), times.size)
    return amt, dose_time, sidx, np.tile(times, n_s)


def _reference(spec, analyte, theta, amt, dose_time, sidx, time, cov=None):
    params = {p: theta[:, j] for j, p in enumerate(spec.param_names)}
    t = np.unique(time)
    states = solve_states(spec, params, t, amt=amt, dose_time=dose_time, covariates=cov)
    out = evaluate_outputs(spec, states, params, t, cov)[analyte]
    return out[sidx, np.searchsorted(t, time)]


@pytest.mark.parametrize("model,analyte,doses", [("one_cmt_oral", "CP", 3),
                                                  ("expansion_biphasic", "PB_QPCR", 1)])
def test_kernel_matches_numpy_closed_form(model, analyte, doses):
    """Repeated doses superpose for the linear time-invariant PK model; the CAR-T model gets
    one infusion per subject (at different times), which is what its closed form describes."""
    spec = load_model(model)
    rng = np.random.default_rng(1)
    amt, dose_time, sidx, time = _multi_dose(3, rng)
    amt, dose_time = amt[:, :doses], dose_time[:, :doses]
    theta = _theta(spec, 3, rng)
    kern = ClosedFormKernel(spec, analyte, np.zeros((3, 0)), [], amt, dose_time, sidx, time)
    pred, _ = kern(theta)
    ref = _reference(spec, analyte, theta, amt, dose_time, sidx, time)
    np.testing.assert_allclose(pred, ref, rtol=1e-10, atol=1e-300)
    # records before a subject's first dose predict nothing
    first = np.nanmin(dose_time, axis=1)[sidx]
    assert np.all(pred[time < first] == 0.0)


@pytest.mark.parametrize("model", ["expansion_biphasic", "expansion_lag_biphasic",
                                   "one_cmt_oral", "blood_marrow", "qpcr_flow_link"])
def test_kernel_jacobian_matches_finite_differences(model):
    """Central differences on the log scale of each parameter (step 1e-6): truncation error
    ~1e-12 relative, rounding ~1e-10; asserted at 1e-6 relative."""
    spec = load_model(model)
    rng = np.random.default_rng(2)
    amt, dose_time, sidx, time = _multi_dose(3, rng)
    theta = _theta(spec, 3, rng)
    for out in spec.outputs:
        kern = ClosedFormKernel(spec, out.name, np.zeros((3, 0)), [], amt, dose_time, sidx,
                                time)
        _, jac = kern(theta)
        for j in range(theta.shape[1]):
            h = 1e-6 * theta[:, j]
            up, dn = theta.copy(), theta.copy()
            up[:, j] += h
            dn[:, j] -= h
            fd = (kern(up)[0] - kern(dn)[0]) / (2 * h[sidx])
            scale = np.maximum(np.abs(fd), 1e-8 * np.abs(kern(theta)[0]) / theta[sidx, j])
            np.testing.assert_allclose(jac[:, j], fd, rtol=1e-6, atol=1e-6 * scale.max(),
                                       err_msg=f"{model} {out.name} d/d{spec.param_names[j]}")


def test_kernel_with_covariates(tmp_path):
    text = (ROOT / "models" / "expansion_biphasic.toml").read_text()
    text = text.replace('amount_unit = "1e6 CAR+ T cells/kg"',
                        'amount_unit = "1e6 CAR+ T cells/kg"\ncovariates = ["WT"]')
    text = text.replace('E = "(1 - fb) * f0 * AMT * exp(',
                        'E = "(WT / 70) * (1 - fb) * f0 * AMT * exp(')
    text = text.replace('M = "fb * f0 * AMT * exp(', 'M = "(WT / 70) * fb * f0 * AMT * exp(')
    text = text.replace('E = "(1 - fb) * f0 * AMT"', 'E = "(WT / 70) * (1 - fb) * f0 * AMT"')
    text = text.replace('M = "fb * f0 * AMT"', 'M = "(WT / 70) * fb * f0 * AMT"')
    path = tmp_path / "wt.toml"
    path.write_text(text)
    spec = load_model(path)
    rng = np.random.default_rng(3)
    amt, dose_time, sidx, time = _multi_dose(3, rng)
    amt, dose_time = amt[:, :1], dose_time[:, :1]
    theta = _theta(spec, 3, rng)
    wt = np.array([50.0, 70.0, 100.0])
    kern = ClosedFormKernel(spec, "PB_QPCR", wt[:, None], ["WT"], amt, dose_time, sidx, time)
    pred, _ = kern(theta)
    ref = _reference(spec, "PB_QPCR", theta, amt, dose_time, sidx, time, cov={"WT": wt})
    np.testing.assert_allclose(pred, ref, rtol=1e-10)


@pytest.fixture(scope="module")
def example_models():
    spec = load_model("expansion_biphasic")
    data, _ = simulate_ckdata(spec, n=6, seed=4, lloq={"PB_QPCR": 5.0})
    pdata = prepare(data, spec)
    assert pdata.blq.any() and not pdata.blq.all()
    return {m: build_model(spec, pdata, options=PopulationOptions(method=m))
            for m in ("closed", "closed_graph")}


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_model_log_density_and_gradient_match_graph(example_models, mode):
    """The whole model's log density and gradient, kernel vs plain PyTensor graph, at random
    points: the same function, so equal to rounding (1e-9 relative)."""
    fns = {}
    for name, m in example_models.items():
        logp = m.logp()
        fns[name] = pytensor.function(m.value_vars, [logp, *pt.grad(logp, m.value_vars)],
                                      mode=mode)
    m = example_models["closed"]
    ip = m.initial_point()
    rng = np.random.default_rng(5)
    for _ in range(3):
        args = [np.asarray(ip[v.name]) + rng.normal(0, 0.3, np.shape(ip[v.name]))
                for v in m.value_vars]
        a, b = fns["closed"](*args), fns["closed_graph"](*args)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)


def test_op_jax_backend_matches_numba(example_models):
    pytest.importorskip("jax")
    m = example_models["closed"]
    op_nodes = [v.owner for v in ancestors([m.logp()])
                if v.owner is not None and isinstance(v.owner.op, ClosedFormOp)]
    assert op_nodes
    op = op_nodes[0].op
    theta = _theta(load_model("expansion_biphasic"), 6, np.random.default_rng(6))
    import jax

    jax.config.update("jax_enable_x64", True)
    pred_j, jac_j = op.kernel.jax_function()(theta)
    pred_n, jac_n = op.kernel(theta)
    np.testing.assert_allclose(np.asarray(pred_j), pred_n, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(jac_j), jac_n, rtol=1e-9, atol=1e-12)


def test_op_gradient_of_jacobian_output_is_refused():
    spec = load_model("expansion_biphasic")
    amt, dose_time, sidx, time = _multi_dose(2, None)
    kern = ClosedFormKernel(spec, "PB_QPCR", np.zeros((2, 0)), [], amt, dose_time, sidx, time)
    th = pt.dmatrix("theta")
    _, jac = ClosedFormOp(kern)(th)
    with pytest.raises(NotImplementedError, match="Jacobian output"):
        pt.grad(jac.sum(), th)


def test_saturated_gates_give_the_doubles_of_the_full_formulas():
    """Past |x| = GATE_SATURATED the kernels' softplus and sigmoid skip exp and log1p; the
    values must be the same doubles as the formulas they shortcut (``exp(-|x|)`` is then
    below half an ulp of 1), and match SciPy elsewhere."""
    from scipy.special import expit

    from ckmodel.population.codegen import GATE_SATURATED, compile_source

    src = ("def gates(x, out):\n"
           "    for k in range(x.shape[0]):\n"
           "        out[k, 0], out[k, 1] = _softplus_sigmoid(x[k])\n"
           "        out[k, 2] = _softplus(x[k])\n"
           "        out[k, 3] = _sigmoid(x[k])\n")
    gates = compile_source(src, "gates")
    x = np.concatenate([np.linspace(-80.0, 80.0, 16001),
                        np.nextafter(GATE_SATURATED, 0.0) * np.array([-1.0, 1.0]),
                        GATE_SATURATED * np.array([-1.0, 1.0])])
    out = np.empty((x.size, 4))
    gates(x, out)
    e = np.exp(-np.abs(x))
    full_sp = np.maximum(x, 0.0) + np.log1p(e)
    full_sg = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    high, low = x >= GATE_SATURATED, x <= -GATE_SATURATED
    assert high.sum() > 3500 and low.sum() > 3500
    for col, full in ((0, full_sp), (2, full_sp), (1, full_sg), (3, full_sg)):
        np.testing.assert_array_equal(out[high, col], full[high])
        # below -37 both are exp(x) (NumPy's and libm's exp may differ by an ulp)
        np.testing.assert_allclose(out[low, col], np.exp(x[low]), rtol=3e-16, atol=0.0)
        np.testing.assert_allclose(out[:, col], full, rtol=3e-16, atol=0.0)
    np.testing.assert_allclose(out[:, 0], np.logaddexp(0.0, x), rtol=1e-15, atol=0.0)
    np.testing.assert_allclose(out[:, 1], expit(x), rtol=1e-15, atol=0.0)
