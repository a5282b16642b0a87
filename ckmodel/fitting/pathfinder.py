"""Multi-path Pathfinder (Zhang et al. 2022) for a PyMC model, through blackjax on JAX.

``sample_pathfinder(model, draws=..., chains=..., seed=...)`` returns an ArviZ
``InferenceData`` whose ``posterior`` has the same variables, dims and coords as
``pm.sample`` would give (natural scale, Deterministics included), so ``ckmodel.fit`` can
treat it like any other sampler's output. :class:`Pathfinder` compiles once for a model and
can then be called with several seeds.

What is done, exactly:

1. The model's log density on the unconstrained scale (Jacobian terms included) is compiled
   to JAX (:func:`pymc.sampling.jax.get_jaxified_graph`, as PyMC's JAX samplers do), with
   PyTensor's symbolic gradient (the one nutpie and PyMC's NUTS use) attached as its
   derivative through ``jax.custom_vjp``. JAX's own derivative of the lowered graph is not
   used: PyTensor rewrites the stable ``log1p(exp(-|x|))`` of the models' softplus back into
   its ``Softplus`` op, whose stock JAX translation differentiates an overflowing
   ``x + exp(-x)`` branch and gives NaN gradients once ``|t - tmax| / w`` exceeds ~700
   (records ~6 months after the peak in ``expansion_biphasic``).
   :func:`ckmodel.population.jax_support.register_jax_softplus` patches that op for the NUTS
   samplers; the symbolic gradient needs no patch.
2. ``chains`` independent single-path Pathfinder runs (Algorithm 1 of the paper, built from
   blackjax's L-BFGS and BFGS-sampling functions, see :func:`_path_functions`: L-BFGS from a
   start point, then the Gaussian approximation at the point of the optimisation path with
   the highest ELBO) start from the model's initial point plus Uniform(-jitter, jitter)
   noise on every unconstrained coordinate (redrawn, up to 10 times, where the log density
   or its gradient is not finite). Each run draws ``draws`` points from its Gaussian, with
   their log density ``log q`` under that path's approximation.
3. The ``chains * draws`` pooled draws get importance log weights ``log p - log q`` (each
   draw's ``q`` is the approximation of the path it came from, as in the Pathfinder paper;
   draws with a non-finite weight get weight 0). The finite ones are Pareto-smoothed
   (:func:`arviz.psislw`, PSIS; Vehtari et al. 2024, relative efficiency 1). Its shape
   estimate k-hat says how far the approximations are from the posterior: above 0.7 the
   weights cannot be trusted and a :class:`~ckmodel.errors.ConvergenceWarning` is raised.
4. ``chains * draws`` draws are resampled *with replacement* from the pool with the
   smoothed weights and laid out as ``(chain, draw)`` in the order drawn. The ``chain``
   axis is a layout, not independent Markov chains: R-hat and ESS computed from it are no
   diagnostic of Pathfinder, and a draw may appear many times (with a large k-hat, a few
   draws take nearly all the weight).

All randomness (jitter, Pathfinder's ELBO and approximation draws, resampling) comes from
``jax.random`` keys split from ``jax.random.key(seed)``, so a seed gives identical draws.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ckmodel._arviz import az
from ckmodel.errors import ConvergenceWarning

__all__ = ["Pathfinder", "sample_pathfinder", "KHAT_MAX"]

log = logging.getLogger(__name__)

#: Pareto k-hat above which the importance-resampled Pathfinder posterior is unreliable.
KHAT_MAX = 0.7

_JITTER_TRIES = 10


def _require_jax() -> tuple[Any, Any]:
    try:
        import blackjax
        import jax
    except ImportError:
        raise ImportError("sampler='pathfinder' needs JAX and blackjax: pip install "
                          "'ckmodel[jax]'") from None
    return jax, blackjax


def _path_functions(jax: Any, logp: Callable[[Any], Any], *, draws: int, maxiter: int,
                    maxcor: int, num_elbo_draws: int, ftol: float,
                    gtol: float) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Single-path Pathfinder as two JAX functions: fit the path, draw from its best Gaussian.

    ``fit_path(key, start) -> (approx, n_iter, elbo)``: L-BFGS on ``-logp`` from ``start``,
    shape (d,) (:func:`blackjax.optimizers.lbfgs.minimize_lbfgs`), then at every point
    ``1..n_iter`` of the path the Gaussian whose covariance H is L-BFGS's inverse-Hessian
    estimate there (its diagonal plus the updates of the last ``maxcor`` steps, rejected ones
    left out; blackjax's ``lbfgs_inverse_hessian_factors``) and whose mean is
    ``x + H grad log p(x)``, scored by a ``num_elbo_draws``-draw ELBO; ``approx`` holds the
    best one's ``(x, grad log p, alpha, beta, gamma)``.
    ``draw_path(key, approx) -> (phi, log q, log p)``: ``draws`` draws from it, shapes
    (draws, d), (draws,), (draws,) (blackjax's ``bfgs_sample``).

    This is Algorithm 1 of Zhang et al. (2022), as :func:`blackjax.vi.pathfinder.approximate`
    does it, with two differences. The mean uses ``grad log p`` as in the paper's Algorithm 4
    (``approximate`` passes the gradient of ``-log p``, shifting each mean away from the
    mode). And every batched LU (inside the factors) is finished before any batched QR (inside
    the sampler) starts: jaxlib 0.10's CPU LAPACK kernels split a batch over XLA's intra-op
    pool and block until it is done, so as many such kernels at once as the pool has threads
    wait on each other for ever. ``approximate`` runs an LU and a QR side by side and hung in
    most runs on 2 cores.
    """
    import jax.numpy as jnp
    from blackjax.optimizers.lbfgs import (
        bfgs_sample,
        lbfgs_inverse_hessian_factors,
        minimize_lbfgs,
    )

    def fit_path(key: Any, start: Any) -> tuple[tuple[Any, ...], Any, Any]:
        last, hist = minimize_lbfgs(lambda x: -logp(x), start, maxiter=maxiter, maxcor=maxcor,
                                    gtol=gtol, ftol=ftol)
        n_iter = last.state.iter_num          # hist.x[1..n_iter] are the points reached
        accepted = hist.update_mask[1:]
        pad = ((maxcor, 0), (0, 0))
        s = jnp.pad(jnp.where(accepted, jnp.diff(hist.x, axis=0), 0.0), pad)
        z = jnp.pad(jnp.where(accepted, jnp.diff(hist.g, axis=0), 0.0), pad)

        def factors(i: Any, alpha: Any) -> tuple[Any, Any]:
            # updates of the maxcor steps that led to point i, shape (d, maxcor); zero columns
            # for rejected steps and before the start
            window_s = jax.lax.dynamic_slice_in_dim(s, i, maxcor).T
            window_z = jax.lax.dynamic_slice_in_dim(z, i, maxcor).T
            return lbfgs_inverse_hessian_factors(window_s, window_z, alpha)

        points = jnp.arange(maxiter + 1)
        beta, gamma = jax.vmap(factors)(points, hist.alpha)
        # points with non-finite factors get NaN draws (so no ELBO); this also makes every
        # QR below wait for every LU above (XLA drops an optimization_barrier here)
        finite = jnp.all(jnp.isfinite(gamma), axis=(1, 2))
        beta = jnp.where(finite[:, None, None], beta, jnp.nan)
        grad_logp = -hist.g

        def elbo(k: Any, x: Any, g: Any, alpha: Any, b: Any, c: Any) -> Any:
            phi, logq = bfgs_sample(k, num_elbo_draws, x, g, alpha, b, c)
            return jnp.mean(jax.vmap(logp)(phi) - logq)

        elbos = jax.vmap(elbo)(jax.random.split(key, maxiter + 1), hist.x, grad_logp,
                               hist.alpha, beta, gamma)
        elbos = jnp.where((points >= 1) & (points <= n_iter) & jnp.isfinite(elbos), elbos,
                          -jnp.inf)
        best = jnp.argmax(elbos)
        approx = (hist.x[best], grad_logp[best], hist.alpha[best], beta[best], gamma[best])
        return approx, n_iter, elbos[best]

    def draw_path(key: Any, approx: tuple[Any, ...]) -> tuple[Any, Any, Any]:
        phi, logq = bfgs_sample(key, draws, *approx)
        return phi, logq, jax.vmap(logp)(phi)

    return fit_path, draw_path


