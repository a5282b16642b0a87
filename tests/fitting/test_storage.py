"""Saved fits round-trip for everything that fits, and the integrity check refuses edits.

The posterior here is a stand-in (random draws of the right shape): what is under test is the
file, not the sampler, so every catalog model, a user-written model, extra analytes, hour
data, fixed parameters, covariates and time-varying switches can be checked in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from ckmodel._arviz import az
from ckmodel.errors import FitMismatchError
from ckmodel.fitting import Fit, load_fit
from ckmodel.spec import list_models, load_model
from ckmodel.testing import simulate_ckdata

USER_MODEL = """
name = "user_iv"
description = "user-written IV bolus"
reference = "test"
time_unit = "hour"
amount_unit = "mg"
[states]
A = { description = "amount", unit = "mg" }
[parameters.k]
unit = "1/hour"
prior = "LogNormal(log(0.1), 0.5)"
iiv = "HalfNormal(0.3)"
value = 0.1
[odes]
A = "-k * A"
[dosing]
A = "AMT"
[outputs.CONC]
value = "A"
unit = "mg/L"
"""


def _fit(spec, data, **meta):
    rng = np.random.default_rng(0)
    subjects = list(data.subjects)
    post = {"theta": rng.lognormal(size=(2, 5, len(subjects), len(spec.param_names)))}
    for p in spec.param_names:
        post[f"{p}_pop"] = rng.lognormal(size=(2, 5))
    idata = az.from_dict(posterior=post, dims={"theta": ["subject", "parameter"]},
                         coords={"subject": subjects, "parameter": list(spec.param_names)})
    base = {"sampler": "nutpie", "seed": 7, "data_hash": data.hash(),
            "options": {"fixed": {}}, "error_models": {}}
    return Fit(idata=idata, spec=spec, data=data, meta={**base, **meta})


def _roundtrip(fit, tmp_path):
    path = fit.save(tmp_path / "fit.nc")
    again = load_fit(path)
    assert again.spec.hash() == fit.spec.hash() and again.spec.to_toml() == fit.spec.to_toml()
    assert again.data.hash() == fit.data.hash()
    assert again.data.time_unit == fit.data.time_unit
    assert again.data.analyte_units == fit.data.analyte_units
    assert again.meta["seed"] == 7 and again.meta["options"] == fit.meta["options"]
    np.testing.assert_array_equal(again.posterior["theta"].values,
                                  fit.posterior["theta"].values)
    return again


@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_catalog_model_round_trips(name, tmp_path):
    spec = load_model(name)
    covs = {c: 40.0 for c in spec.covariates}
    times = [1.0, 2.0, 6.0, 24.0] if spec.time_unit == "hour" else [1.0, 7.0, 28.0]
    data, _ = simulate_ckdata(spec, n=2, seed=1, times=times, covariates=covs or None)
    assert data.time_unit == spec.time_unit
    _roundtrip(_fit(spec, data), tmp_path)


def test_user_model_with_hour_data_extra_analyte_fixed_and_covariates(tmp_path):
    from ckmodel.data import CKData

    model = tmp_path / "user_iv.toml"
    model.write_text(USER_MODEL)
    spec = load_model(model)
    data, _ = simulate_ckdata(spec, n=3, seed=2, times=[1, 4, 8, 24],
                              covariates={"WT": np.array([60.0, 70.0, 80.0])},
                              dose_times=[0.0, 12.0])
    obs = data.observations
    extra = obs.assign(ANALYTE="METABOLITE", DV=obs["DV"] / 3)   # an analyte no model predicts
    both = CKData.from_frames(
        __import__("pandas").concat([obs, extra]), data.doses, data.covariates,
        time_unit="hour", analytes={"CONC": "mg/L", "METABOLITE": "ng/mL"})
    again = _roundtrip(_fit(spec, both, options={"fixed": {"k": 0.1}}), tmp_path)
    assert again.data.analyte_units["METABOLITE"] == "ng/mL"
    assert again.data.doses.groupby("ID").size().eq(2).all()


def test_time_varying_switch_round_trips(tmp_path):
    from ckmodel.population import apply_time_varying, parse_covariates

    spec, _ = apply_time_varying(load_model("expansion_biphasic"),
                                 parse_covariates(["beta ~ after(ADA_TIME)"]))
    data, _ = simulate_ckdata(spec, n=2, seed=3,
                              onsets={"beta_after_ADA_TIME": np.array([28.0, np.nan])})
    again = _roundtrip(_fit(spec, data), tmp_path)
    assert [s.name for s in again.spec.switches] == ["beta_after_ADA_TIME"]


def test_altered_files_are_refused(tmp_path):
    import xarray as xr

    data, _ = simulate_ckdata("expansion_biphasic", n=2, seed=1)
    path = _fit(load_model("expansion_biphasic"), data).save(tmp_path / "fit.nc")
    for what, edit in (("posterior", lambda ds: ds.assign(theta=ds["theta"] * 1.01)),
                       ("metadata", lambda ds: ds.assign_attrs(
                           ckmodel_meta_json=ds.attrs["ckmodel_meta_json"].replace(
                               '"seed": 7', '"seed": 8')))):
        with xr.open_dataset(path, group="posterior", engine="h5netcdf") as ds:
            changed = edit(ds.load())
        copy = tmp_path / f"{what}.nc"
        az.from_netcdf(str(path)).to_netcdf(str(copy), engine="h5netcdf")
        changed.to_netcdf(copy, group="posterior", mode="a", engine="h5netcdf")
        with pytest.raises(FitMismatchError, match=what):
            load_fit(copy)


def test_missing_and_foreign_files_get_clear_errors(tmp_path):
    with pytest.raises(FitMismatchError, match="no such file"):
        load_fit(tmp_path / "missing.nc")
    other = tmp_path / "data.csv"
    other.write_text("ID,TIME\n1,0\n")
    with pytest.raises(FitMismatchError, match="not a ckmodel fit"):
        load_fit(other)
