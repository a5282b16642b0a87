"""Fit a CK model hierarchically to data: ``fit(data, model, sampler=...) -> Fit``."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import xarray as xr

from ckmodel.data.schema import time_factor
from ckmodel.errors import DatasetError
from ckmodel.fitting.centering import (
    PILOT_DRAWS,
    PILOT_TUNE,
    centering_summary,
    shrinkage_weights,
)
from ckmodel.fitting.convergence import ESS_MIN, RHAT_MAX, check_convergence
from ckmodel.fitting.result import Fit, package_versions
from ckmodel.fitting.samplers import FUSED_SAMPLERS, MCMC_SAMPLERS, SAMPLERS, Sampler
from ckmodel.population.covariates import (
    CovariateEffect,
    apply_time_varying,
    parse_covariates,
)
from ckmodel.population.model import PopulationOptions, build_model, iiv_parameters, obs_dim
from ckmodel.population.predict import uses_ode
from ckmodel.population.prepare import PopulationData, prepare
from ckmodel.spec.model import ModelSpec
from ckmodel.spec.parse import load_model

__all__ = ["fit", "next_run_length", "SAMPLERS", "FUSED_SAMPLERS", "UNTIL_CONVERGED"]

log = logging.getLogger(__name__)

#: Default time budget (seconds) within which a fit that fails its convergence checks runs
#: again, longer (``fit(until_converged=...)``, ``--until-converged``).
UNTIL_CONVERGED = 600.0



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
        Centred/correlated effects, error-model overrides, BLQ method (M3/M1), fixed parameters.
    target_accept : float
        NUTS target acceptance rate.
    cores : int, optional
        Chains run in parallel (default: all cores).
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
        A time budget in seconds (default 600; 0 or None: one run, as asked): when the
        convergence checks fail, the chains run again,
        longer (same compiled model, seed + 1, + 2 ...): draws grow by the factor the lowest
        ESS or the worst R-hat asks for (1.5x to 4x), warm-up doubles when there were
        divergences or a stuck chain (:func:`next_run_length`), while the next run fits in
        the budget; every run is recorded in ``meta["attempts"]`` and the last one is kept.
        MCMC samplers only.

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
    fused = sampler in FUSED_SAMPLERS
    iiv_names = iiv_parameters(spec, opts)
    # centring chosen from the data: the model holds its weights as data, set after a pilot
    auto = (opts.centered == "shrinkage" and not opts.correlated and bool(iiv_names)
            and sampler in MCMC_SAMPLERS)
    centering = np.zeros((pdata.n_subjects, len(iiv_names))) if auto else None
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
    run = Sampler(pm_model, sampler, chains=chains, seed=seed, target_accept=target_accept,
                  progressbar=progressbar, cores=cores, low_rank=low_rank)
    t0 = time.perf_counter()
    run.compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    if auto:
        pilot = run(draws=PILOT_DRAWS, tune=PILOT_TUNE, seed=seed)
        centering = shrinkage_weights(pilot)
        run.set_data("centering", centering)
        log.info("centring weights from a pilot run of %d + %d steps per chain (%.1f s): %s",
                 PILOT_TUNE, PILOT_DRAWS, time.perf_counter() - t0,
                 ", ".join(f"{k} {v['median']:.2f}" for k, v in
                           centering_summary(centering, iiv_names).items()))
    t_pilot = time.perf_counter() - t0
    idata, attempts = _run_until(run, draws=draws, tune=tune, seed=seed,
                                 budget=until_converged if sampler in MCMC_SAMPLERS else None)
    draws, tune = attempts[-1]["draws"], attempts[-1]["tune"]
    t_sample = time.perf_counter() - t0
    import pymc as pm

    if fused and ((posterior_predictive or log_likelihood) and sampler != "map"):
        # the same free variables with observed ``y_<A>``: predictive draws, pointwise logp
        pm_model = build_model(spec, pdata, covariates=effects, options=opts,
                               centering=centering)
    with pm_model:
        if posterior_predictive and sampler != "map":
            pp = pm.sample_posterior_predictive(idata, random_seed=seed, progressbar=progressbar,
                                                extend_inferencedata=False)
            idata.add_groups(posterior_predictive=pp.posterior_predictive)
        if log_likelihood and sampler != "map":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                ll = pm.compute_log_likelihood(idata, progressbar=progressbar,
                                               extend_inferencedata=False)
            idata.add_groups(log_likelihood=ll)
    obs = {f"y_{a}": xr.DataArray(
        np.where(pdata.blq[pdata.analyte_index == i], pdata.lloq[pdata.analyte_index == i],
                 pdata.dv[pdata.analyte_index == i]),
        dims=obs_dim(a), coords={obs_dim(a): pdata.row[pdata.analyte_index == i]})
        for i, a in enumerate(pdata.analytes)}
    for group in ("observed_data", "constant_data"):
        if hasattr(idata, group):
            delattr(idata, group)
    const = _constant_data(pdata)
    if centering is not None:
        const["centering"] = xr.DataArray(centering, dims=("subject", "iiv"),
                                          coords={"subject": list(pdata.subjects),
                                                  "iiv": iiv_names})
    idata.add_groups(observed_data=xr.Dataset(obs), constant_data=const)
    error_models = {a: opts.error.get(a, spec.output(a).error) for a in pdata.analytes}
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
        "pilot": ({"tune": PILOT_TUNE, "draws": PILOT_DRAWS, "seconds": round(t_pilot, 2)}
                  if auto else None),
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


def _strip_unconstrained(idata: Any) -> Any:
    # nutpie also stores unconstrained copies (``*_log__``); keep the natural-scale variables
    unconstrained = [v for v in idata.posterior.data_vars if str(v).endswith("__")]
    if unconstrained:
        idata.posterior = idata.posterior.drop_vars(unconstrained)
    return idata


def next_run_length(verdict: dict[str, Any], draws: int, tune: int) -> tuple[int, int]:
    """Draws and warm-up of the next run after a failed convergence check.

    Draws grow by the factor the checks ask for: ``1.25 ESS_MIN / lowest ESS`` (bulk ESS
    grows about in proportion to the draws) or ``(R-hat - 1) / (RHAT_MAX - 1)`` (R-hat - 1
    shrinks about as 1 / draws), whichever is larger, at least 1.5x and at most 4x, rounded
    up to 50. Warm-up doubles when the adaptation itself looks at fault (divergences, a
    lagging chain, R-hat above 1.05) and is kept otherwise.
    """
    ess = verdict.get("min_ess_bulk")
    rhat = verdict.get("max_rhat")
    factors = [1.5]
    if ess is not None and np.isfinite(ess) and ess > 0:
        factors.append(1.25 * ESS_MIN / ess)
    if rhat is not None and np.isfinite(rhat):
        factors.append((rhat - 1.0) / (RHAT_MAX - 1.0))
    factor = min(max(factors), 4.0)
    new_draws = int(np.ceil(draws * factor / 50.0) * 50)
    troubled = (verdict.get("divergences", 0) or verdict.get("lagging_chains")
                or (rhat is not None and not rhat <= 1.05))
    return new_draws, (2 * tune if troubled else tune)


#: A streamed run is planned for at most this many times the requested draws.
MAX_GROWTH = 8


def _troubled(verdict: dict[str, Any]) -> bool:
    """Failures that more draws of the same run do not mend: divergences, stuck chains."""
    return bool(verdict.get("divergences", 0) or verdict.get("lagging_chains"))


def _complete_draws(trace: Any) -> int:
    """Draws that every chain of a trace in progress has finished (NaN: not yet drawn)."""
    post = trace.posterior
    if not post.data_vars or post.sizes.get("draw", 0) == 0:
        return 0
    var = next(iter(post.data_vars))
    x = post[var].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)[..., 0]
    done = np.isfinite(x)
    # the first not-yet-drawn position of each chain
    first_missing = np.where(done.all(axis=1), done.shape[1], np.argmin(done, axis=1))
    return int(first_missing.min())


def _inspect(bg: Any) -> Any:
    """The trace of a background run so far.

    ArviZ's warning about a trace with fewer draws than chains, which an early look always
    is, is not for the user.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        return bg.inspect()


