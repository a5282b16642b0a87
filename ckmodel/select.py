"""Dose selection from the posterior: exposure, P(toxicity), P(response) and utility per dose.

For each candidate dose, new patients drawn from the CK posterior (:mod:`ckmodel.virtual_patients`:
posterior draws and patients on separate dims) get model-based exposures; each
exposure-response model (:class:`ckmodel.response.ResponseFit`) turns them into event
probabilities. Per posterior draw ``d`` (a CK draw paired with one E-R sample, evenly spaced
through the E-R posterior), the population probability at dose ``x`` is the mean over the
patients::

    P_E(x, d) = mean_p  p_E(exposure_p(x, d), covariates_p; d)

so its posterior spread holds the CK and the E-R uncertainty, and not the between-patient
spread (that is in each patient's probability). From these:

- **overdose control (EWOC)**: ``P_OVERDOSE = P(P_tox(x) > target)``; doses with
  ``P_OVERDOSE <= overdose_limit`` are admissible and the highest of them is ``RECOMMENDED``
  (Babb, Rogatko & Zacks 1998, applied to the population DLT rate);
- **the MTD's uncertainty**: ``P_MTD``, the posterior probability that the dose is the highest
  with ``P_tox <= target``;
- **utility**: ``U(x, d) = sum_E w_E P_E(x, d)`` (default weight +1 for response endpoints
  and -1 for toxicity and for time-to-event endpoints, whose events are relapse or death:
  the expected number of responders minus the expected number harmed, per patient);
  ``BEST`` marks the admissible dose with the highest posterior mean
  utility and ``P_BEST`` the posterior probability that each admissible dose has the highest
  utility.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ckmodel.exposure import resolve_metric

__all__ = ["DoseSelection", "select_dose", "load_selection", "TOXICITY_ENDPOINTS",
           "endpoint_label"]

#: Endpoints counted as toxicity (weight -1 by default); every other one counts as response.
TOXICITY_ENDPOINTS = ("DLT", "CRS3", "ICANS3", "CRS_GRADE", "ICANS_GRADE")


def endpoint_label(er: Any, threshold: float | None = None) -> str:
    """Column stem of an E-R model: ``DLT``, ``CRC``, ``CRS_GRADE_GE3``, ``EFS_BY365`` ..."""
    name = str(er.endpoint).upper()
    if er.kind == "ordinal":
        k = int(threshold if threshold is not None else er.meta["categories"][-1])
        return f"{name}_GE{k}"
    if er.kind == "tte":
        t = float(threshold if threshold is not None else er.meta["t_ref"])
        return f"{name}_BY{t:g}"
    return name


def _is_harm(er: Any) -> bool:
    """Toxicity, or an event of a time-to-event endpoint (relapse, death): weight -1."""
    return str(er.endpoint).upper() in TOXICITY_ENDPOINTS or er.kind == "tte"


@dataclass
class DoseSelection:
    """Per-dose posterior probabilities, the overdose-controlled and the utility dose.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per candidate dose (see :func:`select_dose`).
    draws : xarray.Dataset
        ``P_<ENDPOINT>`` and ``UTILITY`` per (``dose``, ``draw``).
    recommended : float or None
        Highest admissible dose under overdose control (None: none admissible).
    best : float or None
        Admissible dose of highest posterior mean utility.
    settings : dict
        ``target``, ``overdose_limit``, ``toxicity``, ``weights``, ``utility`` (the formula
        in words), ``n_patients``, ``n_draws``, ``seed``, ``amount_unit``, ``exposures``.
    """

    table: pd.DataFrame
    draws: xr.Dataset
    recommended: float | None
    best: float | None
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The decision in words, with its uncertainty."""
        s = self.settings
        unit = s.get("amount_unit", "")
        tox = s.get("toxicity")
        lines = []
        if tox is None:
            lines.append("No toxicity model: no overdose control; every dose is admissible.")
        elif self.recommended is None:
            lines.append(f"No dose is admissible: at every dose P(P({tox}) > "
                         f"{s['target']:g}) exceeds {s['overdose_limit']:g}.")
        else:
            row = self.table.loc[self.table["DOSE"] == self.recommended].iloc[0]
            lines.append(
                f"Highest dose under overdose control: {self.recommended:g} {unit} "
                f"(P({tox}) {row[f'P_{tox}']:.3f}, 95 % CrI {row[f'P_{tox}_LOWER']:.3f}-"
                f"{row[f'P_{tox}_UPPER']:.3f}; P(P({tox}) > {s['target']:g}) "
                f"{row['P_OVERDOSE']:.3f} <= {s['overdose_limit']:g}).")
        if self.best is not None:
            row = self.table.loc[self.table["DOSE"] == self.best].iloc[0]
            lines.append(f"Dose of highest expected utility: {self.best:g} {unit} (utility "
                         f"{row['UTILITY']:.3f}, 95 % CrI {row['UTILITY_LOWER']:.3f} to "
                         f"{row['UTILITY_UPPER']:.3f}; P(best) {row['P_BEST']:.2f}).")
        lines.append(f"Utility = {s['utility']}.")
        lines.append(f"{s['n_patients']} virtual patients x {s['n_draws']} posterior draws "
                     f"per dose, seed {s['seed']}.")
        return "\n".join(lines)

    def plot(self, **options: Any) -> Any:
        """:func:`ckmodel.plots.plot_selection` of this selection."""
        from ckmodel.plots.selection import plot_selection

        return plot_selection(self, **options)

    def save(self, path: Any) -> Any:
        """Write the selection (table, draws, settings) to one NetCDF file, atomically.

        :func:`load_selection` reads it back; settings are stored as JSON text.
        """
        import json

        from ckmodel.files import atomic_write

        ds = self.draws.copy()
        for c in self.table.columns:
            if c != "DOSE":
                ds[f"table_{c}"] = (("dose",), self.table[c].to_numpy())
        header = {"settings": self.settings, "recommended": self.recommended,
                  "best": self.best, "columns": list(self.table.columns)}
        ds.attrs["ckmodel_selection"] = json.dumps(header, default=float)
        return atomic_write(path, lambda p: ds.to_netcdf(p, engine="h5netcdf"))

    def to_csv(self, path: Any) -> Any:
        """Write :attr:`table` atomically (CSV); returns the path."""
        from ckmodel.files import atomic_write

        return atomic_write(path, lambda p: self.table.to_csv(p, index=False,
                                                              float_format="%.6g"))


