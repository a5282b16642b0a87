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
informed IIV SD makes slow to cross. ``correlated=True`` gives
eta_i = L z_i with an LKJ prior on the correlation. mu_p has the spec's typical-value prior
(Normal on the transformed scale when the prior is LogNormal/LogitNormal/Normal), omega_p its
IIV prior. Each fitted analyte has its own residual error model and SD; BLQ records
contribute P(y < LLOQ) (M3) through a JAX-compatible normal log-CDF.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from ckmodel.population.predict import closed_kernels, predict_outputs, uses_ode
from ckmodel.population.prepare import PopulationData
from ckmodel.population.residual import (
    FUSED_ERRORS,
    RESIDUAL_MODELS,
    TINY,
    pointwise_loglik,
    sample_residual,
)
from ckmodel.spec.model import ERROR_MODELS, ModelSpec

__all__ = ["FOLDED_PRIORS", "IIV_SD_FORMS", "PopulationOptions", "build_model",
           "centering_matrix", "iiv_parameters", "iiv_sd_forms", "obs_dim", "transformed_name"]


@dataclass(frozen=True)
class PopulationOptions:
    """How the hierarchy and likelihood are built.

    Attributes
    ----------
    centered : tuple of str, mapping of str to float, or "shrinkage"
        How random effects are parametrised. A tuple names the parameters to centre fully
        (default ``()``: all non-centred, which sampled best on every data set measured, see
        ``benchmarks/README.md``); a mapping gives each named parameter one weight in [0, 1]
        (0 non-centred, 1 centred); ``"shrinkage"``: :func:`ckmodel.fitting.fit` chooses a
        weight per subject and effect from a short pilot run (1 minus the subject's
        variance-based eta shrinkage, :mod:`ckmodel.fitting.centering`).
    correlated : bool
        Correlated random effects with an LKJ(2) prior (needs HalfNormal IIV priors).
    error : mapping of str to str
        Residual error model per analyte, overriding the spec (e.g. ``{"PB_QPCR": "student_t"}``).
    blq_method : {"M3", "M1"}
        Censored likelihood for BLQ records, or drop them.
    method : {"auto", "closed", "closed_graph", "ode"}
        Closed form when available (fused kernel; ``closed_graph``: plain PyTensor graph), or
        the compiled ODE solver.
    fixed : mapping of str to float
        Parameters held at a value (no typical-value prior, no random effect).
    iiv_sd : {"auto", "signed", "log"}
        How the IIV SDs of non-centred, uncorrelated random effects are sampled. ``"signed"``:
        ``omega = |v|`` with ``v`` from the symmetric parent of the half-distribution prior
        and ``eta = v z`` (the same model; up to 1.7x the ESS per second of the log form on
        the IIV SD that mixes worst, see ``benchmarks/README.md``); ``"log"``:
        ``log omega`` (PyMC's transform of a positive prior); ``"auto"`` (default): signed
        for every effect whose prior folds (HalfNormal, HalfCauchy, HalfStudentT) when the
        effects are non-centred and uncorrelated, log otherwise.
        :func:`ckmodel.fitting.fit` uses ``"log"`` under ``"auto"`` for the approximate
        methods (Pathfinder, ADVI, MAP), whose Gaussian or point approximations suit the
        one-mode log form (the signed form has two mirror-image modes, ``(v, z)`` and
        ``(-v, -z)``, that give the same ``omega`` and ``eta``).
    """

    centered: str | tuple[str, ...] | Mapping[str, float] = ()
    correlated: bool = False
    error: Mapping[str, str] = field(default_factory=dict)
    blq_method: str = "M3"
    method: str = "auto"
    fixed: Mapping[str, float] = field(default_factory=dict)
    ode: Any = None
    iiv_sd: str = "auto"

    def check(self, spec: ModelSpec, effects: Sequence[CovariateEffect] = ()) -> None:
        """Refuse options that do not fit ``spec``, before any work, naming what is wrong.

        Raises
        ------
        ModelSpecError
            An unknown parameter (centred, fixed or with a covariate effect), an unknown
            analyte or error model, a fixed value outside the parameter's support, or an
            unknown BLQ method.
        """
        pnames = spec.param_names
        if isinstance(self.centered, str) and self.centered != "shrinkage":
            raise ModelSpecError(f"centered must be a list of parameters, weights per "
                                 f"parameter or 'shrinkage', got {self.centered!r}")
        named = () if isinstance(self.centered, str) else tuple(self.centered)
        for name in (*named, *self.fixed, *(e.parameter for e in effects)):
            if name not in pnames:
                raise ModelSpecError(f"'{name}' is not a parameter of model '{spec.name}' "
                                     f"(parameters: {', '.join(pnames)})")
        for name, value in self.fixed.items():
            scale = spec.parameter(name).scale
            v = float(value)
            # a fixed value is a constant, so the closed ends of a logit scale are allowed
            # (bioavailability F = 1)
            if not np.isfinite(v) or (scale == "log" and v <= 0) or (
                    scale == "logit" and not 0 <= v <= 1):
                need = {"log": "> 0", "logit": "in [0, 1]"}.get(scale, "finite")
                raise ModelSpecError(f"fixed value {name}={value} is outside the parameter's "
                                     f"support (it must be {need})")
        for name in named:
            if spec.parameter(name).iiv is None:
                raise ModelSpecError(f"'{name}' has no random effect in model '{spec.name}', "
                                     "so it cannot be centred")
        if isinstance(self.centered, Mapping):
            for name, w in self.centered.items():
                if not 0.0 <= float(w) <= 1.0:
                    raise ModelSpecError(f"centring weight {name}={w} must lie in [0, 1] "
                                         "(0 non-centred, 1 centred)")
        if self.correlated and named:
            raise ModelSpecError("centred and correlated random effects cannot be combined; "
                                 "use one or the other")
        for a, err in self.error.items():
            if a not in spec.output_names:
                raise ModelSpecError(f"model '{spec.name}' has no output {a!r} for an error "
                                     f"model (outputs: {', '.join(spec.output_names)})")
            if err not in ERROR_MODELS:
                raise ModelSpecError(f"unknown error model {err!r} for {a} (choose one of "
                                     f"{', '.join(ERROR_MODELS)})")
        if self.blq_method not in ("M3", "M1"):
            raise ModelSpecError(f"blq_method must be 'M3' or 'M1', got {self.blq_method!r}")
        if self.iiv_sd not in IIV_SD_FORMS:
            raise ModelSpecError(f"iiv_sd (--iiv-sd) must be one of "
                                 f"{', '.join(IIV_SD_FORMS)}, got {self.iiv_sd!r}")
        if self.iiv_sd == "signed":
            if self.correlated or named or self.centered == "shrinkage":
                raise ModelSpecError("the signed form of the IIV SDs (--iiv-sd signed, "
                                     "iiv_sd='signed') needs non-centred, uncorrelated random "
                                     "effects; drop the centring / correlation, or choose the "
                                     "log form (--iiv-sd log, iiv_sd='log')")
            for p in spec.parameters:
                if (p.iiv is not None and p.name not in self.fixed
                        and p.iiv.dist not in FOLDED_PRIORS):
                    raise ModelSpecError(
                        f"the IIV prior of '{p.name}' ({p.iiv}) is not a half-distribution, so "
                        f"its SD has no signed form (priors that fold: "
                        f"{', '.join(FOLDED_PRIORS)}); choose --iiv-sd auto or log "
                        "(iiv_sd='auto' or 'log')")


