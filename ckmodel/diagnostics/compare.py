"""LOO/ELPD comparison of several fits of the same data (ArviZ ``az.loo`` / ``az.compare``).

A fit's ``log_likelihood`` group holds one variable ``y_<A>`` per analyte (record-level
pointwise log-likelihood; BLQ records contribute ``log P(y < LLOQ)``). ArviZ compares one
pointwise variable, so the records are combined first; two units are offered:

- ``by="subject"`` (default): the log-likelihood of all of a subject's records, every analyte,
  summed per draw: PSIS-LOO then estimates leave-one-*subject*-out predictive accuracy, the
  question a population model answers (how well does it predict a new patient). Records of a
  subject share its random effects, so they are not exchangeable one by one; summing keeps
  the analytes' contributions in one number per subject whatever their units.
- ``by="record"``: every record of every analyte as its own point (leave-one-record-out);
  with subject-level random effects PSIS often flags many records (Pareto k > 0.7) because a
  subject's other records pin its eta down.

Fits are comparable only on the same records; :func:`compare_fits` refuses fits whose
subjects or records (analyte and data line) differ, naming them. ArviZ's Pareto-k warnings are
not printed; the table counts the points with k > 0.7 (``n_high_k``), where the estimate is
unreliable (Vehtari, Gelman & Gabry 2017).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ckmodel._arviz import az

__all__ = ["pointwise_loglik", "compare_fits", "loo"]

#: Pareto k above which a PSIS-LOO point is unreliable.
K_HIGH = 0.7


def _records_key(fit: Any) -> list[tuple[str, int]]:
    const = fit.idata.constant_data
    out = []
    for v in fit.idata.log_likelihood.data_vars:
        a = str(v).removeprefix("y_")
        dim = fit.idata.log_likelihood[v].dims[-1]
        rows = fit.idata.log_likelihood[v][dim].values
        subj = (const[f"subject_{a}"].sel({dim: rows}).values if f"subject_{a}" in const
                else rows)
        out += [(a, int(r), str(s)) for r, s in zip(rows, subj, strict=True)]
    return sorted(out)


def pointwise_loglik(fit: Any, by: str = "subject") -> xr.DataArray:
    """The fit's pointwise log-likelihood as one variable (see the module docstring).

    Parameters
    ----------
    fit : Fit
        A fit with a ``log_likelihood`` group.
    by : {"subject", "record"}
        Sum per subject over all analytes, or keep every record.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, ``subject`` or ``record``); records are named ``<A>:<line>``.
    """
    if by not in ("subject", "record"):
        raise ValueError(f"by must be 'subject' or 'record', got {by!r}")
    ll = getattr(fit.idata, "log_likelihood", None)
    if ll is None or not ll.data_vars:
        raise ValueError("this fit has no log-likelihood (fit with log_likelihood=True)")
    const = fit.idata.constant_data
    parts = []
    for v in ll.data_vars:
        a = str(v).removeprefix("y_")
        da = ll[v].astype(float)
        dim = da.dims[-1]
        if by == "record":
            parts.append(da.rename({dim: "record"}).assign_coords(
                record=[f"{a}:{r}" for r in da[dim].values]))
        else:
            subj = xr.DataArray(const[f"subject_{a}"].sel({dim: da[dim].values}).values
                                .astype(str), dims=dim)
            parts.append(da.groupby(subj.rename("subject")).sum())
    if by == "record":
        return xr.concat(parts, dim="record")
    out = parts[0]
    for p in parts[1:]:
        out = out.reindex(subject=sorted(set(out.subject.values) | set(p.subject.values)),
                          fill_value=0.0)
        out = out + p.reindex(subject=out.subject, fill_value=0.0)
    return out.transpose("chain", "draw", "subject")


def _idata(fit: Any, by: str) -> Any:
    ll = pointwise_loglik(fit, by)
    post = fit.posterior
    keep = [v for v in post.data_vars if set(post[v].dims) <= {"chain", "draw"}][:1]
    return az.InferenceData(posterior=post[keep], log_likelihood=xr.Dataset({"ll": ll}))


def loo(fit: Any, *, by: str = "subject") -> Any:
    """PSIS-LOO of one fit (:func:`arviz.loo` on :func:`pointwise_loglik`), pointwise.

    Returns
    -------
    arviz.ELPDData
        ``elpd_loo``, ``se``, ``p_loo``, ``pareto_k`` per subject (or record) ...
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k: counted, not printed
        return az.loo(_idata(fit, by), pointwise=True, var_name="ll")


def compare_fits(fits: Mapping[str, Any] | Sequence[Any], *, by: str = "subject",
                 names: Sequence[str] | None = None) -> pd.DataFrame:
    """Rank fits of the same data by expected log predictive density (PSIS-LOO, ArviZ).

    Parameters
    ----------
    fits : mapping of name to Fit, or sequence of Fit
        Two or more fits of the same records.
    by : {"subject", "record"}
        Unit left out (module docstring): subject (default) or record.
    names : sequence of str, optional
        Names of a sequence of fits (default: the model names, made unique).

    Returns
    -------
    pandas.DataFrame
        :func:`arviz.compare`'s table, best first: ``rank``, ``elpd_loo``, ``p_loo``,
        ``elpd_diff`` (to the best), ``weight`` (stacking), ``se``, ``dse``, ``warning``,
        ``scale``, then ``n_high_k`` (points with Pareto k > 0.7) and ``model``; attrs ``by``.

    Raises
    ------
    ValueError
        Fewer than two fits, a fit without log-likelihood, or fits of different records.
    """
    if isinstance(fits, Mapping):
        named = dict(fits)
    else:
        fits = list(fits)
        if names is None:
            names, seen = [], {}
            for f in fits:
                base = f.spec.name
                seen[base] = seen.get(base, 0) + 1
                names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
            if len(set(names)) != len(names):
                names = [f"{n}_{i + 1}" for i, n in enumerate(names)]
        if len(names) != len(fits):
            raise ValueError(f"{len(names)} names for {len(fits)} fits")
        named = dict(zip(names, fits, strict=True))
    if len(named) < 2:
        raise ValueError("compare needs at least two fits")
    keys = {n: _records_key(f) for n, f in named.items()}
    first, ref = next(iter(keys.items()))
    for n, k in keys.items():
        if k != ref:
            a, b = set(ref), set(k)
            raise ValueError(f"fits '{first}' and '{n}' are not of the same records "
                             f"({len(a - b)} only in '{first}', {len(b - a)} only in '{n}'; "
                             "e.g. other analytes, subjects or BLQ handling): LOO compares "
                             "fits of the same data only")
    data = {n: _idata(f, by) for n, f in named.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # ArviZ 0.23 sorts with inplace=True, which pandas 3.1 deprecates (not our call)
        warnings.filterwarnings("ignore", message=".*inplace keyword.*",
                                category=DeprecationWarning)
        table = az.compare(data, ic="loo", var_name="ll")
        high = {n: int(np.sum(np.asarray(az.loo(d, pointwise=True, var_name="ll").pareto_k)
                              > K_HIGH)) for n, d in data.items()}
    table["n_high_k"] = [high[n] for n in table.index]
    table["model"] = [named[n].spec.name for n in table.index]
    table.index.name = "fit"
    table.attrs["by"] = by
    return table
