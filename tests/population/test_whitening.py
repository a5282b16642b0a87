"""Whitened random effects: the same model in the coordinates of the conditional posterior.

Oracles: central differences for the hand-written reverse pass; dense linear algebra for the
normal conditional posterior the map must reproduce; the change of variables (the map is
affine in the whitened coordinates given the hyperparameters, so the log densities of the
whitened and the non-centred model differ by exactly its log-Jacobian); the closed-form
kernel's exact Jacobian for the data information.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytest

from ckmodel.errors import ModelSpecError
from ckmodel.population import prepare
from ckmodel.population.model import PopulationOptions, build_model
from ckmodel.population.predict import closed_kernels
from ckmodel.population.whitening import (
    data_information,
    whitened_parameters,
    whitening_from_posterior,
)
from ckmodel.population.whitening_op import whiten_backward, whiten_forward
from ckmodel.spec import load_model
from ckmodel.spec.model import to_scale
from ckmodel.testing import simulate_ckdata


def _inputs(seed: int = 0, n: int = 3, q: int = 4, n_all: int = 6, n_a: int = 2):
    """Random inputs of the kernels: 2 analytes, 2 parameters without a random effect."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n, q))
    typ = rng.normal(size=(n, n_all))
    v = rng.uniform(0.2, 1.0, q) * np.where(np.arange(q) % 2, -1.0, 1.0)   # signed SDs
    scales = rng.uniform(0.5, 3.0, n_a)
    mean = rng.normal(size=(n, n_all))
    jac = rng.normal(size=(n, n_a, 5, n_all))
    info = np.einsum("nark,narl->nakl", jac, jac)
    info[0, 1] = 0.0                                   # a subject without records of one analyte
    return u, typ, v, scales, info, mean


def _dense(u, typ, v, scales, info, mean, i):
    """Subject i's conditional posterior of eta by dense linear algebra."""
    q = u.shape[1]
    h = np.einsum("a,akl->kl", scales, info[i])
    prec = h[:q, :q] + np.diag(v ** -2.0)
    cond_mean = np.linalg.solve(prec, h[:q] @ (mean[i] - typ[i]))
    return cond_mean, np.linalg.inv(prec)


def test_reverse_pass_matches_central_differences():
    u, typ, v, scales, info, mean = _inputs()
    rng = np.random.default_rng(1)
    g_eta, g_lp = rng.normal(size=u.shape), 0.7

    def cost(u_, typ_, v_, s_):
        eta, lp = whiten_forward(u_, typ_, v_, s_, info, mean)
        return float(np.sum(g_eta * eta) + g_lp * lp)

    grads = whiten_backward(u, typ, v, scales, info, mean, g_eta, g_lp)
    args = [u, typ, v, scales]
    for k, x in enumerate(args):
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            up = [a.copy() for a in args]
            dn = [a.copy() for a in args]
            up[k][idx] += 1e-6
            dn[k][idx] -= 1e-6
            num[idx] = (cost(*up) - cost(*dn)) / 2e-6
        np.testing.assert_allclose(grads[k], num, rtol=1e-6, atol=1e-7)


def test_the_map_is_the_normal_conditional_posterior():
    u, typ, v, scales, info, mean = _inputs(seed=2)
    q = u.shape[1]
    zero = np.zeros_like(u)
    centre, _ = whiten_forward(zero, typ, v, scales, info, mean)
    for i in range(u.shape[0]):
        cond_mean, cond_cov = _dense(u, typ, v, scales, info, mean, i)
        np.testing.assert_allclose(centre[i], cond_mean, rtol=1e-10, atol=1e-12)
        # eta is affine in u: its columns are the map of the unit vectors
        cols = []
        for k in range(q):
            e = zero.copy()
            e[i, k] = 1.0
            cols.append(whiten_forward(e, typ, v, scales, info, mean)[0][i] - centre[i])
        m = np.array(cols).T
        np.testing.assert_allclose(m @ m.T, cond_cov, rtol=1e-10, atol=1e-12)


