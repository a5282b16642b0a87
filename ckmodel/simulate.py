"""Simulate virtual patients from a model spec (typical values + random effects, or priors).

The result is an :class:`xarray.Dataset` with dims ``subject``, ``time``, ``analyte`` (and
``state``, ``parameter``) so that it plots, saves to NetCDF and feeds NCA like observed data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ckmodel.solve import SolverOptions, evaluate_outputs, solve_states
from ckmodel.spec import ModelSpec, from_scale, load_model, to_scale

__all__ = ["simulate", "individual_parameters", "add_residual_error", "DEFAULT_TIMES"]

log = logging.getLogger(__name__)

#: Default output grid (days): dense over expansion, sparse in persistence.
DEFAULT_TIMES = np.unique(np.concatenate([np.arange(0, 28.5, 0.5), np.arange(28, 91, 2),
                                          np.arange(90, 366, 15)])).astype(float)


def individual_parameters(
    spec: ModelSpec,
    n: int,
    rng: np.random.Generator,
    *,
    typical: Mapping[str, float] | None = None,
    omega: Mapping[str, float] | None = None,
    iiv: bool = True,
    draw_typical: bool = False,
) -> dict[str, np.ndarray]:
    """Draw natural-scale parameters for ``n`` virtual subjects.

    Parameters
    ----------
    spec : ModelSpec
    n : int
        Number of subjects.
    rng : numpy.random.Generator
    typical : mapping, optional
        Typical values overriding the spec's ``value`` entries.
    omega : mapping, optional
        SD of the random effect on the parameter's scale (log, logit or linear); default the
        median of the spec's IIV prior; parameters without ``iiv`` get none.
    iiv : bool
        False gives every subject the typical values.
    draw_typical : bool
        True draws each subject's typical values from the priors as well (prior predictive).

    Returns
    -------
    dict of str to array of shape (n,)
    """
    typical = dict(spec.typical_values(), **(typical or {}))
    omega = dict(omega or {})
    out = {}
    for p in spec.parameters:
        if draw_typical:
            center = to_scale(p.prior.sample(rng, n), p.scale)
        else:
            center = np.full(n, to_scale(np.asarray(typical[p.name], dtype=float), p.scale))
        sd = omega.get(p.name, p.iiv.median() if p.iiv is not None else 0.0)
        eta = rng.standard_normal(n) * sd if iiv and sd > 0 else np.zeros(n)
        out[p.name] = from_scale(center + eta, p.scale)
    return out


def add_residual_error(spec: ModelSpec, pred: Mapping[str, np.ndarray], rng: np.random.Generator,
                       sigma: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Add each output's residual error to predictions.

    The error models are those of :mod:`ckmodel.population.residual`, which also fits them.
    ``sigma`` gives the SD per output (log scale for ``log_normal``/``student_t``, relative for
    ``proportional``, output units for ``additive``; ``(additive, proportional)`` pair for
    ``combined``); default the median of the spec's sigma prior(s).
    """
    from ckmodel.population.residual import sample_residual  # numba, not PyMC

    sigma = dict(sigma or {})
    out = {}
    for o in spec.outputs:
        s = sigma.get(o.name, o.sigma.median())
        s_prop = None
        if o.error == "combined":
            s, s_prop = (s if isinstance(s, Sequence) else (s, o.sigma_prop.median()))
        out[o.name] = sample_residual(o.error, pred[o.name], s, rng, sigma_prop=s_prop, nu=o.nu)
    return out


