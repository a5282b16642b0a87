"""The hierarchical PyMC model of a CK data set.

For parameter p with scale g (log, logit or linear) and subject i::

    g(theta_ip) = mu_p + sum_k beta_pk x_ik + eta_ip,    eta_ip = omega_p z_ip,  z_ip ~ N(0, 1)

(non-centred). ``centered=[...]`` samples g(theta_ip) ~ N(mu_p + ..., omega_p) itself for the
named parameters (centred), and centring weights in [0, 1] give the partially centred forms in
between (:func:`centering_matrix`; ``centered="shrinkage"`` has :func:`ckmodel.fitting.fit`
choose them per subject and effect from a pilot run). Non-centred IIV SDs whose prior is a
half-distribution are sampled in *signed* form (``iiv_sd``, :func:`iiv_sd_forms`):
``omega_p = |v_p|`` with ``v_p`` from the symmetric parent of the prior (Normal for HalfNormal,
Cauchy for HalfCauchy, StudentT for HalfStudentT) and ``eta_ip = v_p z_ip``; since ``z_ip`` is
symmetric, ``(omega_p, eta_ip)`` have exactly the same joint distribution as before, but the
sampler no longer works on ``log omega_p``, whose long tail towards zero is what a weakly
informed IIV SD makes slow to cross. ``whitening=`` samples each subject's effects in the
coordinates of their normal conditional posterior (:mod:`ckmodel.population.whitening`; the
fit's ``centered="auto"`` or ``"whitened"``). ``correlated=True`` gives
eta_i = L z_i with an LKJ prior on the correlation. mu_p has the spec's typical-value prior
(Normal on the transformed scale when the prior is LogNormal/LogitNormal/Normal), omega_p its
IIV prior. Each fitted analyte has its own residual error model and SD; BLQ records
contribute P(y < LLOQ) (M3) through a JAX-compatible normal log-CDF.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ckmodel import _arviz  # noqa: F401  (ArviZ's import warning silenced before PyMC loads)

# isort: split
import pymc as pm
import pytensor.tensor as pt

from ckmodel.errors import ModelSpecError
from ckmodel.population.closed_kernel import ClosedFormOp
from ckmodel.population.closed_loglik import ClosedFormLogLik, closed_loglik
from ckmodel.population.covariates import CovariateEffect, covariate_design, parse_covariates
from ckmodel.population.options import (
    CENTRING_MODES,
    FOLDED_PRIORS,
    IIV_SD_FORMS,
    PopulationOptions,
    iiv_parameters,
    iiv_sd_forms,
)
from ckmodel.population.predict import closed_kernels, predict_outputs, uses_ode
from ckmodel.population.prepare import PopulationData
from ckmodel.population.residual import (
    FUSED_ERRORS,
    RESIDUAL_MODELS,
    TINY,
    pointwise_loglik,
    sample_residual,
)
from ckmodel.population.whitening import whitened_block, whitened_parameters
from ckmodel.spec.model import ModelSpec

__all__ = ["CENTRING_MODES", "FOLDED_PRIORS", "IIV_SD_FORMS", "PopulationOptions", "build_model",
           "centering_matrix", "iiv_parameters", "iiv_sd_forms", "obs_dim", "transformed_name"]


def _signed_sd(prior: Any, name: str) -> Any:
    """The symmetric variable ``v`` whose absolute value has the half-distribution ``prior``."""
    parent, location = FOLDED_PRIORS[prior.dist]
    return getattr(pm, parent)(name, **{location: 0.0}, **prior.params)


def _iiv_sds(iiv: Sequence[Any], forms: Mapping[str, str]) -> Any:
    """The IIV SD variables, with ``omega`` (dims ``iiv``); returns the scales of the effects.

    Signed form: ``omega_<p> = |v|`` and the scale is ``v`` (``eta = v z``); log form: the
    scale is ``omega_<p>`` itself.
    """
    omegas, scales = [], []
    for p in iiv:
        if forms.get(p.name) == "signed":
            v = _signed_sd(p.iiv, f"omega_{p.name}_signed")
            omegas.append(pm.Deterministic(f"omega_{p.name}", pt.abs(v)))
            scales.append(v)
        else:
            omegas.append(p.iiv.to_pymc(f"omega_{p.name}"))
            scales.append(omegas[-1])
    pm.Deterministic("omega", pt.stack(omegas), dims="iiv")
    return pt.stack(scales)


def _typical(mu: Mapping[str, Any], shift: Mapping[str, Any], names: Sequence[str],
             n_s: int) -> Any:
    """Typical values on the transformed scale, covariate effects included (subject, name)."""
    return pt.stack([mu[n] + shift[n] * pt.ones(n_s) for n in names], axis=1)


def transformed_name(name: str, scale: str) -> str:
    """Name of the sampled typical value: ``log_rho``, ``logit_fb`` or ``rho_lin``."""
    return {"log": f"log_{name}", "logit": f"logit_{name}"}.get(scale, f"{name}_lin")


def obs_dim(analyte: str) -> str:
    """Dimension name of an analyte's records in the InferenceData."""
    return f"obs_{analyte}"