class Pathfinder:
    """Multi-path Pathfinder of one PyMC model, compiled once; call it with a seed.

    Parameters
    ----------
    model : pymc.Model
        Model with continuous free variables only; it must compile to JAX.
    draws : int
        Approximate draws per path, and posterior draws per ``chain`` in the result.
    jitter : float
        Start points are the model's initial point plus Uniform(-jitter, jitter) on each
        unconstrained coordinate (2.0, as in the Pathfinder paper's Uniform(-2, 2) starts).
    maxiter, maxcor : int
        L-BFGS iterations at most, and its history length (number of rank-two updates in
        each path's inverse-Hessian approximation).
    num_elbo_draws : int
        Monte-Carlo draws for the ELBO at each point of the optimisation path.
    ftol, gtol : float
        L-BFGS stops when the relative change in log density falls below ``ftol`` or the
        gradient norm below ``gtol``.

    Raises
    ------
    ImportError
        Without jax and blackjax.
    ValueError
        If the model has discrete free variables.
    """

    def __init__(self, model: Any, *, draws: int = 1000, jitter: float = 2.0,
                 maxiter: int = 1000, maxcor: int = 10, num_elbo_draws: int = 10,
                 ftol: float = 1e-5, gtol: float = 1e-8) -> None:
        jax, blackjax = _require_jax()
        import jax.numpy as jnp
        import pytensor
        from jax.flatten_util import ravel_pytree
        from pymc.sampling.jax import get_jaxified_graph  # also sets JAX to float64
        from pymc.util import get_default_varnames

        value_vars = list(model.value_vars)
        discrete = [v.name for v in value_vars if v.dtype.startswith(("int", "uint", "bool"))]
        if discrete:
            raise ValueError(f"pathfinder needs continuous free variables; {discrete} are "
                             "discrete")
        self.model = model
        self.draws = draws
        self.jitter = jitter
        self.settings = {"draws": draws, "jitter": jitter, "maxiter": maxiter,
                         "maxcor": maxcor, "num_elbo_draws": num_elbo_draws, "ftol": ftol,
                         "gtol": gtol}
        ip = model.initial_point()
        x0, unravel = ravel_pytree([jnp.asarray(ip[v.name], dtype=float) for v in value_vars])
        self._x0 = np.asarray(x0)

        model_logp = model.logp()
        # one graph for value and gradient: where only the value is used, XLA drops the rest
        value_and_grad_fn = get_jaxified_graph(
            inputs=value_vars, outputs=[model_logp, *pytensor.grad(model_logp, value_vars)])

        @jax.custom_vjp
        def logp(x: Any) -> Any:
            return value_and_grad_fn(*unravel(x))[0]

        def logp_fwd(x: Any) -> tuple[Any, Any]:
            value, *grads = value_and_grad_fn(*unravel(x))
            return value, jnp.concatenate([jnp.ravel(g) for g in grads])

        def logp_bwd(grad: Any, cotangent: Any) -> tuple[Any]:
            return (cotangent * grad,)

        logp.defvjp(logp_fwd, logp_bwd)

        fit_path, draw_path = _path_functions(jax, logp, draws=draws, maxiter=maxiter,
                                              maxcor=maxcor, num_elbo_draws=num_elbo_draws,
                                              ftol=ftol, gtol=gtol)
        natural_vars = list(get_default_varnames(model.unobserved_value_vars,
                                                 include_transformed=False))
        self._names = [v.name for v in natural_vars]
        self._graph = ([model_logp, *natural_vars], value_vars, ip)
        to_natural = get_jaxified_graph(inputs=value_vars, outputs=natural_vars)
        # single-threaded Eigen: no dot waits on XLA's CPU pool (see _path_functions)
        opts = ({"xla_cpu_multi_thread_eigen": False} if jax.default_backend() == "cpu"
                else None)
        self._jax = jax
        self._value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(logp)),
                                       compiler_options=opts)
        self._fit_path: Callable[..., Any] = jax.jit(fit_path, compiler_options=opts)
        self._draw_path: Callable[..., Any] = jax.jit(draw_path, compiler_options=opts)
        self._to_natural = jax.jit(jax.vmap(lambda x: to_natural(*unravel(x))),
                                   compiler_options=opts)

    def matches(self, model: Any, settings: dict[str, Any]) -> bool:
        """Whether this compiled Pathfinder serves ``model`` with ``settings`` as it is.

        True when the settings are equal and ``model`` has the same free variables, initial
        point, coords, dims and log-density and output graphs (constants, hence data,
        included; :func:`pytensor.graph.basic.equal_computations`), as a model rebuilt from
        the same spec and data has.
        """
        from pymc.util import get_default_varnames
        from pytensor.graph.basic import equal_computations

        outputs, value_vars, ip = self._graph
        other_vars = list(model.value_vars)
        other_ip = model.initial_point()
        natural_vars = list(get_default_varnames(model.unobserved_value_vars,
                                                 include_transformed=False))
        return (settings == self.settings
                and [v.name for v in other_vars] == [v.name for v in value_vars]
                and [v.name for v in natural_vars] == self._names
                and model.coords == self.model.coords
                and model.named_vars_to_dims == self.model.named_vars_to_dims
                and all(np.array_equal(other_ip[k], v) for k, v in ip.items())
                and equal_computations([model.logp(), *natural_vars], outputs,
                                       in_xs=other_vars, in_ys=value_vars))

    def _starts(self, key: Any, chains: int) -> np.ndarray:
        """Jittered start points with finite log density and gradient, shape (chains, d)."""
        jax = self._jax
        noise = jax.random.uniform(key, (chains, _JITTER_TRIES, self._x0.size),
                                   minval=-self.jitter, maxval=self.jitter)
        candidates = self._x0 + np.asarray(noise)
        value, grad = self._value_and_grad(candidates.reshape(-1, self._x0.size))
        ok = (np.isfinite(np.asarray(value))
              & np.isfinite(np.asarray(grad)).all(axis=1)).reshape(chains, _JITTER_TRIES)
        if not ok.any(axis=1).all():
            raise RuntimeError(f"pathfinder: no finite log density within +-{self.jitter} of "
                               f"the initial point in {_JITTER_TRIES} tries; use a smaller "
                               "jitter")
        return candidates[np.arange(chains), ok.argmax(axis=1)]

    def __call__(self, *, chains: int = 4, seed: int = 1) -> Any:
        """Run ``chains`` paths and importance-resample their pooled draws.

        Parameters
        ----------
        chains : int
            Number of independent Pathfinder paths, and ``chain`` size of the result.
        seed : int
            Seed of every random step (see the module docstring).

        Returns
        -------
        arviz.InferenceData
            ``posterior`` with every unobserved variable on its natural scale (shape
            ``(chains, draws, *var_shape)``, the model's dims and coords); posterior attrs
            ``pathfinder_khat`` (PSIS k-hat of the pooled weights), ``pathfinder_num_paths``,
            ``pathfinder_draws_per_path`` and ``pathfinder_lbfgs_iterations`` (per path).

        Warns
        -----
        ConvergenceWarning
            When k-hat exceeds :data:`KHAT_MAX` (0.7).
        """
        from pymc.backends.arviz import coords_and_dims_for_inferencedata

        jax = self._jax
        key_start, key_paths, key_resample = jax.random.split(jax.random.key(seed), 3)
        starts = self._starts(key_start, chains)
        phis, logqs, logps, iters = [], [], [], []
        for key, start in zip(jax.random.split(key_paths, chains), starts, strict=True):
            k_fit, k_draw = jax.random.split(key)
            approx, n_iter, elbo = self._fit_path(k_fit, start)
            phi, logq, lp = self._draw_path(k_draw, approx)
            phis.append(np.asarray(phi))
            logqs.append(np.asarray(logq))
            # a path without a finite ELBO anywhere (L-BFGS failed) contributes no weight
            logps.append(np.asarray(lp) if np.isfinite(elbo) else np.full(self.draws, -np.inf))
            iters.append(int(n_iter))
        phi_all = np.concatenate(phis)                       # (chains * draws, d)
        log_w = np.concatenate(logps) - np.concatenate(logqs)
        ok = np.isfinite(log_w)
        if not ok.any():
            raise RuntimeError("pathfinder: every path failed (no draw has a finite log "
                               "density)")
        smoothed, khat = az.psislw(log_w[ok])
        khat = float(khat)
        weights = np.zeros(log_w.size)
        weights[ok] = np.exp(smoothed - smoothed.max())
        idx = np.asarray(jax.random.choice(key_resample, log_w.size, shape=(log_w.size,),
                                           replace=True, p=weights / weights.sum()))
        natural = self._to_natural(phi_all[idx])
        posterior = {name: np.asarray(r).reshape(chains, self.draws, *np.shape(r)[1:])
                     for name, r in zip(self._names, natural, strict=True)}
        log.info("pathfinder: %d paths x %d draws (L-BFGS iterations %s), %d of %d draws with "
                 "finite weight, %d distinct after resampling, Pareto k-hat %.2f", chains,
                 self.draws, iters, int(ok.sum()), log_w.size, np.unique(idx).size, khat)
        if khat > KHAT_MAX:
            warnings.warn(f"pathfinder: Pareto k-hat {khat:.2f} > {KHAT_MAX}: the Gaussian "
                          "approximations are far from the posterior and the "
                          "importance-resampled draws are unreliable (few distinct draws); "
                          "use a NUTS sampler for inference", ConvergenceWarning, stacklevel=2)
        coords, dims = coords_and_dims_for_inferencedata(self.model)
        attrs = {"pathfinder_khat": khat, "pathfinder_num_paths": chains,
                 "pathfinder_draws_per_path": self.draws, "pathfinder_lbfgs_iterations": iters}
        return az.from_dict(posterior=posterior, coords=coords, dims=dims,
                            posterior_attrs=attrs)


