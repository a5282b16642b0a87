"""Fit a CK model hierarchically to data: ``fit(data, model, sampler=...) -> Fit``."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import xarray as xr

from ckmodel.data.schema import time_factor
from ckmodel.errors import DatasetError, SolverWarning
from ckmodel.fitting.centering import (
    PILOT_DRAWS,
    PILOT_TUNE,
    WHITEN_PILOT_DRAWS,
    WHITEN_PILOT_TUNE,
    centering_summary,
    shrinkage_weights,
)
from ckmodel.fitting.convergence import check_convergence
from ckmodel.fitting.predictive import record_draws
from ckmodel.fitting.result import Fit, package_versions
from ckmodel.fitting.run_length import UNTIL_CONVERGED, geometry_failed, run_until
from ckmodel.fitting.samplers import FUSED_SAMPLERS, MCMC_SAMPLERS, SAMPLERS, Sampler
from ckmodel.population.covariates import (
    CovariateEffect,
    apply_time_varying,
    parse_covariates,
)
from ckmodel.population.model import (
    PopulationOptions,
    build_model,
    iiv_parameters,
    iiv_sd_forms,
    obs_dim,
)
from ckmodel.population.ode_stability import NEAR_LIMIT_SHARE, fit_stability
from ckmodel.population.predict import uses_ode
from ckmodel.population.prepare import PopulationData, prepare
from ckmodel.population.whitening import whitened_parameters, whitening_from_posterior
from ckmodel.spec.model import ModelSpec
from ckmodel.spec.parse import load_model

__all__ = ["fit", "SAMPLERS", "FUSED_SAMPLERS", "UNTIL_CONVERGED"]

log = logging.getLogger(__name__)



def _constant_data(pdata: PopulationData) -> xr.Dataset:
    out = {}
    for a_i, a in enumerate(pdata.analytes):
        sel = pdata.analyte_index == a_i
        dim = obs_dim(a)
        coords = {dim: pdata.row[sel]}
        out[f"subject_{a}"] = xr.DataArray(np.asarray(pdata.subjects)[pdata.subject_index[sel]],
                                           dims=dim, coords=coords)
        out[f"time_{a}"] = xr.DataArray(pdata.time[sel], dims=dim, coords=coords)
        out[f"blq_{a}"] = xr.DataArray(pdata.blq[sel].astype(np.int8), dims=dim, coords=coords)
        out[f"lloq_{a}"] = xr.DataArray(pdata.lloq[sel], dims=dim, coords=coords)
    return xr.Dataset(out)


def _pymc_record_draws(pm_model: Any, idata: Any, *, seed: int, progressbar: bool,
                       replicates: bool, loglik: bool, whitened: bool) -> None:
    """Replicates and pointwise log-likelihood through PyMC (ODE models), into ``idata``."""
    import pymc as pm

    with pm_model:
        if replicates:
            with warnings.catch_warnings():
                # the whitened model's one potential is the prior of the random effects, which
                # the predictive draws take from the posterior: nothing is ignored
                if whitened:
                    warnings.filterwarnings("ignore", message="The effect of Potentials",
                                            category=UserWarning)
                pp = pm.sample_posterior_predictive(idata, random_seed=seed,
                                                    progressbar=progressbar,
                                                    extend_inferencedata=False)
            idata.add_groups(posterior_predictive=pp.posterior_predictive)
        if loglik:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                ll = pm.compute_log_likelihood(idata, progressbar=progressbar,
                                               extend_inferencedata=False)
            idata.add_groups(log_likelihood=ll)


#: prior draws allowed an unstable step before a warning (the far tails of broad priors,
#: where few posteriors go; the posterior draws are checked after sampling in any case)
PRIOR_UNSTABLE_WARN = 0.01


def _step_grid_check(spec: ModelSpec, pdata: PopulationData, opts: PopulationOptions,
                     seed: int, theta: Any = None, before: dict[str, Any] | None = None
                     ) -> dict[str, Any] | None:
    """Linear stability of an ODE fit's RK4 step grid (``ckmodel.population.ode_stability``).

    Before sampling (``theta`` None): for subjects drawn from the priors, warned about when
    more than 1 % of them take a step that amplifies a decaying mode. After: for up to 50
    posterior draws of every subject, warned about when any step amplifies, or when more
    than 1 % come within 20 % of a step's limit. Both verdicts go into the fit's metadata.
    """
    if not uses_ode(spec, pdata, opts.method):
        return None
    if theta is None:
        stab = fit_stability(spec, pdata, seed=seed, options=opts.ode)
        where = "subjects drawn from its priors"
    else:
        flat = theta.stack(sample=("chain", "draw")).transpose("sample", "subject", "parameter")
        step = max(1, flat.sizes["sample"] // 50)
        stab = fit_stability(spec, pdata, theta=flat.values[::step], options=opts.ode)
        where = "its posterior draws (each subject of up to 50 draws)"
    if theta is None and stab.fraction > PRIOR_UNSTABLE_WARN:
        warnings.warn(f"model '{spec.name}', {where}: {stab.message(spec.time_unit)}. The "
                      "posterior draws are checked after sampling.", SolverWarning,
                      stacklevel=3)
    elif theta is not None and not stab.stable:
        warnings.warn(f"model '{spec.name}', {where}: {stab.message(spec.time_unit)}",
                      SolverWarning, stacklevel=3)
    elif theta is not None and stab.near_fraction > NEAR_LIMIT_SHARE:
        warnings.warn(f"model '{spec.name}': {100 * stab.near_fraction:.1f} % of {where} "
                      "take an RK4 step within 20 % of its stability limit; beyond it the "
                      "solve explodes, so the step grid rather than the data may bound the "
                      f"posterior there. Check with a finer schedule: {stab.remedy()}",
                      SolverWarning, stacklevel=3)
    verdict = {"max_step": [list(r) for r in stab.options.max_step],
               "unstable_fraction": round(stab.fraction, 4),
               "near_limit_fraction": round(stab.near_fraction, 4), "checked": stab.n_subjects,
               "suggested": [list(r) for r in stab.suggested]}
    return ({"prior": verdict} if before is None else dict(before, posterior=verdict))


def random_effects_plan(spec: ModelSpec, pdata: PopulationData, opts: PopulationOptions, *,
                        sampler: str, until_converged: float | None) -> tuple[bool, bool]:
    """Whether a fit whitens its random effects after a pilot, or after a failed first run.

    Whitened effects (:mod:`ckmodel.population.whitening`) are used when asked for
    (``centered="whitened"``), and under ``"auto"`` with a time budget: from the start, after a
    pilot run, for models solved as ODEs, whose gradient costs milliseconds, so that the
    leapfrog steps per draw rule the fit's time (41-52 against 110-135 per draw on the
    30-subject ``antigen_driven`` benchmark, seed 1 converged in 504 s end to end where the
    non-centred fit was not; ``benchmarks/README.md``); for closed forms only when the
    non-centred run fails in a way more draws do not mend. The whitening Op has numba and Python
    implementations (nutpie and PyMC's NUTS), not JAX, and needs uncorrelated random effects.

    Returns
    -------
    (bool, bool)
        Whiten after a pilot run; sample again whitened when the non-centred run fails.
    """
    can = (not opts.correlated and bool(iiv_parameters(spec, opts))
           and sampler in ("nutpie", "pymc"))
    auto = opts.centered == "auto" and until_converged is not None
    now = can and (opts.centered == "whitened"
                   or (auto and uses_ode(spec, pdata, opts.method)))
    return now, can and auto and not now


def _check_settings(*, sampler: str, draws: int, tune: int, chains: int, seed: int,
                    target_accept: float, mass_matrix: str) -> None:
    """Refuse sampler settings that cannot work, before anything is compiled."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1),
                             ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not 0 < float(target_accept) < 1:
        raise ValueError(f"target_accept must be between 0 and 1, got {target_accept!r}")
    if mass_matrix not in ("auto", "diag", "low_rank"):
        raise ValueError(f"mass_matrix must be 'auto', 'diag' or 'low_rank', got {mass_matrix!r}")


def fit(
    data: Any,
    model: str | ModelSpec = "expansion_biphasic",
    *,
    sampler: str = "nutpie",
    draws: int = 500,
    tune: int = 500,
    chains: int = 4,
    seed: int = 1,
    covariates: Sequence[str | CovariateEffect] = (),
    analytes: Sequence[str] | None = None,
    options: PopulationOptions | None = None,
    target_accept: float = 0.9,
    cores: int | None = None,
    posterior_predictive: bool = True,
    log_likelihood: bool = True,
    progressbar: bool = True,
    mass_matrix: str = "auto",
    until_converged: float | None = UNTIL_CONVERGED,
) -> Fit:
    """Fit ``model`` hierarchically to ``data`` with PyMC.

    Parameters
    ----------
    data : CKData
        Checked CK data (:func:`ckmodel.data.read_ck`). When its ``time_unit`` differs from
        the model's (hours against days, say), times are converted for the fit, with one
        warning, and the fit's results are in the model's unit; units that cannot be
        converted exactly (months, years) are refused with a message naming both.
    model : str, path or ModelSpec
        Catalog name, TOML file, or spec (default ``expansion_biphasic``).
    sampler : {"nutpie", "pymc", "numpyro", "blackjax", "pathfinder", "advi", "map"}
        NUTS through nutpie (numba; default), PyMC, numpyro or blackjax (JAX; needs the
        ``jax`` extra); approximate: multi-path Pathfinder (blackjax; ``jax`` extra;
        :mod:`ckmodel.pathfinder`), ADVI, or MAP for quick looks.
    draws, tune, chains : int
        Posterior draws and tuning steps per chain, number of chains. For Pathfinder,
        ``chains`` independent paths of ``draws`` draws each are pooled and
        importance-resampled to ``chains x draws`` draws (the PSIS k-hat is in
        ``meta["pathfinder_khat"]``; above 0.7 a ConvergenceWarning is raised); ``tune``
        is not used.
    seed : int
        Random seed (sampler, posterior predictive); stored with the fit.

    Other Parameters
    ----------------
    covariates : sequence of str
        Covariate effects, e.g. ``["rho ~ log(DOSE)"]``, or time-varying
        ``["d_e ~ after(ADA_TIME)"]`` (see :mod:`ckmodel.population.covariates`).
    analytes : sequence of str, optional
        Analytes to fit (default: every data analyte the model predicts).
    options : PopulationOptions, optional
        Parametrisation of the random effects (``centered``: ``"auto"``, ``"whitened"``,
        ``"shrinkage"``, names to centre), correlated effects, error-model overrides, BLQ
        method (M3/M1), fixed parameters.
    target_accept : float
        NUTS target acceptance rate.
    cores : int, optional
        Chains run in parallel (default: all cores; a nutpie run that samples on until
        converged runs every chain in its own thread; ``cores`` below ``chains`` turns that
        into whole reruns).
    posterior_predictive, log_likelihood : bool
        Add these groups (needed for VPCs and LOO).
    progressbar : bool
        Show progress bars.
    mass_matrix : {"auto", "diag", "low_rank"}
        nutpie's mass-matrix adaptation: diagonal, or diagonal plus a low-rank correction that
        learns the strongest posterior correlations (far fewer leapfrog steps on the ridges
        of mechanistic ODE models: 184 instead of 546 per iteration on a 30-subject
        ``antigen_driven`` fit). ``auto``: low-rank when the model is solved as ODEs.
    until_converged : float or None
        A time budget in seconds (default 600; 0 or None: one run, as asked): when the convergence
        checks fail, nutpie's chains sample on in the same run and are checked again at the draws
        the lowest ESS or the worst R-hat asks for (1.2x to 4x, ``meta["attempts"][-1]
        ["checked_at"]``); other samplers run again, longer (same compiled model, seed + 1, + 2
        ...; 1.5x to 4x). After divergences or a stuck chain the chains start again with twice the
        warm-up (:mod:`ckmodel.fitting.run_length`). All this while the next step fits in the
        budget; every run is recorded in ``meta["attempts"]`` and the last one is kept.
        Under ``options.centered="auto"`` (the default) a model solved as ODEs is sampled
        with whitened random effects built from a pilot run; for a closed form, a first, non-centred
        run that diverges or has an E-BFMI below 0.3 ends at its first check, and the fit samples
        again with whitened random effects built from it (:mod:`ckmodel.population.whitening`;
        ``meta["whitened"]``, each attempt's ``random_effects``; the whitening itself is saved in
        ``constant_data``), when at least a quarter of the budget is left: so whether a fit switches
        depends on the machine's speed as well as on the seed. nutpie and PyMC's NUTS only (no JAX
        implementation). MCMC samplers only.

    Returns
    -------
    Fit
        Posterior and metadata; ``Fit.save(path)`` writes it.
    """
    _check_settings(sampler=sampler, draws=draws, tune=tune, chains=chains, seed=seed,
                    target_accept=target_accept, mass_matrix=mass_matrix)
    if until_converged is not None and not until_converged >= 0:
        raise ValueError(f"until_converged must be a number of seconds >= 0 (0: one run), got "
                         f"{until_converged!r}")
    until_converged = until_converged or None
    spec = load_model(model)
    opts = options or PopulationOptions()
    effects = parse_covariates(covariates)
    opts.check(spec, [e for e in effects if e.kind != "after"])
    if opts.iiv_sd == "auto" and sampler not in MCMC_SAMPLERS:
        # the approximations (Gaussian, point) suit the log form's single mode
        opts = replace(opts, iiv_sd="log")
    data_unit = getattr(data, "time_unit", spec.time_unit)
    try:
        time_scale = time_factor(data_unit, spec.time_unit)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if time_scale != 1.0:
        log.warning("data times are in %ss, model '%s' is in %ss: times converted for the fit "
                    "(x %.6g); results are in %ss", data_unit, spec.name, spec.time_unit,
                    time_scale, spec.time_unit)
    spec, static = apply_time_varying(spec, effects)
    pdata = prepare(data, spec, analytes=analytes, blq_method=opts.blq_method,
                    extra_covariates=[e.covariate for e in static], time_scale=time_scale)
    log.info("fitting %s to %d records of %d subjects (%s) with %s", spec.name, pdata.n_obs,
             pdata.n_subjects, ", ".join(pdata.analytes), sampler)
    grid_check = _step_grid_check(spec, pdata, opts, seed)
    fused = sampler in FUSED_SAMPLERS
    iiv_names = iiv_parameters(spec, opts)
    error_models = opts.error_models(spec, pdata.analytes)
    # centring chosen from the data: the model holds its weights as data, set after a pilot
    pilot_run = (opts.centered == "shrinkage" and not opts.correlated and bool(iiv_names)
                 and sampler in MCMC_SAMPLERS)
    centering = np.zeros((pdata.n_subjects, len(iiv_names))) if pilot_run else None
    whiten_now, switch = random_effects_plan(spec, pdata, opts, sampler=sampler,
                                             until_converged=until_converged)
    # the pilot's warm-up and draws per chain: centring weights need each subject's variance,
    # a whitening only its mean and the SDs
    pilot_tune, pilot_draws = ((PILOT_TUNE, PILOT_DRAWS) if pilot_run else
                               (WHITEN_PILOT_TUNE, WHITEN_PILOT_DRAWS))
    if opts.centered == "whitened" and not whiten_now:
        log.warning("random effects not whitened (asked for with centered='whitened'): %s; "
                    "they are sampled non-centred", "the model has no random effects"
                    if not iiv_names else f"the {sampler} sampler cannot run the whitening")
    pm_model = build_model(spec, pdata, covariates=effects, options=opts, fused=fused,
                           centering=centering)
    # analytes whose likelihood is a potential (closed form: summed in each analyte's kernel;
    # ODE: ``loglik``, all analytes in one compiled call, or per analyte the pointwise terms
    # sharing one solver node); closed-form Student-t keeps observed y_<A>
    pot = [p.name for p in pm_model.potentials]
    fused_analytes = (list(pdata.analytes) if "loglik" in pot else
                      [n.removeprefix("loglik_") for n in pot if n.startswith("loglik_")])
    fused = bool(fused_analytes)
    low_rank = mass_matrix == "low_rank" or (
        mass_matrix == "auto" and uses_ode(spec, pdata, opts.method))
    settings = dict(sampler=sampler, chains=chains, seed=seed, target_accept=target_accept,
                    progressbar=progressbar, cores=cores, low_rank=low_rank)
    run = Sampler(pm_model, **settings)
    t0 = time.perf_counter()
    run.compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    t_pilot = 0.0
    if pilot_run:
        pilot = run(draws=pilot_draws, tune=pilot_tune, seed=seed)
        centering = shrinkage_weights(pilot)
        run.set_data("centering", centering)
        t_pilot = time.perf_counter() - t0
        log.info("centring weights from a pilot run of %d + %d steps per chain (%.1f s): %s",
                 pilot_tune, pilot_draws, t_pilot,
                 ", ".join(f"{k} {v['median']:.2f}" for k, v in
                           centering_summary(centering, iiv_names).items()))
    whitening, whitened, t_rebuild = None, None, 0.0
    if whiten_now:
        first, attempts = run(draws=pilot_draws, tune=pilot_tune, seed=seed), []
        t_pilot = time.perf_counter() - t0
        whitened = {"after": f"a pilot run of {pilot_tune} + {pilot_draws} steps per chain"
                    + (" (centered='auto' whitens the effects of models solved as ODEs)"
                       if opts.centered == "auto" else "")}
    else:
        first, attempts = run_until(run, draws=draws, tune=tune, seed=seed,
                                    budget=until_converged if sampler in MCMC_SAMPLERS
                                    else None, stop_on_geometry=switch)
        last = attempts[-1]
        if switch and geometry_failed(last):
            bfmi = last["min_bfmi"]
            problems = f"{last['divergences']} divergences, lowest E-BFMI " + (
                "not recorded" if bfmi is None else f"{bfmi:.2f}")
            # the switch depends on time left as well as on the seed: said in the fit's meta
            if until_converged - (time.perf_counter() - t0) > 0.25 * until_converged:
                whitened = {"after": f"the non-centred run ({problems})"}
            else:
                log.warning("the non-centred run failed (%s) with too little of the time "
                            "budget left to sample again with whitened random effects",
                            problems)
    if whitened is not None:
        whitened["seconds_before"] = round(time.perf_counter() - t0, 2)
        t1 = time.perf_counter()
        active = whitened_parameters(spec, opts)
        whitening = whitening_from_posterior(first, spec, pdata, active, error_models,
                                             opts.method, opts.ode)
        log.info("sampling again with random effects whitened by their conditional posterior "
                 "after %s", whitened["after"])
        pm_model = build_model(spec, pdata, covariates=effects, options=opts, fused=fused,
                               whitening=whitening)
        run = Sampler(pm_model, **settings)
        run.compile()
        t_rebuild = time.perf_counter() - t1           # counted as compile time
        t_compile += t_rebuild
        for a in attempts:
            a["random_effects"] = "non-centred"
        budget = (max(until_converged - (time.perf_counter() - t0), 1.0)
                  if until_converged is not None and sampler in MCMC_SAMPLERS else None)
        first, more = run_until(run, draws=draws, tune=tune, seed=seed + len(attempts) + 1,
                                budget=budget)
        for a in more:
            a["random_effects"] = "whitened"
        attempts = attempts + more
    idata = first
    draws, tune = attempts[-1]["draws"], attempts[-1]["tune"]
    t_sample = time.perf_counter() - t0 - t_rebuild

    if grid_check is not None and "theta" in idata.posterior:
        grid_check = _step_grid_check(spec, pdata, opts, seed, idata.posterior["theta"],
                                      grid_check)
    # closed forms: replicates and pointwise log-likelihood from the fused kernel, one
    # compiled call per draw (fitting.predictive); ODE models through PyMC
    ode = uses_ode(spec, pdata, opts.method)
    if not ode and sampler != "map" and (posterior_predictive or log_likelihood):
        pp, ll = record_draws(idata.posterior, spec, pdata, error_models, seed=seed,
                              replicates=posterior_predictive, loglik=log_likelihood)
        if pp is not None:
            idata.add_groups(posterior_predictive=pp)
        if ll is not None:
            idata.add_groups(log_likelihood=ll)
    elif sampler != "map" and (posterior_predictive or log_likelihood):
        if fused:  # the same free variables with observed ``y_<A>``
            pm_model = build_model(spec, pdata, covariates=effects, options=opts,
                                   centering=centering, whitening=whitening)
        _pymc_record_draws(pm_model, idata, seed=seed, progressbar=progressbar,
                           replicates=posterior_predictive, loglik=log_likelihood,
                           whitened=whitening is not None)
    obs = {}
    for i, a in enumerate(pdata.analytes):
        sel, value, _ = pdata.analyte_records(i)
        obs[f"y_{a}"] = xr.DataArray(value, dims=obs_dim(a), coords={obs_dim(a): pdata.row[sel]})
    for group in ("observed_data", "constant_data"):
        if hasattr(idata, group):
            delattr(idata, group)
    const = _constant_data(pdata)
    if centering is not None:
        const["centering"] = xr.DataArray(centering, dims=("subject", "iiv"),
                                          coords={"subject": list(pdata.subjects),
                                                  "iiv": iiv_names})
    if whitening is not None:      # what maps the saved z back to eta (whitening.py)
        names = whitened_parameters(spec, opts)
        const["whiten_mean"] = xr.DataArray(whitening[0], dims=("subject", "whitened"),
                                            coords={"subject": list(pdata.subjects),
                                                    "whitened": names})
        const["whiten_info"] = xr.DataArray(
            whitening[1], dims=("subject", "analyte", "whitened", "whitened_2"),
            coords={"subject": list(pdata.subjects), "analyte": list(pdata.analytes),
                    "whitened": names, "whitened_2": names})
    idata.add_groups(observed_data=xr.Dataset(obs), constant_data=const)
    meta = {
        "sampler": sampler, "seed": seed, "draws": draws, "tune": tune, "chains": chains,
        "target_accept": run.target_accept, "mass_matrix": "low_rank" if low_rank else "diag",
        "likelihood": "fused" if fused else "pointwise", "fused_analytes": fused_analytes,
        "covariates": [e.label for e in effects],
        "covariate_formulas": [c if isinstance(c, str) else c.label for c in covariates],
        "options": {k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in asdict(opts).items() if k != "ode"},
        "analytes": list(pdata.analytes), "error_models": error_models,
        "data_analytes": list(getattr(data, "analytes", ())),
        "data_units": dict(getattr(data, "analyte_units", {})),
        "data_time_unit": data_unit, "model_time_unit": spec.time_unit,
        "time_scale": time_scale,
        "excluded": pdata.excluded, "records": pdata.records.to_dict(orient="list"),
        "n_obs": pdata.n_obs, "n_subjects": pdata.n_subjects,
        "data_hash": data.hash() if hasattr(data, "hash") else None,
        "spec_hash": spec.hash(), "sampling_seconds": round(t_sample, 2),
        "compile_seconds": round(t_compile, 2),
        "centering": (centering_summary(centering, iiv_names) if centering is not None
                      else None),
        "iiv_sd": iiv_sd_forms(spec, opts, centering),
        "pilot": ({"tune": pilot_tune, "draws": pilot_draws, "seconds": round(t_pilot, 2)}
                  if pilot_run or whiten_now else None),
        "whitened": whitened,
        "step_grid": grid_check,
        "versions": package_versions(),
    }
    if until_converged is not None:
        meta["until_converged_seconds"] = until_converged
        meta["attempts"] = attempts
    if sampler == "pathfinder":
        meta["pathfinder_khat"] = idata.posterior.attrs["pathfinder_khat"]
    result = Fit(idata=idata, spec=spec, data=data, meta=meta)
    if sampler in MCMC_SAMPLERS:
        result.meta["convergence"] = check_convergence(idata)
    return result