def load_selection(path: Any) -> DoseSelection:
    """Read a selection written by :meth:`DoseSelection.save` (no code is executed)."""
    import json

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    if "ckmodel_selection" not in ds.attrs:
        raise ValueError(f"{path} is not a dose selection written by ckmodel (no "
                         "'ckmodel_selection' attribute); run 'ckmodel select' to make one")
    head = json.loads(ds.attrs.pop("ckmodel_selection"))
    table = pd.DataFrame({"DOSE": ds["dose"].values})
    for c in head["columns"][1:]:
        table[c] = ds[f"table_{c}"].values
    draws = ds[[v for v in ds.data_vars if not str(v).startswith("table_")]]
    return DoseSelection(table, draws, head["recommended"], head["best"], head["settings"])


def _weights(ers: Sequence[Any], labels: list[str], weights: Mapping[str, float] | None
             ) -> dict[str, float]:
    given = {str(k).upper(): float(v) for k, v in dict(weights or {}).items()}
    out = {}
    for er, lab in zip(ers, labels, strict=True):
        key = next((k for k in (lab, str(er.endpoint).upper()) if k in given), None)
        out[lab] = given.pop(key) if key is not None else (-1.0 if _is_harm(er) else 1.0)
    if given:
        raise ValueError(f"weight(s) for {sorted(given)} match no E-R model "
                         f"({', '.join(labels)})")
    return out


def _utility_text(weights: Mapping[str, float]) -> str:
    parts = []
    for lab, w in sorted(weights.items(), key=lambda kv: -kv[1]):
        if w == 0:
            continue
        sign = "-" if w < 0 else "+"
        mag = "" if abs(w) == 1 else f"{abs(w):g} "
        parts.append(f"{sign} {mag}P({lab})")
    text = " ".join(parts).lstrip("+ ").strip()
    return text or "0"