#: The last Pathfinder compiled by :func:`sample_pathfinder`, reused for an identical model.
_LAST: list[Pathfinder] = []


def sample_pathfinder(model: Any, *, draws: int = 1000, chains: int = 4, seed: int = 1,
                      **options: Any) -> Any:
    """Approximate the posterior of ``model`` by multi-path Pathfinder with PSIS resampling.

    Compiling takes most of the time (~25 s for ``expansion_biphasic``); the last compiled
    :class:`Pathfinder` is kept and reused when the next model is identical
    (:meth:`Pathfinder.matches`), e.g. a refit of the same spec and data with another seed.

    Parameters
    ----------
    model : pymc.Model
        Model with continuous free variables; it must compile to JAX.
    draws : int
        Approximate draws per path, and posterior draws per ``chain`` in the result.
    chains : int
        Number of independent Pathfinder paths.
    seed : int
        Seed of every random step.
    **options
        ``jitter``, ``maxiter``, ``maxcor``, ``num_elbo_draws``, ``ftol``, ``gtol`` of
        :class:`Pathfinder`.

    Returns
    -------
    arviz.InferenceData
        See :meth:`Pathfinder.__call__`.
    """
    bound = inspect.signature(Pathfinder).bind(model, draws=draws, **options)
    bound.apply_defaults()
    settings = {k: v for k, v in bound.arguments.items() if k != "model"}
    if not (_LAST and _LAST[0].matches(model, settings)):
        _LAST[:] = [Pathfinder(model, **settings)]
    else:
        log.info("pathfinder: model identical to the last one; reusing its compiled functions")
    return _LAST[0](chains=chains, seed=seed)
