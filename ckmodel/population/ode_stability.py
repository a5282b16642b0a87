"""Is a fixed RK4 step grid stable for the rates a model reaches? Linear stability along solves.

Fits solve ODE models by classic Runge-Kutta 4 on a fixed step schedule
(:class:`~ckmodel.population.ode.ODEOptions`). One RK4 step of size ``h`` multiplies a mode of
the linearised system with eigenvalue ``lam`` by the stability polynomial
``R(z) = 1 + z + z**2/2 + z**3/6 + z**4/24`` at ``z = h * lam``. A decaying mode
(``Re lam < 0``) that the step amplifies (``|R(z)| > 1``; on the real axis when
``h * rate > 2.785``) grows without bound from step to step: the solution oscillates, turns
negative and explodes, and a fit's log density falls off a numerical cliff that NUTS reports
as divergences, while the posterior is cut off there without any other sign.

:func:`grid_stability` solves subjects on the schedule's grid (the fits' compiled kernel,
:func:`~ckmodel.population.ode.rk4_states`), takes the Jacobian of the right-hand side with
respect to the states at every grid point (sympy, from the spec's trees), and reports every
step where a decaying mode is amplified, with the step each needs.
:func:`prior_stability` does it for subjects drawn from the model's priors (typical values and
random effects); :func:`fit_stability` for a fit's data, from the priors (what
:func:`ckmodel.fitting.fit` checks before sampling) or from posterior draws (after).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from ckmodel.errors import hint
from ckmodel.population.ode import ODEOptions, rk4_states, step_grid
from ckmodel.population.prepare import PopulationData
from ckmodel.spec.expr import compile_expr
from ckmodel.spec.model import ModelSpec

__all__ = ["NEAR_LIMIT_SHARE", "RK4_REAL_LIMIT", "GridStability", "fit_stability", "grid_stability",
           "prior_stability", "rk4_amplification"]

#: Largest ``h * rate`` for which RK4 damps a real decaying mode (root of ``R(-x) = 1``).
RK4_REAL_LIMIT = 2.785293563405282

# a step counts as unstable when it amplifies a decaying mode by more than this factor (small
# |z| near the imaginary axis gives |R| above 1 by O(|z|^6), which is not an instability)
_TOL = 1e-3
#: share of posterior subject-draws within 20 % of a step's limit that fits warn about
NEAR_LIMIT_SHARE = 0.01

# the smallest |z| in the left half-plane that one RK4 step amplifies (by 1 + _TOL) is 2.6165
_SAFE_RADIUS = 2.6
_NICE = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0)


def rk4_amplification(z: Any) -> np.ndarray:
    """``|R(z)|``: how much one RK4 step multiplies a linear mode, ``z = h * eigenvalue``."""
    z = np.asarray(z, dtype=complex)
    return np.abs(1 + z * (1 + z * (0.5 + z * (1 / 6 + z / 24))))


@dataclass(frozen=True)
class GridStability:
    """Where a step schedule amplifies decaying modes of the model, over a set of subjects.

    Attributes
    ----------
    options : ODEOptions
        The schedule checked.
    n_subjects : int
        Subjects solved.
    unstable : numpy.ndarray of bool, shape (n_subjects,)
        Subjects with at least one amplifying step (or a solve that is not finite).
    near_limit : numpy.ndarray of bool, shape (n_subjects,)
        Subjects with a step within 20 % of its stability limit (a step 1.25 times as long
        would amplify), unstable ones included: posterior draws that pile up there suggest
        that the solve's cliff, not the data, bounds the posterior.
    worst_rate : float
        The fastest decay rate (1/time unit, ``-Re`` of the eigenvalue) among amplified modes,
        NaN when none.
    worst_time : float
        Start of the step (time since the dose) where the largest amplification occurs.
    worst_step : float
        Size of that step (time unit).
    worst_state : str
        The state that takes the largest part in that mode (participation factor: product of
        its right and left eigenvector components), "" when none.
    suggested : tuple of (float, float)
        A schedule that keeps every amplified step of these subjects stable with a margin:
        each segment's step is cut to 80 % of the largest stable step found in it, rounded
        down to 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 3, 4, 5, ... (``options.max_step`` when
        nothing is unstable; from 1.25 times the rates when steps are only near the limit).
    """

    options: ODEOptions
    n_subjects: int
    unstable: np.ndarray
    near_limit: np.ndarray
    worst_rate: float
    worst_time: float
    worst_step: float
    worst_state: str
    suggested: tuple[tuple[float, float], ...]

    @property
    def fraction(self) -> float:
        """Share of subjects with an amplifying step."""
        return float(np.mean(self.unstable)) if self.n_subjects else 0.0

    @property
    def near_fraction(self) -> float:
        """Share of subjects with a step within 20 % of its stability limit (or beyond)."""
        return float(np.mean(self.near_limit)) if self.n_subjects else 0.0

    @property
    def stable(self) -> bool:
        """True when no subject has an amplifying step."""
        return not bool(np.any(self.unstable))

    def message(self, unit: str = "day") -> str:
        """What was found and the schedule to use instead, for the model file and the CLI."""
        if self.stable:
            return f"RK4 step grid stable for all {self.n_subjects} subjects checked"
        rate = (f"a decay rate of {self.worst_rate:.3g}/{unit} (mostly state "
                f"{self.worst_state})" if np.isfinite(self.worst_rate)
                else "a solve that is not finite")
        limit = RK4_REAL_LIMIT / self.worst_step
        return (f"the RK4 step grid is unstable for {int(self.unstable.sum())} of "
                f"{self.n_subjects} subjects ({100 * self.fraction:.1f} %): {rate} at "
                f"{unit} {self.worst_time:.4g}, where {self.worst_step:g}-{unit} steps damp "
                f"decay rates only up to {limit:.3g}/{unit}; the solution there oscillates and "
                f"explodes, which a fit reports as divergences. Use a finer schedule: "
                f"{self.remedy()}")

    def remedy(self) -> str:
        """The suggested schedule, as a model-file line and for the audience at hand."""
        sched = ", ".join(f"[{_fmt(u)}, {_fmt(h)}]" for u, h in self.suggested)
        fix = hint(python=f"spec.with_max_step([{sched.replace('inf', 'np.inf')}])",
                   cli=" ".join(f"--max-step {_fmt(u)}:{_fmt(h)}" for u, h in self.suggested))
        return f"[solver] max_step = [{sched}] in the model file, or {fix}"


def _fmt(x: float) -> str:
    return "inf" if np.isinf(x) else f"{x:g}"


def _jacobian_fns(spec: ModelSpec) -> list[list[Any]]:
    from ckmodel.population.ode_kernel import switched_odes

    odes, _ = switched_odes(spec)
    states = [sp.Symbol(s, real=True) for s in spec.state_names]
    f = [odes[s] for s in spec.state_names]
    return [[compile_expr(sp.diff(fi, y)) for y in states] for fi in f]


def grid_stability(spec: ModelSpec, params: Mapping[str, Any], *, amt: Any, t_end: float,
                   covariates: Mapping[str, Any] | None = None,
                   onsets: Mapping[str, Any] | None = None,
                   options: ODEOptions | None = None) -> GridStability:
    """Linear stability of the RK4 step schedule along each subject's solve.

    Parameters
    ----------
    spec : ModelSpec
        An ODE model.
    params : mapping of str to array
        Natural-scale parameters, one value (or a scalar) per subject.
    amt : array, shape (n_subjects,)
        Dose amounts (spec ``amount_unit``), one dose at time 0.
    t_end : float
        Last time solved (time since the dose, model time unit): the data's last record.
    covariates, onsets : mapping of str to array, optional
        As :func:`~ckmodel.population.ode.rk4_states`.
    options : ODEOptions, optional
        The schedule (default: the spec's own, as fits use).

    Returns
    -------
    GridStability
    """
    opts = options or ODEOptions.for_spec(spec)
    grid = step_grid(np.array([float(t_end)]), 0.0, opts)
    states = rk4_states(spec, params, grid, amt=amt, covariates=covariates, onsets=onsets,
                        options=opts)                       # (subjects, states, grid)
    n_s, n_y, n_g = states.shape
    env: dict[str, Any] = dict(spec.constants)
    for p in spec.param_names:
        env[p] = np.broadcast_to(np.asarray(params[p], dtype=float), (n_s,))[:, None]
    for c, v in (covariates or {}).items():
        env[c] = np.broadcast_to(np.asarray(v, dtype=float), (n_s,))[:, None]
    for sw in spec.switches:
        on = np.asarray((onsets or {}).get(sw.name, np.nan), dtype=float)
        env[f"__onset_{sw.name}"] = np.broadcast_to(np.where(np.isfinite(on), on, 1e12),
                                                    (n_s,))[:, None]
    env["t"] = grid[None, :]
    for i, s in enumerate(spec.state_names):
        env[s] = states[:, i, :]
    jac = np.empty((n_s, n_g, n_y, n_y))
    with np.errstate(all="ignore"):
        for i, row in enumerate(_jacobian_fns(spec)):
            for j, fn in enumerate(row):
                jac[:, :, i, j] = np.broadcast_to(fn(env), (n_s, n_g))
    finite = np.all(np.isfinite(jac), axis=(2, 3)) & np.all(np.isfinite(states), axis=1)
    h = np.diff(grid)
    # eigenvalues only where a step could come near its limit: |lam| <= ||J||_inf, and no
    # z = h lam with |z| < _SAFE_RADIUS in the left half-plane is amplified (even at 1.25 z)
    h_adj = np.maximum(np.append(h, 0.0), np.insert(h, 0, 0.0))    # steps touching a point
    with np.errstate(invalid="ignore"):
        need = finite & (1.25 * h_adj * np.abs(jac).sum(axis=3).max(axis=2) >= _SAFE_RADIUS)
    lam = np.zeros((n_s, n_g, n_y), dtype=complex)
    lam[~finite] = np.nan
    if need.any():
        lam[need] = np.linalg.eigvals(jac[need])
    # each step, linearised at both of its ends
    z = np.concatenate([lam[:, :-1] * h[None, :, None], lam[:, 1:] * h[None, :, None]], axis=2)
    with np.errstate(invalid="ignore"):
        amp = np.where(z.real < 0, rk4_amplification(np.nan_to_num(z)), 0.0)
    bad_step = (amp > 1 + _TOL) | ~(finite[:, :-1] & finite[:, 1:])[:, :, None]
    unstable = np.any(bad_step, axis=(1, 2))
    with np.errstate(invalid="ignore"):
        amp_near = np.where(z.real < 0, rk4_amplification(np.nan_to_num(1.25 * z)), 0.0)
    near = unstable | np.any(amp_near > 1 + _TOL, axis=(1, 2))
    if not unstable.any():
        # near the limit only: a schedule with the margin counted from 1.25 times the rates
        sugg = _suggest(opts, grid, 1.25 * z, amp_near) if near.any() else opts.max_step
        return GridStability(opts, n_s, unstable, near, np.nan, np.nan, np.nan, "", sugg)
    s, g, k = np.unravel_index(np.argmax(np.where(np.isfinite(amp), amp, np.inf)), amp.shape)
    worst_rate, state = np.nan, ""
    if np.isfinite(amp[s, g, k]):
        worst_rate = float(-z[s, g, k].real / h[g])
        w, v = np.linalg.eig(jac[s, g + k // n_y])     # k // n_y: the step's start or end
        m = int(np.argmin(np.abs(w - z[s, g, k] / h[g])))
        # participation factors: right times left eigenvector, state by state (modal analysis)
        part = np.abs(v[:, m] * np.linalg.pinv(v)[m, :])
        state = spec.state_names[int(np.argmax(part))]
    return GridStability(opts, n_s, unstable, near, worst_rate, float(grid[g]), float(h[g]),
                         state, _suggest(opts, grid, z, amp))


def _suggest(opts: ODEOptions, grid: np.ndarray, z: np.ndarray, amp: np.ndarray
             ) -> tuple[tuple[float, float], ...]:
    """Cut each segment's step to 80 % of the largest step that damps its amplified modes."""
    h = np.diff(grid)
    out = []
    lo = 0.0
    for until, h_max in opts.max_step:
        in_seg = (grid[:-1] >= lo) & (grid[:-1] < until)
        rates = z[:, in_seg] / h[None, in_seg, None]       # eigenvalues, 1/time unit
        zz = rates[amp[:, in_seg] > 1 + _TOL]
        step = h_max
        if zz.size:
            # largest s*h_max damping every amplified eigenvalue: bisect on the scale s
            lo_s, hi_s = 0.0, 1.0
            for _ in range(40):
                mid = 0.5 * (lo_s + hi_s)
                if np.all(rk4_amplification(mid * h_max * zz) <= 1.0):
                    lo_s = mid
                else:
                    hi_s = mid
            step = max((v for v in _NICE if v <= 0.8 * lo_s * h_max), default=_NICE[0])
        out.append((float(until), float(step)))
        lo = until
    return tuple(out)


def prior_stability(spec: ModelSpec, *, amt: Any, t_end: float, n: int = 400, seed: int = 0,
                    covariates: Mapping[str, Any] | None = None,
                    onsets: Mapping[str, Any] | None = None,
                    options: ODEOptions | None = None) -> GridStability:
    """:func:`grid_stability` for ``n`` subjects drawn from the model's priors.

    Each subject's typical values are drawn from the parameter priors and its random effects
    from normal distributions with the median of each IIV prior as SD
    (:func:`ckmodel.simulate.individual_parameters` with ``draw_typical=True``); its dose,
    covariates and switch onsets are those of a subject drawn (with replacement) from
    ``amt``, ``covariates`` and ``onsets``, e.g. the data's.

    Parameters
    ----------
    spec : ModelSpec
    amt : array, shape (n_given,)
        Dose amounts to draw from (spec ``amount_unit``).
    t_end : float
        Last time solved (time since the dose).
    n : int
        Subjects drawn.
    seed : int
    covariates, onsets : mapping of str to array, optional
        Covariate values and switch onsets (time since the dose, NaN: never), each of the
        same length as ``amt``.
    options : ODEOptions, optional

    Returns
    -------
    GridStability
    """
    from ckmodel.simulate import individual_parameters

    rng = np.random.default_rng(seed)
    params = individual_parameters(spec, n, rng, draw_typical=True)
    amt = np.asarray(amt, dtype=float).ravel()
    pick = rng.integers(0, amt.size, n)
    cov = {k: np.asarray(v, dtype=float).ravel()[pick] for k, v in (covariates or {}).items()}
    on = {k: np.asarray(v, dtype=float).ravel()[pick] for k, v in (onsets or {}).items()}
    return grid_stability(spec, params, amt=amt[pick], t_end=t_end, covariates=cov,
                          onsets=on, options=options)


def fit_stability(spec: ModelSpec, pdata: PopulationData, *, theta: Any = None, n: int = 400,
                  seed: int = 0, options: ODEOptions | None = None) -> GridStability:
    """Stability of a fit's step grid, for its subjects' doses, covariates and time span.

    Parameters
    ----------
    spec : ModelSpec
    pdata : PopulationData
        The fit's data (one dose per subject, at the same time, as ODE fits need).
    theta : array, shape (n_draws, n_subjects, n_parameters), optional
        Natural-scale individual parameters, e.g. posterior draws of ``theta``; each draw of
        each subject is checked. Without it, ``n`` subjects are drawn from the priors
        (:func:`prior_stability`) with the data's doses, covariates and onsets.
    n, seed : int
        Prior draws and their seed, when ``theta`` is not given.
    options : ODEOptions, optional

    Returns
    -------
    GridStability
    """
    t0 = float(pdata.dose_time[0, 0])
    t_end = float(np.max(pdata.time) - t0)
    amt = pdata.amt[:, 0]
    cov = {c: pdata.covariates[c].to_numpy(float) for c in spec.covariates}
    on = {k: np.asarray(v, dtype=float) - t0 for k, v in pdata.onsets.items()}
    if theta is None:
        return prior_stability(spec, amt=amt, t_end=t_end, n=n, seed=seed, covariates=cov,
                               onsets=on, options=options)
    theta = np.asarray(theta, dtype=float)
    m = theta.shape[0]
    params = {p: theta[:, :, j].ravel() for j, p in enumerate(spec.param_names)}
    return grid_stability(spec, params, amt=np.tile(amt, m), t_end=t_end,
                          covariates={k: np.tile(v, m) for k, v in cov.items()},
                          onsets={k: np.tile(v, m) for k, v in on.items()}, options=options)
