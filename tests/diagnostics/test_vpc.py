"""VPC and pcVPC: coverage on data from the model itself, failure on data from another."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ckmodel.diagnostics import VPC_COLUMNS, bin_edges, simulate_replicates, vpc, vpc_arrays

TIMES = np.array([1.0, 4, 7, 14, 21, 28, 42, 56, 84, 180])


def _trial(rng, n, k_el=0.05, log_a=8.0, omega=0.5, sigma=0.3):
    """One replicate of a log-linear decline with a random effect per subject: (n, times)."""
    eta = rng.standard_normal((n, 1)) * omega
    eps = rng.standard_normal((n, TIMES.size)) * sigma
    return np.exp(log_a + eta - k_el * TIMES[None, :] + eps)


def _coverage(table):
    """Share of observed percentiles inside their simulated 95 % intervals."""
    hits = []
    for tag in ("P05", "P50", "P95"):
        o = table[f"OBS_{tag}"]
        ok = o.notna()
        hits.append(((o[ok] >= table[f"SIM_{tag}_LO"][ok])
                     & (o[ok] <= table[f"SIM_{tag}_HI"][ok])).to_numpy())
    return float(np.concatenate(hits).mean())


def _in_pi(observed, table):
    """Share of records inside the median simulated 90 % interval of their bin (BLQ: inside
    when the interval reaches below the LLOQ)."""
    o = observed.merge(table[["ANALYTE", "STRATUM", "BIN", "SIM_P05_MED", "SIM_P95_MED"]],
                       on=["ANALYTE", "STRATUM", "BIN"])
    inside = np.where(o["BLQ"], o["SIM_P05_MED"] < o["LLOQ"],
                      (o["Y"] >= o["SIM_P05_MED"]) & (o["Y"] <= o["SIM_P95_MED"]))
    return float(np.mean(inside))


def _arrays(rng, n_sub=80, k_obs=0.05, n_sim=300, lloq=5.0):
    y = _trial(rng, n_sub, k_el=k_obs)
    sims = np.stack([_trial(rng, n_sub).ravel() for _ in range(n_sim)])
    t = np.tile(TIMES, n_sub)
    stratum = np.repeat(np.where(np.arange(n_sub) < n_sub // 2, "low", "high"), TIMES.size)
    y = y.ravel()
    blq = y < lloq
    return dict(time=t, y=np.where(blq, np.nan, y), sims=sims, blq=blq,
                lloq=np.full(t.size, lloq), stratum=stratum)


def test_vpc_arrays_cover_data_from_the_model_and_not_from_another():
    rng = np.random.default_rng(11)
    own = vpc_arrays(**_arrays(rng))
    # 3 percentiles x 10 bins x 2 strata; nominal 95 %: at least 85 % of them inside
    assert _coverage(own) >= 0.85
    a = _arrays(rng)
    tab = vpc_arrays(**a)
    obs = pd.DataFrame({"ANALYTE": "A", "STRATUM": a["stratum"], "BIN": np.tile(
        np.arange(1, TIMES.size + 1), 80), "Y": np.where(a["blq"], a["lloq"], a["y"]),
        "BLQ": a["blq"], "LLOQ": a["lloq"]})
    share = _in_pi(obs, tab.assign(ANALYTE="A"))
    assert 0.85 <= share <= 0.95  # 800 records, nominal 90 %
    other = vpc_arrays(**_arrays(rng, k_obs=0.08))  # a faster decline than simulated
    assert _coverage(other) <= 0.5


def test_observed_percentiles_blank_where_censored_and_blq_fraction_counted():
    t = np.zeros(10)
    y = np.array([np.nan] * 3 + [10.0, 20, 30, 40, 50, 60, 70])
    blq = np.isnan(y)
    sims = np.tile(np.linspace(1, 100, 10), (50, 1))
    tab = vpc_arrays(t, y, sims, blq=blq, lloq=np.full(10, 5.0), bins=[0, 1])
    row = tab.iloc[0]
    assert np.isnan(row["OBS_P05"])  # 30 % BLQ: the 5th percentile is censored
    assert row["OBS_P50"] == pytest.approx(np.quantile([5, 5, 5, 10, 20, 30, 40, 50, 60, 70],
                                                       0.5))  # BLQ at their LLOQ
    assert row["OBS_BLQ"] == pytest.approx(0.3)
    assert row["SIM_BLQ_LO"] == row["SIM_BLQ_HI"] == pytest.approx(0.1)  # 1 of 10 below 5


def test_bin_edges_nominal_count_and_given():
    np.testing.assert_allclose(bin_edges(np.array([1, 4, 7, 7.2, 14.1, 13.8])),
                               [1, 2.5, 5.5, 10.5, 14.1])
    assert bin_edges(np.arange(100.0), 4).size == 5
    np.testing.assert_array_equal(bin_edges(TIMES, [0, 10, 400]), [0, 10, 400])
    with pytest.raises(ValueError, match="increasing"):
        bin_edges(TIMES, [0, 10, 5])
    with pytest.raises(ValueError, match=">= 1"):
        bin_edges(TIMES, 0)


def test_vpc_of_a_fit_covers_its_own_data_and_flags_another_model(small_fit,
                                                                  other_model_fit):
    own = vpc(small_fit, stratify="DOSE", n_sim=200, seed=1)
    assert list(own.table.columns[:len(VPC_COLUMNS)]) == list(VPC_COLUMNS)
    assert set(own.table["STRATUM"]) == {"1", "3"}
    assert own.labels == {"1": "1 1e6 CAR+ T cells/kg (n=12)",
                          "3": "3 1e6 CAR+ T cells/kg (n=12)"}
    assert _coverage(own.table) >= 0.9
    assert 0.8 <= _in_pi(own.observed, own.table) <= 0.98
    # expansion peaking at day 4 and declining 4x slower than the fitted model's
    other = vpc(other_model_fit, stratify="DOSE", n_sim=200, seed=1)
    assert _coverage(other.table) <= 0.5


@pytest.fixture(scope="module")
def bands_and_replicates(small_fit):
    rep = simulate_replicates(small_fit, 100, seed=4)
    return rep, vpc(small_fit, stratify="DOSE", replicates=rep)


def test_blq_fraction_against_a_direct_count(bands_and_replicates):
    rep, result = bands_and_replicates
    rec = result.observed
    direct = rec.groupby(["STRATUM", "BIN"])["BLQ"].mean()
    tab = result.table.set_index(["STRATUM", "BIN"])
    np.testing.assert_allclose(tab["OBS_BLQ"], direct.reindex(tab.index), rtol=0, atol=1e-12)
    sims = rep.stacked("obs")
    for (s, b), row in tab.iloc[[0, 5, 13]].iterrows():
        m = ((rec["STRATUM"] == s) & (rec["BIN"] == b)).to_numpy()
        frac = (sims[:, m] < rec.loc[m, "LLOQ"].to_numpy()).mean(axis=1)
        np.testing.assert_allclose([row["SIM_BLQ_LO"], row["SIM_BLQ_HI"]],
                                   np.quantile(frac, [0.025, 0.975]))


def test_vpc_is_deterministic_given_the_seed(small_fit):
    a = vpc(small_fit, n_sim=30, seed=7, bins=5).table
    b = vpc(small_fit, n_sim=30, seed=7, bins=5).table
    c = vpc(small_fit, n_sim=30, seed=8, bins=5).table
    pd.testing.assert_frame_equal(a, b)
    assert not a["SIM_P50_LO"].equals(c["SIM_P50_LO"])
    assert a["BIN"].max() <= 5


def test_pcvpc_corrects_by_the_bin_median_pred(small_fit):
    from ckmodel.diagnostics import record_predictions

    result = vpc(small_fit, pc=True, n_sim=50, seed=2)
    rec = result.observed
    pred = record_predictions(small_fit)["PRED"].to_numpy()
    p_bin = pd.Series(pred).groupby(rec["BIN"].to_numpy()).transform("median").to_numpy()
    raw = np.where(rec["BLQ"], rec["LLOQ"], rec["DV"])
    np.testing.assert_allclose(rec["Y"], raw * p_bin / pred, rtol=1e-12)
    assert result.pc and result.table.attrs["pc"]


def test_vpc_refuses_unknown_strata_and_bad_bins(small_fit):
    with pytest.raises(KeyError, match="not a subject-level column"):
        vpc(small_fit, stratify="ARM", n_sim=5)
    with pytest.raises(ValueError, match="increasing"):
        vpc(small_fit, bins=[3, 1], n_sim=5)


def test_vpc_csv_has_exactly_the_columns(small_fit, tmp_path):
    result = vpc(small_fit, n_sim=20, seed=1)
    path = result.to_csv(tmp_path / "vpc.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(VPC_COLUMNS)
    assert len(back) == len(result.table)
