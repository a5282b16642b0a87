"""Data fixtures for tests and notebooks: CK data sets simulated from a catalog model.

These are real, checked :class:`~ckmodel.data.CKData` objects (built with
:meth:`CKData.from_frames`, so they pass the same rules as files), with known true parameters,
for recovery tests of fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ckmodel.simulate import simulate
from ckmodel.spec import ModelSpec, load_model

__all__ = ["simulate_ckdata", "STANDARD_TIMES"]

#: A typical CAR-T blood sampling schedule (days after infusion).
STANDARD_TIMES = (1.0, 4.0, 7.0, 10.0, 14.0, 21.0, 28.0, 42.0, 56.0, 84.0, 180.0, 365.0)


def simulate_ckdata(
    model: str | ModelSpec = "expansion_biphasic",
    *,
    n: int = 20,
    dose: float | Sequence[float] = 1.0,
    times: Sequence[float] = STANDARD_TIMES,
    seed: int = 0,
    lloq: Mapping[str, float] | None = None,
    typical: Mapping[str, float] | None = None,
    omega: Mapping[str, float] | None = None,
    sigma: Mapping[str, float] | None = None,
    covariates: Mapping[str, Any] | None = None,
    onsets: Mapping[str, Any] | None = None,
    dose_times: Sequence[float] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Simulate a checked CK data set from ``model``.

    Parameters
    ----------
    model : str or ModelSpec
        Model to simulate from.
    n : int
        Subjects per dose level.
    dose : float or sequence
        Dose level(s) (model amount unit), infused at time 0.
    times : sequence of float
        Sampling times in the model's time unit (days for CAR-T), the same for every output.
    seed : int
        Random seed.
    lloq : mapping, optional
        LLOQ per output (default 50 for qPCR outputs, 1 for flow, none otherwise); values below
        are reported BLQ with DV missing.
    typical, omega, sigma, covariates : mapping, optional
        Passed to :func:`ckmodel.simulate.simulate`.
    onsets : mapping of str to array, optional
        Onset times (one per subject, NaN: never) of the spec's switches; each goes to the
        data as the subject-level column the switch reads (e.g. ``ADA_TIME``).
    dose_times : sequence of float, optional
        A regimen: each subject is dosed at each of these times (default ``[0]``).

    Returns
    -------
    data : CKData
        Observations, doses and a DOSE covariate per subject (plus given covariates).
    truth : dict
        ``params`` (subject x parameter DataFrame), ``typical``, ``omega``, ``sigma``, ``seed``.
    """
    from ckmodel.data import CKData

    spec = load_model(model)
    if lloq is None:
        lloq = {o: (50.0 if "QPCR" in o else 1.0 if "FLOW" in o else np.nan)
                for o in spec.output_names}
    ds = simulate(spec, n=n, dose=dose, times=times, seed=seed, lloq=lloq, typical=typical,
                  omega=omega, sigma=sigma, covariates=covariates, onsets=onsets,
                  dose_times=dose_times)
    subj = ds.subject.values
    obs = ds["obs"].to_dataframe().reset_index()[["subject", "analyte", "time", "obs"]]
    obs.columns = ["ID", "ANALYTE", "TIME", "DV"]
    lim = obs["ANALYTE"].map(dict(lloq)).astype(float)
    blq = obs["DV"] < lim
    obs["LLOQ"] = lim
    obs["BLQ"] = blq.astype(int)
    obs.loc[blq, "DV"] = np.nan
    obs = obs.sort_values(["ID", "TIME", "ANALYTE"]).reset_index(drop=True)
    regimen = list(ds.attrs["dose_times"])
    doses = pd.DataFrame({"ID": np.repeat(subj, len(regimen)),
                          "TIME": np.tile(regimen, len(subj)),
                          "AMT": np.repeat(ds["dose"].values, len(regimen))})
    cov = pd.DataFrame({"ID": subj, "DOSE": ds["dose"].values})
    for k, v in (covariates or {}).items():
        cov[k] = np.broadcast_to(np.asarray(v, dtype=float), (len(subj),))
    for sw in spec.switches:
        if sw.name in (onsets or {}):
            cov[sw.onset] = np.broadcast_to(np.asarray(onsets[sw.name], dtype=float),
                                            (len(subj),))
    data = CKData.from_frames(obs, doses, cov.set_index("ID"),
                              analytes=spec.output_units, time_unit=spec.time_unit,
                              source=f"simulated from {spec.name} (seed {seed})")
    params = pd.DataFrame(ds["params"].values, index=subj, columns=list(spec.param_names))
    truth = {"params": params, "typical": dict(spec.typical_values(), **(typical or {})),
             "omega": {p.name: (omega or {}).get(p.name, p.iiv.median() if p.iiv else 0.0)
                       for p in spec.parameters},
             "sigma": {o.name: (sigma or {}).get(o.name, o.sigma.median())
                       for o in spec.outputs},
             "seed": seed}
    return data, truth


def assert_posteriors_agree(a: Any, b: Any, var_names: Sequence[str]) -> None:
    """Assert two InferenceData posteriors have the same means within Monte-Carlo error.

    The tolerance per variable is 5 combined Monte-Carlo standard errors plus 2% of the
    posterior SD (for the MCSE estimate's own noise at small ESS).
    """
    from ckmodel._arviz import az

    for v in var_names:  # every element of a vector variable, not only the first
        s1 = az.summary(a, var_names=[v])
        s2 = az.summary(b, var_names=[v])
        assert list(s1.index) == list(s2.index), (v, list(s1.index), list(s2.index))
        diff = (s1["mean"] - s2["mean"]).abs()
        tol = 5 * np.hypot(s1["mcse_mean"], s2["mcse_mean"]) + 0.02 * s1["sd"]
        bad = diff >= tol
        assert not bad.any(), (v, diff[bad].to_dict(), tol[bad].to_dict())
