"""Exposure-response models against maximum likelihood, hand formulas and closed forms.

Sampling tests are seeded, small (2 chains x (500 + 500)) and check convergence before they
compare: with 400 subjects and weakly informative priors the posterior median sits on the
maximum-likelihood estimate to a small fraction of the posterior SD (0.25 SD is allowed:
Monte-Carlo error of a median with ESS >= 400 is ~0.06 SD, prior pull ~0.05 SD here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special

from ckmodel.response.fit import fit_response
from ckmodel.response.likelihoods import make_design, weibull_model
from ckmodel.response.models import ResponseFit, load_response

N = 400
SAMPLING = dict(draws=500, tune=500, chains=2)


def _ids(n):
    return pd.Index([f"P{i:03d}" for i in range(n)], name="ID")


def _close(fit, mle, names, tol=0.25):
    assert fit.meta["convergence"]["ok"], fit.meta["convergence"]["problems"]
    coef = fit.coefficients().set_index("term")
    for name, value in zip(names, mle, strict=True):
        row = coef.loc[name]
        assert abs(row["median"] - value) < tol * row["sd"], (name, row["median"], value)


def test_logistic_posterior_median_is_the_mle_and_probabilities_follow():
    rng = np.random.default_rng(11)
    auc = np.exp(rng.normal(np.log(1e5), 1.0, N))
    blast = rng.uniform(5, 90, N)
    y = rng.binomial(1, special.expit(-8.0 + 0.7 * np.log(auc) - 0.015 * blast))
    o = pd.DataFrame({"RESP": y.astype(float), "AUC": auc, "BLAST": blast}, index=_ids(N))
    fit = fit_response(o, "RESP", exposure="AUC", covariates=["BLAST"], seed=1, **SAMPLING)
    X = np.column_stack([np.ones(N), np.log(auc), blast])

    def nll(b):
        eta = X @ b
        return -np.sum(y * eta - np.logaddexp(0.0, eta))

    mle = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    _close(fit, mle, ["intercept", "log(AUC)", "BLAST"])
    assert fit.kind == "binary" and fit.model == "logistic" and fit.meta["n"] == N
    # the probability at the data's mean blast, against the MLE's curve
    p = fit.probability([3e4, 3e5], covariates={"BLAST": 40.0}).mean(axis=0)
    mle_p = special.expit(mle[0] + mle[1] * np.log([3e4, 3e5]) + mle[2] * 40.0)
    np.testing.assert_allclose(p, mle_p, atol=0.03)
    # the exposure giving 30 %: inverts the curve draw by draw
    x30 = fit.exposure_at(0.3, covariates={"BLAST": 40.0})
    back = np.diag(fit.probability(x30, covariates={"BLAST": 40.0}))
    np.testing.assert_allclose(back, 0.3, rtol=1e-9)


def test_proportional_odds_against_the_mle_with_ordered_cuts():
    rng = np.random.default_rng(5)
    cmax = np.exp(rng.normal(np.log(1e4), 1.2, N))
    latent = 1.0 * np.log(cmax / 1e4) + rng.logistic(size=N)
    grade = np.searchsorted(np.array([-1.0, 1.2, 2.8]), latent)  # 0..3
    o = pd.DataFrame({"CRS_GRADE": grade.astype(float), "CMAX": cmax}, index=_ids(N))
    fit = fit_response(o, "CRS_GRADE", exposure="CMAX", seed=2, **SAMPLING)
    x = np.log(cmax)

    def nll(p):
        b, c = p[0], np.cumsum(np.concatenate([[p[1]], np.exp(p[2:])]))
        cdf = special.expit(np.concatenate([[-np.inf], c, [np.inf]])[None, :] - b * x[:, None])
        prob = cdf[np.arange(N), grade + 1] - cdf[np.arange(N), grade]
        return -np.sum(np.log(np.maximum(prob, 1e-300)))

    start = np.array([0.5, 0.5 * np.log(1e4) - 1.0, np.log(2.0), np.log(1.5)])
    res = optimize.minimize(nll, start, method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 40_000,
                                     "maxfev": 40_000})
    assert res.success, res.message
    b, cuts = res.x[0], np.cumsum(np.concatenate([[res.x[1]], np.exp(res.x[2:])]))
    _close(fit, [b, *cuts], ["log(CMAX)", "cut_1", "cut_2", "cut_3"])
    assert fit.meta["categories"] == [0, 1, 2, 3]
    # P(grade >= 3) at the reference exposure, against the MLE
    p3 = fit.probability([1e4], threshold=3).mean()
    assert p3 == pytest.approx(special.expit(b * np.log(1e4) - cuts[2]), abs=0.03)


def _weibull_data(seed, n=N):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    lam, k, beta = 0.01, 1.3, 0.6  # per day
    t_event = (rng.exponential(size=n) / (lam * np.exp(beta * x))) ** (1 / k)
    t_cens = rng.uniform(10, 80, n)
    time = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(float)
    return x, time, event


def test_weibull_with_censoring_against_the_mle():
    x, time, event = _weibull_data(3)
    o = pd.DataFrame({"EFS_TIME": time, "EFS_EVENT": event, "Z": x}, index=_ids(N))
    fit = fit_response(o, "EFS", covariates=["Z"], seed=3, **SAMPLING)

    def nll(p):
        log_lam, log_k, b = p
        k = np.exp(log_k)
        log_h = log_lam + log_k + (k - 1) * np.log(time) + b * x
        return -np.sum(event * log_h - np.exp(log_lam + b * x) * time ** k)

    log_lam, log_k, b = optimize.minimize(nll, np.array([-4.0, 0.0, 0.0]), method="BFGS",
                                          options={"gtol": 1e-9}).x
    _close(fit, [log_lam, np.exp(log_k), b], ["log_lambda", "shape", "Z"])
    p = fit.probability([1.0], covariates={"Z": 0.0}, threshold=30.0)
    one = 1 - np.exp(-np.exp(log_lam) * 30.0 ** np.exp(log_k))
    assert p.mean() == pytest.approx(one, abs=0.02)
    assert fit.meta["rule"] == "EFS: times as given (hsct='ignore')" or "EFS" in fit.meta["rule"]


def test_a_censored_subject_contributes_its_survival_only():
    """The Weibull term of the compiled model against the hand formula at a point."""
    time, event = np.array([10.0, 25.0]), np.array([1.0, 0.0])
    table = pd.DataFrame({"X": [0.5, -0.5]}, index=["a", "b"])
    design = make_design(table, ["X"])
    model = weibull_model(time, event, design, t_ref=20.0)
    import pytensor

    (term,) = model.replace_rvs_by_values(model.potentials)
    values = [model.rvs_to_values[model[n]] for n in ("beta", "log_lambda", "log_shape")]
    got = float(pytensor.function(values, term)(np.array([0.8]), np.array(-0.3),
                                                np.array(np.log(1.4))))
    z = (table["X"].to_numpy() - design["center"]) / design["scale"]
    eta = 0.8 * z
    lam, k = np.exp(-0.3), 1.4
    u = time / 20.0
    h_a = lam * k * u[0] ** (k - 1) * np.exp(eta[0]) / 20.0
    expected = (np.log(h_a) - lam * u[0] ** k * np.exp(eta[0])) + (-lam * u[1] ** k
                                                                  * np.exp(eta[1]))
    assert got == pytest.approx(expected, rel=1e-12)


def test_piecewise_exponential_hazards_are_events_over_time_at_risk():
    """Without covariates the MLE of each piece's hazard is events / time at risk in it."""
    from ckmodel.response.likelihoods import piece_exposure

    _, time, event = _weibull_data(6)
    o = pd.DataFrame({"OS_TIME": time, "OS_EVENT": event}, index=_ids(N))
    fit = fit_response(o, "OS", model="piecewise", pieces=3, seed=6, **SAMPLING)
    cuts = np.asarray(fit.meta["cuts"])
    at_risk, piece = piece_exposure(time, cuts)
    mle = [np.log(event[piece == j].sum() / at_risk[:, j].sum()) for j in range(len(cuts) + 1)]
    _close(fit, mle, [f"log_hazard_{j + 1}" for j in range(len(cuts) + 1)])
    # P(event by t) from the piecewise cumulative hazard
    h = np.exp(mle)
    t = 0.5 * (cuts[0] + cuts[1])
    expected = 1 - np.exp(-(h[0] * cuts[0] + h[1] * (t - cuts[0])))
    assert fit.probability([1.0], threshold=t).mean() == pytest.approx(expected, abs=0.02)


