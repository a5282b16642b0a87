"""``ckmodel select``, ``ckmodel simulate --fit`` and the CK design on the command line.

Outputs are checked against the Python functions they call (same seed, same numbers); bad
options are refused with exit code 2 before any file is written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_select import hand_response
from typer.testing import CliRunner

from ckmodel.cli import app
from ckmodel.select import load_selection, select_dose

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def er_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("er")
    dlt = hand_response("DLT", -4.0, 1.2, seed=1)
    crc = hand_response("CRc", 0.0, 0.8, seed=2)
    return dlt.save(d / "dlt.nc"), crc.save(d / "crc.nc"), dlt, crc


def test_select_writes_table_selection_and_figure(small_fit, small_fit_file, er_files,
                                                  tmp_path):
    dlt_f, crc_f, dlt, crc = er_files
    csv, nc, png = tmp_path / "s.csv", tmp_path / "s.nc", tmp_path / "s.png"
    res = invoke("select", small_fit_file, "--er", dlt_f, "--er", crc_f, "--doses",
                 "0.5,1,2,4", "--n-patients", 30, "--n-draws", 12, "--seed", 4, "-o", csv,
                 "--nc", nc, "--plot", png, "--target", 0.25)
    assert res.exit_code == 0, res.output
    assert "Utility = P(CRC) - P(DLT)" in res.output
    table = pd.read_csv(csv)
    ref = select_dose(small_fit, [dlt, crc], [0.5, 1, 2, 4], n_patients=30, n_draws=12,
                      seed=4, target=0.25)
    np.testing.assert_allclose(table["P_DLT"], ref.table["P_DLT"], rtol=1e-5)
    assert table["RECOMMENDED"].sum() == (0 if ref.recommended is None else 1)
    assert load_selection(nc).best == ref.best and png.stat().st_size > 10_000


@pytest.mark.parametrize("args, option", [
    (["--doses", "1,0.5"], "--doses"),
    (["--doses", "1,x"], "--doses"),
    (["--doses", "1,2", "--toxicity", "CRS3"], "--toxicity"),
    (["--doses", "1,2", "--weight", "ORR=1"], "--weight"),
    (["--doses", "1,2", "--target", "1.2"], "--target"),
    (["--doses", "1,2", "-o", "sel.txt"], "--output"),
    (["--doses", "1,2", "--covariate", "HEIGHT=170"], "--covariate"),
])
def test_select_refuses_bad_options_before_work(small_fit_file, er_files, tmp_path, args,
                                                option, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("select", small_fit_file, "--er", er_files[0], *args)
    assert res.exit_code == 2, res.output
    assert option in res.output
    assert not list(tmp_path.iterdir())


def test_select_missing_er_file(small_fit_file, tmp_path):
    res = invoke("select", small_fit_file, "--er", tmp_path / "nope.nc", "--doses", "1,2")
    assert res.exit_code == 2 and "no such file" in " ".join(res.output.split())


def test_simulate_from_fit(small_fit, small_fit_file, tmp_path):
    out, csv = tmp_path / "vp.nc", tmp_path / "vp.csv"
    res = invoke("simulate", "--fit", small_fit_file, "--doses", "1,3", "--n", 25,
                 "--n-draws", 8, "--times", "7,14,28", "--residual", "--seed", 2, "-o", out,
                 "--csv", csv)
    assert res.exit_code == 0, res.output
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert dict(ds["obs"].sizes) == {"dose": 2, "draw": 8, "patient": 25, "analyte": 1,
                                         "time": 3}
        ref = small_fit.simulate([1.0, 3.0], n_patients=25, n_draws=8, seed=2,
                                 times=[7, 14, 28], residual=True)
        np.testing.assert_allclose(ds["PB_QPCR_CMAX"].values, ref["PB_QPCR_CMAX"].values)
        np.testing.assert_allclose(ds["obs"].values, ref["obs"].values)
    table = pd.read_csv(csv)
    assert {"DOSE", "ANALYTE", "METRIC", "UNIT", "P05", "P50", "P95"} <= set(table.columns)


@pytest.mark.parametrize("args, option", [
    (["--model", "blood_marrow"], "--model"),
    (["--residual"], "--residual"),
    (["--times", "7,3"], "--times"),
    (["--solver", "euler"], "--solver"),
    (["--metric", "AUCINF"], "--metric"),
    (["--dose-covariate", "DOSE"], "--dose-covariate"),
    (["--dose-time", "7"], "--dose-time"),
    (["--dose-state", "E"], "--dose-state"),
])
def test_simulate_from_fit_refuses(small_fit_file, tmp_path, args, option, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("simulate", "--fit", small_fit_file, "--doses", "1,2", *args)
    assert res.exit_code == 2, res.output
    assert option in res.output
    assert not list(tmp_path.iterdir())


def test_fit_only_options_refused_without_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("simulate", "--n-draws", 3, "--times", "7")
    assert res.exit_code == 2 and "--times" in res.output


def test_design_and_next_dose_ck(small_fit_file, tmp_path):
    oc = tmp_path / "oc.csv"
    res = invoke("design", "--design", "ck", "--fit", small_fit_file, "--doses",
                 "0.5,1,2,4,8", "--tox", "0.05,0.1,0.2,0.35,0.5", "--n-trials", 200, "-o", oc)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(oc)
    np.testing.assert_allclose(table["P_SELECT"].sum(), 1.0)
    trial = tmp_path / "trial.csv"
    pd.DataFrame({"DOSE_LEVEL": [1, 1, 1], "DLT": [0, 0, 0],
                  "EXPOSURE": [800.0, 1500.0, 600.0]}).to_csv(trial, index=False)
    res = invoke("next-dose", "--design", "ck", "--fit", small_fit_file, "--doses",
                 "0.5,1,2,4,8", "--trial", trial, "--n-doses", 5)
    assert res.exit_code == 0, res.output
    assert "Continue" in res.output
    no_exposure = tmp_path / "t2.csv"
    pd.DataFrame({"DOSE_LEVEL": [1], "DLT": [0]}).to_csv(no_exposure, index=False)
    res = invoke("next-dose", "--design", "ck", "--fit", small_fit_file, "--doses",
                 "0.5,1,2,4,8", "--trial", no_exposure, "--n-doses", 5)
    assert res.exit_code != 0 and "EXPOSURE" in res.output
    for args, option in ((["--doses", "1,2"], "--doses"), ([], "--fit")):
        res = invoke("design", "--design", "ck", "--tox", "0.05,0.1,0.2,0.35,0.5",
                     *(["--fit", small_fit_file] if option == "--doses" else []), *args)
        assert res.exit_code == 2 and option in res.output, res.output
    res = invoke("design", "--design", "boin", "--tox", "0.1,0.2", "--exposure-slope", "2")
    assert res.exit_code == 2 and "--exposure-slope" in res.output


def test_report_refuses_a_file_that_is_no_selection(small_fit_file, er_files, tmp_path):
    out = tmp_path / "r.html"
    res = invoke("report", small_fit_file, "--selection", er_files[0], "-o", out)
    assert res.exit_code == 2 and "--selection" in res.output, res.output
    assert not out.exists()
