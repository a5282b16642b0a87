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

__all__ = ["simulate_sparse_cohort", "SPARSE_DAYS", "SPARSE_COVARIATES", "simulate_ckdata",
           "STANDARD_TIMES", "posterior_fit"]

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


#: Nominal blood sampling days of a sparse real-world CAR-T qPCR data set (issue-13 shape).
SPARSE_DAYS = (7.0, 14.0, 30.0, 100.0)
#: Covariate effects of :func:`simulate_sparse_cohort`'s truth, in ``fit(covariates=)`` form.
SPARSE_COVARIATES = ("f0 ~ PRODUCT", "f0 ~ log(DOSE)")


def simulate_sparse_cohort(
    n: int = 50,
    *,
    seed: int = 0,
    days: Sequence[float] = SPARSE_DAYS,
    jitter: float = 0.1,
    blq_fraction: float = 0.2,
    omega: Mapping[str, float] | None = None,
    product_effect: float = np.log(1.5),
    sigma: float = 0.5,
) -> tuple[Any, dict[str, Any]]:
    """A seeded cohort shaped like real CAR-T data: sparse blood qPCR, a fifth BLQ, no marrow.

    ``expansion_biphasic`` kinetics for ``n`` patients on three dose levels (0.5, 1, 2) and two
    products (PRODUCT 0/1, the second expanding ``exp(product_effect)``-fold more, an effect
    on ``f0``), sampled once near each of ``days`` (each time jittered uniformly by
    +-``jitter`` of its value, rounded to 0.1 day), with one LLOQ set so that about
    ``blq_fraction`` of the records are BLQ. The IIV of ``rho`` is small (0.05), as the
    data of real trials suggest; the others are the spec's IIV prior medians.

    Parameters
    ----------
    n : int
        Patients.
    seed : int
        Random seed (the cohort is a function of it).
    days : sequence of float
        Nominal sampling days.
    jitter : float
        Relative jitter of each sampling time.
    blq_fraction : float
        Target share of BLQ records (the LLOQ is that quantile of the simulated values).
    omega : mapping, optional
        IIV SDs overriding the defaults.
    product_effect : float
        Log-scale effect of PRODUCT=1 on ``f0``.
    sigma : float
        Log-scale residual SD.

    Returns
    -------
    data : CKData
        PB_QPCR records (copies/ug gDNA), days since infusion; covariates DOSE, PRODUCT.
    truth : dict
        ``params`` (subject x parameter), ``omega``, ``sigma``, ``product_effect``, ``lloq``,
        ``seed``.
    """
    from ckmodel.data import CKData
    from ckmodel.simulate import add_residual_error, individual_parameters
    from ckmodel.solve import evaluate_outputs, solve_states

    spec = load_model("expansion_biphasic")
    rng = np.random.default_rng(seed)
    om = {"rho": 0.05, **(omega or {})}
    params = individual_parameters(spec, n, rng, omega=om)
    dose = rng.choice([0.5, 1.0, 2.0], size=n)
    product = (np.arange(n) % 2).astype(float)
    params["f0"] = params["f0"] * np.exp(product_effect * product)
    nominal = np.asarray(days, dtype=float)
    times = np.round(nominal[None, :] * (1 + rng.uniform(-jitter, jitter, (n, nominal.size))),
                     1)
    grid = np.unique(times)
    states = solve_states(spec, params, grid, amt=dose)
    pred = evaluate_outputs(spec, states, params, grid)["PB_QPCR"]
    obs = add_residual_error(spec, {"PB_QPCR": pred}, rng, {"PB_QPCR": sigma})["PB_QPCR"]
    col = np.searchsorted(grid, times)
    dv = np.take_along_axis(obs, col, axis=1)
    lloq = float(np.quantile(dv, blq_fraction))
    ids = [f"P{i + 1:03d}" for i in range(n)]
    frame = pd.DataFrame({"ID": np.repeat(ids, nominal.size), "TIME": times.ravel(),
                          "ANALYTE": "PB_QPCR", "DV": dv.ravel(), "LLOQ": lloq})
    frame["BLQ"] = (frame["DV"] < lloq).astype(int)
    frame.loc[frame["BLQ"] == 1, "DV"] = np.nan
    doses = pd.DataFrame({"ID": ids, "TIME": 0.0, "AMT": dose})
    cov = pd.DataFrame({"DOSE": dose, "PRODUCT": product}, index=pd.Index(ids, name="ID"))
    data = CKData.from_frames(frame, doses, cov,
                              source=f"sparse CAR-T cohort (seed {seed})")
    truth = {"params": pd.DataFrame(params, index=ids),
             "omega": {p.name: om.get(p.name, p.iiv.median() if p.iiv else 0.0)
                       for p in spec.parameters},
             "sigma": {"PB_QPCR": sigma}, "product_effect": product_effect, "lloq": lloq,
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


def posterior_fit(data: Any, model: str | ModelSpec = "expansion_biphasic", *,
                  formulas: Sequence[str] = (), beta: Sequence[float] = (), n_chain: int = 2,
                  n_draw: int = 40, seed: int = 0, spread: float = 0.05
                  ) -> tuple[Any, dict[str, np.ndarray]]:
    """A :class:`~ckmodel.Fit` of ``data`` with a posterior written by hand (no sampling).

    Draws hold the spec's typical values jittered by ``spread`` (on each parameter's
    random-effect scale), covariate coefficients ``beta`` (one per effect column of
    ``formulas``, jittered by 0.02), IIV SDs ``omega`` (the spec's IIV prior medians,
    jittered by 10 %) and standard random effects ``eta``; ``theta`` is built from them as a
    fit builds it. Virtual patients, dose selection and designs read only these variables,
    so this is an exact oracle for them (and a fast stand-in in benchmarks).

    Returns
    -------
    fit : Fit
    truth : dict
        ``mu`` (chain, draw, parameter), ``omega``, ``eta``, ``beta``, ``g`` (the arrays used).
    """
    import arviz as az
    import xarray as xr

    from ckmodel.fitting import Fit
    from ckmodel.population.covariates import covariate_design, parse_covariates
    from ckmodel.spec import from_scale, to_scale

    spec = load_model(model)
    rng = np.random.default_rng(seed)
    subjects = [str(s) for s in data.covariates.index]
    pnames = list(spec.param_names)
    iiv = [p.name for p in spec.parameters if p.iiv is not None]
    shape = (n_chain, n_draw)
    mu = np.stack([to_scale(np.asarray(spec.typical_values()[p], float), spec.parameter(p).scale)
                   + spread * rng.standard_normal(shape) for p in pnames], axis=-1)
    omega = np.stack([spec.parameter(p).iiv.median() * np.exp(0.1 * rng.standard_normal(shape))
                      for p in iiv], axis=-1)
    eta = rng.standard_normal((*shape, len(subjects), len(iiv))) * omega[:, :, None, :]
    g = np.broadcast_to(mu[:, :, None, :], (*shape, len(subjects), len(pnames))).copy()
    labels = []
    b_draws = np.zeros((*shape, 0))
    if formulas:
        cols = []
        for eff in parse_covariates(list(formulas)):
            series = data.covariates[eff.covariate].reindex(subjects)
            series.index = series.index.astype(str)
            x, labs, _, _ = covariate_design(eff, series)
            for j, lab in enumerate(labs):
                cols.append((pnames.index(eff.parameter), x[:, j]))
                labels.append(lab)
        b_draws = np.asarray(beta, float)[None, None, :] + 0.02 * rng.standard_normal(
            (*shape, len(labels)))
        for k, (j, x) in enumerate(cols):
            g[..., j] += b_draws[:, :, k, None] * x[None, None, :]
    for k, p in enumerate(iiv):
        g[..., pnames.index(p)] += eta[..., k]
    theta = np.stack([from_scale(g[..., j], spec.parameter(p).scale)
                      for j, p in enumerate(pnames)], axis=-1)
    post = {"theta": (("chain", "draw", "subject", "parameter"), theta),
            "eta": (("chain", "draw", "subject", "iiv"), eta),
            "omega": (("chain", "draw", "iiv"), omega)}
    for o in spec.outputs:
        post[f"sigma_{o.name}"] = (("chain", "draw"), np.full(shape, 0.3))
    coords = {"chain": np.arange(n_chain), "draw": np.arange(n_draw), "subject": subjects,
              "parameter": pnames, "iiv": iiv}
    if labels:
        post["beta"] = (("chain", "draw", "covariate_effect"), b_draws)
        coords["covariate_effect"] = labels
    idata = az.InferenceData(posterior=xr.Dataset(post, coords=coords))
    meta = {"covariate_formulas": list(formulas), "covariates": labels, "time_scale": 1.0,
            "analytes": list(spec.output_names), "seed": seed}
    fit = Fit(idata=idata, spec=spec, data=data, meta=meta)
    return fit, {"mu": mu, "omega": omega, "eta": eta, "beta": b_draws, "g": g}
