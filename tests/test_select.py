"""Dose selection: per-dose rates against a direct computation, EWOC, P(MTD), utility, files.

Oracles: E-R models with hand-written posteriors (``logit p = alpha + b (log E - c) / s``),
so each dose's population rate per draw is recomputed here from the virtual patients'
exposures; the decision rules are checked against their definitions on the draws.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy import special

from ckmodel.response import ResponseFit
from ckmodel.select import load_selection, select_dose
from ckmodel.testing import posterior_fit as hand_fit


def hand_response(endpoint, alpha, slope, *, center=8.0, n=400, seed=0, covariate=None,
                  cov_slope=0.0, kind="binary", cuts=None):
    rng = np.random.default_rng(seed)
    shape = (2, n // 2)
    a = alpha + 0.1 * rng.standard_normal(shape)
    b = slope + 0.05 * rng.standard_normal(shape)
    terms = ["X"] + ([covariate] if covariate else [])
    beta = np.stack([b] + ([np.full(shape, cov_slope)] if covariate else []), axis=-1)
    post = {"beta": (("chain", "draw", "term"), beta)}
    meta = {"terms": terms, "center": [center] + ([0.0] if covariate else []),
            "scale": [1.0] * len(terms)}
    if kind == "binary":
        post["alpha"] = (("chain", "draw"), a)
    else:
        post["cutpoints"] = (("chain", "draw", "cut"),
                             np.broadcast_to(np.asarray(cuts, float), (*shape, len(cuts))))
        meta["categories"] = list(range(len(cuts) + 1))
    idata = az.InferenceData(posterior=xr.Dataset(
        post, coords={"chain": [0, 1], "draw": np.arange(shape[1]), "term": terms}))
    return ResponseFit(endpoint=endpoint, kind=kind, model="logistic" if kind == "binary"
                       else "ordinal", exposure_metric="PB_QPCR_CMAX", exposure_scale="log",
                       covariates=tuple(terms[1:]), uncertainty="plugin", hsct="censor",
                       idata=idata, meta=meta)


@pytest.fixture(scope="module")
def fit():
    from ckmodel.testing import simulate_ckdata

    data, _ = simulate_ckdata("expansion_biphasic", n=8, dose=[1.0, 3.0], seed=4)
    return hand_fit(data, seed=3)[0]


@pytest.fixture(scope="module")
def models():
    dlt = hand_response("DLT", -4.0, 1.2, seed=1)
    crc = hand_response("CRc", 0.0, 0.8, seed=2)
    return dlt, crc


def test_paired_probability_matches_probability(models):
    dlt, _ = models
    x = np.exp(np.random.default_rng(0).normal(8, 1, (5, 7)))
    samples = np.array([0, 17, 100, 250, 399])
    got = dlt.paired_probability(x, samples)
    for i, s in enumerate(samples):
        np.testing.assert_allclose(got[i], dlt.probability(x[i])[s], rtol=1e-12)


def test_paired_probability_covariates_and_ordinal():
    er = hand_response("DLT", -1.0, 1.0, covariate="log(BM_BLAST_PCT)", cov_slope=0.5)
    x = np.full((2, 3), np.exp(8.0))
    got = er.paired_probability(x, [0, 1], covariates={"BM_BLAST_PCT": [1.0, np.e, np.e**2]})
    a = er.coefficient_draws()["intercept"].to_numpy()[[0, 1]] + 8.0 * er.slopes()[[0, 1], 0]
    np.testing.assert_allclose(got, special.expit(a[:, None] + 0.5 * np.arange(3)[None, :]),
                               rtol=1e-12)
    crs = hand_response("CRS_GRADE", 0.0, 1.0, kind="ordinal", cuts=[-1.0, 0.5, 2.0, 3.0])
    p3 = crs.paired_probability(np.full((1, 1), np.exp(9.0)), [0], threshold=3)
    b = crs.slopes()[0, 0]
    np.testing.assert_allclose(p3[0, 0], special.expit(b * 1.0 - 2.0), rtol=1e-12)


def hand_survival(competing=False, n=200, seed=0):
    """A Weibull E-R model (optionally with a competing HSCT hazard) written by hand."""
    rng = np.random.default_rng(seed)
    shape = (2, n // 2)
    post = {"log_lambda": (("chain", "draw"), -4.0 + 0.1 * rng.standard_normal(shape)),
            "log_shape": (("chain", "draw"), np.log(1.2) + 0.05 * rng.standard_normal(shape)),
            "beta": (("chain", "draw", "term"), (0.6 + 0.05 * rng.standard_normal(shape))[
                ..., None])}
    if competing:
        post.update({"log_lambda_hsct": (("chain", "draw"), np.full(shape, -5.0)),
                     "log_shape_hsct": (("chain", "draw"), np.full(shape, 0.0)),
                     "beta_hsct": (("chain", "draw", "term"), np.full((*shape, 1), -0.2))})
    idata = az.InferenceData(posterior=xr.Dataset(
        post, coords={"chain": [0, 1], "draw": np.arange(shape[1]), "term": ["X"]}))
    return ResponseFit(endpoint="EFS", kind="tte", model="weibull",
                       exposure_metric="PB_QPCR_CMAX", exposure_scale="log", covariates=(),
                       uncertainty="plugin", hsct="competing" if competing else "censor",
                       idata=idata, meta={"terms": ["X"], "center": [8.0], "scale": [1.0],
                                          "t_ref": 100.0})


@pytest.mark.parametrize("competing", [False, True])
def test_paired_probability_of_time_to_event(competing):
    er = hand_survival(competing)
    x = np.exp(np.random.default_rng(1).normal(8, 1, (4, 5)))
    samples = np.array([3, 50, 120, 199])
    got = er.paired_probability(x, samples, threshold=200.0)
    for i, s in enumerate(samples):
        np.testing.assert_allclose(got[i], er.event_probability(x[i], [200.0])[s, :, 0],
                                   rtol=1e-10)
    assert np.all(np.diff(got[0][np.argsort(x[0])]) > 0)  # more exposure, more events


def test_time_to_event_endpoint_in_the_selection(fit, models):
    dlt, crc = models
    efs = hand_survival()
    sel = select_dose(fit, [dlt, crc, efs], [0.5, 2.0], n_patients=20, n_draws=10, seed=1,
                      thresholds={"EFS": 365})
    assert "P_EFS_BY365" in sel.table and sel.settings["weights"]["EFS_BY365"] == -1.0
    np.testing.assert_allclose(sel.draws["UTILITY"].values,
                               sel.draws["P_CRC"].values - sel.draws["P_DLT"].values
                               - sel.draws["P_EFS_BY365"].values)


def test_rates_per_draw_equal_a_direct_computation(fit, models):
    dlt, crc = models
    doses = [0.5, 1.0, 2.0, 4.0]
    sel = select_dose(fit, [dlt, crc], doses, n_patients=60, n_draws=20, seed=2)
    vp = fit.simulate(doses, n_patients=60, n_draws=20, seed=2, analytes=["PB_QPCR"],
                      metrics=["CMAX"])
    pair = np.linspace(0, 399, 20).round().astype(int)
    for er, lab in ((dlt, "DLT"), (crc, "CRC")):
        d = er.coefficient_draws()
        a = d["intercept"].to_numpy()[pair]
        b = d["log(PB_QPCR_CMAX)"].to_numpy()[pair]
        logx = np.log(vp["PB_QPCR_CMAX"].values)  # dose, draw, patient
        rate = special.expit(a[None, :, None] + b[None, :, None] * logx).mean(axis=2)
        np.testing.assert_allclose(sel.draws[f"P_{lab}"].values, rate, rtol=1e-10)
        np.testing.assert_allclose(sel.table[f"P_{lab}"], rate.mean(axis=1), rtol=1e-10)
    # exposure summary: median patient, posterior median
    med = np.median(np.median(vp["PB_QPCR_CMAX"].values, axis=2), axis=1)
    np.testing.assert_allclose(sel.table["PB_QPCR_CMAX_MEDIAN"], med, rtol=1e-10)


def test_decision_rules_follow_their_definitions(fit, models):
    dlt, crc = models
    doses = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    sel = select_dose(fit, [dlt, crc], doses, n_patients=80, n_draws=40, seed=1, target=0.25,
                      overdose_limit=0.25)
    p = sel.draws["P_DLT"].values
    over = (p > 0.25).mean(axis=1)
    np.testing.assert_allclose(sel.table["P_OVERDOSE"], over)
    ok = over <= 0.25
    assert sel.recommended == (doses[np.flatnonzero(ok)[-1]] if ok.any() else None)
    assert sel.table["RECOMMENDED"].sum() == (1 if ok.any() else 0)
    # P(MTD): the highest dose at or below target per draw
    mtd = [max([k for k in range(6) if p[k, d] <= 0.25], default=-1) for d in range(40)]
    np.testing.assert_allclose(sel.table["P_MTD"], [np.mean(np.equal(mtd, k))
                                                    for k in range(6)])
    u = sel.draws["UTILITY"].values
    np.testing.assert_allclose(u, sel.draws["P_CRC"].values - p)
    adm = np.flatnonzero(ok)
    np.testing.assert_allclose(sel.table["P_BEST"].to_numpy()[adm].sum(), 1.0)
    assert sel.best == doses[adm[np.argmax(u[adm].mean(axis=1))]]
    assert sel.settings["utility"] == "P(CRC) - P(DLT)"
    assert "overdose control" in sel.summary()


def test_rates_increase_with_dose_and_weights(fit, models):
    dlt, crc = models
    sel = select_dose(fit, [dlt, crc], [0.5, 2.0, 8.0], n_patients=50, n_draws=20, seed=1,
                      weights={"DLT": -3.0})
    assert np.all(np.diff(sel.table["P_DLT"]) > 0) and np.all(np.diff(sel.table["P_CRC"]) > 0)
    np.testing.assert_allclose(sel.draws["UTILITY"].values,
                               sel.draws["P_CRC"].values - 3 * sel.draws["P_DLT"].values)
    assert sel.settings["utility"] == "P(CRC) - 3 P(DLT)"


def test_no_toxicity_model_no_overdose_control(fit, models):
    _, crc = models
    sel = select_dose(fit, [crc], [1.0, 2.0], n_patients=20, n_draws=10, seed=1)
    assert sel.recommended is None and "P_OVERDOSE" not in sel.table
    assert sel.best is not None
    with pytest.raises(ValueError, match="none of the E-R models"):
        select_dose(fit, [crc], [1.0], toxicity="CRS3")
    with pytest.raises(ValueError, match="match no E-R model"):
        select_dose(fit, [crc], [1.0], weights={"ORR": 1})
    with pytest.raises(ValueError, match="target"):
        select_dose(fit, [crc], [1.0], target=1.5)


def test_save_load_and_plot(fit, models, tmp_path):
    sel = select_dose(fit, list(models), [0.5, 1.0, 2.0], n_patients=20, n_draws=10, seed=1)
    path = sel.save(tmp_path / "sel.nc")
    back = load_selection(path)
    assert back.recommended == sel.recommended and back.best == sel.best
    num = sel.table.select_dtypes("number").columns
    np.testing.assert_allclose(back.table[num].to_numpy(float), sel.table[num].to_numpy(float))
    assert back.table["DOSE_UNIT"].tolist() == [fit.spec.amount_unit] * 3
    assert back.table["PB_QPCR_CMAX_UNIT"].iloc[0] == fit.spec.output("PB_QPCR").unit
    assert back.settings["utility"] == sel.settings["utility"]
    fig = back.plot()
    assert fig.axes[0].get_xlabel() == f"dose ({fit.spec.amount_unit})"
    with pytest.raises(ValueError, match="not a dose selection"):
        xr.Dataset({"a": ("x", [1.0])}).to_netcdf(tmp_path / "x.nc", engine="h5netcdf")
        load_selection(tmp_path / "x.nc")


def test_report_section_holds_decision_table_and_figure(fit, models):
    from ckmodel.report.document import FigureBlock, Table, Text
    from ckmodel.report.extras import selection_section

    sel = select_dose(fit, list(models), [0.5, 1.0, 2.0], n_patients=20, n_draws=10, seed=1)
    section = selection_section(sel)
    texts = [b for b in section.blocks if isinstance(b, Text)]
    tables = [b.frame for b in section.blocks if isinstance(b, Table)]
    assert "Utility = P(CRC) - P(DLT)" in str(texts[0].text)
    assert list(tables[0]["DOSE"]) == [0.5, 1.0, 2.0]
    assert any(isinstance(b, FigureBlock) for b in section.blocks)


def test_an_nca_exposure_model_is_refused_with_what_to_do(fit):
    er = hand_response("DLT", -4.0, 1.0)
    er.exposure_metric = "AUC_NCA"
    with pytest.raises(ValueError, match="not a model-based metric.*--exposure CMAX"):
        select_dose(fit, [er], [1.0, 2.0])
