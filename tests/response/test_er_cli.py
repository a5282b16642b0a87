"""``ckmodel response`` with and without a CK fit, and refusals before any sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special
from typer.testing import CliRunner

from ckmodel.cli import app
from ckmodel.response import load_response

runner = CliRunner()
FAST = ["--draws", "300", "--tune", "300", "--chains", "2", "--seed", "3"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    rng = np.random.default_rng(2)
    n = 120
    auc = np.exp(rng.normal(np.log(1e5), 1.0, n))
    blast = rng.uniform(5, 90, n)
    y = rng.binomial(1, special.expit(-0.5 + 1.0 * np.log(auc / 1e5)))
    grade = np.clip(np.round(rng.normal(1.5 + 0.8 * np.log(auc / 1e5), 1.0)), 0, 4)
    path = tmp_path_factory.mktemp("er") / "outcomes.csv"
    pd.DataFrame({"ID": [f"S{i:03d}" for i in range(n)], "DLT": y, "CRS_GRADE": grade,
                  "AUC": auc, "BLAST": blast}).to_csv(path, index=False)
    return path


def test_response_on_a_plain_table_writes_posterior_coefficients_and_figure(table_file,
                                                                            tmp_path):
    out, csv, png = tmp_path / "er.nc", tmp_path / "coef.csv", tmp_path / "er.png"
    res = invoke("response", "--outcomes", table_file, "--endpoint", "DLT", "--exposure",
                 "AUC", "--covariate", "log(BLAST)", *FAST, "-o", out, "--csv", csv,
                 "--plot", png)
    assert res.exit_code == 0, res.output
    coef = pd.read_csv(csv)
    assert list(coef.columns) == ["term", "median", "mean", "sd", "lower", "upper"]
    assert list(coef["term"]) == ["intercept", "log(AUC)", "log(BLAST)"]
    slope = coef.set_index("term").loc["log(AUC)"]
    assert slope["lower"] < 1.0 < slope["upper"]  # the simulated truth
    assert png.read_bytes()[:4] == b"\x89PNG"
    fit = load_response(out)
    assert fit.kind == "binary" and fit.covariates == ("log(BLAST)",)
    assert "120 subjects" in " ".join(res.output.split())


def test_response_with_a_ck_fit_plugin_and_propagated(small_fit, small_fit_file, tmp_path):
    from ckmodel.exposure import exposure_draws

    ds = exposure_draws(small_fit, metrics=["CMAX"], n_draws=40)
    cmax = ds["PB_QPCR_CMAX"].median(("chain", "draw")).to_series()
    rng = np.random.default_rng(4)
    y = rng.binomial(1, special.expit(1.5 * (np.log(cmax) - np.log(cmax).mean())))
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"ID": cmax.index, "RESP": y}).to_csv(outcomes, index=False)
    out, csv = tmp_path / "er.nc", tmp_path / "coef.csv"
    res = invoke("response", small_fit_file, "--outcomes", outcomes, "--endpoint", "RESP",
                 "--exposure", "CMAX", "--uncertainty", "both", *FAST, "-o", out, "--csv", csv)
    assert res.exit_code == 0, res.output
    coef = pd.read_csv(csv)
    assert set(coef["uncertainty"]) == {"plugin", "propagate"}
    assert set(coef["term"]) == {"intercept", "log(PB_QPCR_CMAX)"}
    assert load_response(out).uncertainty == "propagate"
    assert load_response(tmp_path / "er_plugin.nc").uncertainty == "plugin"
    assert "plug-in" in res.output and "propagated" in res.output


@pytest.mark.parametrize("args, words", [
    (["--endpoint", "CRX"], "option --endpoint: unknown endpoint 'CRX': use one of"),
    (["--endpoint", "DLT", "--model", "weibull"], "option --model: 'weibull' does not fit"),
    (["--endpoint", "DLT", "--covariate", "AGE"], "option --covariate: AGE: not a column"),
    (["--endpoint", "DLT", "--exposure", "CMAX"], "option --exposure: 'CMAX' is not a column"),
    (["--endpoint", "DLT", "--exposure", "AUC", "--uncertainty", "propagate"],
     "option --uncertainty: propagate needs"),
    (["--endpoint", "DLT", "--exposure-scale", "sqrt"], "option --exposure-scale"),
    (["--endpoint", "DLT", "-o", "er.csv"], "option --output"),
])
def test_response_refuses_bad_requests_before_sampling(table_file, tmp_path, monkeypatch, args,
                                                       words):
    monkeypatch.chdir(tmp_path)
    res = invoke("response", "--outcomes", table_file, *args)
    assert res.exit_code == 2, res.output
    assert words in " ".join(res.output.split())
    assert list(tmp_path.iterdir()) == []
