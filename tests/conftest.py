"""Shared fixtures: small real fits, made once per test session."""

from __future__ import annotations

import warnings

import pytest

from ckmodel.errors import ConvergenceWarning


@pytest.fixture(scope="session")
def sim_data():
    """24 subjects simulated from expansion_biphasic (two dose levels), with known truth."""
    from ckmodel.testing import simulate_ckdata

    return simulate_ckdata("expansion_biphasic", n=12, dose=[1.0, 3.0], seed=5,
                           sigma={"PB_QPCR": 0.4})


@pytest.fixture(scope="session")
def small_fit(sim_data):
    """A real nutpie fit of the simulated data (2 chains x 400 draws, seeded)."""
    from ckmodel.fitting import fit

    data, _ = sim_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit(data, "expansion_biphasic", draws=400, tune=400, chains=2, seed=2,
                   progressbar=False)


@pytest.fixture(scope="session")
def small_fit_file(small_fit, tmp_path_factory):
    """The session's small fit saved to NetCDF."""
    path = tmp_path_factory.mktemp("fits") / "small.nc"
    small_fit.save(path)
    return path
