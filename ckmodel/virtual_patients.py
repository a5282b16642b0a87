"""Virtual patients from a fitted posterior: parameter uncertainty and between-patient variability.

:func:`simulate_patients` (also :meth:`ckmodel.Fit.simulate`) draws new patients from a fit
and gives each candidate dose to every one of them. Two sources of spread are kept apart on
their own dims:

- ``draw``: posterior draws of the population (typical values, covariate effects, IIV SDs and
  correlations): what we do not know about the population;
- ``patient``: new patients, each with covariates taken from the data (a fitted subject drawn
  at random, ``source`` coord) or given, and standard normal deviates ``z_p``: how patients
  differ.

Patient ``p`` under draw ``d`` has, on each parameter's random-effect scale ``g``::

    g(theta_dp) = [g(theta_sp) - eta_sp]_d + L_d z_p

with ``s = source(p)`` (the fitted subject's typical value with its covariate effects, draw
``d``; :mod:`ckmodel.fitting.draws`) and ``L_d`` the draw's IIV factor. The same ``z_p`` and
covariates serve every draw and every dose (common random numbers), so differences between
doses are not blurred by different patients. Given covariates replace the source's through the
fit's covariate effects (``x beta`` recomputed with the fit's references).

Exposure metrics are those of :mod:`ckmodel.exposure` (lin-up/log-down AUC on a dense grid,
the same grid rule as a fit's exposures). Closed-form models are solved in NumPy; ODE models
through the compiled RK4 kernel that fits use (:func:`ckmodel.population.ode.rk4_states`),
or SciPy with ``solver="scipy"``. Work is split into tasks of fixed size (dose x block of
draws), run here or on Dask (:mod:`ckmodel.parallel`); all random numbers come from ``seed``
(residual errors from one spawned seed per task), so results do not depend on the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ckmodel.exposure import (
    analyte_lloqs,
    expansion_points,
    metric_names,
    trajectory_metrics,
)
from ckmodel.fitting.draws import (
    iiv_names,
    parameter_names,
    random_effects,
    sample_index,
    stacked_draws,
    typical_on_scale,
)
from ckmodel.nca import column_unit, default_windows
from ckmodel.parallel import dask_client, map_tasks
from ckmodel.spec import from_scale

__all__ = ["simulate_patients", "virtual_grid", "task_blocks", "SOLVERS", "TASK_SIZE"]

#: ``auto``: closed form where the model has one, else the compiled RK4 kernel.
SOLVERS = ("auto", "kernel", "scipy")
#: Patient-solves per task (bounds memory: states on the dense grid of one task).
TASK_SIZE = 1000


def virtual_grid(time_unit: str, end: float, *, n: int = 400) -> np.ndarray:
    """Dense grid of virtual-patient exposures: the rule of :func:`ckmodel.exposure.exposure_grid`.

    ``n`` uniform points from the dose (time 0) to ``end`` (model time unit), the
    :func:`~ckmodel.exposure.expansion_points` and the AUC window ends.
    """
    wins = [x for w in default_windows(time_unit) for x in w if np.isfinite(x)]
    grid = np.concatenate([np.linspace(0.0, end, n), expansion_points(time_unit), wins])
    return np.unique(grid[(grid >= 0) & (grid <= end)])


def _check_doses(doses: Any, unit: str) -> np.ndarray:
    d = np.atleast_1d(np.asarray(doses, dtype=float))
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d) & (d > 0)):
        raise ValueError(f"doses must be one or more positive amounts ({unit}), got {doses!r}")
    if np.unique(d).size != d.size:
        raise ValueError(f"doses must be distinct, got {d.tolist()}")
    return d


def _count(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)


def _covariate_shift(fit: Any, source: np.ndarray, given: pd.DataFrame,
                     samples: np.ndarray) -> np.ndarray:
    """``(x_new - x_source) beta`` per draw and patient: (draws, patients, parameters)."""
    from ckmodel.population.covariates import covariate_design, parse_covariates

    pnames = parameter_names(fit)
    out = np.zeros((samples.size, source.size, len(pnames)))
    formulas = fit.meta.get("covariate_formulas", []) or []
    effects = [e for e in parse_covariates(formulas) if e.kind != "after"]
    if not effects:
        return out
    beta = stacked_draws(fit, "beta")[samples]  # (draws, effects)
    labels = [str(v) for v in fit.posterior["beta"].covariate_effect.values]
    data_cov = fit.data.covariates
    subjects = [str(s) for s in fit.posterior["theta"].subject.values]
    for eff in effects:
        if eff.covariate not in given.columns:
            continue
        series = data_cov[eff.covariate].reindex(subjects)
        series.index = series.index.astype(str)
        x_src, labs, _, ref = covariate_design(eff, series)
        fixed = replace(eff, reference=ref)
        new = given[eff.covariate].copy()
        x_new, labs_new, _, _ = covariate_design(fixed, new.set_axis([str(i) for i in
                                                                     range(new.size)]))
        if eff.kind == "categorical":  # align levels seen in the data; unseen ones refused
            unseen = sorted(set(new.astype(str)) - set(series.astype(str)))
            if unseen:
                raise ValueError(f"covariate {eff.covariate}: level(s) {unseen} were not in the "
                                 f"fitted data ({sorted(set(series.astype(str)))})")
            cols = {lab: j for j, lab in enumerate(labs_new)}
            x_new = np.column_stack([x_new[:, cols[lab]] if lab in cols else
                                     np.zeros(new.size) for lab in labs]) \
                if labs else np.zeros((new.size, 0))
        delta = x_new - x_src[source]  # (patients, k)
        b = beta[:, [labels.index(lab) for lab in labs]]  # (draws, k)
        out[..., pnames.index(eff.parameter)] += np.einsum("pk,dk->dp", delta, b)
    return out


def _patients(fit: Any, n_patients: int, covariates: Any, dose_covariate: str | None,
              rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """Each patient's source subject and covariate table (before any dose covariate)."""
    subjects = [str(s) for s in fit.posterior["theta"].subject.values]
    cov = fit.data.covariates.reindex(subjects) if fit.data is not None else \
        pd.DataFrame(index=subjects)
    cov.index = cov.index.astype(str)
    if isinstance(covariates, pd.DataFrame):
        pool = covariates.reset_index(drop=True)
        take = rng.integers(0, len(pool), n_patients)
        source = rng.integers(0, len(subjects), n_patients)
        table = cov.iloc[source].reset_index(drop=True)
        for c in pool.columns:
            table[c] = pool[c].to_numpy()[take]
        return source, table
    source = rng.integers(0, len(subjects), n_patients)
    table = cov.iloc[source].reset_index(drop=True)
    for k, v in dict(covariates or {}).items():
        if k == dose_covariate:
            raise ValueError(f"covariate {k} is the dose covariate: it takes each dose's value")
        table[k] = np.broadcast_to(np.asarray(v), (n_patients,))
    return source, table