def _fake_fit(posterior, **meta):
    import arviz as az

    idata = az.from_dict(posterior={k: np.asarray(v, float).reshape(1, -1)
                                    for k, v in posterior.items()})
    base = {"terms": [], "center": [], "scale": [], "t_ref": 10.0}
    base.update(meta)
    return ResponseFit(endpoint="EFS", kind="tte", model="weibull", exposure_metric=None,
                       exposure_scale="log", covariates=(), uncertainty="plugin",
                       hsct="competing", idata=idata, meta=base)


def test_competing_event_cumulative_incidence_against_the_hand_computation():
    """Constant cause-specific hazards h1, h2: CIF1(t) = h1/(h1+h2) (1 - exp(-(h1+h2) t))."""
    h1, h2, t_ref = 0.02, 0.05, 10.0  # per day
    # stored on the sampler's time / t_ref scale (shape 1: lambda' = h t_ref)
    fake = _fake_fit({"log_lambda": [np.log(h1 * t_ref)], "log_shape": [0.0],
                      "log_lambda_hsct": [np.log(h2 * t_ref)], "log_shape_hsct": [0.0]},
                     t_ref=t_ref)
    coef = fake.coefficients().set_index("term")
    assert coef.loc["log_lambda", "median"] == pytest.approx(np.log(h1))  # per day
    for t in (5.0, 30.0, 200.0):
        cif = fake.probability([1.0], threshold=t)[0, 0]
        assert cif == pytest.approx(h1 / (h1 + h2) * (1 - np.exp(-(h1 + h2) * t)), rel=1e-5)
    censored = _fake_fit({"log_lambda": [np.log(h1 * t_ref)], "log_shape": [0.0]},
                         t_ref=t_ref)
    assert censored.probability([1.0], threshold=30.0)[0, 0] == pytest.approx(
        1 - np.exp(-h1 * 30.0), rel=1e-12)  # HSCT as censoring: 1 - S1(t)