#: How IIV SDs are sampled (``PopulationOptions.iiv_sd``).
IIV_SD_FORMS = ("auto", "signed", "log")
#: Half-distribution IIV priors: the symmetric PyMC distribution each is the absolute value
#: of, and the name of its location parameter (set to 0; the scale parameters carry over).
FOLDED_PRIORS = {"HalfNormal": ("Normal", "mu"), "HalfCauchy": ("Cauchy", "alpha"),
                 "HalfStudentT": ("StudentT", "mu")}


def iiv_sd_forms(spec: ModelSpec, options: PopulationOptions,
                 centering: np.ndarray | None = None) -> dict[str, str]:
    """``"signed"`` or ``"log"`` per random effect, as :func:`build_model` samples its SD.

    Signed needs non-centred, uncorrelated effects (no ``centered`` option and no centring
    weights given to :func:`build_model`) and a prior that folds (:data:`FOLDED_PRIORS`);
    ``iiv_sd="auto"`` takes it wherever it applies.
    """
    names = iiv_parameters(spec, options)
    plain = (not options.correlated and not options.centered and centering is None
             and options.iiv_sd != "log")
    return {n: ("signed" if plain and spec.parameter(n).iiv.dist in FOLDED_PRIORS else "log")
            for n in names}


def _signed_sd(prior: Any, name: str) -> Any:
    """The symmetric variable ``v`` whose absolute value has the half-distribution ``prior``."""
    parent, location = FOLDED_PRIORS[prior.dist]
    return getattr(pm, parent)(name, **{location: 0.0}, **prior.params)


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


def iiv_parameters(spec: ModelSpec, options: PopulationOptions) -> list[str]:
    """Parameters with a random effect in the model: those with IIV that are not fixed."""
    return [p.name for p in spec.parameters if p.iiv is not None and p.name not in options.fixed]


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

    Returns
    -------
    pymc.Model
        Free variables: transformed typical values (``log_rho`` ...), ``omega_<p>`` (IIV
        SDs; in signed form ``omega_<p>_signed``, with ``omega_<p> = |omega_<p>_signed|`` a
        deterministic, see :func:`iiv_sd_forms`), ``z`` (random effects, standardised or
        (partially) centred, see
        :func:`centering_matrix`), ``beta`` (covariate coefficients) and ``sigma_<A>``
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
        if iiv:
            if opts.correlated:
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
                forms = iiv_sd_forms(spec, opts, centering)
                omegas, scales = [], []
                for p in iiv:
                    if forms.get(p.name) == "signed":   # omega = |v|, eta = v z
                        v = _signed_sd(p.iiv, f"omega_{p.name}_signed")
                        omegas.append(pm.Deterministic(f"omega_{p.name}", pt.abs(v)))
                        scales.append(v)
                    else:
                        omegas.append(p.iiv.to_pymc(f"omega_{p.name}"))
                        scales.append(omegas[-1])
                omega = pm.Deterministic("omega", pt.stack(omegas), dims="iiv")
                if plain:                               # non-centred: eta = omega z
                    z = pm.Normal("z", 0.0, 1.0, dims=("subject", "iiv"))
                    eta = z * pt.stack(scales)
                else:
                    eta = _partially_centred(pm.Data("centering", lam, dims=("subject", "iiv")),
                                             omega, pt.stack([mu[n] + shift[n] * pt.ones(n_s)
                                                              for n in iiv_names], axis=1))
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
        errors = {a: opts.error.get(a, spec.output(a).error) for a in pdata.analytes}
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
            sel = np.flatnonzero(pdata.analyte_index == a_i)
            blq = pdata.blq[sel]
            value = np.where(blq, pdata.lloq[sel], pdata.dv[sel])
            sigma = out.sigma.to_pymc(f"sigma_{a}")
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
