"""NPDE: standard normal for well-specified data (with BLQ records), not for misspecified."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ckmodel.diagnostics import npde, npde_arrays

TIMES = np.array([1.0, 4, 7, 14, 28, 56, 84, 180])


def _replicate(rng, n, k_el=0.04, omega=0.6, sigma=0.3):
    eta = rng.standard_normal((n, 1)) * omega
    eps = rng.standard_normal((n, TIMES.size)) * sigma
    return np.exp(6.0 + eta - k_el * TIMES[None, :] + eps).ravel()


def _case(k_obs=0.04, seed=3, n=60, k_sim=1000, lloq=30.0):
    rng = np.random.default_rng(seed)
    y = _replicate(rng, n, k_el=k_obs)
    sims = np.stack([_replicate(rng, n) for _ in range(k_sim)])
    subject = np.repeat(np.arange(n), TIMES.size)
    blq = y < lloq
    return y, sims, subject, blq, np.full(y.size, lloq)


def test_npde_of_well_specified_data_are_standard_normal_with_blq():
    y, sims, subject, blq, lloq = _case()
    assert 0.15 < blq.mean() < 0.5  # a real share of censored records
    n, pd_ = npde_arrays(np.where(blq, np.nan, y), sims, subject, blq=blq, lloq=lloq, rng=1)
    assert stats.kstest(n, "norm").pvalue > 0.05  # seeded: 480 correlated records
    assert abs(n.mean()) < 0.15 and 0.85 < n.std() < 1.15
    assert stats.kstest(pd_, "uniform").pvalue > 0.01
    # the BLQ records' NPDE (imputed through the censoring) are part of the same N(0, 1)
    assert n[blq].mean() < 0  # they sit low, as censored records should
    assert np.all(np.isfinite(n))


def test_npde_of_misspecified_data_are_not_standard_normal():
    y, sims, subject, blq, lloq = _case(k_obs=0.06)
    n, _ = npde_arrays(np.where(blq, np.nan, y), sims, subject, blq=blq, lloq=lloq, rng=1)
    assert stats.kstest(n, "norm").pvalue < 1e-4


def test_dropping_blq_records_would_bias_what_imputation_keeps_centred():
    y, sims, subject, blq, lloq = _case()
    n, _ = npde_arrays(np.where(blq, np.nan, y), sims, subject, blq=blq, lloq=lloq, rng=1)
    assert abs(n.mean()) < abs(n[~blq].mean())  # quantified-only NPDE are shifted up


def test_npde_arrays_check_their_inputs():
    with pytest.raises(ValueError, match="shape"):
        npde_arrays(np.ones(3), np.ones((10, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="LLOQ"):
        npde_arrays(np.ones(3), np.ones((10, 3)), np.zeros(3), blq=np.array([1, 0, 0], bool))


def test_npde_of_the_small_fit_are_standard_normal_and_seeded(small_fit):
    res = npde(small_fit, n_sim=1000, seed=1)
    assert len(res) == 288 and res["BLQ"].sum() > 50
    # the fit's own data, new subjects from its posterior: N(0, 1) (KS, seeded)
    assert stats.kstest(res["NPDE"], "norm").pvalue > 0.01
    again = npde(small_fit, n_sim=1000, seed=1)
    np.testing.assert_array_equal(res["NPDE"], again["NPDE"])


def test_npde_flag_data_from_another_model(other_model_fit):
    res = npde(other_model_fit, n_sim=500, seed=1)
    assert stats.kstest(res["NPDE"], "norm").pvalue < 1e-4
