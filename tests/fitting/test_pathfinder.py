"""Multi-path Pathfinder (blackjax) behind ``fit(sampler="pathfinder")``."""

from __future__ import annotations

import numpy as np
import pytest

from ckmodel.errors import ConvergenceWarning

pytest.importorskip("blackjax")

CHAINS, DRAWS, SEED = 2, 200, 1


@pytest.fixture(scope="module")
def pathfinder_fit(sim_data):
    from ckmodel.fitting import fit

    data, _ = sim_data
    # Pathfinder's Gaussians are far from this 157-dimensional hierarchical posterior (k-hat
    # ~4-6), so the k-hat warning is expected; checked to be raised, not silenced.
    with pytest.warns(ConvergenceWarning, match="k-hat"):
        return fit(data, "expansion_biphasic", sampler="pathfinder", chains=CHAINS,
                   draws=DRAWS, seed=SEED, progressbar=False)


def test_pathfinder_fit_shapes_and_groups(pathfinder_fit, sim_data):
    data, _ = sim_data
    post = pathfinder_fit.posterior
    assert post.sizes["chain"] == CHAINS and post.sizes["draw"] == DRAWS
    assert post["rho_pop"].shape == (CHAINS, DRAWS)
    assert post["theta"].dims == ("chain", "draw", "subject", "parameter")
    assert list(post["theta"].subject.values) == list(data.subjects)
    # natural scale only, Deterministics included, as pm.sample gives
    assert not [v for v in post.data_vars if str(v).endswith("__")]
    assert {"log_rho", "z", "omega_rho", "sigma_PB_QPCR", "eta"} <= set(post.data_vars)
    idata = pathfinder_fit.idata
    assert not hasattr(idata, "sample_stats")
    assert idata.posterior_predictive["y_PB_QPCR"].shape[:2] == (CHAINS, DRAWS)
    assert np.isfinite(idata.log_likelihood["y_PB_QPCR"].values).all()
    khat = post.attrs["pathfinder_khat"]
    assert np.isfinite(khat) and pathfinder_fit.meta["pathfinder_khat"] == khat
    assert pathfinder_fit.meta["sampler"] == "pathfinder"
    assert "convergence" not in pathfinder_fit.meta


def test_pathfinder_fit_save_load(pathfinder_fit, sim_data, tmp_path):
    from ckmodel.fitting import load_fit

    data, _ = sim_data
    back = load_fit(pathfinder_fit.save(tmp_path / "fit.nc"), data=data)
    np.testing.assert_array_equal(back.posterior["rho_pop"].values,
                                  pathfinder_fit.posterior["rho_pop"].values)
    assert back.posterior.attrs["pathfinder_khat"] == pathfinder_fit.meta["pathfinder_khat"]
    assert back.meta["sampler"] == "pathfinder"


def test_pathfinder_typical_values_near_truth(pathfinder_fit, sim_data):
    """Posterior means of the typical values near the simulation truth.

    Tolerances are generous on purpose: with k-hat far above 0.7 the resampled posterior
    rests on 2-6 distinct draws near the posterior mode, not on the posterior. Over seeds 1-8
    (2 paths x 200 draws) the means divided by the realised typical values (geometric means
    of the 24 simulated subjects) were 0.81-1.21 for rho, 0.94-1.08 for tmax, 0.86-1.05 for
    alpha and 0.37-1.99 for f0 (weakly identified: prior SD 1.5 and IIV on the log scale);
    sigma 0.36-0.74 (truth 0.4). The bounds add some margin to those ranges.
    """
    _, truth = sim_data
    realised = np.exp(np.log(truth["params"]).mean())
    post = pathfinder_fit.posterior
    for p, lo, hi in (("rho", 0.7, 1.35), ("tmax", 0.85, 1.2), ("alpha", 0.75, 1.2),
                      ("f0", 0.25, 3.0)):
        ratio = float(post[f"{p}_pop"].mean()) / realised[p]
        assert lo < ratio < hi, (p, ratio)
    sigma = float(post["sigma_PB_QPCR"].mean())
    assert 0.25 < sigma < 0.9, sigma


def test_pathfinder_seeded(pathfinder_fit, sim_data):
    """The same seed gives identical draws, another seed differs (compiled once, reused)."""
    from ckmodel.fitting import fit, pathfinder

    data, _ = sim_data
    compiled = pathfinder._LAST[0]
    kwargs = dict(sampler="pathfinder", chains=CHAINS, draws=DRAWS, progressbar=False,
                  posterior_predictive=False, log_likelihood=False)
    with pytest.warns(ConvergenceWarning, match="k-hat"):  # expected: see pathfinder_fit
        same = fit(data, "expansion_biphasic", seed=SEED, **kwargs).posterior
    with pytest.warns(ConvergenceWarning, match="k-hat"):
        other = fit(data, "expansion_biphasic", seed=SEED + 1, **kwargs).posterior
    assert pathfinder._LAST[0] is compiled  # the rebuilt model is identical: no recompile
    for v in ("rho_pop", "z", "sigma_PB_QPCR", "theta"):
        np.testing.assert_array_equal(same[v].values, pathfinder_fit.posterior[v].values)
    assert same.attrs["pathfinder_khat"] == pathfinder_fit.posterior.attrs["pathfinder_khat"]
    assert not np.allclose(other["rho_pop"].values, same["rho_pop"].values)


def test_pathfinder_reuse_needs_identical_model(pathfinder_fit, sim_data):
    from ckmodel.fitting import pathfinder
    from ckmodel.population import build_model, prepare
    from ckmodel.spec import load_model
    from ckmodel.testing import simulate_ckdata

    data, _ = sim_data
    spec = load_model("expansion_biphasic")
    compiled = pathfinder._LAST[0]
    settings = dict(compiled.settings)
    assert compiled.matches(build_model(spec, prepare(data, spec)), settings)
    other_data, _ = simulate_ckdata("expansion_biphasic", n=12, dose=[1.0, 3.0], seed=6,
                                    sigma={"PB_QPCR": 0.4})
    assert not compiled.matches(build_model(spec, prepare(other_data, spec)), settings)
    assert not compiled.matches(build_model(spec, prepare(data, spec)),
                                {**settings, "maxcor": 5})


def test_pathfinder_needs_jax_extra(monkeypatch):
    import sys

    from ckmodel.fitting import pathfinder

    monkeypatch.setitem(sys.modules, "blackjax", None)
    with pytest.raises(ImportError, match=r"pip install 'ckmodel\[jax\]'"):
        pathfinder.Pathfinder(object())
