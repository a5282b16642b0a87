"""NUTS through blackjax for ``fit(sampler="blackjax")``.

PyMC 5.28's blackjax driver forwards its ``progress_bar`` option into
``blackjax.window_adaptation``, which blackjax 1.7 passes on to the NUTS kernel, so every run
fails with ``kernel() got an unexpected keyword argument 'progress_bar'``. This module supplies
the sampling loop (Stan-style window adaptation of step size and diagonal mass matrix over
``tune`` steps, then ``draws`` NUTS transitions per chain, chains vectorised with ``jax.vmap``)
and lets PyMC's ``sample_jax_nuts`` do the rest unchanged (JAX log density, jittered initial
points, transforming draws back to every model variable, InferenceData).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

__all__ = ["blackjax_sampler"]


def _run(model: Any, target_accept: float, tune: int, draws: int, chains: int,
         chain_method: str, progressbar: bool, random_seed: int, initial_points: Any,
         nuts_kwargs: dict[str, Any], logp_fn: Any = None) -> tuple[Any, dict[str, Any], Any]:
    """Same signature and return value as PyMC's ``_sample_blackjax_nuts``."""
    import blackjax
    import jax
    import numpy as np
    from blackjax.adaptation.base import get_filter_adapt_info_fn
    from pymc.sampling.jax import get_jaxified_logp

    if logp_fn is None:
        logp_fn = get_jaxified_logp(model)
    if chains == 1:
        initial_points = [np.stack([x]) for x in initial_points]
    kwargs = {k: v for k, v in nuts_kwargs.items() if k not in ("progress_bar", "chain_method")}

    def one_chain(key: Any, init: Any) -> tuple[Any, dict[str, Any]]:
        k_adapt, k_draw = jax.random.split(key)
        adapt = blackjax.window_adaptation(blackjax.nuts, logp_fn,
                                           target_acceptance_rate=target_accept,
                                           adaptation_info_fn=get_filter_adapt_info_fn(),
                                           **kwargs)
        (state, params), _ = adapt.run(k_adapt, init, num_steps=tune)
        step = blackjax.nuts(logp_fn, **params).step

        def transition(st: Any, k: Any) -> tuple[Any, tuple[Any, dict[str, Any]]]:
            st, info = step(k, st)
            return st, (st.position, {
                "diverging": info.is_divergent, "energy": info.energy,
                "tree_depth": info.num_trajectory_expansions,
                "n_steps": info.num_integration_steps,
                "acceptance_rate": info.acceptance_rate, "lp": st.logdensity})

        _, (samples, stats) = jax.lax.scan(transition, state, jax.random.split(k_draw, draws))
        return samples, stats

    keys = jax.random.split(jax.random.PRNGKey(random_seed), chains)
    samples, stats = jax.jit(jax.vmap(one_chain))(keys, initial_points)
    return samples, stats, blackjax


@contextmanager
def blackjax_sampler() -> Any:
    """Within the block, PyMC's blackjax NUTS driver is this module's loop."""
    import pymc.sampling.jax as pmjax

    original = pmjax._sample_blackjax_nuts
    pmjax._sample_blackjax_nuts = _run
    try:
        yield
    finally:
        pmjax._sample_blackjax_nuts = original
