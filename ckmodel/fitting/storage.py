"""A fit on disk: one NetCDF file that loads back to the same :class:`Fit`, checked.

What the file holds
-------------------
The InferenceData groups (posterior, sample stats, posterior predictive and log-likelihood as
float32, observed and constant data) and, as plain string attributes of the posterior group:
the model spec (TOML text), the data (NONMEM-style CSV text, with its time unit and analyte
units in the metadata so that it reads back exactly), the outcomes table, and the metadata
(seed, sampler and its settings, options, covariate effects, records used and left out,
convergence verdict, package versions) as JSON. Loading parses text only: nothing is
unpickled or executed.

What the integrity check covers
-------------------------------
SHA-256 digests, stored beside what they digest, of: the spec, the data and outcomes (as
re-read), the metadata JSON, and the posterior draws. :func:`load_fit` recomputes each and
refuses a file where one differs (:class:`~ckmodel.errors.FitMismatchError`). The posterior
predictive, log-likelihood and sample-stats groups are not covered: they are derived from
the posterior and can be recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import tomllib
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ckmodel._arviz import az
from ckmodel.errors import DataWarning, FitMismatchError
from ckmodel.files import atomic_write
from ckmodel.spec.parse import spec_from_dict

__all__ = ["save_fit", "load_fit", "posterior_digest", "FORMAT_VERSION"]

_PREFIX = "ckmodel_"
#: Version of the file layout (bumped when the stored attributes change meaning).
FORMAT_VERSION = "2"


def posterior_digest(posterior: Any) -> str:
    """SHA-256 of the posterior draws (variable names, dims, shapes, values as float64).

    Parameters
    ----------
    posterior : xarray.Dataset
        The posterior group.

    Returns
    -------
    str
        64 hex characters.
    """
    h = hashlib.sha256()
    for name in sorted(map(str, posterior.data_vars)):
        var = posterior[name]
        h.update(f"{name}|{var.dims}|{var.shape}|".encode())
        h.update(np.ascontiguousarray(var.values, dtype=np.float64).tobytes())
    return h.hexdigest()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _data_text(data: Any) -> str:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "data.csv"
        data.to_csv(p)
        return p.read_text(encoding="utf-8")


def save_fit(fit: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fit`` to one NetCDF file, atomically; see :meth:`Fit.save`.

    Parameters
    ----------
    fit : Fit
        The fit.
    path : str or os.PathLike
        File to write (``.nc``).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    idata = fit.idata.copy()
    for group in ("posterior_predictive", "log_likelihood"):
        if hasattr(idata, group):
            setattr(idata, group, getattr(idata, group).astype("float32"))
    meta = dict(fit.meta)
    if fit.data is not None:
        meta.setdefault("data_units", dict(fit.data.analyte_units))
        meta.setdefault("data_time_unit", fit.data.time_unit)
        meta.setdefault("data_source", fit.data.source)
    meta_json = json.dumps(meta, default=str, sort_keys=True)
    attrs = {_PREFIX + "format": FORMAT_VERSION,
             _PREFIX + "spec_toml": fit.spec.to_toml(),
             _PREFIX + "spec_hash": fit.spec.hash(),
             _PREFIX + "meta_json": meta_json,
             _PREFIX + "meta_hash": _text_digest(meta_json),
             _PREFIX + "posterior_hash": posterior_digest(idata.posterior)}
    if fit.data is not None:
        attrs[_PREFIX + "data_csv"] = _data_text(fit.data)
        attrs[_PREFIX + "data_hash"] = fit.data.hash()
        if fit.data.outcomes is not None:
            attrs[_PREFIX + "outcomes_csv"] = fit.data.outcomes.reset_index().to_csv(index=False)
    idata.posterior.attrs.update(attrs)
    atomic_write(path, lambda p: idata.to_netcdf(str(p), engine="h5netcdf"))
    return path


def _open(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.exists():
        raise FitMismatchError(f"{p}: no such file")
    if not p.is_file():
        raise FitMismatchError(f"{p} is not a file")
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if magic != b"\x89HDF\r\n\x1a\n":
        raise FitMismatchError(f"{p} is not a ckmodel fit (not a NetCDF-4 file); fits are "
                               "written by 'ckmodel fit' or Fit.save")
    try:
        return az.from_netcdf(str(p))
    except Exception as exc:  # h5py/netCDF errors come in many types
        raise FitMismatchError(f"{p} cannot be read as a fit ({type(exc).__name__}: {exc})"
                               ) from None


def _stored_data(attrs: dict[str, Any], meta: dict[str, Any]) -> Any:
    from ckmodel.data import read_ck

    units = meta.get("data_units") or meta.get("data_analytes")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "data.csv"
        p.write_text(attrs[_PREFIX + "data_csv"], encoding="utf-8")
        outc = None
        if _PREFIX + "outcomes_csv" in attrs:
            outc = Path(d) / "outcomes.csv"
            outc.write_text(attrs[_PREFIX + "outcomes_csv"], encoding="utf-8")
        with warnings.catch_warnings():
            # the flags were shown when the data were first read; they stay in .problems
            warnings.simplefilter("ignore", DataWarning)
            stored = read_ck(p, outcomes=outc, analytes=units,
                             time_unit=meta.get("data_time_unit", "day"))
    return replace(stored, source=meta.get("data_source"))


def load_fit(path: str | os.PathLike[str], *, model: Any = None, data: Any = None) -> Any:
    """Read a fit written by :meth:`Fit.save`, checking it against its digests.

    Parameters
    ----------
    path : path
        NetCDF file.
    model : str, path or ModelSpec, optional
        When given, the file's model must be this model (same content hash).
    data : CKData, optional
        When given, the file's data must be these data (same content hash).

    Returns
    -------
    Fit

    Raises
    ------
    FitMismatchError
        When the file is missing or not a fit, when a stored part (spec, data, metadata,
        posterior draws) does not match its digest (the file was altered), or when the given
        model or data differ from those the fit was made with.
    """
    from ckmodel.fitting.result import Fit
    from ckmodel.spec.parse import load_model

    idata = _open(path)
    attrs = dict(idata.posterior.attrs)
    try:
        text = attrs[_PREFIX + "spec_toml"]
        stored_hash = attrs[_PREFIX + "spec_hash"]
    except KeyError:
        raise FitMismatchError(f"{path} is not a ckmodel fit (no model spec stored)") from None

    def altered(what: str) -> FitMismatchError:
        return FitMismatchError(f"{path}: the stored {what} does not match its digest; the "
                                "file was altered after it was saved")

    spec = spec_from_dict(tomllib.loads(text), file=f"{path}:spec")
    if spec.hash() != stored_hash:
        raise altered("model spec")
    meta_json = attrs.get(_PREFIX + "meta_json", "{}")
    if _PREFIX + "meta_hash" in attrs and _text_digest(meta_json) != attrs[_PREFIX + "meta_hash"]:
        raise altered("metadata")
    meta = json.loads(meta_json)
    for k in list(idata.posterior.attrs):
        if k.startswith(_PREFIX):
            del idata.posterior.attrs[k]
    if (_PREFIX + "posterior_hash" in attrs
            and posterior_digest(idata.posterior) != attrs[_PREFIX + "posterior_hash"]):
        raise altered("posterior")
    if model is not None:
        given = load_model(model)
        if given.hash() != spec.hash():
            raise FitMismatchError(f"{path} was fitted with model '{spec.name}' "
                                   f"({spec.hash()[:12]}), not the given '{given.name}' "
                                   f"({given.hash()[:12]})")
    data_hash = attrs.get(_PREFIX + "data_hash", meta.get("data_hash"))
    stored = None
    if _PREFIX + "data_csv" in attrs:
        stored = _stored_data(attrs, meta)
        if data_hash and stored.hash() != data_hash:
            raise altered("data")
    if data is not None and data_hash and data.hash() != data_hash:
        raise FitMismatchError(f"{path} was fitted to different data (hash "
                               f"{data_hash[:12]}, given {data.hash()[:12]})")
    return Fit(idata=idata, spec=spec, data=data if data is not None else stored, meta=meta)