def select_dose(
    fit: Any,
    responses: Sequence[Any],
    doses: Sequence[float],
    *,
    target: float = 0.3,
    overdose_limit: float = 0.25,
    toxicity: str | None = "DLT",
    weights: Mapping[str, float] | None = None,
    thresholds: Mapping[str, float] | None = None,
    n_patients: int = 200,
    n_draws: int = 200,
    seed: int = 1,
    level: float = 0.95,
    patients: xr.Dataset | None = None,
    **simulate_options: Any,
) -> DoseSelection:
    """Posterior dose selection on a CK fit and exposure-response models.

    Parameters
    ----------
    fit : Fit
        The CK fit that maps dose to exposure.
    responses : sequence of ResponseFit
        E-R models (DLT, CRS3, CRc, CRS_GRADE, EFS ...) fitted on this fit's exposures (or
        without exposure); a time-to-event model enters as P(event by its ``thresholds``
        time, default the model's ``t_ref``), a cumulative incidence before any transplant
        when HSCT competes.
    doses : sequence of float
        Candidate doses (model amount unit).
    target : float
        Target toxicity rate of the overdose control (0.3: a 30 % DLT rate).
    overdose_limit : float
        Largest admissible P(toxicity rate > target) (EWOC's feasibility bound, 0.25).
    toxicity : str or None
        Endpoint (column stem, e.g. ``DLT`` or ``CRS_GRADE_GE3``) under overdose control;
        None for none. Default ``DLT``, if among ``responses``.
    weights : mapping of str to float, optional
        Utility weight per endpoint (stem or endpoint name); default +1 response, -1
        toxicity.
    thresholds : mapping of str to float, optional
        Ordinal endpoints: grade threshold per endpoint (default 3 for CRS/ICANS grades,
        else the highest grade seen); time-to-event endpoints: the time (data time unit).
    n_patients, n_draws, seed
        Virtual patients per dose, posterior draws, seed (:func:`simulate_patients`).
    level : float
        Credible level of the intervals.
    patients : xarray.Dataset, optional
        Virtual patients already simulated at ``doses`` (skips the simulation).
    **simulate_options
        More options of :func:`ckmodel.virtual_patients.simulate_patients` (``covariates``,
        ``workers``, ``scheduler``, ``solver``, ``progress`` ...).

    Returns
    -------
    DoseSelection
        ``table`` columns: ``DOSE``, ``DOSE_UNIT``; per exposure used
        ``<ANALYTE>_<METRIC>_MEDIAN`` (median patient, posterior median) with
        ``_LOWER``/``_UPPER`` and ``_UNIT``; per endpoint ``P_<E>``
        (posterior mean of the population rate) with ``_LOWER``/``_UPPER``; with a toxicity
        endpoint ``P_OVERDOSE``, ``ADMISSIBLE``, ``P_MTD``, ``RECOMMENDED``; ``UTILITY`` with
        ``_LOWER``/``_UPPER``, ``P_BEST`` and ``BEST``.
    """
    from ckmodel.virtual_patients import simulate_patients

    ers = list(responses)
    if not ers:
        raise ValueError("dose selection needs at least one exposure-response model")
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target}")
    if not 0.0 < overdose_limit < 1.0:
        raise ValueError(f"overdose_limit must be in (0, 1), got {overdose_limit}")
    thr = {str(k).upper(): float(v) for k, v in dict(thresholds or {}).items()}
    th_used = []
    for er in ers:
        default = 3.0 if str(er.endpoint).upper() in ("CRS_GRADE", "ICANS_GRADE") else None
        th_used.append(thr.get(str(er.endpoint).upper(), default) if er.kind != "binary"
                       else None)
    labels = [endpoint_label(er, t) for er, t in zip(ers, th_used, strict=True)]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two E-R models of the same endpoint: {labels}")
    w = _weights(ers, labels, weights)
    tox = None
    if toxicity is not None:
        tox = str(toxicity).upper()
        if tox not in labels:
            if toxicity == "DLT" and "DLT" not in labels:
                tox = None  # the default, when no DLT model is given
            else:
                raise ValueError(f"toxicity endpoint {toxicity} is none of the E-R models "
                                 f"({', '.join(labels)})")
    analytes = list(fit.spec.output_names)
    exposures = {}
    for er, lab in zip(ers, labels, strict=True):
        if er.exposure_metric is not None:
            try:
                a, m = resolve_metric(er.exposure_metric, analytes, fit.spec.time_unit)
            except ValueError:
                raise ValueError(
                    f"the {er.endpoint} model's exposure {er.exposure_metric!r} is not a "
                    f"model-based metric of {fit.spec.name} ({', '.join(analytes)}): dose "
                    "selection needs E-R models fitted on the CK fit's exposure (e.g. "
                    "'ckmodel response FIT --endpoint DLT --exposure CMAX')") from None
            exposures[lab] = f"{a}_{m}"
    doses_arr = np.asarray(doses, dtype=float)
    if patients is None:
        unit = fit.spec.time_unit
        pairs = {resolve_metric(v, analytes, unit) for v in exposures.values()}
        patients = simulate_patients(
            fit, doses_arr, n_patients=n_patients, n_draws=n_draws, seed=seed,
            analytes=sorted({a for a, _ in pairs}) or analytes[:1],
            metrics=sorted({m for _, m in pairs}) or ["CMAX"], **simulate_options)
    elif not np.array_equal(np.asarray(patients["dose"].values, float), doses_arr):
        raise ValueError(f"the virtual patients are at doses {patients['dose'].values.tolist()}"
                         f", not {doses_arr.tolist()}")
    missing = [v for v in exposures.values() if v not in patients]
    if missing:
        raise ValueError(f"the virtual patients lack exposure(s) {missing}")
    return _decide(fit, ers, labels, th_used, w, tox, exposures, patients, target,
                   overdose_limit, level, seed)


