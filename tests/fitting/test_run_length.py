"""Run length that adapts (fit(until_converged=...)) and IIV SDs that hug zero."""

from __future__ import annotations

import numpy as np

from ckmodel._arviz import az
from ckmodel.fitting import run_length as run_module
from ckmodel.fitting.convergence import check_convergence, weak_iiv


def _idata(rng, *, chains=4, draws=500, spread=0.0, omega=None):
    """Posterior draws whose chains are offset by ``spread`` SDs (0: converged)."""
    x = rng.standard_normal((chains, draws)) + spread * np.arange(chains)[:, None]
    post = {"mu": x}
    if omega is not None:
        post["omega"] = omega
    return az.from_dict(posterior=post, dims={"omega": ["iiv"]},
                        coords={"iiv": ["rho", "tmax"]})


def test_weak_iiv_flags_a_posterior_piled_at_zero():
    rng = np.random.default_rng(1)
    hugging = np.abs(rng.normal(0, 0.05, (4, 500)))               # half-normal: piles at 0
    informed = rng.lognormal(np.log(0.3), 0.15, (4, 500))         # well identified
    idata = _idata(rng, omega=np.stack([hugging, informed], axis=-1))
    flagged = weak_iiv(idata)
    assert [w["parameter"] for w in flagged] == ["rho"]
    w = flagged[0]
    assert w["lower"] < 0.1 * w["median"] < w["upper"]
    assert "hugs zero" in w["advice"] and "longer will not help" in w["advice"]
    assert check_convergence(idata, warn=False)["weak_iiv"] == flagged


class _Chains:
    """Stand-in sampler: chains that disagree until the run has ``good_at`` draws."""

    sampler, target_accept = "pymc", 0.9

    def __init__(self, good_at: int) -> None:
        self.good_at, self.calls = good_at, []

    def __call__(self, *, draws: int, tune: int, seed: int):
        self.calls.append((draws, tune, seed))
        rng = np.random.default_rng(seed)
        return _idata(rng, draws=draws, spread=0.0 if draws >= self.good_at else 3.0)


def test_run_until_lengthens_the_run_until_converged():
    # chains 3 SDs apart: R-hat far above 1.05, so draws x 4 (the cap) and warm-up x 2
    sampler = _Chains(good_at=1600)
    idata, attempts = run_module.run_until(sampler, draws=100, tune=50, seed=7, budget=60)
    assert sampler.calls == [(100, 50, 7), (400, 100, 8), (1600, 200, 9)]
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert idata.posterior.sizes["draw"] == 1600


def test_next_run_length_follows_the_shortfall():
    # ESS 200 of 400: 1.25 x 2 = 2.5x the draws; no divergences, so the same warm-up
    assert run_module.next_run_length({"min_ess_bulk": 200.0, "max_rhat": 1.005,
                                       "divergences": 0}, 500, 500) == (1250, 500)
    # R-hat 1.03 asks for 3x; a divergence doubles the warm-up
    assert run_module.next_run_length({"min_ess_bulk": 390.0, "max_rhat": 1.03,
                                       "divergences": 1}, 500, 500) == (1500, 1000)
    # a near miss still grows by 1.5x; a hopeless one by 4x at most, and warm-up doubles
    assert run_module.next_run_length({"min_ess_bulk": 399.0, "max_rhat": 1.0,
                                       "divergences": 0}, 500, 500) == (750, 500)
    assert run_module.next_run_length({"min_ess_bulk": 5.0, "max_rhat": 1.5,
                                       "divergences": 0}, 500, 500) == (2000, 1000)


def test_a_stream_checks_again_nearer_the_shortfall():
    # ESS 262 of 400: 1.1 x 400 / 262 = 1.68x -> 840 -> 850 (a new run: 1.25x -> 1,000)
    v = {"min_ess_bulk": 262.0, "max_rhat": 1.008, "divergences": 0}
    assert run_module.next_checkpoint(v, 500) == 850
    assert run_module.next_run_length(v, 500, 500) == (1000, 500)
    # a near miss grows by 1.2x (a new run: 1.5x); R-hat 1.03 still asks for 3x
    assert run_module.next_checkpoint({"min_ess_bulk": 399.0, "max_rhat": 1.0}, 500) == 600
    assert run_module.next_checkpoint({"min_ess_bulk": 390.0, "max_rhat": 1.03}, 500) == 1500
    # and never more than 4x
    assert run_module.next_checkpoint({"min_ess_bulk": 5.0, "max_rhat": 1.5}, 500) == 2000


def test_run_until_stops_at_the_budget_and_keeps_the_last_run():
    sampler = _Chains(good_at=10**9)
    idata, attempts = run_module.run_until(sampler, draws=100, tune=50, seed=1, budget=1e-9)
    assert len(attempts) == 1 and attempts[0]["ok"] is False
    assert idata.posterior.sizes["draw"] == 100


