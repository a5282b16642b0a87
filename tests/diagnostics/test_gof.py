"""Records, PRED/IPRED, the GOF table and the convergence checks of a fit."""

from __future__ import annotations

import numpy as np
import pytest

from ckmodel.diagnostics import (
    convergence_checks,
    fit_records,
    gof_table,
    parameter_convergence,
    record_predictions,
    simulate_replicates,
)


def test_records_are_the_fitted_records(small_fit):
    rec = fit_records(small_fit)
    obs = small_fit.data.observations
    assert len(rec) == len(obs) == 288
    np.testing.assert_array_equal(rec["ROW"], obs["ROW"])
    assert rec["BLQ"].sum() == int(obs["BLQ"].sum())
    assert rec.loc[rec["BLQ"], "DV"].isna().all()
    assert rec.attrs == {"time_unit": "day", "units": {"PB_QPCR": "copies/ug gDNA"}}


def test_ipred_is_the_posterior_median_of_fit_predict(small_fit):
    rec = record_predictions(small_fit, n_draws=50)
    sub = rec[rec["ID"] == "S00003"]
    band = small_fit.predict(np.unique(sub["TIME"]), n_draws=50, quantiles=(0.5,))
    expected = band["pred"].sel(quantile=0.5, subject="S00003", analyte="PB_QPCR").values
    np.testing.assert_allclose(sub["IPRED"], expected, rtol=1e-10)


def test_pred_is_the_typical_subject(small_fit):
    from ckmodel.solve import evaluate_outputs, solve_states

    post = small_fit.posterior
    n_chain = post.sizes["chain"]
    rec = record_predictions(small_fit, n_draws=1)  # the first draw of each chain
    assert rec.attrs["n_draws"] == n_chain
    t = np.unique(rec["TIME"])
    for sid, dose in (("S00001", 1.0), ("S00024", 3.0)):
        preds = []
        for chain in range(n_chain):
            params = {p: float(post[f"{p}_pop"].isel(chain=chain, draw=0)) for p in
                      small_fit.spec.param_names}
            states = solve_states(small_fit.spec, params, t, amt=dose)
            preds.append(evaluate_outputs(small_fit.spec, states, params, t)["PB_QPCR"][0])
        pred = np.median(preds, axis=0)
        got = rec.loc[rec["ID"] == sid, "PRED"].to_numpy()
        np.testing.assert_allclose(got, pred[np.searchsorted(t, rec.loc[rec["ID"] == sid,
                                                                          "TIME"])], rtol=1e-8)


def test_replicates_keep_the_design_and_draw_new_subjects(small_fit):
    rep = simulate_replicates(small_fit, 40, seed=3)
    assert rep.obs["PB_QPCR"].shape == (40, 288)
    ipred = record_predictions(small_fit)["IPRED"].to_numpy()
    # new subjects: the spread between replicates of one record is the population's, far
    # wider than one subject's posterior band
    spread = np.std(np.log(rep.pred["PB_QPCR"][:, 3]))
    assert spread > 0.3
    assert np.all(np.isfinite(ipred))
    again = simulate_replicates(small_fit, 40, seed=3)
    np.testing.assert_array_equal(rep.obs["PB_QPCR"], again.obs["PB_QPCR"])
    with pytest.raises(ValueError, match="n_sim"):
        simulate_replicates(small_fit, 0)


def test_gof_table_has_every_record_with_residuals(small_fit):
    table = gof_table(small_fit, n_sim=200, stratify="DOSE")
    assert len(table) == 288
    assert {"PRED", "IPRED", "NPDE", "PD", "STRATUM"} <= set(table.columns)
    assert np.isfinite(table["NPDE"]).all()  # BLQ records included, not dropped
    assert list(table["STRATUM"].cat.categories) == ["1", "3"]
    # individual predictions follow the quantified data more closely than the population's
    q = ~table["BLQ"]
    dv = np.log(table.loc[q, "DV"])
    assert np.mean((dv - np.log(table.loc[q, "IPRED"])) ** 2) < np.mean(
        (dv - np.log(table.loc[q, "PRED"])) ** 2)


def test_convergence_checks_agree_with_the_verdict(small_fit):
    checks = convergence_checks(small_fit)
    assert list(checks.index) == ["max R-hat", "min bulk ESS", "min tail ESS", "divergences",
                                  "tree-depth hits", "min E-BFMI", "lagging chains"]
    c = small_fit.meta["convergence"]
    assert checks.attrs["ok"] == c["ok"]
    assert checks.loc["divergences", "value"] == c["divergences"]
    assert checks.loc["tree-depth hits", "passed"] == (c["treedepth_hits"] == 0)
    assert checks.loc["min E-BFMI", "value"] == pytest.approx(c["min_bfmi"])
    assert checks.loc["max R-hat", "passed"] == (c["max_rhat"] <= 1.01)
    table = parameter_convergence(small_fit)
    assert table["passed"].dtype == bool and "rho_pop" in table.index