def simulate(
    model: str | ModelSpec,
    *,
    n: int = 100,
    dose: float | Sequence[float] = 1.0,
    times: Sequence[float] | np.ndarray | None = None,
    seed: int | None = None,
    covariates: Mapping[str, Any] | None = None,
    typical: Mapping[str, float] | None = None,
    omega: Mapping[str, float] | None = None,
    sigma: Mapping[str, float] | None = None,
    lloq: Mapping[str, float] | None = None,
    iiv: bool = True,
    residual: bool = True,
    draw_typical: bool = False,
    params: Mapping[str, Any] | None = None,
    options: SolverOptions | None = None,
    onsets: Mapping[str, Any] | None = None,
    dose_times: Sequence[float] | None = None,
    dose_state: str | None = None,
) -> xr.Dataset:
    """Simulate virtual patients from a model's typical values and random effects.

    Parameters
    ----------
    model : str or ModelSpec
        Catalog name, path to a TOML file, or a loaded spec.
    n : int
        Subjects per dose level.
    dose : float or sequence of float
        Dose amount(s) in the spec's ``amount_unit``, given at time 0 (or at each of
        ``dose_times``); each level gets ``n`` subjects.
    times : array, optional
        Output times in the spec's time unit (default :data:`DEFAULT_TIMES`, 0-365 days).
    seed : int, optional
        Seed of the random generator; recorded in the result's attributes.

    Other Parameters
    ----------------
    covariates : mapping, optional
        Values (scalar or one per subject) of the covariates the spec uses.
    typical, omega, sigma : mapping, optional
        Override typical values, IIV SDs and residual SDs (see :func:`individual_parameters`,
        :func:`add_residual_error`).
    lloq : mapping, optional
        LLOQ per output; observations below it are flagged in ``blq``.
    iiv, residual : bool
        Switch random effects and residual error off to get typical-value predictions.
    draw_typical : bool
        Draw typical values from the priors too (prior predictive).
    params : mapping, optional
        Give individual parameters directly (arrays of one value per subject); no draws.
    options : SolverOptions, optional
        ODE settings.
    onsets : mapping of str to array, optional
        Onset time of each of the spec's switches (scalar or one per subject; NaN: never).
    dose_times : sequence of float, optional
        A regimen: every subject gets its dose at each of these times (spec time unit),
        e.g. ``[0, 14]`` for a second infusion on day 14. Default ``[0]``. Models without
        superposition are solved as ODEs when there are several doses.
    dose_state : str, optional
        The state every dose goes into, its amount added unchanged (NONMEM's CMT; e.g.
        ``"A_c"`` for an IV dose in an oral model). Default: the spec's ``[dosing]``.

    Returns
    -------
    xarray.Dataset
        ``pred`` and ``obs`` (subject, analyte, time), ``blq`` when ``lloq`` is given,
        ``states`` (subject, state, time), ``params`` (subject, parameter) and coordinate
        ``dose`` on ``subject``; attrs record model name, spec hash, seed and version.

    Examples
    --------
    >>> ds = simulate("expansion_biphasic", n=3, dose=[1.0, 3.0], seed=1, times=[0, 7, 14])
    >>> dict(ds.sizes)["subject"], list(ds.analyte.values)
    (6, ['PB_QPCR'])
    """
    from ckmodel import __version__

    spec = load_model(model)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n (subjects per dose) must be an integer >= 1, got {n!r}")
    doses = np.atleast_1d(np.asarray(dose, dtype=float))
    if doses.size == 0 or not np.all(np.isfinite(doses) & (doses > 0)):
        raise ValueError(f"dose must be one or more positive amounts ({spec.amount_unit}), "
                         f"got {dose!r}")
    regimen = np.atleast_1d(np.asarray([0.0] if dose_times is None else dose_times, dtype=float))
    if regimen.size == 0 or not np.all(np.isfinite(regimen)) or np.any(np.diff(regimen) < 0):
        raise ValueError(f"dose_times must be increasing finite times ({spec.time_unit}), got "
                         f"{dose_times!r}")
    t = np.asarray(DEFAULT_TIMES if times is None else times, dtype=float)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0):
        raise ValueError("times must be a non-empty, non-decreasing 1-D array of finite times")
    rng = np.random.default_rng(seed)
    amt = np.repeat(doses, n)
    total = amt.size
    if params is None:
        pars = individual_parameters(spec, total, rng, typical=typical, omega=omega, iiv=iiv,
                                     draw_typical=draw_typical)
    else:
        pars = {k: np.broadcast_to(np.asarray(params[k], dtype=float), (total,)).copy()
                for k in spec.param_names}
    covs = {k: np.broadcast_to(np.asarray(v, dtype=float), (total,))
            for k, v in (covariates or {}).items()}
    log.info("simulating %d subjects of model %s on %d time points", total, spec.name, t.size)
    ons = {k: np.broadcast_to(np.asarray(v, dtype=float), (total,))
           for k, v in (onsets or {}).items()}
    if dose_state is not None and dose_state not in spec.state_names:
        raise ValueError(f"dose_state {dose_state!r} is not a state of model '{spec.name}' "
                         f"(states: {', '.join(spec.state_names)})")
    amt_k = np.repeat(amt[:, None], regimen.size, axis=1)
    target = -1 if dose_state is None else spec.state_names.index(dose_state)
    states = solve_states(spec, pars, t, amt=amt_k, dose_time=np.broadcast_to(regimen, amt_k.shape),
                          covariates=covs, options=options, onsets=ons,
                          dose_cmt=np.full(amt_k.shape, target))
    pred = evaluate_outputs(spec, states, pars, t, covs)
    obs = add_residual_error(spec, pred, rng, sigma) if residual else pred
    analytes = list(spec.output_names)
    ds = xr.Dataset(
        {
            "pred": (("subject", "analyte", "time"), np.stack([pred[a] for a in analytes], 1)),
            "obs": (("subject", "analyte", "time"), np.stack([obs[a] for a in analytes], 1)),
            "states": (("subject", "state", "time"), states),
            "params": (("subject", "parameter"),
                       np.column_stack([pars[p] for p in spec.param_names])),
        },
        coords={
            "subject": [f"S{i + 1:05d}" for i in range(total)],
            "time": t,
            "analyte": analytes,
            "state": list(spec.state_names),
            "parameter": list(spec.param_names),
            "dose": ("subject", amt),
        },
        attrs={"model": spec.name, "model_hash": spec.hash(), "seed": -1 if seed is None else seed,
               "time_unit": spec.time_unit, "amount_unit": spec.amount_unit,
               "ckmodel_version": __version__, "iiv": int(iiv), "residual": int(residual),
               "dose_times": regimen.tolist(), "dose_state": dose_state or ""},
    )
    for k, v in covs.items():
        ds = ds.assign_coords({k: ("subject", np.asarray(v))})
    if lloq:
        lim = np.array([lloq.get(a, np.nan) for a in analytes])[None, :, None]
        ds["blq"] = (("subject", "analyte", "time"), ds["obs"].values < lim)
        ds["lloq"] = (("analyte",), lim[0, :, 0])
    return ds