def test_plugin_and_propagated_differ_when_the_exposure_is_uncertain(tmp_path):
    """Exposure known only to within an SD of 1 (log scale): plug-in treats the noisy value
    as exact and attenuates the slope; propagation widens its interval."""
    rng = np.random.default_rng(8)
    n = 200
    true = rng.normal(np.log(1e5), 1.0, n)
    y = rng.binomial(1, special.expit(-1.0 + 1.5 * (true - np.log(1e5))))
    sd = np.full(n, 1.0)
    noisy = np.exp(true + rng.normal(0.0, sd))
    o = pd.DataFrame({"RESP": y.astype(float), "AUC": noisy, "AUC_SD": sd}, index=_ids(n))
    plug = fit_response(o, "RESP", exposure="AUC", seed=4, **SAMPLING)
    # 200 latent exposures: a longer run for the same ESS
    prop = fit_response(o, "RESP", exposure="AUC", exposure_sd="AUC_SD",
                        uncertainty="propagate", seed=4, draws=1000, tune=1000, chains=2)
    for f in (plug, prop):
        assert f.meta["convergence"]["ok"], f.meta["convergence"]["problems"]
    a = plug.coefficients().set_index("term").loc["log(AUC)"]
    b = prop.coefficients().set_index("term").loc["log(AUC)"]
    assert b["upper"] - b["lower"] > 1.3 * (a["upper"] - a["lower"])
    assert b["median"] > a["median"]  # attenuation undone, towards the true 1.5
    path = prop.save(tmp_path / "er.nc")
    back = load_response(path)
    assert back.uncertainty == "propagate" and back.meta["terms"] == ["X"]
    pd.testing.assert_frame_equal(back.coefficients(), prop.coefficients())


def test_bad_requests_are_refused_before_sampling():
    o = pd.DataFrame({"DLT": [0.0, 1.0] * 5, "AUC": [1.0, -2.0] + [3.0] * 8}, index=_ids(10))
    with pytest.raises(ValueError, match="unknown endpoint 'CRX': use one of DLT"):
        fit_response(o, "CRX", exposure="AUC")
    with pytest.raises(ValueError, match="does not fit a binary endpoint"):
        fit_response(o, "DLT", exposure="AUC", model="weibull")
    with pytest.raises(ValueError, match="exposure 'CMAX' is not a column"):
        fit_response(o, "DLT", exposure="CMAX")
    with pytest.raises(ValueError, match="propagate"):
        fit_response(o, "DLT", exposure="AUC", uncertainty="propagate")
    with pytest.raises(ValueError, match="covariate 'BLAST' is in neither"):
        fit_response(o, "DLT", exposure="AUC", covariates=["BLAST"])
