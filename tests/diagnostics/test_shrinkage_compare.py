"""Eta shrinkage against its formula; LOO ranks the true model above a wrong one."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ckmodel._arviz import az
from ckmodel.diagnostics import compare_fits, eta_shrinkage, loo, pointwise_loglik


def test_shrinkage_known_answer():
    # posterior mean etas -1, 0, 1 (SD 1 over subjects) for rho, 0 +- 0.3 for f0
    base = np.array([-1.0, 0.0, 1.0])
    noise = np.array([[0.5], [-0.5]])  # two draws, symmetric: the mean is exact
    eta = np.stack([base[None, :] + noise, 0.3 * base[None, :] + noise], axis=-1)[None]
    omega = np.broadcast_to(np.array([2.0, 0.3]), (1, 2, 2))
    post = xr.Dataset({"eta": (("chain", "draw", "subject", "iiv"), eta),
                       "omega": (("chain", "draw", "iiv"), omega)},
                      coords={"iiv": ["rho", "f0"], "subject": ["a", "b", "c"]})
    out = eta_shrinkage(az.InferenceData(posterior=post))
    assert out.loc["rho", "shrinkage"] == pytest.approx(1 - 1.0 / 2.0)
    assert out.loc["f0", "shrinkage"] == pytest.approx(0.0, abs=1e-12)
    assert bool(out.loc["rho", "high"]) and not bool(out.loc["f0", "high"])
    var = eta_shrinkage(az.InferenceData(posterior=post), kind="var")
    assert var.loc["rho", "shrinkage"] == pytest.approx(1 - 1.0 / 4.0)


def test_shrinkage_of_a_fit_follows_the_formula(small_fit):
    out = eta_shrinkage(small_fit)
    post = small_fit.posterior
    ebe = post["eta"].mean(("chain", "draw"))
    for p in out.index:
        sd = float(ebe.sel(iiv=p).std(ddof=1))
        om = float(post["omega"].sel(iiv=p).mean())
        assert out.loc[p, "shrinkage"] == pytest.approx(1 - sd / om, rel=1e-12)
    assert ((out["shrinkage"] > -0.5) & (out["shrinkage"] < 1)).all()


def test_pointwise_loglik_sums_each_subject_and_keeps_records(small_fit):
    ll = small_fit.idata.log_likelihood["y_PB_QPCR"]
    per = pointwise_loglik(small_fit, "subject")
    assert per.sizes["subject"] == 24
    np.testing.assert_allclose(per.sum("subject"), ll.sum(ll.dims[-1]), rtol=1e-6)
    assert pointwise_loglik(small_fit, "record").sizes["record"] == 288
    assert loo(small_fit).pareto_k.size == 24


def test_compare_ranks_the_true_model_above_a_wrong_one(small_fit, wrong_fit):
    table = compare_fits({"true": small_fit, "alpha fixed 4x too slow": wrong_fit})
    assert list(table.index) == ["true", "alpha fixed 4x too slow"]
    assert table.loc["alpha fixed 4x too slow", "elpd_diff"] > 4 * table.loc[
        "alpha fixed 4x too slow", "dse"]
    assert {"elpd_loo", "p_loo", "weight", "n_high_k"} <= set(table.columns)
    by_record = compare_fits([small_fit, wrong_fit], by="record", names=["true", "wrong"])
    assert by_record.index[0] == "true"


def test_compare_refuses_fits_of_other_records(small_fit, wrong_fit):
    import dataclasses

    idata = small_fit.idata.copy()
    idata.log_likelihood = idata.log_likelihood.isel(obs_PB_QPCR=slice(0, 100))
    fewer = dataclasses.replace(small_fit, idata=idata)
    with pytest.raises(ValueError, match="not of the same records"):
        compare_fits([fewer, wrong_fit])
    with pytest.raises(ValueError, match="at least two"):
        compare_fits([small_fit])


def test_docstring_examples_run():
    import doctest

    import ckmodel.diagnostics.shrinkage as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