def _task(spec: Any, pnames: list[str], grid: np.ndarray, times: np.ndarray | None,
          analytes: list[str], metrics: list[str], lloq: dict[str, float], solver: str,
          regimen: np.ndarray, g: np.ndarray, dose: float, covs: dict[str, np.ndarray],
          residual: dict[str, Any] | None, seed: np.random.SeedSequence
          ) -> dict[str, np.ndarray]:
    """Solve one block: ``g`` (draws_b, patients, params) at one dose -> metrics, trajectories."""
    from ckmodel.solve import SolverOptions, evaluate_outputs, solve_states

    n_d, n_p, _ = g.shape
    params = {p: from_scale(g[..., j], spec.parameter(p).scale).ravel()
              for j, p in enumerate(pnames)}
    cov = {c: np.tile(v, n_d) for c, v in covs.items()}
    t = grid if times is None else np.unique(np.concatenate([grid, times]))
    amt = np.full(n_d * n_p, float(dose))
    if regimen.size == 1 and (solver == "kernel" or (solver == "auto"
                                                      and spec.solution is None)):
        from ckmodel.population.ode import rk4_states

        states = rk4_states(spec, params, t, amt=amt, covariates=cov)
    else:  # closed form (superposition of a regimen) or SciPy
        opts = SolverOptions(method="ode") if solver == "scipy" else None
        states = solve_states(spec, params, t, amt=np.repeat(amt[:, None], regimen.size, 1),
                              dose_time=np.broadcast_to(regimen, (amt.size, regimen.size)),
                              covariates=cov, options=opts)
    pred = evaluate_outputs(spec, states, params, t, cov, names=analytes)
    out: dict[str, np.ndarray] = {}
    on_grid = np.searchsorted(t, grid)
    for a in analytes:
        vals = trajectory_metrics(grid, pred[a][:, on_grid],
                                  lloq=lloq.get(a) if "T_ABOVE_LLOQ" in metrics else None,
                                  time_unit=spec.time_unit)
        for m in metrics:
            out[f"{a}_{m}"] = vals[m].reshape(n_d, n_p)
    if times is not None:
        at = np.searchsorted(t, times)
        traj = np.stack([pred[a][:, at].reshape(n_d, n_p, times.size) for a in analytes], 2)
        out["pred"] = traj
        if residual is not None:
            from ckmodel.population.residual import sample_residual

            rng = np.random.default_rng(seed)
            obs = np.empty_like(traj)
            for k, a in enumerate(analytes):
                r = residual[a]
                obs[:, :, k] = sample_residual(r["error"], traj[:, :, k], r["sigma"][:, None, None],
                                               rng, sigma_prop=r["prop"], nu=r["nu"])
            out["obs"] = obs
    return out


