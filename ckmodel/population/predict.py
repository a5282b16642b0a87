"""Differentiable predictions of a ModelSpec on the observation records (PyTensor).

Closed forms run as a fused kernel that returns predictions with their exact Jacobian
(:mod:`ckmodel.population.closed_kernel`; numba for nutpie, C/Python for PyMC's NUTS, JAX for
numpyro/blackjax), or, as a reference, as plain PyTensor expressions. Models without a closed
form, or with a time-varying switch active, use :mod:`ckmodel.population.ode` (compiled RK4 with
its discrete adjoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytensor.tensor as pt

from ckmodel.population.prepare import PopulationData
from ckmodel.spec.expr import compile_expr
from ckmodel.spec.model import ModelSpec

__all__ = ["closed_kernels", "predict_outputs", "uses_ode"]


def uses_ode(spec: ModelSpec, pdata: PopulationData, method: str = "auto") -> bool:
    """Whether :func:`predict_outputs` solves the ODEs rather than evaluating the closed form.

    True when the spec has no closed form, a time-varying switch is active in the data, or
    ``method="ode"``.
    """
    switching = any(np.isfinite(v).any() for v in pdata.onsets.values())
    return method == "ode" or spec.solution is None or switching


def closed_kernels(spec: ModelSpec, pdata: PopulationData) -> dict[str, Any]:
    """The fused closed-form kernel of each fitted analyte, on its records (data order).

    Returns
    -------
    dict of str to ClosedFormKernel
    """
    from ckmodel.population.closed_kernel import ClosedFormKernel

    names = list(spec.covariates)
    cmat = (np.stack([pdata.covariates[c].to_numpy(float) for c in names], axis=1) if names
            else np.zeros((pdata.n_subjects, 0)))
    out = {}
    for a_i, a in enumerate(pdata.analytes):
        sel = np.flatnonzero(pdata.analyte_index == a_i)
        out[a] = ClosedFormKernel(spec, a, cmat, names, pdata.amt, pdata.dose_time,
                                  pdata.subject_index[sel], pdata.time[sel])
    return out


def _closed_states(spec: ModelSpec, env: Mapping[str, Any], tau: np.ndarray, amt: np.ndarray
                   ) -> dict[str, Any]:
    """States at times ``tau`` since a dose of ``amt`` (both arrays aligned with env tensors)."""
    e = dict(env, t=tau, AMT=amt)
    return {s: compile_expr(spec.solution[s], "pytensor")(e) for s in spec.state_names}


def predict_outputs(spec: ModelSpec, pdata: PopulationData, theta: Any,
                    method: str = "auto", ode_options: Any = None) -> dict[str, Any]:
    """Prediction of each fitted analyte on its records.

    Parameters
    ----------
    spec : ModelSpec
    pdata : PopulationData
    theta : tensor, shape (n_subjects, n_parameters)
        Natural-scale individual parameters, columns in ``spec.param_names`` order.
    method : {"auto", "closed", "closed_graph", "ode"}
        Closed form when the spec has one and no time-varying switch is active (``auto``), or
        the compiled RK4 ODE solver. The closed form runs as a fused kernel with its exact
        Jacobian (:mod:`ckmodel.population.closed_kernel`); ``closed_graph`` builds it as a
        plain PyTensor graph instead (the reference the kernel is tested against).
    ode_options : ckmodel.population.ode.ODEOptions, optional
        Grid and stepping of the ODE solver.

    Returns
    -------
    dict of str to tensor
        For each analyte in ``pdata.analytes``, the prediction on its records (in data order
        of those records).
    """
    switching = any(np.isfinite(v).any() for v in pdata.onsets.values())
    use_closed = not uses_ode(spec, pdata, method)
    if method not in ("auto", "closed", "closed_graph", "ode"):
        raise ValueError("method must be 'auto', 'closed', 'closed_graph' or 'ode', "
                         f"got {method!r}")
    if method in ("closed", "closed_graph") and spec.solution is None:
        raise ValueError(f"model '{spec.name}' has no closed form")
    if method in ("closed", "closed_graph") and switching:
        raise ValueError(f"model '{spec.name}' has time-varying switches active in the data; "
                         "its closed form does not apply (use method='ode' or 'auto')")
    cov = {c: pdata.covariates[c].to_numpy(float) for c in spec.covariates}
    out: dict[str, Any] = {}
    if not use_closed:
        from ckmodel.population.ode import ode_outputs

        return ode_outputs(spec, pdata, theta, cov, ode_options)
    if method != "closed_graph":
        from ckmodel.population.closed_kernel import ClosedFormOp

        return {a: ClosedFormOp(k)(theta)[0] for a, k in closed_kernels(spec, pdata).items()}
    out_fns = {o.name: compile_expr(o.value, "pytensor") for o in spec.outputs}
    for a_i, a in enumerate(pdata.analytes):
        sel = np.flatnonzero(pdata.analyte_index == a_i)
        sidx = pdata.subject_index[sel]
        t = pdata.time[sel]
        env: dict[str, Any] = dict(spec.constants)
        theta_rec = theta[sidx]  # one gather per analyte; columns below are views
        for j, p in enumerate(spec.param_names):
            env[p] = theta_rec[:, j]
        for c, v in cov.items():
            env[c] = v[sidx]
        states: dict[str, Any] = {s: 0.0 for s in spec.state_names}
        for k in range(pdata.amt.shape[1]):
            amt = pdata.amt[sidx, k]
            dt = pdata.dose_time[sidx, k]
            valid = np.isfinite(amt) & (t >= np.nan_to_num(dt, nan=np.inf))
            if not valid.any():
                continue
            tau = np.where(valid, t - np.nan_to_num(dt), 0.0)
            part = _closed_states(spec, env, tau, np.where(valid, amt, 0.0))
            for s in spec.state_names:
                states[s] = states[s] + (pt.switch(valid, part[s], 0.0) if not valid.all()
                                         else part[s])
        e = dict(env, t=t, **states)
        out[a] = out_fns[a](e)
    return out