def _forward(x: Any, scale: str) -> Any:
    return {"log": pt.log, "logit": lambda v: pt.log(v) - pt.log1p(-v)}.get(scale, lambda v: v)(x)


def _inverse(x: Any, scale: str) -> Any:
    return {"log": pt.exp, "logit": pt.sigmoid}.get(scale, lambda v: v)(x)


def _random_factory(error: str, nu: float) -> Any:
    def random(pred: Any, sigma: Any, *rest: Any, rng: Any = None, size: Any = None) -> Any:
        rng = rng if rng is not None else np.random.default_rng()
        return sample_residual(error, pred, sigma, rng, sigma_prop=rest[0] if rest else None,
                               nu=nu, size=size)

    return random


def _individual(spec: ModelSpec, mu: Mapping[str, Any], shift: Mapping[str, Any], eta: Any,
                iiv_names: Sequence[str], n_s: int) -> Any:
    """Natural-scale individual parameters, (subject, parameter), built as whole-matrix ops.

    ``g = mu + shift + eta`` on the transformed scale, then exp/sigmoid by column mask: a few
    matrix operations instead of one small graph per parameter, which keeps the log-density
    graph (and its gradient) short: what the samplers pay per leapfrog step.
    """
    pnames = spec.param_names
    g = pt.stack([pt.as_tensor_variable(mu[p]) for p in pnames]) * pt.ones((n_s, 1))
    if any(not isinstance(shift[p], float) for p in pnames):
        g = g + pt.stack([shift[p] * pt.ones(n_s) for p in pnames], axis=1)
    if eta is not None:
        cols = np.array([pnames.index(n) for n in iiv_names])
        if len(cols) == len(pnames) and (cols == np.arange(len(pnames))).all():
            g = g + eta
        else:
            g = pt.inc_subtensor(g[:, cols], eta)
    scales = np.array([p.scale for p in spec.parameters])
    out = g
    if (scales == "logit").any():
        out = pt.where(scales == "logit", pt.sigmoid(g), out)
    if (scales == "log").any():
        out = pt.where(scales == "log", pt.exp(g), out)
    return out


def centering_matrix(centered: Any, iiv_names: Sequence[str], n_subjects: int) -> np.ndarray:
    """Centring weights (subject, random effect) from ``PopulationOptions.centered``.

    A tuple of names gives weight 1 (centred) to those effects and 0 (non-centred) to the
    others, a mapping gives each named effect its weight in [0, 1], and ``"shrinkage"`` gives
    0 everywhere: the starting point from which :func:`ckmodel.fitting.fit` chooses the weights
    from a pilot run (:mod:`ckmodel.fitting.centering`).
    """
    lam = np.zeros((n_subjects, len(iiv_names)))
    if isinstance(centered, str):
        return lam
    weights = dict(centered) if isinstance(centered, Mapping) else dict.fromkeys(centered, 1.0)
    for name, w in weights.items():
        if name in iiv_names:
            lam[:, list(iiv_names).index(name)] = float(w)
    return lam