def simulate_patients(
    fit: Any,
    doses: Sequence[float] | float,
    *,
    n_patients: int = 100,
    n_draws: int = 100,
    times: Sequence[float] | None = None,
    metrics: Sequence[str] | None = None,
    analytes: Sequence[str] | None = None,
    covariates: Mapping[str, Any] | pd.DataFrame | None = None,
    dose_covariate: str | None = None,
    dose_times: Sequence[float] | None = None,
    residual: bool = False,
    seed: int = 1,
    solver: str = "auto",
    end: float | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    client: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """New patients from a fit's posterior, each given every candidate dose.

    Parameters
    ----------
    fit : Fit
        A population fit (its data give the covariates to resample).
    doses : float or sequence of float
        Candidate doses, in the model's amount unit (``fit.spec.amount_unit``), one infusion
        at time 0.
    n_patients : int
        New patients (``patient`` dim), the same ones at every draw and dose.
    n_draws : int
        About this many posterior draws (``draw`` dim; the same thinned draws of every chain).
    times : sequence of float, optional
        Times (model time unit, since the dose) at which to keep trajectories (``pred``,
        and ``obs`` with ``residual``); default none kept: only exposure metrics.
    metrics : sequence of str, optional
        Exposure metrics (:func:`ckmodel.exposure.metric_names`; default all).
    analytes : sequence of str, optional
        Model outputs (default all).
    covariates : mapping or DataFrame, optional
        None: each patient takes the covariates of a fitted subject drawn at random (its
        ``source``). A mapping of covariate -> value (scalar or one per patient) sets those
        covariates for every patient; a DataFrame is a pool of covariate rows drawn at
        random (e.g. a target population). Effects are recomputed through the fit's
        covariate model.
    dose_covariate : str, optional
        A covariate of the fit's covariate model that *is* the dose (e.g. ``DOSE``); it
        takes each candidate dose's value.
    dose_times : sequence of float, optional
        A regimen: each dose is given at each of these times (model time unit, from 0;
        default one infusion at 0). Closed forms add the doses by superposition; ODE models
        are then solved by SciPy (the RK4 kernel takes one dose).
    residual : bool
        Also ``obs``: trajectories with the draw's residual error (needs ``times``).
    seed : int
        All random numbers (sources, ``z``, pools, residual errors) derive from it.
    solver : {"auto", "kernel", "scipy"}
        ``auto``: closed form when the model has one, else the compiled RK4 kernel of the
        fits (its step grid, see :class:`ckmodel.ODEOptions`); ``kernel`` forces RK4;
        ``scipy``: :func:`ckmodel.solve.solve_states` at its tolerances (slow).
    end : float, optional
        End of the exposure grid (model time unit); default the later of the longest AUC
        window and the last time of ``times``.
    workers, scheduler, client
        Dask: local workers (more than 1 starts a local cluster), a scheduler address, or a
        client (:mod:`ckmodel.parallel`). Results do not depend on them.
    progress : callable, optional
        ``progress(done, total)`` after each task.

    Returns
    -------
    xarray.Dataset
        ``<ANALYTE>_<METRIC>`` (``dose``, ``draw``, ``patient``) with ``unit`` attrs;
        ``pred``/``obs`` (``dose``, ``draw``, ``patient``, ``analyte``, ``time``) when
        ``times`` are given; ``params`` (``dose``, ``draw``, ``patient``, ``parameter``),
        each patient's natural-scale parameters; coords ``chain`` and ``sample`` on ``draw``
        (the posterior draw used), ``source`` and each covariate on ``patient``; attrs ``model``,
        ``time_unit``, ``amount_unit``, ``seed``, ``n_draws``, ``solver``, ``grid_points``,
        ``grid_end``.

    Examples
    --------
    >>> vp = fit.simulate([1.0, 2.0, 4.0], n_patients=200, seed=1)  # doctest: +SKIP
    >>> vp["PB_QPCR_CMAX"].median(("draw", "patient"))  # doctest: +SKIP
    """
    spec = fit.spec
    dose_arr = _check_doses(doses, spec.amount_unit)
    n_patients = _count("n_patients", n_patients)
    n_draws = _count("n_draws", n_draws)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    outputs = list(spec.output_names)
    chosen = outputs if analytes is None else [str(a) for a in analytes]
    bad = [a for a in chosen if a not in outputs]
    if bad:
        raise ValueError(f"analyte(s) {bad} are not outputs of {spec.name}: {', '.join(outputs)}")
    names = metric_names(spec.time_unit)
    want = names if metrics is None else [str(m).upper() for m in metrics]
    bad = [m for m in want if m not in names]
    if bad:
        raise ValueError(f"unknown exposure metric(s) {bad}: use {', '.join(names)}")
    keep = None
    if times is not None:
        keep = np.unique(np.asarray(times, dtype=float))
        if keep.ndim != 1 or keep.size == 0 or not np.all(np.isfinite(keep)) or keep[0] < 0:
            raise ValueError("times must be finite times >= 0 since the dose")
    regimen = np.atleast_1d(np.asarray([0.0] if dose_times is None else dose_times, float))
    if (regimen.size == 0 or not np.all(np.isfinite(regimen)) or regimen[0] != 0
            or np.any(np.diff(regimen) <= 0)):
        raise ValueError(f"dose_times must start at 0 and increase, got {dose_times!r}")
    if regimen.size > 1 and solver == "kernel":
        raise ValueError("the RK4 kernel takes one infusion; use solver='scipy' (or 'auto') "
                         "for a regimen")
    if regimen.size > 1 and spec.solution is not None and not spec.superposition:
        solver = "scipy" if solver == "auto" else solver
    if residual and keep is None:
        raise ValueError("residual=True needs times (observations are kept only at times)")
    known = set(fit.data.covariates.columns) if fit.data is not None else set()
    given = list(covariates.columns) if isinstance(covariates, pd.DataFrame) else \
        list(dict(covariates or {}))
    unknown = [c for c in given + ([dose_covariate] if dose_covariate else []) if c not in known]
    if unknown and fit.data is not None:
        raise ValueError(f"covariate(s) {unknown} are not in the fitted data "
                         f"({', '.join(sorted(known)) or 'none'})")
    if dose_covariate is not None:
        formulas = " ".join(fit.meta.get("covariate_formulas", []) or [])
        if dose_covariate not in formulas:
            raise ValueError(f"dose_covariate {dose_covariate} is not in the fit's covariate "
                             f"model ({formulas or 'no covariate effects'}): the dose already "
                             "enters as the amount infused")

    rng = np.random.default_rng(np.random.SeedSequence(seed))
    samples = sample_index(fit, n_draws)
    g_all = typical_on_scale(fit)[samples]  # (draws, subjects, params)
    source, table = _patients(fit, n_patients, covariates, dose_covariate, rng)
    iiv = iiv_names(fit)
    z = rng.standard_normal((n_patients, len(iiv)))
    pnames = parameter_names(fit)
    g = g_all[:, source, :].copy()
    eta = random_effects(fit, samples, np.broadcast_to(z, (samples.size, *z.shape)))
    for k, p in enumerate(iiv):
        g[..., pnames.index(p)] += eta[..., k]
    if given:
        g += _covariate_shift(fit, source, table, samples)

    t_end = float(max([b for _, b in default_windows(spec.time_unit) if np.isfinite(b)]
                      + ([float(keep[-1])] if keep is not None else [])))
    grid = virtual_grid(spec.time_unit, t_end if end is None else float(end))
    lloq = analyte_lloqs(fit, chosen) if fit.data is not None else {}
    lloq = {a: v for a, v in lloq.items() if np.isfinite(v)}
    res = None
    if residual:
        errors = fit.meta.get("error_models", {})
        res = {}
        for a in chosen:
            out = spec.output(a)
            res[a] = {"error": errors.get(a, out.error),
                      "sigma": stacked_draws(fit, f"sigma_{a}")[samples],
                      "prop": (stacked_draws(fit, f"sigma_prop_{a}")[samples]
                               if f"sigma_prop_{a}" in fit.posterior else None),
                      "nu": out.nu}
    covs = {c: table[c].to_numpy(float) for c in spec.covariates}
    blocks = task_blocks(samples.size, n_patients)
    seeds = np.random.SeedSequence(seed).spawn(dose_arr.size * len(blocks) + 1)[1:]
    args = []
    params = np.empty((dose_arr.size, *g.shape))
    for k, dose in enumerate(dose_arr):
        g_k = g
        if dose_covariate is not None:
            shift = _covariate_shift(fit, source, pd.DataFrame(
                {dose_covariate: np.full(n_patients, dose)}), samples)
            g_k = g + shift
        params[k] = np.stack([from_scale(g_k[..., j], spec.parameter(p).scale)
                              for j, p in enumerate(pnames)], axis=-1)
        covs_k = dict(covs)
        if dose_covariate in spec.covariates:
            covs_k[dose_covariate] = np.full(n_patients, dose)
        for b, (i0, i1, j0, j1) in enumerate(blocks):
            r_b = None if res is None else {
                a: dict(v, sigma=v["sigma"][i0:i1],
                        prop=None if v["prop"] is None else v["prop"][i0:i1, None, None])
                for a, v in res.items()}
            args.append((g_k[i0:i1, j0:j1], float(dose),
                         {c: v[j0:j1] for c, v in covs_k.items()}, r_b,
                         seeds[k * len(blocks) + b]))
    shared = (spec, pnames, grid, keep, chosen, want, lloq, solver, regimen)
    with dask_client(workers=workers, scheduler=scheduler, client=client) as run_on:
        parts = map_tasks(_task, args, run_on, shared=shared, progress=progress)
    ds = _assemble(fit, parts, dose_arr, blocks, samples, source, table, keep, chosen,
                   grid, seed, solver, n_draws)
    ds["params"] = (("dose", "draw", "patient", "parameter"), params)
    ds.attrs["dose_times"] = regimen.tolist()
    return ds.assign_coords(parameter=pnames)


def task_blocks(n_draws: int, n_patients: int, size: int | None = None
                ) -> list[tuple[int, int, int, int]]:
    """Draw and patient ranges ``(i0, i1, j0, j1)`` of the tasks of one dose.

    Whole draws of at most ``size`` (default :data:`TASK_SIZE`) patient-solves per task, or,
    when one draw has more patients, slices of a draw's patients; fixed by the problem's
    size alone, never by the workers.
    """
    size = TASK_SIZE if size is None else int(size)
    if n_patients <= size:
        per = size // n_patients
        return [(i, min(n_draws, i + per), 0, n_patients) for i in range(0, n_draws, per)]
    return [(i, i + 1, j, min(n_patients, j + size)) for i in range(n_draws)
            for j in range(0, n_patients, size)]


def _assemble(fit: Any, parts: list[dict[str, np.ndarray]], doses: np.ndarray,
              blocks: list[tuple[int, int, int, int]], samples: np.ndarray,
              source: np.ndarray, table: pd.DataFrame, keep: np.ndarray | None,
              analytes: list[str], grid: np.ndarray, seed: int, solver: str, n_draws: int
              ) -> xr.Dataset:
    from ckmodel import __version__

    spec = fit.spec
    n_draw_post = fit.posterior.sizes["draw"]
    subjects = np.array([str(s) for s in fit.posterior["theta"].subject.values])
    coords: dict[str, Any] = {
        "dose": doses, "draw": np.arange(samples.size),
        "patient": [f"V{i + 1:06d}" for i in range(source.size)],
        "chain": ("draw", fit.posterior.chain.values[samples // n_draw_post]),
        "sample": ("draw", fit.posterior.draw.values[samples % n_draw_post]),
        "source": ("patient", subjects[source]),
    }
    for c in table.columns:
        coords[str(c)] = ("patient", table[c].to_numpy())
    ds = xr.Dataset(coords=coords)
    units = {a: spec.output(a).unit for a in analytes}

    def gather(name: str) -> np.ndarray:
        first = parts[0][name]
        val = np.empty((doses.size, samples.size, source.size, *first.shape[2:]))
        for t, part in enumerate(parts):
            i0, i1, j0, j1 = blocks[t % len(blocks)]
            val[t // len(blocks), i0:i1, j0:j1] = part[name]
        return val

    for name in parts[0]:
        if name in ("pred", "obs"):
            continue
        a, m = next((a, name[len(a) + 1:]) for a in sorted(analytes, key=len, reverse=True)
                    if name.startswith(f"{a}_"))
        col = "CMAX" if m == "CMAX" else "TMAX" if m in ("TMAX", "T_ABOVE_LLOQ") else "AUC"
        ds[name] = (("dose", "draw", "patient"), gather(name),
                    {"unit": column_unit(col, units[a], spec.time_unit), "analyte": a,
                     "metric": m})
    if keep is not None:
        ds = ds.assign_coords(analyte=analytes, time=keep,
                              unit=("analyte", [units[a] for a in analytes]))
        for name in ("pred", "obs"):
            if name in parts[0]:
                ds[name] = (("dose", "draw", "patient", "analyte", "time"), gather(name))
    ds["dose"].attrs["unit"] = spec.amount_unit
    ds.attrs.update({"model": spec.name, "model_hash": spec.hash(),
                     "time_unit": spec.time_unit, "amount_unit": spec.amount_unit,
                     "seed": int(seed), "n_draws": int(n_draws), "solver": solver,
                     "grid_points": int(grid.size), "grid_end": float(grid[-1]),
                     "ckmodel_version": __version__,
                     "notes": "patients: covariates of a fitted subject (source) or given; "
                              "the same patients at every draw and dose"})
    return ds