def _stream(run: Sampler, *, draws: int, tune: int, seed: int, deadline: float
            ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """One nutpie run that stops as soon as its first ``n`` draws per chain pass the checks.

    The run is planned for ``MAX_GROWTH x draws`` draws; the checks are made on the first
    ``n = draws`` draws of every chain, then at the ``n`` that :func:`next_run_length` asks
    for, and so on. The first ``n`` draws of a chain do not depend on when they were read,
    so the kept posterior is the same on any machine, unless the time budget (``deadline``,
    a ``time.perf_counter()`` value) ends the run first. Divergences or a stuck chain end it
    too: more draws of the same adaptation do not mend them.
    """
    t0 = time.perf_counter()
    cap = MAX_GROWTH * draws
    bg = run.start(draws=cap, tune=tune, seed=seed)
    n, last, pause = draws, None, 1.0
    try:
        while True:
            trace = None
            while True:
                t_read = time.perf_counter()
                current = _inspect(bg)
                read = time.perf_counter() - t_read
                have = _complete_draws(current)
                if have >= n or have >= cap:
                    trace = current if have >= n else None
                    break
                if time.perf_counter() > deadline:
                    break
                # wait about as long as the missing draws take, and at least twice a read
                pause = max(2.0 * read, min(pause * 1.5, 10.0))
                time.sleep(pause)
            if trace is None:
                break
            idata = _strip_unconstrained(trace.isel(draw=slice(0, n)))
            verdict = check_convergence(idata, warn=False)
            last = (idata, n, verdict)
            if verdict["ok"] or _troubled(verdict) or n >= cap:
                break
            nxt = min(next_run_length(verdict, n, tune)[0], cap)
            elapsed = time.perf_counter() - t0
            rate = elapsed / (tune + n)               # seconds per iteration, warm-up included
            if time.perf_counter() + rate * (nxt - n) * 1.1 > deadline:
                log.warning("not converged at %d draws per chain; %d would not end within "
                            "the time budget", n, nxt)
                break
            log.info("checks at %d draws per chain not passed (worst R-hat %.3f, lowest bulk "
                     "ESS %.0f): sampling on to %d", n, verdict.get("max_rhat", np.nan),
                     verdict.get("min_ess_bulk", np.nan), nxt)
            n = nxt
    finally:
        bg.cancel()
    if last is None:            # the budget ran out before the first checkpoint
        current = _inspect(bg)
        idata = _strip_unconstrained(current.isel(draw=slice(0, max(_complete_draws(current),
                                                                    1))))
        last = (idata, idata.posterior.sizes["draw"], check_convergence(idata, warn=False))
    idata, n, verdict = last
    entry = {"draws": n, "tune": tune, "seed": seed, "target_accept": run.target_accept,
             "seconds": round(time.perf_counter() - t0, 2), "ok": verdict["ok"],
             "max_rhat": verdict.get("max_rhat"), "min_ess_bulk": verdict.get("min_ess_bulk"),
             "divergences": verdict.get("divergences", 0), "streamed": True}
    return idata, entry, verdict


def _run_until(run: Sampler, *, draws: int, tune: int, seed: int, budget: float | None
               ) -> tuple[Any, list[dict[str, Any]]]:
    """Sample; with a ``budget`` (seconds), run longer until the checks pass.

    nutpie streams (:func:`_stream`): one run samples on until its draws pass the checks.
    Other samplers run again, longer (:func:`next_run_length`), when at the pace of the last
    run the next one would end within the budget. After divergences or a stuck chain the
    chains start again with twice the warm-up and a target acceptance halfway to 1 (0.9 ->
    0.95 -> 0.975). Each run has its own seed (``seed + attempt``), recorded, so the whole
    sequence is reproducible.
    """
    attempts: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    streamed = budget is not None and run.sampler == "nutpie"
    k = 0
    while True:
        t0 = time.perf_counter()
        if streamed:
            idata, entry, verdict = _stream(run, draws=draws, tune=tune, seed=seed + k,
                                            deadline=t_start + float(budget or 0))
            attempts.append(entry)
            took, kept = entry["seconds"], entry["draws"]
        else:
            idata = _strip_unconstrained(run(draws=draws, tune=tune, seed=seed + k))
            took, kept = time.perf_counter() - t0, draws
            entry = {"draws": draws, "tune": tune, "seed": seed + k,
                     "target_accept": run.target_accept, "seconds": round(took, 2)}
            attempts.append(entry)
            if budget is None:
                return idata, attempts
            verdict = check_convergence(idata, warn=False)
            entry.update(ok=verdict["ok"], max_rhat=verdict.get("max_rhat"),
                         min_ess_bulk=verdict.get("min_ess_bulk"),
                         divergences=verdict.get("divergences", 0))
        if verdict["ok"]:
            if k or kept > draws:
                log.warning("converged with %d tuning steps and %d draws per chain (target "
                            "acceptance %.3g, %d run(s))", tune, kept, run.target_accept, k + 1)
            return idata, attempts
        if streamed and not _troubled(verdict):
            return idata, attempts          # the stream ran as long as the budget allowed
        if _troubled(verdict):
            new_draws, new_tune = draws if streamed else kept, 2 * tune
        else:
            new_draws, new_tune = next_run_length(verdict, draws, tune)
        spent = time.perf_counter() - t_start
        expected = took * (new_draws + new_tune) / max(kept + tune, 1)
        if spent + 1.1 * expected > float(budget or 0):
            log.warning("not converged within the budget of %.0f s (%d run(s), %.0f s; the "
                        "next, %d + %d steps per chain, would take about %.0f s): the last "
                        "run (%d tuning steps, %d draws per chain) is kept", budget, k + 1,
                        spent, new_tune, new_draws, expected, tune, kept)
            return idata, attempts
        if _troubled(verdict):
            run.target_accept = 1.0 - (1.0 - run.target_accept) / 2.0
        log.warning("not converged (worst R-hat %.3f, lowest bulk ESS %.0f, %d divergences): "
                    "running again with %d tuning steps, %d draws per chain, target "
                    "acceptance %.3g", entry["max_rhat"] or float("nan"),
                    entry["min_ess_bulk"] or float("nan"), entry["divergences"], new_tune,
                    new_draws, run.target_accept)
        draws, tune, k = new_draws, new_tune, k + 1