def test_the_log_density_term_is_the_prior_of_eta_with_the_jacobian():
    u, typ, v, scales, info, mean = _inputs(seed=3)
    eta, lp = whiten_forward(u, typ, v, scales, info, mean)
    expected = 0.0
    for i in range(u.shape[0]):
        _, cond_cov = _dense(u, typ, v, scales, info, mean, i)
        # eta_i ~ N(0, |v|), and |d eta_i / d u_i| = sqrt(det cond_cov)
        expected += np.sum(-0.5 * (eta[i] / v) ** 2 - np.log(np.abs(v))
                           - 0.5 * np.log(2 * np.pi))
        expected += 0.5 * np.linalg.slogdet(cond_cov)[1]
    np.testing.assert_allclose(lp, expected, rtol=1e-12)


def test_without_data_the_form_is_the_signed_non_centred_one():
    u, typ, v, scales, info, mean = _inputs(seed=4)
    eta, lp = whiten_forward(u, typ, v, scales, np.zeros_like(info), mean)
    np.testing.assert_allclose(eta, u * v, rtol=1e-14)
    np.testing.assert_allclose(lp, np.sum(-0.5 * u**2 - 0.5 * np.log(2 * np.pi)), rtol=1e-14)


@pytest.fixture(scope="module")
def setup():
    spec = load_model("expansion_biphasic")
    data, _ = simulate_ckdata(spec, n=6, seed=3, lloq={"PB_QPCR": 50.0})
    pdata = prepare(data, spec)
    return spec, pdata


@pytest.mark.parametrize("error", ["log_normal", "proportional", "student_t", "additive",
                                   "combined"])
def test_data_information_matches_the_closed_forms_exact_jacobian(setup, error):
    spec, pdata = setup
    rng = np.random.default_rng(6)
    theta = np.array([[p.value for p in spec.parameters]] * pdata.n_subjects)
    theta = theta * np.exp(rng.normal(0.0, 0.1, theta.shape))
    names = whitened_parameters(spec, PopulationOptions())
    s1, s2 = 30.0, 0.4
    info = data_information(spec, pdata, theta, names, {"PB_QPCR": error},
                            {"PB_QPCR": (s1, s2)})
    pred, jac = closed_kernels(spec, pdata)["PB_QPCR"](theta)
    scales = [p.scale for p in spec.parameters]
    # d f / d g(theta) = (df / dtheta) (dtheta / dg): theta (log scale), theta (1 - theta)
    # (logit: fb)
    rec = pdata.subject_index
    dtheta = np.where(np.array(scales) == "logit", theta * (1 - theta), theta)[rec]
    dfdg = jac * dtheta
    sens = {"log_normal": dfdg / pred[:, None], "proportional": dfdg / pred[:, None],
            "student_t": dfdg / pred[:, None] * np.sqrt((4.0 + 1) / (4.0 + 3)),
            "additive": dfdg,
            "combined": dfdg / np.sqrt(s1**2 + (s2 * pred[:, None]) ** 2)}[error]
    keep = ~pdata.blq
    cols = [spec.param_names.index(n) for n in names]
    for i in range(pdata.n_subjects):
        s = sens[keep & (rec == i)][:, cols]
        np.testing.assert_allclose(info[i, 0], s.T @ s, rtol=1e-5, atol=1e-8 * np.abs(
            s.T @ s).max())


def _whitened_pair(spec, pdata, info_scale):
    """The signed non-centred model and the whitened one with the data's information."""
    opts = PopulationOptions()
    names = whitened_parameters(spec, opts)
    theta = np.array([[p.value for p in spec.parameters]] * pdata.n_subjects)
    info = info_scale * data_information(spec, pdata, theta, names, {"PB_QPCR": "log_normal"},
                                         {"PB_QPCR": (0.5, None)})
    rng = np.random.default_rng(7)
    mean = np.stack([to_scale(theta[:, spec.param_names.index(n)],
                              spec.parameter(n).scale) for n in names], axis=1)
    mean = mean + rng.normal(0.0, 0.3, mean.shape)
    plain = build_model(spec, pdata, options=opts, fused=True)
    white = build_model(spec, pdata, options=opts, fused=True, whitening=(mean, info))
    return plain, white


