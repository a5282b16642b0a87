"""Model-based exposure: metrics of trajectories against closed forms, draws of a fit, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize
from typer.testing import CliRunner

from ckmodel.cli import app
from ckmodel.exposure import (
    compare_with_nca,
    exposure_draws,
    exposure_table,
    metric_names,
    resolve_metric,
    trajectory_metrics,
)

runner = CliRunner()
A, K, KA = 1000.0, 0.1, 1.2


def biexp(t):
    return A * (np.exp(-K * t) - np.exp(-KA * t))


def test_monoexponential_auc_and_time_above_lloq_are_exact_even_on_a_coarse_grid():
    """Log-down is exact for an exponential; the window end (28, not a grid point) is placed
    by the same log interpolation, so a 13-point grid gives the closed forms to 1e-12."""
    t = np.linspace(0.0, 120.0, 13)  # steps of 10 days: 28 and 84 fall between points
    c = 100.0 * np.exp(-K * t)
    m = trajectory_metrics(t, c, lloq=1.0)
    assert m["AUC0_28"] == pytest.approx(1000.0 * (1 - np.exp(-2.8)), rel=1e-12)
    assert m["AUC0_84"] == pytest.approx(1000.0 * (1 - np.exp(-8.4)), rel=1e-12)
    assert m["T_ABOVE_LLOQ"] == pytest.approx(np.log(100.0) / K, rel=1e-12)
    assert m["CMAX"] == 100.0 and m["TMAX"] == 0.0


def test_biexponential_against_quad_and_the_analytic_peak_and_crossings():
    t = np.linspace(0.0, 150.0, 30001)  # 0.005-day steps
    c = biexp(t)
    m = trajectory_metrics(t, c, lloq=5.0)
    for name, end in (("AUC0_28", 28.0), ("AUC0_84", 84.0)):
        exact, _ = integrate.quad(biexp, 0.0, end, epsabs=1e-12, epsrel=1e-13)
        assert m[name] == pytest.approx(exact, rel=1e-6)  # linear-up error O(h^2)
    tmax = np.log(KA / K) / (KA - K)
    assert m["TMAX"] == pytest.approx(tmax, abs=0.005)
    assert m["CMAX"] == pytest.approx(biexp(tmax), rel=1e-6)
    up = optimize.brentq(lambda x: biexp(x) - 5.0, 1e-9, tmax)
    down = optimize.brentq(lambda x: biexp(x) - 5.0, tmax, 150.0)
    assert m["T_ABOVE_LLOQ"] == pytest.approx(down - up, rel=1e-6)


def test_time_above_lloq_of_jagged_trajectories_against_a_segment_by_segment_oracle():
    """Many crossings, zeros (linear crossing there), a flat run at the LLOQ, leading dims:
    the vectorised sum against a plain loop over segments."""
    rng = np.random.default_rng(11)
    t = np.sort(rng.uniform(0.0, 60.0, 80))
    v = np.exp(rng.normal(0.0, 1.5, (3, 4, 80)))
    v[0, 0, 10:14] = 0.0
    v[1, 1, 20:30] = 1.0
    lloq = 1.0

    def oracle(c):
        total = 0.0
        for k in range(t.size - 1):
            c0, c1, h = c[k], c[k + 1], t[k + 1] - t[k]
            if c0 >= lloq and c1 >= lloq:
                total += h
            elif (c0 >= lloq) != (c1 >= lloq):
                f = (np.log(lloq / c0) / np.log(c1 / c0) if c0 > 0 and c1 > 0
                     else (lloq - c0) / (c1 - c0))
                total += (f if c0 >= lloq else 1.0 - f) * h
        return total

    got = trajectory_metrics(t, v, lloq=lloq)["T_ABOVE_LLOQ"]
    want = np.array([[oracle(v[i, j]) for j in range(4)] for i in range(3)])
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12)


def test_metrics_vectorise_over_leading_dims_and_do_not_extrapolate():
    t = np.linspace(0.0, 50.0, 501)
    scale = np.array([[1.0, 2.0, 4.0], [0.5, 1.0, 3.0]])[..., None]
    m = trajectory_metrics(t, scale * biexp(t), lloq=None)
    assert m["CMAX"].shape == (2, 3) and np.all(np.isnan(m["T_ABOVE_LLOQ"]))
    np.testing.assert_allclose(m["AUC0_28"] / m["AUC0_28"][0, 0], scale[..., 0], rtol=1e-12)
    assert np.all(np.isnan(m["AUC0_84"]))  # the grid ends at 50 days
    hours = trajectory_metrics(t * 24, biexp(t), time_unit="hour")
    assert {"AUC0_672H", "AUC0_2016H"} <= set(hours)
    with pytest.raises(ValueError, match="increasing"):
        trajectory_metrics(t[::-1], biexp(t))
    with pytest.raises(ValueError, match="501 times"):
        trajectory_metrics(t[:-1], biexp(t))


def test_resolve_metric():
    names = ["PB_QPCR", "BM_QPCR"]
    assert resolve_metric("AUC0_28", names) == ("PB_QPCR", "AUC0_28")
    assert resolve_metric("cmax", names) == ("PB_QPCR", "CMAX")
    assert resolve_metric("BM_QPCR_T_ABOVE_LLOQ", names) == ("BM_QPCR", "T_ABOVE_LLOQ")
    with pytest.raises(ValueError, match="unknown exposure metric 'AUC0_7'.*CMAX, TMAX"):
        resolve_metric("AUC0_7", names)


@pytest.fixture(scope="module")
def draws(small_fit):
    return exposure_draws(small_fit, n_draws=40)


def test_exposure_draws_are_the_metrics_of_the_fits_own_trajectories(small_fit, draws):
    assert dict(draws.sizes) == {"chain": 4, "draw": 10, "subject": 24}  # 40 // 4 per chain
    assert set(draws.data_vars) == {f"PB_QPCR_{m}" for m in metric_names()}
    assert draws["PB_QPCR_AUC0_28"].attrs["unit"] == "day*copies/ug gDNA"
    assert draws["PB_QPCR_TMAX"].attrs["unit"] == "day"
    grid = np.linspace(0.0, 400.0, 4001)
    ds = exposure_draws(small_fit, n_draws=40, times=grid, metrics=["CMAX", "AUC0_28"])
    traj = small_fit.trajectories(grid, n_draws=40).sel(analyte="PB_QPCR")
    np.testing.assert_array_equal(ds["PB_QPCR_CMAX"].values, traj.max("time").values)
    again = trajectory_metrics(grid, traj.values)["AUC0_28"]
    np.testing.assert_allclose(ds["PB_QPCR_AUC0_28"].values, again, rtol=1e-12)
    # the default dense grid and this uniform one agree to within their discretisation
    np.testing.assert_allclose(draws["PB_QPCR_AUC0_28"].values, again, rtol=5e-3)


def test_model_exposure_agrees_with_nca_on_rich_profiles(small_fit, draws):
    """With about 12 samples per subject (some BLQ) NCA and the model measure the same curve:
    the median ratio sits within 15 % (NCA's linear-up misses some of the rise; its Cmax is a
    noisy sample (residual SD 0.4 on the log scale), the model's the noise-free peak)."""
    cmp = compare_with_nca(small_fit, draws)
    rich = cmp[cmp["RICH"]]
    assert rich["ID"].nunique() >= 20
    for metric in ("AUC0_28", "AUC0_84", "CMAX"):
        ratio = rich.loc[rich["METRIC"] == metric, "RATIO"].median()
        assert 0.85 < ratio < 1.15, (metric, ratio)


def test_exposure_table_intervals(draws):
    tab = exposure_table(draws, level=0.9)
    assert list(tab.columns) == ["ID", "ANALYTE", "METRIC", "UNIT", "MEDIAN", "LOWER", "UPPER"]
    assert len(tab) == 24 * len(metric_names())
    assert (tab["LOWER"] <= tab["MEDIAN"]).all() and (tab["MEDIAN"] <= tab["UPPER"]).all()
    one = draws["PB_QPCR_CMAX"].sel(subject="S00002").values.ravel()
    row = tab[(tab["ID"] == "S00002") & (tab["METRIC"] == "CMAX")].iloc[0]
    assert row["LOWER"] == pytest.approx(np.quantile(one, 0.05))
    assert row["MEDIAN"] == pytest.approx(np.median(one))


def test_exposure_command(small_fit_file, tmp_path):
    out, nc, cmp = tmp_path / "exp.csv", tmp_path / "exp.nc", tmp_path / "cmp.csv"
    res = runner.invoke(app, ["exposure", str(small_fit_file), "-o", str(out), "--nc", str(nc),
                              "--metric", "CMAX", "--metric", "AUC0_28", "--n-draws", "20",
                              "--compare-nca", str(cmp)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert set(table["METRIC"]) == {"CMAX", "AUC0_28"} and table["ID"].nunique() == 24
    assert nc.stat().st_size > 0 and {"MODEL", "NCA", "RATIO"} <= set(pd.read_csv(cmp).columns)
    for args, words in ((["--metric", "AUC0_7"], "option --metric: AUC0_7"),
                        (["--analyte", "BM_QPCR"], "option --analyte: BM_QPCR: not an output"),
                        (["--level", "95"], "option --level"),
                        (["--nc", str(tmp_path / "d.csv")], "option --nc")):
        bad = tmp_path / "bad.csv"
        res = runner.invoke(app, ["exposure", str(small_fit_file), "-o", str(bad), *args])
        assert res.exit_code == 2 and words in " ".join(res.output.split()), res.output
        assert not bad.exists()