def test_without_a_budget_there_is_one_run():
    sampler = _Chains(good_at=10**9)
    _, attempts = run_module.run_until(sampler, draws=100, tune=50, seed=1, budget=None)
    assert len(attempts) == 1 and "ok" not in attempts[0]


class _Diverging(_Chains):
    """Stand-in sampler whose first run diverges; later runs are clean and converged."""

    def __call__(self, *, draws: int, tune: int, seed: int):
        self.calls.append((draws, tune, seed, self.target_accept))
        rng = np.random.default_rng(seed)
        idata = _idata(rng, draws=draws)
        div = np.zeros((4, draws), bool)
        if len(self.calls) == 1:
            div[:, :3] = True
        idata.add_groups(sample_stats={"diverging": div})
        return idata


def test_after_divergences_the_run_starts_again_with_more_warmup_and_smaller_steps():
    sampler = _Diverging(good_at=0)
    idata, attempts = run_module.run_until(sampler, draws=200, tune=100, seed=3, budget=60)
    # same draws (more would not mend divergences), twice the warm-up, target 0.9 -> 0.95
    assert sampler.calls == [(200, 100, 3, 0.9), (200, 200, 4, 0.95)]
    assert [a["ok"] for a in attempts] == [False, True]
    assert attempts[0]["divergences"] == 12 and attempts[1]["target_accept"] == 0.95


class _LowBfmi(_Chains):
    """Stand-in sampler: converged chains whose energy wanders (E-BFMI far below 0.3)."""

    def __call__(self, *, draws: int, tune: int, seed: int):
        self.calls.append((draws, tune, seed))
        rng = np.random.default_rng(seed)
        idata = _idata(rng, draws=draws)
        energy = np.cumsum(rng.standard_normal((4, draws)), axis=1)   # a random walk
        idata.add_groups(sample_stats={"energy": energy})
        return idata


def test_a_low_bfmi_alone_does_not_run_on():
    # R-hat and ESS pass: more draws would not raise E-BFMI, so one run, and the verdict
    # keeps the failed check for the user
    sampler = _LowBfmi(good_at=0)
    _, attempts = run_module.run_until(sampler, draws=500, tune=100, seed=2, budget=600)
    assert sampler.calls == [(500, 100, 2)]
    assert attempts[0]["ok"] is False
    verdict = check_convergence(_LowBfmi(good_at=0)(draws=500, tune=100, seed=2), warn=False)
    assert verdict["min_bfmi"] < 0.3 and not verdict["flagged"]


def test_a_streamed_fit_keeps_exactly_the_first_draws_of_a_plain_run():
    """Stopping a run at a checkpoint keeps the draws a plain run of that length gives.

    The streamed fit runs every chain in its own thread, planned 8x longer, and is read while
    it runs; the plain one runs on the default cores for exactly the kept number of draws.
    Same seed: the same posterior, to the last digit.
    """
    from ckmodel.fitting import fit
    from ckmodel.testing import simulate_ckdata

    data, _ = simulate_ckdata("expansion_biphasic", n=8, dose=[1.0, 3.0], seed=21)
    kw = dict(tune=300, chains=2, seed=5, progressbar=False, posterior_predictive=False,
              log_likelihood=False)
    streamed = fit(data, "expansion_biphasic", draws=300, until_converged=300, **kw)
    kept = streamed.meta["draws"]
    assert streamed.meta["attempts"][-1]["checked_at"][-1] == kept
    plain = fit(data, "expansion_biphasic", draws=kept, until_converged=0, **kw)
    for var in ("log_rho", "omega", "sigma_PB_QPCR", "z"):
        np.testing.assert_array_equal(streamed.posterior[var].values,
                                      plain.posterior[var].values)


def test_the_stream_counts_draws_from_nutpies_raw_trace(sim_data):
    """The cheap poll sees the draws a finished run holds (not None: the raw view exists)."""
    import time

    from ckmodel.fitting.samplers import Sampler
    from ckmodel.population.model import build_model
    from ckmodel.population.prepare import prepare
    from ckmodel.spec import load_model

    data, _ = sim_data
    spec = load_model("expansion_biphasic")
    model = build_model(spec, prepare(data, spec), fused=True)
    run = Sampler(model, "nutpie", chains=2, seed=3, target_accept=0.9, progressbar=False)
    bg = run.start(draws=60, tune=40, seed=3)
    while not run_module._finished(bg):
        time.sleep(0.1)
    assert run_module._draws_done(bg) == 60
    assert run_module._complete_draws(run_module._inspect(bg)) == 60
    bg.cancel()
