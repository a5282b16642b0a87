"""Shared fixtures: small real fits, made once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sim_data():
    """24 subjects simulated from expansion_biphasic (two dose levels), with known truth."""
    from ckmodel.testing import simulate_ckdata

    return simulate_ckdata("expansion_biphasic", n=12, dose=[1.0, 3.0], seed=5,
                           sigma={"PB_QPCR": 0.4})


@pytest.fixture(scope="session")
def small_fit(sim_data):
    """A real nutpie fit of the simulated data (4 chains x (1000 + 1000), seeded), converged:
    tests that compare with it or recover from it rest on a posterior that passed its
    checks (R-hat <= 1.01, bulk ESS >= 400, no divergences; a ConvergenceWarning fails)."""
    from ckmodel.fitting import fit

    data, _ = sim_data
    res = fit(data, "expansion_biphasic", draws=1000, tune=1000, chains=4, seed=2,
              progressbar=False)
    assert res.meta["convergence"]["ok"], res.meta["convergence"]["problems"]
    return res


@pytest.fixture(scope="session")
def small_fit_file(small_fit, tmp_path_factory):
    """The session's small fit saved to NetCDF."""
    path = tmp_path_factory.mktemp("fits") / "small.nc"
    small_fit.save(path)
    return path
