"""Any model, analyte and time unit, from the command line and from Python (issue 12).

Two fits from the command line, as a user would run them: the catalog's one-compartment oral
PK model on hour data with analyte CP (F fixed, additive error), and a user-written IV bolus
model (a new TOML file) with repeated doses and a weight covariate. Both are saved, loaded and
summarised. These are plumbing tests (short chains); recovery is tested in test_fit_slow.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

IV_MODEL = """
name = "iv_bolus_wt"
description = "One-compartment IV bolus, clearance scaled by body weight"
reference = "test model"
time_unit = "hour"
amount_unit = "mg"
covariates = ["WT"]

[states]
A = { description = "amount in the body", unit = "mg" }

[parameters.cl]
unit = "L/hour"
prior = "LogNormal(log(4), 0.5)"
iiv = "HalfNormal(0.3)"
value = 4.0

[parameters.v]
unit = "L"
prior = "LogNormal(log(30), 0.5)"
iiv = "HalfNormal(0.3)"
value = 30.0

[derived]
k = "cl * (WT / 70)^0.75 / v"

[odes]
A = "-k * A"

[dosing]
A = "AMT"

[solution]
superposition = true
A = "AMT * exp(-k * t)"

[outputs.CONC]
value = "A / v"
unit = "mg/L"
error = "proportional"
sigma = "HalfNormal(0.3)"
"""


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("ckmodel")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "ckmodel", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def theo_csv(tmp_path_factory):
    """12 subjects of one_cmt_oral in hours, analyte CP (a theophylline-like design)."""
    from ckmodel.testing import simulate_ckdata

    data, truth = simulate_ckdata("one_cmt_oral", n=12, dose=320.0, seed=3,
                                  times=[0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12, 24],
                                  sigma={"CP": 0.1})
    path = tmp_path_factory.mktemp("theo") / "theo.csv"
    data.to_csv(path)
    return path


@pytest.fixture(scope="module")
def iv_files(tmp_path_factory):
    """A user-written IV model and 10 subjects dosed at 0, 12 and 24 h, weights 50-90 kg."""
    from ckmodel.testing import simulate_ckdata

    d = tmp_path_factory.mktemp("iv")
    model = d / "iv_bolus_wt.toml"
    model.write_text(IV_MODEL)
    wt = np.linspace(50, 90, 10)
    data, _ = simulate_ckdata(str(model), n=10, dose=100.0, seed=4, covariates={"WT": wt},
                              times=[1, 4, 11.5, 13, 16, 23.5, 25, 30, 36, 48],
                              dose_times=[0.0, 12.0, 24.0], sigma={"CONC": 0.1})
    assert data.doses.groupby("ID").size().eq(3).all()
    path = d / "iv.csv"
    data.to_csv(path)
    return model, path


def test_check_and_nca_take_units_and_time_unit(theo_csv, tmp_path):
    res = run("check", str(theo_csv))
    assert res.returncode == 1 and "--units CP=UNIT" in res.stdout + res.stderr
    assert "analytes=" not in res.stdout + res.stderr        # no Python hint on the CLI
    res = run("check", str(theo_csv), "--units", "CP=mg/L", "--time-unit", "hour")
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "nca.csv"
    res = run("nca", str(theo_csv), "--units", "CP=mg/L", "--time-unit", "hour",
              "--window", "0,12", "-o", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    table = pd.read_csv(out)
    assert len(table) == 12 and (table["ANALYTE"] == "CP").all()
    res = run("nca", str(theo_csv), "--units", "CP", "-o", str(tmp_path / "x.csv"))
    assert res.returncode == 2 and "--units" in res.stderr and "NAME=UNIT" in res.stderr
    assert not (tmp_path / "x.csv").exists()
    res = run("nca", str(theo_csv), "--time-unit", "fortnight", "-o", str(tmp_path / "x.csv"))
    assert res.returncode == 2 and "--time-unit" in res.stderr


def test_one_cmt_oral_from_the_command_line(theo_csv, tmp_path):
    out = tmp_path / "theo_fit.nc"
    res = run("fit", str(theo_csv), "--model", "one_cmt_oral", "--time-unit", "hour",
              "--fix", "f=1", "--error", "CP=additive", "--draws", "150", "--tune", "150",
              "--chains", "2", "--seed", "2", "--until-converged", "0", "-o", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "CP" in res.stdout and "fixed" in res.stdout          # records table, fixed f
    from ckmodel.fitting import load_fit

    fit = load_fit(out)
    assert fit.data.time_unit == "hour" and fit.data.analyte_units == {"CP": "mg/L"}
    assert fit.meta["options"]["fixed"] == {"f": 1.0}
    assert fit.meta["error_models"] == {"CP": "additive"}
    assert fit.meta["time_scale"] == 1.0
    s = fit.summary()
    assert s.records.set_index("ANALYTE").loc["CP", "USED"] == 120
    assert s.parameters.loc["f", "kind"] == "fixed" and s.parameters.loc["f", "median"] == 1.0
    assert s.parameters.loc["sigma_CP", "unit"] == "mg/L"     # additive SD in the DV unit
    res = run("summary", str(out))
    assert res.returncode == 0 and "records used" in res.stdout, res.stderr
    assert "Warning" not in res.stderr and "tmp" not in res.stderr


def test_user_iv_model_repeated_doses_and_weight(iv_files, tmp_path):
    model, data = iv_files
    out = tmp_path / "iv_fit.nc"
    res = run("fit", str(data), "--model", str(model), "--time-unit", "hour",
              "--prior", "cl=LogNormal(log(4), 0.3)", "--draws", "150", "--tune", "150",
              "--chains", "2", "--seed", "1", "--until-converged", "0", "-o", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    from ckmodel.fitting import load_fit

    fit = load_fit(out)
    assert str(fit.spec.parameter("cl").prior) == "LogNormal(log(4), 0.3)"   # as written
    assert fit.data.doses.groupby("ID").size().eq(3).all()
    pred = fit.predict(n_draws=20)
    assert pred.attrs["time_unit"] == "hour" and pred["unit"].values.tolist() == ["mg/L"]
    # every dose shows: the prediction jumps up at 12 h and 24 h
    med = pred["pred"].sel(quantile=0.5, analyte="CONC")
    before, after = med.sel(time=11.9, method="nearest"), med.sel(time=12.0)
    assert (after > 1.5 * before).all()
    # oracle: the closed form summed by hand over the three doses, for the first draw
    one = fit.trajectories(np.linspace(0, 48, 97), n_draws=1).isel(chain=0, draw=0)
    theta = fit.posterior["theta"].isel(chain=0, draw=0)
    wt = fit.data.covariates["WT"]
    t = one["time"].values
    for sid in one.subject.values[:4]:
        cl, v = (float(theta.sel(subject=sid, parameter=p)) for p in ("cl", "v"))
        k = cl * (wt[sid] / 70) ** 0.75 / v
        doses = fit.data.doses.query("ID == @sid")
        hand = sum(a / v * np.exp(-k * (t - td)) * (t >= td)
                   for a, td in zip(doses["AMT"], doses["TIME"], strict=True))
        np.testing.assert_allclose(one.sel(subject=sid, analyte="CONC").values, hand,
                                   rtol=1e-10)
    res = run("summary", str(out))
    assert res.returncode == 0, res.stderr


def test_unit_mismatch_is_refused_naming_both_units(tmp_path):
    from ckmodel.errors import DatasetError
    from ckmodel.fitting import fit
    from ckmodel.testing import simulate_ckdata

    data, _ = simulate_ckdata("expansion_biphasic", n=2, seed=1)
    month = data.from_frames(data.observations, data.doses, data.covariates,
                             time_unit="month")
    with pytest.raises(DatasetError, match=r"months.*day|day.*month"):
        fit(month, "expansion_biphasic", draws=10, tune=10, chains=1)


def test_hour_data_meet_a_day_model_converted_once(caplog):
    """The same records in hours and in days give the same prepared fit (times in days)."""
    from ckmodel.data import CKData
    from ckmodel.data.schema import time_factor
    from ckmodel.population.prepare import prepare
    from ckmodel.spec import load_model
    from ckmodel.testing import simulate_ckdata

    data, _ = simulate_ckdata("expansion_biphasic", n=3, seed=2)
    obs, doses = data.observations, data.doses
    obs["TIME"] *= 24
    doses["TIME"] *= 24
    hours = CKData.from_frames(obs, doses, data.covariates, time_unit="hour")
    spec = load_model("expansion_biphasic")
    a = prepare(data, spec)
    b = prepare(hours, spec, time_scale=time_factor("hour", "day"))
    np.testing.assert_allclose(b.time, a.time, rtol=1e-14)
    np.testing.assert_allclose(b.dose_time, a.dose_time, rtol=1e-14)
    assert b.time_scale == pytest.approx(1 / 24)