def _partially_centred(lam: Any, omega: Any, m: Any) -> Any:
    """Random effects eta (subject, effect) under centring weights ``lam`` in [0, 1].

    The free variable is ``z ~ N(lam m, omega^lam)`` and ``eta = omega^(1 - lam) (z - lam m)``,
    with ``m`` the subject's typical value on the transformed scale (covariate effects
    included): ``lam = 0`` is the non-centred ``z ~ N(0, 1)``, ``eta = omega z``; ``lam = 1``
    the centred ``g(theta) = z ~ N(m, omega)``; in between, the partially centred form of
    Papaspiliopoulos, Roberts & Skold (Stat Sci 2007) and Gorinova, Moore & Hoffman
    (ICML 2020). In every form ``eta ~ N(0, omega)``: the same model, another geometry.
    """
    log_omega = pt.log(omega)
    scale = pt.exp(lam * log_omega)            # omega^lam, by column
    z = pm.Normal("z", mu=lam * m, sigma=scale, dims=("subject", "iiv"))
    return pt.exp(log_omega - lam * log_omega) * (z - lam * m)


def build_model(
    spec: ModelSpec,
    pdata: PopulationData,
    *,
    covariates: Sequence[str | CovariateEffect] = (),
    options: PopulationOptions | None = None,
    fused: bool = False,
    centering: np.ndarray | None = None,
    whitening: tuple[np.ndarray, np.ndarray] | None = None,
) -> pm.Model:
    """Build the hierarchical PyMC model of ``pdata`` under ``spec``.

    Parameters
    ----------
    spec : ModelSpec
        Structural model, priors and error models.
    pdata : PopulationData
        Records to fit (see :func:`ckmodel.population.prepare`).
    covariates : sequence of str or CovariateEffect
        Covariate effects, e.g. ``["rho ~ log(DOSE)", "f0 ~ BM_BLAST_PCT"]``.
    options : PopulationOptions, optional
    fused : bool
        Sum each closed-form analyte's log-likelihood inside its compiled kernel
        (:mod:`ckmodel.population.closed_loglik`), as a ``pm.Potential`` named
        ``loglik_<A>``, instead of an observed variable ``y_<A>``: the same log density, with
        no record-level nodes in the graph (about 2x faster gradients under nutpie). Such a
        model samples with nutpie, PyMC's NUTS, ADVI or MAP (not the JAX samplers) and has no
        observed variables, so the posterior predictive and pointwise log-likelihood come from
        the model built with ``fused=False``, which has the same free variables. Closed-form
        analytes with a Student-t error keep the observed variable. For models solved as ODEs,
        ``fused=True`` puts the likelihood of all analytes in one potential ``loglik``: one
        compiled call solves the ODEs, sums every analyte's log-likelihood and runs the adjoint
        once (:mod:`ckmodel.population.ode_loglik`). With a Student-t analyte (or the ``scan``
        solver) each analyte's pointwise PyTensor log-likelihood becomes a potential
        ``loglik_<A>`` instead; all of them still share one solver node, so the gradient runs
        one adjoint solve rather than one per analyte.
    centering : ndarray, optional
        Centring weights (subject, random effect) in [0, 1], overriding ``options.centered``;
        held in a data container ``centering``, so that a compiled model can be given new
        weights without recompiling (:mod:`ckmodel.fitting.centering`).
    whitening : (ndarray, ndarray), optional
        ``(mean, info)`` from :func:`ckmodel.population.whitening.whitening_from_posterior`:
        the random effects are whitened (``z`` flat, the potential ``random_effects`` their
        prior with the map's Jacobian, :mod:`ckmodel.population.whitening`); the arrays are
        constants of the graph.

    Returns
    -------
    pymc.Model
        Free variables: transformed typical values (``log_rho`` ...), ``omega_<p>`` (IIV
        SDs; in signed form ``omega_<p>_signed``, with ``omega_<p> = |omega_<p>_signed|`` a
        deterministic, see :func:`iiv_sd_forms`), ``z`` (random effects, standardised or
        (partially) centred, see
        :func:`centering_matrix`; or whitened), ``beta`` (covariate coefficients) and ``sigma_<A>``
        per analyte. Deterministics: ``<p>_pop`` (typical values), ``eta`` and ``theta``
        (subject x parameter, natural scale). Observed: ``y_<A>`` per analyte.
    """
    opts = options or PopulationOptions()
    effects = parse_covariates(covariates)
    for e in effects:
        if e.kind == "after" and f"{e.parameter}_after_{e.covariate}" not in {
                sw.name for sw in spec.switches}:
            raise ModelSpecError(f"time-varying effect {e.label}: apply it to the spec first "
                                 "(ckmodel.population.apply_time_varying; fit() does this)")
    effects = tuple(e for e in effects if e.kind != "after")
    pnames = spec.param_names
    opts.check(spec, effects)
    iiv_names = iiv_parameters(spec, opts)
    iiv = [spec.parameter(n) for n in iiv_names]
    coords: dict[str, Any] = {
        "subject": list(pdata.subjects),
        "parameter": list(pnames),
        "iiv": iiv_names,
        "analyte": list(pdata.analytes),
    }
    designs = []
    labels: list[str] = []
    for eff in effects:
        x, labs, prior, ref = covariate_design(eff, pdata.covariates[eff.covariate])
        designs.append((eff, x, labs, prior))
        labels += labs
    if labels:
        coords["covariate_effect"] = labels
    for a_i, a in enumerate(pdata.analytes):
        sel = pdata.analyte_index == a_i
        coords[obs_dim(a)] = pdata.row[sel].tolist()

    with pm.Model(coords=coords) as model:
        # typical values on the transformed scale
        mu = {}
        for p in spec.parameters:
            if p.name in opts.fixed:
                mu[p.name] = pt.as_tensor_variable(
                    _forward(pt.as_tensor_variable(float(opts.fixed[p.name])), p.scale))
                continue
            normal = p.prior.normal_on(p.scale)
            if normal is not None:
                mu[p.name] = pm.Normal(transformed_name(p.name, p.scale), mu=normal[0],
                                       sigma=normal[1])
            else:
                nat = p.prior.to_pymc(f"{p.name}_natural")
                mu[p.name] = _forward(nat, p.scale)
            pm.Deterministic(f"{p.name}_pop", _inverse(mu[p.name], p.scale))

        # covariate effects
        shift = {p: 0.0 for p in pnames}
        if labels:
            mus = np.array([d[3].params.get("mu", 0.0) for d in designs for _ in d[2]])
            sds = np.array([d[3].params.get("sigma", 1.0) for d in designs for _ in d[2]])
            if any(d[3].dist != "Normal" for d in designs):
                raise ModelSpecError("covariate effect priors must be Normal")
            beta = pm.Normal("beta", mu=mus, sigma=sds, dims="covariate_effect")
            k = 0
            for eff, x, labs, _ in designs:
                shift[eff.parameter] = shift[eff.parameter] + pt.dot(x, beta[k:k + len(labs)])
                k += len(labs)

        # random effects
        n_s = pdata.n_subjects
        errors = opts.error_models(spec, pdata.analytes)
        if iiv:
            if whitening is not None:
                sigma_vars = {a: spec.output(a).sigma.to_pymc(f"sigma_{a}")
                              for a in pdata.analytes}
                eta = whitened_block(
                    _iiv_sds(iiv, iiv_sd_forms(spec, opts)),
                    _typical(mu, shift, whitened_parameters(spec, opts), n_s), whitening,
                    {a: (sigma_vars[a], errors[a]) for a in pdata.analytes})
            elif opts.correlated:
                if any(p.iiv.dist != "HalfNormal" for p in iiv):
                    raise ModelSpecError("correlated random effects need HalfNormal IIV priors")
                sd = np.array([p.iiv.params["sigma"] for p in iiv])
                chol, _, omega = pm.LKJCholeskyCov(
                    "chol", n=len(iiv), eta=2.0, sd_dist=pm.HalfNormal.dist(sigma=sd),
                    compute_corr=True)
                pm.Deterministic("omega", omega, dims="iiv")
                z = pm.Normal("z", 0.0, 1.0, dims=("subject", "iiv"))
                eta = pt.dot(z, chol.T)
            else:
                lam = (centering_matrix(opts.centered, iiv_names, n_s) if centering is None
                       else np.asarray(centering, dtype=float))
                if lam.shape != (n_s, len(iiv_names)) or not ((lam >= 0) & (lam <= 1)).all():
                    raise ModelSpecError(f"centring weights must be a ({n_s}, "
                                         f"{len(iiv_names)}) array in [0, 1]")
                plain = centering is None and not lam.any()
                scales = _iiv_sds(iiv, iiv_sd_forms(spec, opts, centering))
                omega = model["omega"]
                if plain:                               # non-centred: eta = omega z
                    z = pm.Normal("z", 0.0, 1.0, dims=("subject", "iiv"))
                    eta = z * scales
                else:
                    eta = _partially_centred(pm.Data("centering", lam, dims=("subject", "iiv")),
                                             omega, _typical(mu, shift, iiv_names, n_s))
            pm.Deterministic("eta", eta, dims=("subject", "iiv"))
        else:
            eta = None

        theta = pm.Deterministic("theta", _individual(spec, mu, shift, eta, iiv_names, n_s),
                                 dims=("subject", "parameter"))

        # predictions and likelihood per analyte
        ode = uses_ode(spec, pdata, opts.method)
        fuse = fused and opts.method in ("auto", "closed") and not ode
        # ODE: the likelihood as potentials, so that all analytes share one solver node (as
        # observed variables PyMC builds each analyte's log density on its own copy of the
        # graph, and the gradient then runs the adjoint solve once per analyte)
        ode_potentials = fused and ode
        # ODE with fusable error models: one compiled call solves, sums the likelihood of all
        # analytes and runs the adjoint (ckmodel.population.ode_loglik)
        ode_fused = (ode_potentials and all(e in FUSED_ERRORS for e in errors.values())
                     and (opts.ode is None or opts.ode.solver == "kernel"))
        if fuse:
            kernels = closed_kernels(spec, pdata)
        elif not ode_fused:
            preds = predict_outputs(spec, pdata, theta, method=opts.method,
                                    ode_options=opts.ode)
        sigmas = {}
        for a_i, a in enumerate(pdata.analytes):
            out = spec.output(a)
            err = errors[a]
            _, value, blq = pdata.analyte_records(a_i)
            sigma = (sigma_vars[a] if whitening is not None and iiv
                     else out.sigma.to_pymc(f"sigma_{a}"))
            sig_args = [sigma]
            if err == "combined":
                sig_args.append((out.sigma_prop or out.sigma).to_pymc(f"sigma_prop_{a}"))
            if ode_fused:
                sigmas[a] = (sigma, sig_args[1] if err == "combined" else None)
                continue
            if fuse and err in FUSED_ERRORS:
                lik = ClosedFormLogLik(kernels[a], err, value, blq, pdata.blq_method)
                pm.Potential(f"loglik_{a}", closed_loglik(
                    lik, theta, sigma, sig_args[1] if err == "combined" else None))
                continue
            pred = ClosedFormOp(kernels[a])(theta)[0] if fuse else preds[a]
            if RESIDUAL_MODELS[err].positive:
                pred = pt.maximum(pred, TINY)
            if ode_potentials:
                pm.Potential(f"loglik_{a}", pointwise_loglik(
                    err, pred, value, blq, sigma, sigma_prop=sig_args[1] if err == "combined"
                    else None, nu=out.nu, blq_method=pdata.blq_method).sum())
                continue

            def logp(v: Any, mu_: Any, s: Any, *rest: Any, _err: str = err,
                     _blq: np.ndarray = blq, _nu: float = out.nu) -> Any:
                return pointwise_loglik(_err, mu_, v, _blq, s, sigma_prop=rest[0] if rest else
                                        None, nu=_nu, blq_method=pdata.blq_method)

            pm.CustomDist(f"y_{a}", pred, *sig_args, logp=logp,
                          random=_random_factory(err, out.nu), observed=value, dims=obs_dim(a))
        if ode_fused:
            from ckmodel.population.ode_loglik import ode_loglik

            pm.Potential("loglik", ode_loglik(spec, pdata, theta, sigmas, errors, opts.ode))
    return model