@pytest.mark.parametrize("info_scale", [0.0, 1.0])
def test_log_densities_differ_by_the_log_jacobian(setup, info_scale):
    spec, pdata = setup
    plain, white = _whitened_pair(spec, pdata, info_scale)
    logp_plain, logp_white = plain.compile_logp(), white.compile_logp()
    outs = white.replace_rvs_by_values([white["eta"], white["omega"]])
    eta_fn = white.compile_fn(outs, inputs=white.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(8)
    q = len(plain.coords["iiv"])
    for _ in range(3):
        ip = white.initial_point()
        point = {k: val + rng.normal(0.0, 0.3, np.shape(val)) for k, val in ip.items()}
        eta, _ = eta_fn(point)
        v = np.array([point[f"omega_{n}_signed"] for n in plain.coords["iiv"]])
        other = dict(point, z=eta / v)
        # z = zeta = c + L^-T u: log |dz / du| = -sum log diag L, from the columns of the map
        jac = 0.0
        for i in range(pdata.n_subjects):
            cols = []
            for k in range(q):
                shifted = dict(point)
                shifted["z"] = point["z"].copy()
                shifted["z"][i, k] += 1.0
                cols.append((eta_fn(shifted)[0][i] - eta[i]) / v)
            jac += np.linalg.slogdet(np.array(cols).T)[1]
        np.testing.assert_allclose(logp_white(point), logp_plain(other) + jac, rtol=1e-9)


def test_numba_gradient_equals_the_python_backend(setup):
    spec, pdata = setup
    _, white = _whitened_pair(spec, pdata, 1.0)
    inputs = white.value_vars
    logp = white.logp()
    grad = pytensor.grad(logp, inputs)
    rng = np.random.default_rng(9)
    ip = white.initial_point()
    point = [ip[v.name] + rng.normal(0.0, 0.3, np.shape(ip[v.name])) for v in inputs]
    c_fn = pytensor.function(inputs, [logp, *grad], mode="FAST_RUN")
    nb_fn = pytensor.function(inputs, [logp, *grad], mode="NUMBA")
    for a, b in zip(c_fn(*point), nb_fn(*point), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_whitening_from_a_posterior_takes_its_means(setup):
    import arviz as az

    spec, pdata = setup
    rng = np.random.default_rng(10)
    theta = np.array([[p.value for p in spec.parameters]] * pdata.n_subjects)
    draws = theta * np.exp(rng.normal(0.0, 0.2, (2, 5, *theta.shape)))
    idata = az.from_dict(posterior={"theta": draws,
                                    "sigma_PB_QPCR": rng.uniform(0.3, 0.5, (2, 5))},
                         dims={"theta": ["subject", "parameter"]},
                         coords={"parameter": spec.param_names})
    names = whitened_parameters(spec, PopulationOptions())
    mean, info = whitening_from_posterior(idata, spec, pdata, names,
                                          {"PB_QPCR": "log_normal"})
    k = spec.param_names.index("rho")
    np.testing.assert_allclose(mean[:, names.index("rho")],
                               np.log(draws[..., k]).mean(axis=(0, 1)), rtol=1e-12)
    assert info.shape == (pdata.n_subjects, 1, len(names), len(names))
    assert np.all(np.linalg.eigvalsh(info[:, 0]) > -1e-8)       # information is PSD


def test_options_of_the_whitened_form(setup):
    spec, _ = setup
    assert PopulationOptions().centered == "auto"
    with pytest.raises(ModelSpecError, match="whitened and correlated"):
        PopulationOptions(centered="whitened", correlated=True).check(spec)
    with pytest.raises(ModelSpecError, match="one of auto, whitened, shrinkage"):
        PopulationOptions(centered="white").check(spec)
    fixed = PopulationOptions(fixed={"fb": 0.01})
    assert "fb" not in whitened_parameters(spec, fixed)
    assert whitened_parameters(spec, PopulationOptions())[:2] == ["f0", "rho"]
