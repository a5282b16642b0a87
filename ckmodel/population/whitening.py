"""Random effects whitened by their conditional posterior: no funnel in omega or in sigma.

Non-centred random effects (``eta_i = omega z_i``) sample well where the data say little about
a subject and badly where they say much: there ``z_i``'s conditional scale shrinks as
``sigma / omega`` and the pair (``omega``, ``z``) forms a funnel. On sparse CAR-T data a second
funnel dominates: the residual SD ``sigma`` sets the conditional scale of every
data-informed direction of every subject, so the log density's level moves with
``k log sigma`` (``k`` of them, about the number of quantified records), the energy the
sampler must cross at each momentum refresh; E-BFMI falls to 0.1.

Here each subject's effects are sampled in the coordinates of a normal approximation to their
conditional posterior given the typical values, the IIV SDs and the residual SDs. With
``v`` the IIV SDs in signed form (``omega = |v|``, :func:`ckmodel.population.model.iiv_sd_forms`;
or ``omega`` itself in the log form) and ``D = diag(v)``::

    H_i   = sum_a I_ia / sigma_a^2              data information (effects x all parameters)
    K_i   = D H_i,ee D + I = L_i L_i^T           precision of zeta_i = eta_i / v given the rest
    zeta_i = K_i^-1 D H_i (m_i - mu_i) + L_i^-T u_i,       eta_i = v * zeta_i

with ``I_ia`` the information of analyte ``a``'s quantified records about subject ``i``'s
parameters at unit residual SD (from the model's sensitivities, :func:`data_information`),
``m_i`` the subject's parameters on the transformed scale from an earlier run (a pilot, or
the non-centred run that failed) and ``mu_i`` the typical values (covariate effects included).
Parameters without a random effect are columns of ``H_i``: when one moves, the subjects'
effects move with it as their data ask. ``eta_i`` has mean ``P_i^-1 H_i (m_i - mu_i)`` and
covariance ``P_i^-1`` with ``P_i = H_i,ee + diag(1 / omega^2)``, the normal conditional
posterior of the effects. The map from ``u_i`` to ``eta_i`` is affine given the
hyperparameters, so the model is unchanged: ``eta_i ~ N(0, omega)``, whose density with the
Jacobian is ``-|zeta_i|^2 / 2 - sum log diag L_i`` (+ const). Where the normal approximation
holds, ``u_i`` is standard normal whatever the hyperparameters are: the omega funnel, the sigma
funnel and the collective motion of the subjects with the typical values are gone. With
``I = 0`` the form *is* the signed non-centred one (``eta_i = v u_i``), and it is smooth in
``v`` through 0. It extends the partial centring of Papaspiliopoulos, Roberts & Skold
(Stat Sci 2007) from one effect and ``omega`` to all of a subject's parameters, their
confounding, and the residual SDs. The compiled map and its gradient are in
:mod:`ckmodel.population.whitening_op`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ckmodel.population.options import PopulationOptions, iiv_parameters
from ckmodel.population.prepare import PopulationData
from ckmodel.population.residual import RESIDUAL_MODELS, TINY
from ckmodel.population.whitening_op import WhitenOp
from ckmodel.spec.model import ModelSpec, from_scale, to_scale

__all__ = ["whitened_block", "whitened_parameters", "data_information",
           "whitening_from_posterior", "SIGMA_SCALED"]

#: Error models whose information about the effects scales as ``1 / s1^2`` (on the log scale
#: for those that need a positive prediction, ``ResidualModel.positive``; in DV units for
#: additive). The combined model's information is taken at the earlier run's SDs and held.
SIGMA_SCALED = frozenset({"log_normal", "student_t", "proportional", "additive"})
#: Step on the transformed scale of the central differences that give the sensitivities.
FD_STEP = 1e-4


def whitened_block(scales: Any, typical: Any, whitening: tuple[np.ndarray, np.ndarray],
                   residuals: Mapping[str, tuple[Any, str]]) -> Any:
    """The whitened random effects of a PyMC model being built: ``z``, the prior, ``eta``.

    ``z`` are the coordinates ``u`` of the module's map, ``eta`` comes from
    :class:`~ckmodel.population.whitening_op.WhitenOp`, and the potential is the prior of
    ``eta`` with the map's Jacobian, ``-|zeta|^2 / 2 - sum log diag L`` (+ const); ``z`` has
    no prior of its own. Each analyte's information is scaled by ``1 / sigma_a^2``
    (:data:`SIGMA_SCALED` error models) or held.

    Parameters
    ----------
    scales : TensorVariable
        The effects' IIV SDs, signed or positive (effect,).
    typical : TensorVariable
        Typical values (subject, parameter of :func:`whitened_parameters`).
    whitening : (ndarray, ndarray)
        ``mean`` and ``info`` from :func:`whitening_from_posterior`.
    residuals : mapping of str to (TensorVariable, str)
        Per analyte, in the order of ``info``'s analyte axis, its residual SD variable and
        error model.

    Returns
    -------
    TensorVariable
        ``eta`` (subject, effect); the free ``z`` (whitened coordinates, flat) and the
        potential ``random_effects`` (prior of ``eta`` with the Jacobian) are added to the
        model in context.
    """
    import pymc as pm
    import pytensor.tensor as pt

    z = pm.Flat("z", dims=("subject", "iiv"))
    precision = pt.stack([sd ** -2 if err in SIGMA_SCALED else pt.constant(1.0)
                          for sd, err in residuals.values()])
    eta, logp = WhitenOp()(z, typical, scales, precision,
                           pt.constant(np.asarray(whitening[1], dtype=float)),
                           pt.constant(np.asarray(whitening[0], dtype=float)))
    pm.Potential("random_effects", logp)
    return eta


def whitened_parameters(spec: ModelSpec, options: PopulationOptions) -> list[str]:
    """Parameters the whitening sees: those with a random effect first, then the others.

    Parameters without a random effect enter through the data's joint information: when such
    a typical value moves, each subject's effects move with it as the data ask (the
    conditional mean's shift), instead of every whitened coordinate having to move at once.

    Parameters
    ----------
    spec : ModelSpec
    options : PopulationOptions
        Its fixed parameters are left out.

    Returns
    -------
    list of str
        The random effects in the model's ``iiv`` order, then the parameters without one.
    """
    iiv = iiv_parameters(spec, options)
    return iiv + [p.name for p in spec.parameters
                  if p.name not in iiv and p.name not in options.fixed]


def data_information(spec: ModelSpec, pdata: PopulationData, theta: np.ndarray,
                     names: Sequence[str], errors: Mapping[str, str],
                     sigmas: Mapping[str, tuple[float, float | None]], *,
                     method: str = "auto", ode_options: Any = None) -> np.ndarray:
    """Information of each subject's quantified records about its random effects.

    Parameters
    ----------
    spec, pdata
        The model and its records.
    theta : ndarray
        Individual parameters, natural scale (subject, parameter), where the sensitivities
        are taken (a pilot's posterior means).
    names : sequence of str
        :func:`whitened_parameters`: those with a random effect first, in the model's
        ``iiv`` order, then the others.
    errors : mapping of str to str
        Error model per analyte.
    sigmas : mapping of str to (float, float or None)
        Per analyte the pilot's residual SD and, for the combined model, its proportional SD.
    method, ode_options
        How the predictions are made (``PopulationOptions.method`` and ``.ode``).

    Returns
    -------
    ndarray
        (subject, analyte, parameter, parameter): ``sum_j s_j s_j^T`` over the subject's
        quantified records of the analyte, with ``s_j`` the sensitivity of the prediction (its
        log for log-scale error models) to the parameters on their transformed scale (central
        differences of step :data:`FD_STEP`), divided by the
        residual variance for the combined model and at unit SD otherwise. Records below the
        LLOQ carry little information and are left out. This is the information about the
        prediction's location only (the proportional model's variance term and the combined
        model's variance derivative are left out): it shapes the sampler's coordinates, never
        the model, so an approximation costs efficiency, not exactness.
    """
    import pytensor
    import pytensor.tensor as pt

    from ckmodel.population.predict import predict_outputs

    theta_in = pt.matrix("theta")
    preds = predict_outputs(spec, pdata, theta_in, method=method, ode_options=ode_options)
    order = list(pdata.analytes)
    f = pytensor.function([theta_in], [preds[a] for a in order], mode="FAST_RUN")
    pnames = spec.param_names
    scales = {p.name: p.scale for p in spec.parameters}
    cols = [pnames.index(n) for n in names]
    g0 = np.array([to_scale(theta[:, c], scales[pnames[c]]) for c in cols]).T
    n_s, q = g0.shape
    sens = []
    for k, c in enumerate(cols):
        outs = []
        for step in (FD_STEP, -FD_STEP):
            th = np.array(theta, dtype=float)
            th[:, c] = from_scale(g0[:, k] + step, scales[pnames[c]])
            outs.append(f(th))
        sens.append(outs)
    base = f(np.asarray(theta, dtype=float))
    info = np.zeros((n_s, len(order), q, q))
    for a_i, a in enumerate(order):
        sel = np.flatnonzero(pdata.analyte_index == a_i)
        keep = ~pdata.blq[sel]
        subj = pdata.subject_index[sel][keep]
        err = errors[a]
        raw = np.asarray(base[a_i], dtype=float)[keep]
        fa = np.maximum(raw, TINY)
        cols_s = []
        for k in range(q):
            hi = np.asarray(sens[k][0][a_i], dtype=float)[keep]
            lo = np.asarray(sens[k][1][a_i], dtype=float)[keep]
            if RESIDUAL_MODELS[err].positive or err == "combined":
                # a prediction at the floor has no usable log-sensitivity: none is taken
                flat = (raw <= TINY) | (hi <= TINY) | (lo <= TINY)
                d = np.where(flat, 0.0, np.log(np.maximum(hi, TINY)) - np.log(np.maximum(lo, TINY)))
                if err == "combined":
                    s1, s2 = sigmas[a]
                    d = d * fa / np.sqrt(s1**2 + (s2 * fa) ** 2)
            else:
                d = hi - lo
            cols_s.append(d / (2 * FD_STEP))
        s = np.nan_to_num(np.array(cols_s).T)               # (record, effect)
        if err == "student_t":
            nu = spec.output(a).nu
            s = s * np.sqrt((nu + 1.0) / (nu + 3.0))
        np.add.at(info[:, a_i], subj, s[:, :, None] * s[:, None, :])
    return info


def whitening_from_posterior(idata: Any, spec: ModelSpec, pdata: PopulationData,
                             names: Sequence[str], errors: Mapping[str, str],
                             method: str = "auto", ode_options: Any = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """The subjects' effects and the data information there, from a (pilot) posterior.

    Parameters
    ----------
    idata : arviz.InferenceData
        A posterior of the same model and data with ``theta`` (subject x parameter) and
        ``sigma_<A>`` (and ``sigma_prop_<A>`` for the combined model).
    spec, pdata
        The model and its records.
    names : sequence of str
        :func:`whitened_parameters`.
    errors : mapping of str to str
        Error model per analyte.
    method, ode_options
        How the predictions are made (``PopulationOptions.method`` and ``.ode``).

    Returns
    -------
    mean : ndarray
        (subject, parameter of ``names``): posterior mean on the transformed scale.
    info : ndarray
        (subject, analyte, parameter, parameter): :func:`data_information` at the posterior
        mean of the individual parameters on their transformed scales.
    """
    post = idata.posterior
    theta = post["theta"].transpose("chain", "draw", "subject", "parameter").values
    theta = theta.reshape(-1, *theta.shape[2:])
    g_mean = np.stack([to_scale(theta[..., k], p.scale).mean(axis=0)
                       for k, p in enumerate(spec.parameters)], axis=-1)
    centre = np.stack([from_scale(g_mean[:, k], p.scale) for k, p in enumerate(spec.parameters)],
                      axis=-1)
    mean = g_mean[:, [spec.param_names.index(n) for n in names]]
    sigmas = {a: (float(post[f"sigma_{a}"].mean()),
                  float(post[f"sigma_prop_{a}"].mean()) if f"sigma_prop_{a}" in post else None)
              for a in pdata.analytes}
    info = data_information(spec, pdata, centre, names, errors, sigmas, method=method,
                            ode_options=ode_options)
    return mean, info
