"""PyTensor Ops around the compiled RK4 kernels, for every PyMC sampler backend.

:class:`ODESolveOp` maps ``(y0, params, cov)`` to the states on a fixed grid and its gradient
is :class:`ODEVJPOp`, the discrete adjoint. Both run the numba kernels of
:mod:`ckmodel.population.ode_kernel`:

* C backend (PyMC's NUTS) and Python: ``perform`` calls the compiled kernels;
* numba backend (nutpie): the kernels are registered with PyTensor's numba dispatcher, so nutpie
  calls them from its compiled log density without the Python interpreter;
* JAX backend (numpyro, blackjax, pathfinder): an equivalent RK4 in ``jax.lax.scan`` is
  registered, with its gradient from JAX's reverse mode.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ckmodel.population.codegen import digest
from ckmodel.population.numba_cache import register_cached
from ckmodel.population.ode_kernel import RK4Kernel, switched_odes

__all__ = ["ODESolveOp", "ODEVJPOp"]

_ALL = np.zeros(0, dtype=np.int64)   # the kernels' ``upto``: every subject to the last point


class _KernelOp(Op):
    __props__ = ("key",)

    def __init__(self, kernel: RK4Kernel, grid: np.ndarray, save: np.ndarray) -> None:
        self.kernel = kernel
        self.grid = np.ascontiguousarray(grid, dtype=np.float64)
        self.save = np.ascontiguousarray(save, dtype=np.int64)
        if self.save.size and (np.any(np.diff(self.save) < 0) or self.save[-1] >= self.grid.size):
            raise ValueError("save indices must be sorted grid indices")
        self.key = digest(kernel.spec.hash(), repr(kernel.inputs),
                          kernel.source.rhs + kernel.source.vjp,  # what numba compiles
                          self.grid, self.save)

    @property
    def n_states(self) -> int:
        return len(self.kernel.spec.state_names)

    @property
    def n_params(self) -> int:
        return len(self.kernel.spec.param_names)


class ODESolveOp(_KernelOp):
    """States of every subject at the saved grid points: ``(subjects, saved, states)``.

    A second output holds the whole trajectory up to the last saved point, ``(subjects, grid
    points, 4 * states)``: at each grid point the state, then the RK4 stages k1, k2, k3 of the
    step that starts there. The gradient reuses it instead of solving again; it has no
    gradient itself.

    Parameters
    ----------
    kernel : RK4Kernel
    grid : ndarray
        Step grid in time since the dose (model time unit), increasing.
    save : ndarray of int
        Sorted indices into ``grid`` whose states are returned.
    """

    def make_node(self, y0: Any, params: Any, cov: Any) -> Apply:  # noqa: D102
        y0 = pt.as_tensor_variable(y0, dtype="float64")
        params = pt.as_tensor_variable(params, dtype="float64")
        cov = pt.as_tensor_variable(cov, dtype="float64")
        n_s = y0.type.shape[0]
        n_g = int(self.save[-1]) + 1 if self.save.size else 1
        out = pt.tensor3(dtype="float64", shape=(n_s, self.save.size, self.n_states))
        traj = pt.tensor3(dtype="float64", shape=(n_s, n_g, 4 * self.n_states))
        return Apply(self, [y0, params, cov], [out, traj])

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:  # noqa: D102
        y0, params, cov = (np.ascontiguousarray(x) for x in inputs)
        outputs[0][0], outputs[1][0] = self.kernel.forward(y0, params, cov, self.grid, self.save,
                                                           _ALL)

    def connection_pattern(self, node: Apply) -> list[list[bool]]:  # noqa: D102
        return [[True, False], [True, False], [False, False]]

    def L_op(self, inputs: list[Any], outputs: list[Any], g: list[Any]) -> list[Any]:  # noqa: D102
        if not isinstance(g[1].type, DisconnectedType):
            raise NotImplementedError("the trajectory output of ODESolveOp has no gradient")
        y0, params, cov = inputs
        gy0, gp = ODEVJPOp(self.kernel, self.grid, self.save)(y0, params, cov, outputs[1], g[0])
        return [gy0, gp, disconnected_type()]


class ODEVJPOp(_KernelOp):
    """Gradient of ``sum(g * states)`` in ``y0`` and ``params``, from the forward trajectory."""

    def make_node(self, y0: Any, params: Any, cov: Any, traj: Any, g: Any) -> Apply:  # noqa: D102
        y0 = pt.as_tensor_variable(y0, dtype="float64")
        params = pt.as_tensor_variable(params, dtype="float64")
        cov = pt.as_tensor_variable(cov, dtype="float64")
        traj = pt.as_tensor_variable(traj, dtype="float64")
        g = pt.as_tensor_variable(g, dtype="float64")
        return Apply(self, [y0, params, cov, traj, g], [y0.type(), params.type()])

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:  # noqa: D102
        _, params, cov, traj, g = (np.ascontiguousarray(x) for x in inputs)
        gy0, gp = self.kernel.backward(traj, params, cov, self.grid, self.save, g, _ALL)
        outputs[0][0] = gy0
        outputs[1][0] = gp

    def grad(self, inputs: list[Any], g: list[Any]) -> list[Any]:  # noqa: D102
        raise NotImplementedError("second derivatives of the RK4 solver are not implemented")


# ----------------------------------------------------------------------------- numba (nutpie)
@register_cached(ODESolveOp)
def _numba_solve(op: ODESolveOp, node: Any = None, **kwargs: Any) -> Any:
    forward, grid, save = op.kernel.forward, op.grid, op.save

    @numba.njit
    def ode_solve(y0: np.ndarray, params: np.ndarray, cov: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        return forward(np.ascontiguousarray(y0), np.ascontiguousarray(params),
                       np.ascontiguousarray(cov), grid, save, _ALL)

    return ode_solve


@register_cached(ODEVJPOp)
def _numba_vjp(op: ODEVJPOp, node: Any = None, **kwargs: Any) -> Any:
    backward, grid, save = op.kernel.backward, op.grid, op.save

    @numba.njit
    def ode_vjp(y0: np.ndarray, params: np.ndarray, cov: np.ndarray, traj: np.ndarray,
                g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return backward(np.ascontiguousarray(traj), np.ascontiguousarray(params),
                        np.ascontiguousarray(cov), grid, save, np.ascontiguousarray(g), _ALL)

    return ode_vjp


# ----------------------------------------------------------------------------- JAX
def _jax_forward(op: _KernelOp) -> Any:
    """A JAX function ``(y0, params, cov) -> (states, trajectory)`` like the numba kernel."""
    import jax
    import jax.numpy as jnp

    from ckmodel.spec.expr import compile_expr

    spec = op.kernel.spec
    odes, onsets = switched_odes(spec)
    fns = [compile_expr(odes[s], "jax") for s in spec.state_names]
    cov_names = (*op.kernel.inputs, *onsets)
    n_g = int(op.save[-1]) + 1 if op.save.size else 1
    grid = jnp.asarray(op.grid[:n_g])
    save = jnp.asarray(op.save)

    def forward(y0: Any, params: Any, cov: Any) -> Any:
        env0: dict[str, Any] = dict(spec.constants)
        for j, p in enumerate(spec.param_names):
            env0[p] = params[:, j]
        for j, c in enumerate(cov_names):
            env0[c] = cov[:, j]

        def rhs(t: Any, y: Any) -> Any:
            env = dict(env0, t=t)
            for i, s in enumerate(spec.state_names):
                env[s] = y[:, i]
            return jnp.stack([jnp.broadcast_to(f(env), y.shape[:1]) for f in fns], axis=1)

        def step(y: Any, th: Any) -> Any:
            t, h = th
            k1 = rhs(t, y)
            k2 = rhs(t + h / 2, y + h / 2 * k1)
            k3 = rhs(t + h / 2, y + h / 2 * k2)
            k4 = rhs(t + h, y + h * k3)
            y_new = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            return y_new, (y_new, jnp.concatenate([k1, k2, k3], axis=1))

        _, (ys, ks) = jax.lax.scan(step, y0, (grid[:-1], jnp.diff(grid)))
        ys = jnp.concatenate([y0[None], ys], axis=0)  # (grid, subjects, states)
        ks = jnp.concatenate([ks, jnp.zeros((1, *ks.shape[1:]))], axis=0)  # none after the last
        traj = jnp.transpose(jnp.concatenate([ys, ks], axis=2), (1, 0, 2))
        return traj[:, save, :y0.shape[1]], traj

    return forward


def _register_jax() -> None:
    try:
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # pragma: no cover - JAX not installed
        return

    @jax_funcify.register(ODESolveOp)
    def _jax_solve(op: ODESolveOp, **kwargs: Any) -> Any:
        return _jax_forward(op)

    @jax_funcify.register(ODEVJPOp)
    def _jax_vjp(op: ODEVJPOp, **kwargs: Any) -> Any:
        import jax

        fwd = _jax_forward(op)

        def vjp(y0: Any, params: Any, cov: Any, traj: Any, g: Any) -> Any:
            _, pull = jax.vjp(lambda a, b: fwd(a, b, cov)[0], y0, params)
            return pull(g)

        return vjp


_register_jax()
