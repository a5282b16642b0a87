"""Fixtures of the diagnostics tests: a second, wrong fit of the same data, saved fits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ckmodel.errors import ConvergenceWarning


@pytest.fixture(scope="session")
def wrong_fit(sim_data):
    """The same data fitted with the fast decline fixed 4x too slow (alpha = 0.04 /day)."""
    from ckmodel.fitting import fit
    from ckmodel.population.model import PopulationOptions

    data, _ = sim_data
    # a deliberately wrong model in one short run (not sampled on until converged): its
    # misfit, not its sampling, is what the tests that use it detect; the convergence warning
    # it gets (R-hat 1.09, ESS 19) is expected and checked, not silenced
    with pytest.warns(ConvergenceWarning, match="R-hat"):
        return fit(data, "expansion_biphasic", draws=200, tune=300, chains=2, seed=3,
                   progressbar=False, options=PopulationOptions(fixed={"alpha": 0.04}),
                   until_converged=0)


def with_observations(fit, data):
    """A copy of ``fit`` whose observed records are those of ``data`` (same design)."""
    from ckmodel.diagnostics import fit_records

    idata = fit.idata.copy()
    rec = fit_records(fit)
    obs = data.observations.set_index("ROW")
    for a in rec["ANALYTE"].unique():
        rows = rec.loc[rec["ANALYTE"] == a, "ROW"].to_numpy()
        new = obs.loc[rows]
        blq = new["BLQ"].to_numpy(int) == 1
        y = np.where(blq, new["LLOQ"].to_numpy(float), new["DV"].to_numpy(float))
        idata.observed_data[f"y_{a}"].values[:] = y
        idata.constant_data[f"blq_{a}"].values[:] = blq.astype(np.int8)
    return dataclasses.replace(fit, idata=idata, data=data)


@pytest.fixture(scope="session")
def other_model_fit(small_fit):
    """small_fit facing data from a different model: peak at day 4 (not 9.3), decline at
    0.03/day (not 0.16)."""
    from ckmodel.testing import simulate_ckdata

    data, _ = simulate_ckdata("expansion_biphasic", n=12, dose=[1.0, 3.0], seed=5,
                              sigma={"PB_QPCR": 0.4},
                              typical={"tmax": 4.0, "alpha": 0.03})
    return with_observations(small_fit, data)
