"""The samplers behind ``fit(sampler=...)``, each run through one :class:`Sampler`.

A :class:`Sampler` holds a built PyMC model and its settings; calling it with draws and tuning
steps returns InferenceData. nutpie's compiled log density is made once per sampler and
reused when a run is extended (``fit(until_converged=...)``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ckmodel._arviz import az

__all__ = ["Sampler", "SAMPLERS", "FUSED_SAMPLERS", "MCMC_SAMPLERS"]

#: Samplers behind ``fit(sampler=...)``.
SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax", "pathfinder", "advi", "map")
#: Samplers that run on the fused closed-form likelihood (numba/C; the JAX ones use the
#: pointwise graph, which lowers to JAX).
FUSED_SAMPLERS = ("nutpie", "pymc", "advi", "map")
#: Samplers whose draws are Markov chains (judged by R-hat, ESS, divergences).
MCMC_SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")


@dataclass
class Sampler:
    """One sampler on one model: ``Sampler(model, "nutpie", ...)(draws=500, tune=500)``.

    Parameters
    ----------
    model : pymc.Model
        The model to sample.
    sampler : str
        One of :data:`SAMPLERS`.
    chains, seed, target_accept, progressbar, cores, low_rank
        As in :func:`ckmodel.fitting.fit`.
    """

    model: Any
    sampler: str
    chains: int
    seed: int
    target_accept: float
    progressbar: bool
    cores: int | None = None
    low_rank: bool = False
    _compiled: Any = field(default=None, repr=False)

    def compile(self) -> None:
        """Compile nutpie's log density now (otherwise on the first run)."""
        if self.sampler == "nutpie" and self._compiled is None:
            from ckmodel.fitting.nutpie_compile import compile_nutpie

            self._compiled = compile_nutpie(self.model)

    def set_data(self, name: str, value: np.ndarray) -> None:
        """Give the model's data container ``name`` a new value (nothing is recompiled)."""
        import pymc as pm

        if self._compiled is not None:
            self._compiled = self._compiled.with_data(**{name: value})
        with self.model:
            pm.set_data({name: value})

    def start(self, *, draws: int, tune: int, seed: int) -> Any:
        """Start nutpie in the background, every chain at once; returns its sampler.

        All chains run side by side (one thread each, even on fewer cores: on 2 cores
        4 threads finished 4 x (500 + 1,350) draws in 20 s against 32 s), so that a
        trace inspected mid-run holds the same number of draws in every chain, and the
        first ``n`` draws of a chain are the same whenever the run is stopped.
        """
        import nutpie

        if self.sampler != "nutpie":
            raise ValueError("only nutpie samples in the background")
        self.compile()
        return nutpie.sample(self._compiled, draws=draws, tune=tune, chains=self.chains,
                             seed=seed, cores=self.chains, progress_bar=self.progressbar,
                             save_warmup=False, target_accept=self.target_accept,
                             low_rank_modified_mass_matrix=self.low_rank, blocking=False)

    def __call__(self, *, draws: int, tune: int, seed: int | None = None) -> Any:
        """Run the sampler; ``seed`` overrides the default seed (an extended run's own)."""
        import pymc as pm

        model, sampler, chains = self.model, self.sampler, self.chains
        seed = self.seed if seed is None else seed
        target_accept, progressbar, cores = self.target_accept, self.progressbar, self.cores
        low_rank = self.low_rank
        if sampler == "nutpie":
            import nutpie

            self.compile()
            compiled = self._compiled
            return nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed,
                                 cores=cores, progress_bar=progressbar, save_warmup=False,
                                 target_accept=target_accept,
                                 low_rank_modified_mass_matrix=low_rank)
        with model:
            if sampler == "pymc":
                with warnings.catch_warnings():
                    # early mass-matrix adaptation can overflow harmlessly inside PyMC
                    warnings.filterwarnings("ignore", category=RuntimeWarning,
                                            module="pymc.step_methods")
                    return pm.sample(draws=draws, tune=tune, chains=chains, cores=cores,
                                     random_seed=seed, target_accept=target_accept,
                                     progressbar=progressbar, compute_convergence_checks=False)
            if sampler in ("numpyro", "blackjax"):
                try:
                    import jax  # noqa: F401
                except ImportError:
                    raise ImportError(f"sampler='{sampler}' needs JAX: pip install "
                                      "'ckmodel[jax]'") from None
                from ckmodel.population.jax_support import register_jax_softplus

                register_jax_softplus()
                method = "sequential" if sampler == "numpyro" else "vectorized"
                kw = dict(draws=draws, tune=tune, chains=chains, random_seed=seed,
                          nuts_sampler=sampler, target_accept=target_accept,
                          progressbar=progressbar, compute_convergence_checks=False,
                          nuts_sampler_kwargs={"chain_method": method})
                if sampler == "numpyro":
                    return pm.sample(**kw)
                from ckmodel.fitting.blackjax_nuts import blackjax_sampler

                with blackjax_sampler():
                    return pm.sample(**kw)
            if sampler == "pathfinder":
                from ckmodel.fitting.pathfinder import sample_pathfinder

                return sample_pathfinder(model, draws=draws, chains=chains, seed=seed)
            if sampler == "advi":
                approx = pm.fit(n=max(10 * tune, 5000), method="advi", random_seed=seed,
                                progressbar=progressbar)
                return approx.sample(draws * chains, random_seed=seed)
            if sampler == "map":
                point = pm.find_MAP(progressbar=progressbar, seed=seed)
                post = {k: np.asarray(v)[None, None, ...] for k, v in point.items()
                        if k in {v.name for v in model.unobserved_value_vars}}
                return az.from_dict(posterior=post, dims=_dims(model), coords=_coords(model))
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")


def _dims(model: Any) -> dict[str, list[str]]:
    return {k: list(v) for k, v in model.named_vars_to_dims.items()}


def _coords(model: Any) -> dict[str, Any]:
    return {k: list(v) for k, v in model.coords.items() if v is not None}