def _interval(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return np.quantile(x, lo, axis=-1), np.quantile(x, hi, axis=-1)


def _decide(fit: Any, ers: list[Any], labels: list[str], thresholds: list[float | None],
            weights: dict[str, float], tox: str | None, exposures: dict[str, str],
            patients: xr.Dataset, target: float, overdose_limit: float, level: float,
            seed: int) -> DoseSelection:
    doses = np.asarray(patients["dose"].values, dtype=float)
    n_dose, n_draw = doses.size, patients.sizes["draw"]
    covs = {str(k): np.asarray(v.values) for k, v in patients.coords.items()
            if v.dims == ("patient",) and k not in ("patient", "source")}
    covs = {k: v.astype(float) for k, v in covs.items() if np.issubdtype(v.dtype, np.number)}
    unit = str(patients.attrs.get("amount_unit", fit.spec.amount_unit))
    table = pd.DataFrame({"DOSE": doses, "DOSE_UNIT": unit})
    for var in sorted(set(exposures.values())):
        med = patients[var].median("patient").values  # (dose, draw)
        table[f"{var}_MEDIAN"] = np.median(med, axis=1)
        table[f"{var}_LOWER"], table[f"{var}_UPPER"] = _interval(med, level)
        table[f"{var}_UNIT"] = str(patients[var].attrs.get("unit", ""))
    probs: dict[str, np.ndarray] = {}
    for er, lab, th in zip(ers, labels, thresholds, strict=True):
        n_er = er.idata.posterior.sizes["chain"] * er.idata.posterior.sizes["draw"]
        pair = np.linspace(0, n_er - 1, n_draw).round().astype(int)
        out = np.empty((n_dose, n_draw))
        for k in range(n_dose):
            x = (patients[exposures[lab]].isel(dose=k).values if lab in exposures
                 else np.ones((n_draw, patients.sizes["patient"])))
            p = er.paired_probability(x, pair, covariates=covs, threshold=th)
            out[k] = p.mean(axis=1)
        probs[lab] = out
        table[f"P_{lab}"] = out.mean(axis=1)
        table[f"P_{lab}_LOWER"], table[f"P_{lab}_UPPER"] = _interval(out, level)
    admissible = np.ones(n_dose, dtype=bool)
    recommended = None
    if tox is not None:
        p_tox = probs[tox]
        table["P_OVERDOSE"] = (p_tox > target).mean(axis=1)
        admissible = table["P_OVERDOSE"].to_numpy() <= overdose_limit
        table["ADMISSIBLE"] = admissible.astype(int)
        ok = p_tox <= target  # (dose, draw)
        # the MTD of a draw: the highest dose at or below target (none if the lowest is over)
        highest = np.where(ok.any(axis=0), n_dose - 1 - np.argmax(ok[::-1], axis=0), -1)
        table["P_MTD"] = [(highest == k).mean() for k in range(n_dose)]
        if admissible.any():
            recommended = float(doses[np.flatnonzero(admissible)[-1]])
        table["RECOMMENDED"] = (doses == recommended).astype(int) if recommended is not None else 0
    util = sum(w * probs[lab] for lab, w in weights.items())
    util = np.asarray(util, dtype=float) * np.ones((n_dose, n_draw))
    table["UTILITY"] = util.mean(axis=1)
    table["UTILITY_LOWER"], table["UTILITY_UPPER"] = _interval(util, level)
    best = None
    p_best = np.zeros(n_dose)
    if admissible.any():
        adm = np.flatnonzero(admissible)
        winner = adm[np.argmax(util[adm], axis=0)]
        p_best = np.bincount(winner, minlength=n_dose) / n_draw
        best = float(doses[adm[np.argmax(util[adm].mean(axis=1))]])
    table["P_BEST"] = p_best
    table["BEST"] = (doses == best).astype(int) if best is not None else 0
    draws = xr.Dataset({f"P_{lab}": (("dose", "draw"), v) for lab, v in probs.items()},
                       coords={"dose": doses, "draw": patients["draw"].values})
    draws["UTILITY"] = (("dose", "draw"), util)
    settings = {"target": target, "overdose_limit": overdose_limit, "toxicity": tox,
                "weights": weights, "utility": _utility_text(weights),
                "n_patients": int(patients.sizes["patient"]), "n_draws": int(n_draw),
                "seed": int(patients.attrs.get("seed", seed)), "level": level,
                "amount_unit": str(patients.attrs.get("amount_unit", fit.spec.amount_unit)),
                "exposures": exposures, "model": fit.spec.name, "endpoints": labels}
    return DoseSelection(table, draws, recommended, best, settings)
