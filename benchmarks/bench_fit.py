"""Speed and efficiency of ckmodel's population fits, per sampler, against the same model in Stan.

For each data set (the bundled example trial when ``data/example_trial/ck.csv`` exists, a
40-subject set simulated from the fitted model, and a sparse real-shaped cohort of 50 patients
with 4 blood samples each and covariate effects of PRODUCT and DOSE on f0) and each model
(``expansion_biphasic`` and ``blood_marrow``, closed forms evaluated by ckmodel's fused
closed-form kernel, blood_marrow on the example trial's three analytes; ``antigen_driven``,
5-state ODE solved by ckmodel's compiled RK4 kernel with its discrete adjoint) this measures,
per sampler:

* compile seconds and sampling seconds,
* the smallest bulk ESS over the population-level parameters (typical values, IIV SDs, residual
  SDs) and ESS/s = min bulk ESS / sampling seconds,
* divergences, mean tree depth and mean leapfrog steps per iteration,

and the same for the same model and data written in Stan (``benchmarks/stan/*.stan``, run with
pystan 3), after checking that the Stan and PyMC log densities agree on the same parameter
values. It prints a table and the ratios ckmodel ESS/s / Stan ESS/s.

The closed forms run 4 chains x (500 tune + 500 draws), seeds fixed (nutpie with every chain
in its own thread, as ``ckmodel.fit`` runs it; Stan's chains in their own processes). The ODE
model is far too slow for that on a small machine, so it runs shorter chains inside a time box,
and its full-run figures are extrapolated from seconds per iteration (marked ``~`` and
``(extrapolated)``).

Two extra measurements:

* end-to-end wall time of ``ckmodel.fit()`` (default sampler, closed form) on the example trial,
  including posterior predictive draws and the pointwise log-likelihood;
* ``pymc.ode.DifferentialEquation`` (scipy odeint with forward sensitivities, called from
  Python) as a baseline: one log-density + gradient evaluation of the antigen_driven model on
  30 subjects, extrapolated to a full fit. It has no dosing events; it is a baseline only.

Stan needs ``pip install pystan`` (the benchmark only; not a ckmodel dependency); numpyro and
blackjax need ``pip install jax numpyro blackjax``. Missing ones are reported as skipped.

Run: ``python benchmarks/bench_fit.py`` (full, 15-30 min on 2 cores), or
``python benchmarks/bench_fit.py --quick`` (smoke run, a few minutes), and see ``--help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAN_DIR = Path(__file__).resolve().parent / "stan"
EXAMPLE = ROOT / "data" / "example_trial" / "ck.csv"
CLOSED, BM, ODE = "expansion_biphasic", "blood_marrow", "antigen_driven"
CLOSED_MODELS = (CLOSED, BM)  # closed forms, fused kernel, 4 x (500 + 500)
#: data sets each model is benchmarked on by default (others: skipped with a note); blood_marrow
#: needs the marrow and flow records only the example trial has, antigen_driven marrow blasts
DATASETS_OF = {CLOSED: ("example", "sim", "sparse"), BM: ("example",), ODE: ("example", "sim")}
SPARSE_N, SPARSE_SEED = 50, 1  # the sparse set (bench_sparse.py's default cohort)
ALL_SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
SEED = 20240611
TARGET_ACCEPT = 0.9  # ckmodel.fit's default; Stan gets the same adapt_delta
JITTER = 1.0  # uniform(-JITTER, JITTER) on the unconstrained initial point (as PyMC and nutpie)
LOG2 = math.log(2.0)
ODE_STAN_JITTER = 0.1  # init jitter of the Stan ODE runs (see stan_inits)
#: Reporting limit of marrow blasts (%) in the simulated ODE data. Without one, simulated blast
#: levels fall to 1e-10 % and below after clearance, where the log-normal likelihood depends on
#: the ODE solver's absolute error (different solvers give log densities 1e5 apart).
BLAST_LLOQ = 0.1

log = logging.getLogger("bench_fit")


# ----------------------------------------------------------------------------------------------
# settings and results


@dataclass
class Settings:
    """How long each run is."""

    chains: int
    tune: int
    draws: int
    time_box: float | None = None  # seconds; the run is stopped there and extrapolated
    low_rank: bool = False  # nutpie low-rank mass matrix (ckmodel.fit's default for ODE fits)

    def label(self) -> str:
        box = f", box {self.time_box:.0f} s" if self.time_box else ""
        return f"{self.chains}x({self.tune}+{self.draws}){box}"


@dataclass
class Result:
    """One sampler run on one data set and model."""

    dataset: str
    model: str
    sampler: str
    settings: str
    compile_s: float = float("nan")
    sampling_s: float = float("nan")
    min_ess: float = float("nan")
    ess_per_s: float = float("nan")
    divergences: float = float("nan")
    mean_depth: float = float("nan")
    mean_steps: float = float("nan")
    s_per_grad_ms: float = float("nan")
    extrapolated: bool = False
    full_sampling_s: float = float("nan")  # extrapolated to the full run length
    note: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


FULL = {m: Settings(4, 500, 500) for m in CLOSED_MODELS}


# ----------------------------------------------------------------------------------------------
# data


def simulated_data(model: str, n: int = 40, seed: int = SEED) -> Any:
    """A data set of ``n`` subjects simulated from ``model`` (dose 1, standard schedule).

    Models with a covariate (``BM_BLAST_PCT``) get it drawn as in the example trial
    (``round(clip(exp(N(log 30, 0.8)), 5, 90))``).
    """
    from ckmodel.spec import load_model
    from ckmodel.testing import simulate_ckdata

    spec = load_model(model)
    kw: dict[str, Any] = {}
    if "BM_BLAST_PCT" in spec.covariates:
        rng = np.random.default_rng(seed + 1)
        kw["covariates"] = {"BM_BLAST_PCT": np.round(np.clip(
            np.exp(rng.normal(math.log(30.0), 0.8, n)), 5, 90))}
    lloq = {o: (50.0 if "QPCR" in o else 1.0 if "FLOW" in o else BLAST_LLOQ if o == "BM_BLAST"
                else np.nan) for o in spec.output_names}
    return simulate_ckdata(spec, n=n, seed=seed, lloq=lloq, **kw)[0]


def load_dataset(name: str, model: str, n_sim: int) -> tuple[Any, tuple[str, ...]] | None:
    """Data and covariate effects: ``example`` (the bundled trial, every analyte of ``model``;
    None if absent), ``sim`` (simulated, n_sim subjects) or ``sparse``
    (:func:`ckmodel.testing.simulate_sparse_cohort`, 50 patients, blood qPCR near days 7, 14,
    30, 100, a fifth BLQ, with the PRODUCT and DOSE effects on f0)."""
    if name == "example":
        if not EXAMPLE.exists():
            return None
        from ckmodel.data import read_ck
        from ckmodel.spec import load_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the example's after-HSCT records are reported
            return read_ck(EXAMPLE, analytes=load_model(model).output_units), ()
    if name == "sparse":
        from ckmodel.testing import SPARSE_COVARIATES, simulate_sparse_cohort

        return simulate_sparse_cohort(n=SPARSE_N, seed=SPARSE_SEED)[0], SPARSE_COVARIATES
    return simulated_data(model, n=n_sim), ()


# ----------------------------------------------------------------------------------------------
# ckmodel side


def build(model: str, data: Any, fused: bool = False, covariates: tuple[str, ...] = (),
          iiv_sd: str = "auto") -> tuple[Any, Any, Any, float]:
    """Spec, PopulationData and PyMC model (``method="ode"`` for the ODE model); build seconds.

    ``fused``: the closed-form likelihood summed in its kernel, as ``ckmodel.fit`` builds it
    for nutpie and PyMC's NUTS (``ckmodel.fitting.FUSED_SAMPLERS``). ``iiv_sd``: how the IIV
    SDs are sampled (``PopulationOptions.iiv_sd``; the Stan side is compared with the log
    form, which the Stan programs write as ``<lower=0>``).
    """
    from ckmodel.population import build_model, prepare
    from ckmodel.population.model import PopulationOptions
    from ckmodel.spec import load_model

    spec = load_model(model)
    pdata = prepare(data, spec)
    t0 = time.perf_counter()
    method = "ode" if model == ODE else "closed"
    pm_model = build_model(spec, pdata, covariates=covariates,
                           options=PopulationOptions(method=method, iiv_sd=iiv_sd),
                           fused=fused)
    return spec, pdata, pm_model, time.perf_counter() - t0


def population_vars(spec: Any, pdata: Any, covariates: tuple[str, ...] = ()) -> list[str]:
    """Names of the population-level free variables (typical values, omega, covariate
    coefficients ``beta``, sigma_<A>)."""
    from ckmodel.population.model import transformed_name

    names = [transformed_name(p.name, p.scale) for p in spec.parameters]
    if any(p.iiv is not None for p in spec.parameters):
        names.append("omega")
    if covariates:
        names.append("beta")
    return names + [f"sigma_{a}" for a in pdata.analytes]


def _stat(idata: Any, names: tuple[str, ...], group: str = "sample_stats") -> Any:
    ds = getattr(idata, group, None)
    if ds is None:
        return None
    for n in names:
        if n in ds:
            return ds[n]
    return None


def summarise(idata: Any, var_names: list[str]) -> dict[str, float]:
    """Min bulk ESS over ``var_names``, divergences, mean tree depth and leapfrog steps."""
    import arviz as az

    out: dict[str, float] = {}
    post = idata.posterior
    if post.sizes.get("draw", 0) >= 4:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ess = az.ess(post[[v for v in var_names if v in post]], method="bulk")
        out["min_ess"] = float(min(float(ess[v].min()) for v in ess.data_vars))
    div = _stat(idata, ("diverging", "divergent__"))
    if div is not None:
        out["divergences"] = float(div.sum())
    depth = _stat(idata, ("tree_depth", "depth", "treedepth__"))
    if depth is not None:
        out["mean_depth"] = float(depth.mean())
    steps = _stat(idata, ("n_steps", "n_leapfrog__", "tree_size"))
    if steps is not None:
        out["mean_steps"] = float(steps.mean())
    return out


def _fmt_exc(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(tb[-3:]).strip()
    return f"{type(exc).__name__}: {str(exc).strip()[:600]}\n--- traceback tail ---\n{tail[-1500:]}"


def run_ckmodel(sampler: str, pm_model: Any, st: Settings, seed: int,
                chain_method: str = "sequential") -> tuple[Any, dict]:
    """Sample with the same calls and options as ``ckmodel.fit`` (``fit._sample``), timed.

    Returns the InferenceData and ``compile_s``, ``sampling_s`` (and, for time-boxed nutpie
    runs, ``iterations`` per chain and ``finished``).
    """
    import pymc as pm

    info: dict[str, Any] = {}
    if sampler == "nutpie":
        import nutpie

        t0 = time.perf_counter()
        compiled = nutpie.compile_pymc_model(pm_model)
        info["compile_s"] = time.perf_counter() - t0
        info["compiled"] = compiled
        # every chain in its own thread, as ckmodel.fit runs nutpie (faster than one thread
        # per core on 2 cores: the threads overlap nutpie's own bookkeeping)
        kw = dict(draws=st.draws, tune=st.tune, chains=st.chains, seed=seed, cores=st.chains,
                  progress_bar=False, target_accept=TARGET_ACCEPT,
                  low_rank_modified_mass_matrix=st.low_rank)
        t0 = time.perf_counter()
        if st.time_box is None:
            idata = nutpie.sample(compiled, save_warmup=False, **kw)
            info["sampling_s"] = time.perf_counter() - t0
            return idata, info
        bg = nutpie.sample(compiled, save_warmup=True, blocking=False, **kw)
        try:
            idata = bg.wait(timeout=st.time_box)
            info["finished"] = True
        except TimeoutError:
            idata = bg.abort()  # the draws so far
            info["finished"] = False
        info["sampling_s"] = time.perf_counter() - t0
        return idata, info
    with pm_model:
        if sampler == "pymc":
            t0 = time.perf_counter()
            idata = pm.sample(draws=st.draws, tune=st.tune, chains=st.chains, cores=None,
                              random_seed=seed, target_accept=TARGET_ACCEPT, progressbar=False,
                              compute_convergence_checks=False)
            total = time.perf_counter() - t0
            info["sampling_s"] = float(idata.posterior.attrs.get("sampling_time", total))
            info["compile_s"] = total - info["sampling_s"]
            return idata, info
        if sampler in ("numpyro", "blackjax"):
            kw = dict(random_seed=seed, nuts_sampler=sampler, target_accept=TARGET_ACCEPT,
                      progressbar=False, compute_convergence_checks=False,
                      nuts_sampler_kwargs={"chain_method": chain_method})
            # JAX compiles the whole sampler on the first call; a 1-chain run of 2+2 iterations
            # measures that (compile), and is subtracted from the full run's wall time
            t0 = time.perf_counter()
            pm.sample(draws=2, tune=2, chains=1, **kw)
            info["compile_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            idata = pm.sample(draws=st.draws, tune=st.tune, chains=st.chains, **kw)
            total = time.perf_counter() - t0
            info["sampling_s"] = total - info["compile_s"]
            info["wall_s"] = total
            if info["sampling_s"] < 0.1 * total:  # the estimate failed; count everything
                info["sampling_s"] = total
            return idata, info
    raise ValueError(sampler)


def jax_grad_check(pm_model: Any, n: int = 20) -> dict[str, Any]:
    """JAX log density + gradient at the initial point, as PyMC's JAX samplers compute it.

    ``pm.sample(nuts_sampler="numpyro"/"blackjax")`` differentiates the JAX-translated log
    density with ``jax.grad`` (not PyTensor's symbolic gradient), so JAX implementations of
    PyTensor ops that are not gradient-safe show up here as non-finite gradients.
    """
    import jax
    import jax.numpy as jnp
    from pymc.sampling.jax import get_jaxified_logp

    jax.config.update("jax_enable_x64", True)
    logp = get_jaxified_logp(pm_model)
    ip = pm_model.initial_point()
    names = [v.name for v in pm_model.value_vars]
    x = [jnp.asarray(ip[k]) for k in names]
    f = jax.jit(jax.value_and_grad(logp))
    t0 = time.perf_counter()
    val, grad = f(x)
    jax.block_until_ready(grad)
    compile_s = time.perf_counter() - t0
    bad = [k for k, g in zip(names, grad, strict=True) if not np.all(np.isfinite(np.asarray(g)))]
    t0 = time.perf_counter()
    for _ in range(n):
        jax.block_until_ready(f(x))
    return {"logp": float(val), "finite": not bad and bool(np.isfinite(float(val))),
            "bad": bad, "compile_s": compile_s, "ms": (time.perf_counter() - t0) / n * 1e3}


def patch_jax_softplus() -> None:
    """Benchmark-only workaround: a gradient-safe JAX Softplus for PyTensor.

    PyTensor's JAX translation of ``softplus`` nests ``jnp.where`` over branches with
    ``exp(x)`` and ``exp(-x)``; for |x| > ~710 the untaken branch overflows and ``jax.grad``
    returns NaN (0 * inf). ckmodel's smooth gate (``gate_int``) evaluates softplus((t - tmax)/w)
    with w = 0.25 d, so x reaches ~1400 at day 365 and every gradient in tmax is NaN.
    ``max(x, 0) + log1p(exp(-|x|))`` is exact and safe everywhere.
    """
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.scalar.math import Softplus

    @jax_funcify.register(Softplus)
    def _softplus(op: Any, **kwargs: Any) -> Any:
        def softplus(x: Any) -> Any:
            return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))

        return softplus


# ----------------------------------------------------------------------------------------------
# Stan side


def _prior_mu_sd(spec: Any) -> tuple[list[float], list[float]]:
    mus, sds = [], []
    for p in spec.parameters:
        normal = p.prior.normal_on(p.scale)
        if normal is None:
            raise ValueError(f"the Stan models need Normal priors on the transformed scale "
                             f"({p.name}: {p.prior})")
        mus.append(float(normal[0]))
        sds.append(float(normal[1]))
    return mus, sds


def _half_normal_sd(prior: Any) -> float:
    if prior.dist != "HalfNormal":
        raise ValueError(f"the Stan models need HalfNormal IIV/sigma priors, got {prior}")
    return float(prior.params["sigma"])


def stan_covariates(spec: Any, pdata: Any, covariates: tuple[str, ...]) -> dict[str, Any]:
    """Covariate design of the closed-form Stan programs: ``X_cov`` (subject x coefficient),
    the parameter each coefficient shifts and its Normal prior, built by ckmodel's own
    :func:`~ckmodel.population.covariates.covariate_design` (as ``build_model`` builds it)."""
    from ckmodel.population.covariates import covariate_design, parse_covariates

    cols, params, mus, sds = [], [], [], []
    for eff in parse_covariates(covariates):
        x, labels, prior, _ = covariate_design(eff, pdata.covariates[eff.covariate])
        if prior.dist != "Normal":
            raise ValueError(f"the Stan models need Normal covariate priors ({eff.label})")
        for k in range(len(labels)):
            cols.append(x[:, k])
            params.append(spec.param_names.index(eff.parameter) + 1)
            mus.append(float(prior.params.get("mu", 0.0)))
            sds.append(float(prior.params.get("sigma", 1.0)))
    x_cov = np.column_stack(cols) if cols else np.zeros((pdata.n_subjects, 0))
    return {"K_cov": len(cols), "X_cov": x_cov.tolist(), "cov_param": params, "b_mu": mus,
            "b_sd": sds}


def stan_data(spec: Any, pdata: Any, covariates: tuple[str, ...] = ()
              ) -> tuple[dict[str, Any], np.ndarray]:
    """Stan data of ``pdata`` under ``spec``, and the record order used (sorted by subject)."""
    if np.any(np.sum(np.isfinite(pdata.amt), axis=1) != 1):
        raise ValueError("the Stan benchmark models take one dose per subject")
    order = np.argsort(pdata.subject_index, kind="stable")
    subj = pdata.subject_index[order]
    blq = pdata.blq[order]
    value = np.where(blq, pdata.lloq[order], pdata.dv[order])
    idx_obs = (np.flatnonzero(~blq) + 1).tolist()
    idx_blq = (np.flatnonzero(blq) + 1).tolist()
    mus, sds = _prior_mu_sd(spec)
    iiv = [p for p in spec.parameters if p.iiv is not None]
    common = {"N_subj": pdata.n_subjects, "N_obs": int(len(order)), "value": value.tolist(),
              "N_blq": len(idx_blq), "idx_obs": idx_obs, "idx_blq": idx_blq,
              "prior_mu": mus, "prior_sd": sds,
              "iiv_sd": [_half_normal_sd(p.iiv) for p in iiv]}
    dose_t = pdata.dose_time[:, 0]
    amt = pdata.amt[:, 0]
    if spec.name in CLOSED_MODELS:
        tau = pdata.time[order] - dose_t[subj]
        if np.any(tau <= 0):
            raise ValueError("the closed-form Stan models take records after the dose only")
        closed = dict(common, subj=(subj + 1).tolist(), tau=tau.tolist(),
                      amt=amt[subj].tolist(), w=float(spec.constants["w"]),
                      **stan_covariates(spec, pdata, covariates))
    elif covariates:
        raise ValueError("the ODE Stan model takes no covariate effects")
    if spec.name == CLOSED:
        assert spec.param_names == ("f0", "rho", "tmax", "alpha", "beta", "fb")
        assert [p.scale for p in spec.parameters] == ["log"] * 5 + ["logit"]
        assert pdata.analytes == ("PB_QPCR",)
        return dict(closed, sigma_sd=_half_normal_sd(spec.output("PB_QPCR").sigma)), order
    if spec.name == BM:
        assert spec.param_names == ("f0", "rho", "tmax", "alpha", "beta", "fb", "kbm", "kmb",
                                    "cpc")
        assert [p.scale for p in spec.parameters] == ["log"] * 5 + ["logit"] + ["log"] * 3
        assert set(pdata.analytes) <= {"PB_QPCR", "PB_FLOW", "BM_QPCR"}
        names = np.asarray(pdata.analytes)[pdata.analyte_index[order]]
        ana = pdata.analyte_index[order]

        def idx(sel: np.ndarray) -> list[int]:
            return (np.flatnonzero(sel) + 1).tolist()

        pb = names != "BM_QPCR"
        return dict(closed, A=len(pdata.analytes), ana=(ana + 1).tolist(),
                    N_pb=int(pb.sum()), idx_pb=idx(pb), idx_bm=idx(~pb),
                    N_flow=int((names == "PB_FLOW").sum()), idx_flow=idx(names == "PB_FLOW"),
                    K=len(iiv), iiv_idx=[spec.param_names.index(p.name) + 1 for p in iiv],
                    sigma_sd=[_half_normal_sd(spec.output(a).sigma) for a in pdata.analytes]
                    ), order
    assert spec.name == ODE
    assert spec.param_names == ("f0", "r_exp", "L50", "ag_n", "Emax", "d_e", "k_em", "k_me", "k_ex",
                                "d_m", "d_x", "g", "k_kill", "E50", "q_n", "k_n", "r_bm")
    assert all(p.scale == "log" for p in spec.parameters)
    if np.unique(dose_t).size != 1:
        raise ValueError("the ODE benchmark needs every dose at the same time")
    t0 = float(dose_t[0])
    time_ = pdata.time[order]
    ana = pdata.analyte_index[order]
    kinds = {"PB_QPCR": 1, "BM_QPCR": 2, "BM_BLAST": 3}
    out = [kinds[pdata.analytes[a]] for a in ana]
    ts: list[float] = []
    t_start, n_t, tpos = [], [], np.zeros(len(order), int)
    o_start, o_n = [], []
    for i in range(pdata.n_subjects):
        rows = np.flatnonzero(subj == i)
        o_start.append(int(rows[0]) + 1 if len(rows) else 1)
        o_n.append(len(rows))
        uniq = np.unique(time_[rows][time_[rows] > t0])
        t_start.append(len(ts) + 1)
        n_t.append(len(uniq))
        for r in rows:
            if time_[r] > t0:
                tpos[r] = len(ts) + 1 + int(np.searchsorted(uniq, time_[r]))
        ts.extend(uniq.tolist())
    iiv_idx = [spec.param_names.index(p.name) + 1 for p in iiv]
    return dict(common, o_start=o_start, o_n=o_n, A=len(pdata.analytes),
                ana=(ana + 1).tolist(), out=out, t0=t0, T=len(ts), ts=ts, t_start=t_start,
                n_t=n_t, tpos=tpos.tolist(), amt=amt.tolist(),
                blast0=pdata.covariates["BM_BLAST_PCT"].to_numpy(float).tolist(),
                P=len(spec.param_names), K=len(iiv), iiv_idx=iiv_idx,
                sigma_sd=[_half_normal_sd(spec.output(a).sigma) for a in pdata.analytes],
                rtol=1e-6, atol=1e-8, max_steps=100000), order


def pymc_to_stan_params(spec: Any, pdata: Any, point: dict[str, np.ndarray]) -> dict[str, Any]:
    """Constrained Stan parameters equal to a PyMC point (unconstrained value variables)."""
    from ckmodel.population.model import transformed_name

    iiv = [p for p in spec.parameters if p.iiv is not None]
    sig = [float(np.exp(point[f"sigma_{a}_log__"])) for a in pdata.analytes]
    out = {
        "mu": [float(point[transformed_name(p.name, p.scale)]) for p in spec.parameters],
        "omega": [float(np.exp(point[f"omega_{p.name}_log__"])) for p in iiv],
        "z": np.asarray(point["z"], float).tolist(),
        "sigma": sig[0] if spec.name == CLOSED else sig,
    }
    if spec.name in CLOSED_MODELS:
        out["b_cov"] = np.asarray(point.get("beta", np.zeros(0)), float).tolist()
    return out


def jittered_points(pm_model: Any, n: int, seed: int, scale: float = JITTER) -> list[dict]:
    """PyMC initial point plus uniform(-scale, scale) on every unconstrained value."""
    rng = np.random.default_rng(seed)
    ip = pm_model.initial_point()
    return [{k: np.asarray(v) + rng.uniform(-scale, scale, np.shape(v)) for k, v in ip.items()}
            for _ in range(n)]


def stan_program(model: str) -> str:
    return (STAN_DIR / f"{model}.stan").read_text()


def stan_build(model: str, data: dict[str, Any], seed: int) -> tuple[Any, float]:
    import stan

    t0 = time.perf_counter()
    posterior = stan.build(stan_program(model), data=data, random_seed=seed)
    return posterior, time.perf_counter() - t0


def check_log_density(spec: Any, pdata: Any, pm_model: Any, posterior: Any, n_points: int,
                      seed: int, scale: float = 0.5) -> dict[str, float]:
    """Stan and PyMC log densities (Jacobians included) at the same ``n_points`` points.

    Stan's equals PyMC's minus log(2) per half-normal prior (Stan's truncated normal drops it);
    returns that expected offset, the mean observed offset and the largest deviation from it.
    """
    logp = pm_model.compile_logp(jacobian=True)
    pts = jittered_points(pm_model, n_points, seed, scale=scale)
    diffs, lps = [], []
    for pt_ in pts:
        lp_pm = float(logp(pt_))
        unc = posterior.unconstrain_pars(pymc_to_stan_params(spec, pdata, pt_))
        lp_st = float(posterior.log_prob(unc, adjust_transform=True))
        diffs.append(lp_pm - lp_st)
        lps.append(lp_pm)
    n_half = sum(p.iiv is not None for p in spec.parameters) + len(pdata.analytes)
    d = np.asarray(diffs)
    return {"expected_offset": n_half * LOG2, "mean_offset": float(d.mean()),
            "max_abs_dev": float(np.max(np.abs(d - n_half * LOG2))),
            "max_rel_dev": float(np.max(np.abs(d - n_half * LOG2) / np.abs(lps))),
            "logp_range": (float(min(lps)), float(max(lps))), "n_points": n_points,
            "jitter": scale}


def stan_grad_ms(posterior: Any, spec: Any, pdata: Any, pm_model: Any, n: int = 10) -> float:
    """Milliseconds per log density + gradient through pystan (includes its HTTP round trip)."""
    pt_ = jittered_points(pm_model, 1, 0, scale=0.0)[0]
    unc = posterior.unconstrain_pars(pymc_to_stan_params(spec, pdata, pt_))
    posterior.grad_log_prob(unc)
    t0 = time.perf_counter()
    for _ in range(n):
        posterior.grad_log_prob(unc)
    return (time.perf_counter() - t0) / n * 1e3


def stan_inits(spec: Any, pdata: Any, pm_model: Any, chains: int, seed: int,
               scale: float = JITTER) -> list[dict]:
    """One init per chain: PyMC's initial point (prior medians, z = 0) with uniform(-scale,
    scale) jitter on the unconstrained scale (PyMC's and nutpie's is scale 1)."""
    return [pymc_to_stan_params(spec, pdata, p)
            for p in jittered_points(pm_model, chains, seed + 7, scale=scale)]


def _stan_worker(job_path: str, out_path: str) -> None:
    """Child process: build (cached by httpstan) and sample; write draws and timings."""
    import stan

    job = pickle.loads(Path(job_path).read_bytes())
    posterior = stan.build(job["program"], data=job["data"], random_seed=job["seed"])
    st = job["settings"]
    # httpstan caches finished fits by model, data, arguments and seed and would return a
    # rerun instantly from the cache: clear this model's cached fits first
    import shutil

    import httpstan.cache

    fits = httpstan.cache.model_directory(posterior.model_name) / "fits"
    shutil.rmtree(fits, ignore_errors=True)
    print(f"SAMPLING_START {time.time()}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # refresh=1 when time-boxed: progress ("Iteration: i / n") after every iteration
    fit = posterior.sample(num_chains=st["chains"], num_warmup=st["tune"],
                           num_samples=st["draws"], delta=TARGET_ACCEPT, init=job["inits"],
                           refresh=1 if st["time_box"] is not None else 100)
    wall = time.perf_counter() - t0
    print(f"SAMPLING_SECONDS {wall}", file=sys.stderr, flush=True)
    names = ["mu", "omega", "sigma", "divergent__", "treedepth__", "n_leapfrog__"]
    if job["data"].get("K_cov"):
        names.append("b_cov")
    draws = {}
    for n in names:
        a = np.asarray(fit[n])  # (*dims, draws * chains), draw-major
        a = a.reshape(*a.shape[:-1], -1, st["chains"])
        draws[n] = np.moveaxis(np.moveaxis(a, -1, 0), -1, 1)  # (chain, draw, *dims)
    Path(out_path).write_bytes(pickle.dumps({"wall": wall, "draws": draws}))
    shutil.rmtree(fits, ignore_errors=True)


def run_stan(model: str, data: dict[str, Any], inits: list[dict], st: Settings, seed: int,
             hard_timeout: float) -> dict[str, Any]:
    """Sample in a child process (so a time box can stop it); parse its progress if stopped."""
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp, "job.pkl"), Path(tmp, "out.pkl")
        job.write_bytes(pickle.dumps({"program": stan_program(model), "data": data,
                                      "seed": seed, "inits": inits, "settings": asdict(st)}))
        errf = Path(tmp, "stderr.txt")
        t0 = time.perf_counter()
        with open(errf, "wb") as err:
            proc = subprocess.Popen([sys.executable, __file__, "--_stan-worker", str(job),
                                     str(out)], stdout=err, stderr=err, start_new_session=True)
            limit = st.time_box if st.time_box is not None else hard_timeout
            deadline = t0 + limit + 600.0  # until sampling starts: build (cached) + start-up
            timed_out = False
            while proc.poll() is None:
                time.sleep(0.5)
                if deadline > t0 + limit + 599.0:
                    started = re.findall(r"SAMPLING_START ([0-9.]+)", errf.read_text(
                        errors="replace"))
                    if started:  # the time box counts from the start of sampling
                        deadline = time.perf_counter() + limit - (time.time() - float(
                            started[-1]))
                if time.perf_counter() > deadline:
                    os.killpg(proc.pid, signal.SIGKILL)  # the worker and its chain processes
                    proc.wait()
                    timed_out = True
        elapsed = time.perf_counter() - t0
        text = errf.read_text(errors="replace")
        if not timed_out and proc.returncode == 0 and out.exists():
            res = pickle.loads(out.read_bytes())
            res["finished"] = True
            return res
        # pystan's progress: "Sampling:  37% (740/2000)" (all chains together)
        prog = re.findall(r"\((\d+)/(\d+)\)", text)
        done, total = (int(prog[-1][0]), int(prog[-1][1])) if prog else (0, 0)
        start = re.findall(r"SAMPLING_START ([0-9.]+)", text)
        if start:
            elapsed = time.time() - float(start[-1])
        return {"finished": False, "timed_out": timed_out, "elapsed": elapsed,
                "iterations_done": done, "iterations_total": total,
                "returncode": proc.returncode, "stderr_tail": text[-1500:]}


# ----------------------------------------------------------------------------------------------
# the benchmark


def _ckmodel_row(res: Result, idata: Any, info: dict, var_names: list[str], st: Settings,
                 full: Settings | None) -> None:
    res.compile_s = info.get("compile_s", float("nan"))
    res.sampling_s = info.get("sampling_s", float("nan"))
    s = summarise(idata, var_names)
    if st.time_box is not None:
        # stats of every iteration done (warmup included), per chain
        warm = getattr(idata, "warmup_sample_stats", None)
        steps = [x for x in (_stat(idata, ("n_steps",), "warmup_sample_stats"),
                             _stat(idata, ("n_steps",))) if x is not None]
        n_iter = sum(int(x.sizes["draw"]) for x in steps)
        res.extra["iterations_per_chain"] = n_iter
        res.extra["finished"] = info.get("finished")
        if steps:
            tot = sum(float(x.sum()) for x in steps)
            res.mean_steps = tot / max(n_iter * st.chains, 1)
        if warm is not None and "depth" in warm:
            d = [x for x in (_stat(idata, ("depth",), "warmup_sample_stats"),
                             _stat(idata, ("depth",))) if x is not None]
            res.mean_depth = sum(float(x.sum()) for x in d) / max(n_iter * st.chains, 1)
        div = [x for x in (_stat(idata, ("diverging",), "warmup_sample_stats"),
                           _stat(idata, ("diverging",))) if x is not None]
        res.divergences = sum(float(x.sum()) for x in div)
        if info.get("finished") and "min_ess" in s:
            res.min_ess = s["min_ess"]
            res.ess_per_s = res.min_ess / res.sampling_s
        if full is not None and n_iter:
            res.extrapolated = True
            rounds = math.ceil(full.chains / max(min(st.chains, os.cpu_count() or 1), 1))
            per_iter = res.sampling_s / n_iter  # chains run side by side
            res.full_sampling_s = per_iter * (full.tune + full.draws) * rounds
            res.note = (f"{n_iter} it/chain in {res.sampling_s:.0f} s "
                        f"({'finished' if info.get('finished') else 'time box hit'})")
        return
    res.min_ess = s.get("min_ess", float("nan"))
    res.ess_per_s = res.min_ess / res.sampling_s
    res.divergences = s.get("divergences", float("nan"))
    res.mean_depth = s.get("mean_depth", float("nan"))
    res.mean_steps = s.get("mean_steps", float("nan"))


def _have_jax() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _have_stan() -> bool:
    try:
        import stan  # noqa: F401
    except ImportError:
        return False
    return True


_JAX_STATE = {"patched": False}  # patch_jax_softplus() is process-wide once applied


def _bench_sampler(res: Result, sampler: str, pm_model: Any, st: Settings,
                   full: Settings | None, args: argparse.Namespace, var_names: list[str],
                   results: list[Result], chain_method: str = "sequential") -> bool:
    """Run one ckmodel sampler, fill ``res`` (appended to ``results``); False if it failed."""
    results.append(res)
    print(f"  {res.sampler} ...", flush=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata, info = run_ckmodel(sampler, pm_model, st, args.seed, chain_method)
        _ckmodel_row(res, idata, info, var_names, st, full)
        if sampler == "nutpie" and "compiled" in info:
            res.s_per_grad_ms = _nutpie_grad_ms(info["compiled"], pm_model)
    except Exception as exc:  # noqa: BLE001 - reported, the benchmark goes on
        res.error = _fmt_exc(exc)
        print(f"  {res.sampler} FAILED: {res.error}", flush=True)
        return False
    print(f"  {res.sampler}: compile {res.compile_s:.1f} s, sampling {res.sampling_s:.1f} s, "
          f"min ESS {res.min_ess:.0f}, div {res.divergences:.0f}, "
          f"steps {res.mean_steps:.1f} {res.note}", flush=True)
    return True


def _bench_jax_sampler(dataset: str, model: str, sampler: str, pm_model: Any, st: Settings,
                       full: Settings | None, args: argparse.Namespace, var_names: list[str],
                       results: list[Result], state: dict[str, Any]) -> None:
    """numpyro/blackjax exactly as ``ckmodel.fit`` calls them; on failure, the failure row and
    then a labelled run with the benchmark-only workaround."""
    label = sampler
    try:
        chk = jax_grad_check(pm_model)
    except Exception as exc:  # noqa: BLE001
        results.append(Result(dataset, model, sampler, st.label(), error=_fmt_exc(exc)))
        print(f"  {sampler} FAILED (JAX log density): {results[-1].error}", flush=True)
        return
    if not chk["finite"] and not state["patched"]:
        msg = (f"non-finite JAX gradient at the initial point in {', '.join(chk['bad'])} (logp "
               f"{chk['logp']:.2f} is finite): PyTensor's JAX Softplus is not gradient-safe "
               "for |x| > ~710 and gate_int evaluates softplus((t - tmax)/w); every NUTS "
               "transition diverges")
        results.append(Result(dataset, model, sampler, st.label(), error=msg,
                              s_per_grad_ms=chk["ms"]))
        print(f"  {sampler} FAILED: {msg}", flush=True)
        if args.no_jax_patch:
            return
        patch_jax_softplus()
        state["patched"] = True
        chk = jax_grad_check(pm_model)
    if state["patched"]:
        label = f"{sampler} [bench: safe softplus]"
    if not chk["finite"]:
        results.append(Result(dataset, model, label, st.label(), s_per_grad_ms=chk["ms"],
                              error=f"non-finite JAX gradient in {', '.join(chk['bad'])}"))
        print(f"  {label} FAILED: {results[-1].error}", flush=True)
        return
    res = Result(dataset, model, label, st.label(), s_per_grad_ms=chk["ms"])
    ok = _bench_sampler(res, sampler, pm_model, st, full, args, var_names, results)
    if not ok and sampler == "blackjax" and "Only supporting" in res.error:
        res2 = Result(dataset, model, f"{label} [chain_method=vectorized]", st.label(),
                      s_per_grad_ms=chk["ms"])
        _bench_sampler(res2, sampler, pm_model, st, full, args, var_names, results,
                       chain_method="vectorized")


def bench_one(dataset: str, data: Any, model: str, samplers: list[str], st: Settings,
              full: Settings | None, args: argparse.Namespace, results: list[Result],
              checks: dict[str, Any], covariates: tuple[str, ...] = ()) -> None:
    key = f"{dataset}/{model}"
    print(f"\n=== {key}: {st.label()} ===", flush=True)
    spec, pdata, pm_model, build_s = build(model, data, covariates=covariates,
                                           iiv_sd=args.iiv_sd)
    print(f"{pdata.n_subjects} subjects, {pdata.n_obs} records ({int(pdata.blq.sum())} BLQ), "
          f"analytes {', '.join(pdata.analytes)}; PyMC model built in {build_s:.1f} s",
          flush=True)
    if covariates:
        print(f"covariate effects: {', '.join(covariates)}", flush=True)
    checks[key] = {"n_subjects": pdata.n_subjects, "n_obs": pdata.n_obs,
                   "n_blq": int(pdata.blq.sum()), "analytes": list(pdata.analytes),
                   "covariates": list(covariates)}
    from ckmodel.fitting import FUSED_SAMPLERS

    var_names = population_vars(spec, pdata, covariates)
    fused_model = build(model, data, fused=True, covariates=covariates, iiv_sd=args.iiv_sd)[2]
    seed = args.seed
    state = _JAX_STATE
    for sampler in samplers:
        if sampler in ("numpyro", "blackjax") and not _have_jax():
            res = Result(dataset, model, sampler, st.label(), note="skipped (JAX not installed)")
            results.append(res)
            print(f"  {sampler}: {res.note}", flush=True)
            continue
        if sampler in ("numpyro", "blackjax"):
            _bench_jax_sampler(dataset, model, sampler, pm_model, st, full, args, var_names,
                               results, state)
            continue
        _bench_sampler(Result(dataset, model, sampler, st.label()), sampler,
                       fused_model if sampler in FUSED_SAMPLERS else pm_model, st, full, args,
                       var_names, results)
    if model == ODE and _have_jax() and not any(s in samplers for s in ("numpyro", "blackjax")):
        # the JAX samplers are not run on the ODE model by default; time their log density
        try:
            chk = jax_grad_check(pm_model, n=5)
            results.append(Result(dataset, model, "JAX logp+grad only", "-",
                                  compile_s=chk["compile_s"], s_per_grad_ms=chk["ms"],
                                  note="no sampling; what numpyro/blackjax would evaluate" + (
                                      "" if chk["finite"] else
                                      f"; NON-FINITE gradient in {', '.join(chk['bad'])}")))
            print(f"  JAX logp+grad: {chk['ms']:.1f} ms (jit {chk['compile_s']:.1f} s), finite "
                  f"{chk['finite']}", flush=True)
        except Exception as exc:  # noqa: BLE001
            results.append(Result(dataset, model, "JAX logp+grad only", "-",
                                  error=_fmt_exc(exc)))
            print(f"  JAX logp+grad FAILED: {results[-1].error}", flush=True)
    if args.skip_stan:
        return
    res = Result(dataset, model, "stan", st.label())
    results.append(res)
    if not _have_stan():
        res.note = "skipped (pystan not installed)"
        print(f"  stan: {res.note}")
        return
    # the Stan programs write omega as <lower=0> (log transform): checks and inits use the
    # log form of the same model (its signed form differs only in the sampler's coordinates)
    pm_model = build(model, data, covariates=covariates, iiv_sd="log")[2]
    try:
        sdata, _ = stan_data(spec, pdata, covariates)
        print("  stan: building ...", flush=True)
        posterior, res.compile_s = stan_build(model, sdata, seed)
        if res.compile_s < 10:
            res.extra["build_cached"] = True
        chk = check_log_density(spec, pdata, pm_model, posterior, args.check_points, seed,
                                scale=0.5 if model in CLOSED_MODELS else 0.1)
        checks[key]["log_density"] = chk
        print(f"  stan vs PyMC log density at {chk['n_points']} points (initial point + "
              f"U(-{chk['jitter']}, {chk['jitter']}) jitter; logp in "
              f"[{chk['logp_range'][0]:.1f}, {chk['logp_range'][1]:.1f}]): offset "
              f"{chk['mean_offset']:.6f} (expected {chk['expected_offset']:.6f}: log 2 per "
              f"half-normal), max |deviation| {chk['max_abs_dev']:.2e} (relative "
              f"{chk['max_rel_dev']:.1e})", flush=True)
        res.s_per_grad_ms = stan_grad_ms(posterior, spec, pdata, pm_model)
        # ODE: inits near the prior medians (jitter 0.1); with PyMC's jitter of 1 on the log
        # rates the adaptive rk45 spends the first iterations in very stiff regions
        inits = stan_inits(spec, pdata, pm_model, st.chains, seed,
                           scale=JITTER if model in CLOSED_MODELS else ODE_STAN_JITTER)
        out = run_stan(model, sdata, inits, st, seed, hard_timeout=args.stan_timeout)
    except Exception as exc:  # noqa: BLE001
        res.error = _fmt_exc(exc)
        print(f"  stan FAILED: {res.error}", flush=True)
        return
    if out["finished"]:
        import arviz as az

        d = out["draws"]
        res.sampling_s = out["wall"]
        pop = [k for k in ("mu", "omega", "b_cov", "sigma") if k in d]
        idata = az.InferenceData(
            posterior=az.convert_to_dataset({k: d[k] for k in pop}),
            sample_stats=az.convert_to_dataset({"diverging": d["divergent__"][..., 0],
                                                "tree_depth": d["treedepth__"][..., 0],
                                                "n_steps": d["n_leapfrog__"][..., 0]}))
        s = summarise(idata, pop)
        res.min_ess = s.get("min_ess", float("nan"))
        res.ess_per_s = res.min_ess / res.sampling_s
        res.divergences = s.get("divergences", float("nan"))
        res.mean_depth = s.get("mean_depth", float("nan"))
        res.mean_steps = s.get("mean_steps", float("nan"))
        if st.time_box is not None and full is not None:
            res.extrapolated = True
            rounds = math.ceil(full.chains / max(min(st.chains, os.cpu_count() or 1), 1))
            res.full_sampling_s = res.sampling_s / (st.tune + st.draws) * (
                full.tune + full.draws) * rounds
            res.note = f"finished {st.tune + st.draws} it/chain"
    else:
        res.extra.update({k: out[k] for k in ("iterations_done", "iterations_total",
                                              "elapsed", "returncode")})
        if not out.get("timed_out"):
            res.error = f"Stan sampling failed (rc {out['returncode']}):\n{out['stderr_tail']}"
        elif out["iterations_done"] and full is not None:
            res.extrapolated = True
            per_chain = out["iterations_done"] / st.chains
            sampling_s = out["elapsed"]  # since the worker started sampling
            res.sampling_s = sampling_s
            rounds = math.ceil(full.chains / max(min(st.chains, os.cpu_count() or 1), 1))
            res.full_sampling_s = sampling_s / per_chain * (full.tune + full.draws) * rounds
            res.note = (f"time box hit: {out['iterations_done']}/{out['iterations_total']} "
                        "iterations")
        else:
            res.note = (f"time box hit with no progress reported "
                        f"({out['iterations_done']}/{out['iterations_total']})")
    print(f"  stan: build {res.compile_s:.1f} s, sampling {res.sampling_s:.1f} s, "
          f"min ESS {res.min_ess:.0f}, div {res.divergences:.0f}, steps {res.mean_steps:.1f} "
          f"{res.note}", flush=True)


def _nutpie_grad_ms(compiled: Any, pm_model: Any, n: int = 50) -> float:
    """ms per log density + gradient of a nutpie-compiled model (numba), at the initial point."""
    try:
        from pymc.blocking import DictToArrayBijection

        x = DictToArrayBijection.map(pm_model.initial_point()).data
        t0 = time.perf_counter()
        compiled.logp_func(x)
        n = int(min(n, max(3, 1.0 / max(time.perf_counter() - t0, 1e-6))))
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                compiled.logp_func(x)
            best = min(best, (time.perf_counter() - t0) / n)
        return best * 1e3
    except Exception:  # noqa: BLE001 - a diagnostic only
        return float("nan")


def bench_fit_e2e(data: Any, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Wall time of ``ckmodel.fit(data, model)`` with its defaults (closed form, nutpie,
    4 x (500 + 500), sampling on until converged)."""
    from ckmodel import fit

    kw = {} if not args.quick else {"draws": 50, "tune": 50, "chains": 2}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit(data, model, seed=args.seed, progressbar=False, **kw)
    wall = time.perf_counter() - t0
    conv = f.meta.get("convergence", {})
    return {"wall_s": wall, "sampling_seconds": f.meta.get("sampling_seconds"),
            "divergences": conv.get("divergences"), "min_ess_bulk": conv.get("min_ess_bulk"),
            "max_rhat": conv.get("max_rhat"), "settings": kw or "defaults",
            "draws_kept": f.meta.get("draws"), "model": model}


def bench_pm_ode(data: Any, n_subjects: int, steps_per_iter: float, seed: int = SEED
                 ) -> dict[str, Any]:
    """One log density + gradient of antigen_driven through ``pm.ode.DifferentialEquation``.

    ``DifferentialEquation`` solves one system per call (scipy ``odeint`` on the ODE augmented
    with forward sensitivities, in Python), so a population log density + gradient is one such
    solve per subject. This compiles one subject's solution and its gradient in y0 and theta
    (a log-likelihood-like weighted sum of the states at the record times), and times it over
    all ``n_subjects`` subjects, each with its own parameters (typical values with random
    effects drawn at the IIV priors' medians). Building the full hierarchical graph with one
    Op per subject gives the same per-call work but takes many minutes to compile. No dosing
    events: the dose is the initial condition, as in ckmodel's fit.
    """
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    from ckmodel.population import prepare
    from ckmodel.spec import load_model

    spec = load_model(ODE)
    pdata = prepare(data, spec)
    if pdata.n_subjects != n_subjects:
        raise ValueError(f"expected {n_subjects} subjects, got {pdata.n_subjects}")
    pn = spec.param_names
    t0 = float(pdata.dose_time[0, 0])
    times = np.unique(pdata.time[pdata.time > t0])

    def rhs(y: Any, t: Any, p: Any) -> list[Any]:
        th = dict(zip(pn, [p[j] for j in range(len(pn))], strict=True))
        e, m, x, llb, nn = (y[i] for i in range(5))
        lb = pt.exp(llb)
        kp = th["r_exp"] + th["d_e"] + th["k_em"] + th["k_ex"]
        a = lb / th["L50"] + th["ag_n"] * nn
        f = a / (1 + a)
        kill = th["k_kill"] * e / (e + th["E50"])
        return [kp * f * e / (1 + e / th["Emax"])
                - (th["k_em"] + th["k_ex"] * f + th["d_e"]) * e + th["k_me"] * f * m,
                th["k_em"] * e - th["k_me"] * f * m - th["d_m"] * m,
                th["k_ex"] * f * e - th["d_x"] * x,
                th["g"] * (1 - lb / 100) - kill,
                th["k_n"] * (1 - nn) - th["q_n"] * kill * nn]

    ode = pm.ode.DifferentialEquation(func=rhs, times=times, n_states=5, n_theta=len(pn),
                                      t0=t0)
    y0 = pt.dvector("y0")
    th = pt.dvector("theta")
    w = pt.dmatrix("w")
    sol = ode(y0, th)
    loss = (pt.log(pt.maximum(sol, 1e-300)) * w).sum()
    t_c = time.perf_counter()
    fn = pytensor.function([y0, th, w], [loss, *pytensor.grad(loss, [y0, th])])
    compile_s = time.perf_counter() - t_c
    rng = np.random.default_rng(seed)
    typical = np.array([spec.typical_values()[p] for p in pn])
    omega = np.array([p.iiv.median() if p.iiv is not None else 0.0 for p in spec.parameters])
    blast = pdata.covariates["BM_BLAST_PCT"].to_numpy(float)
    subj = []
    for i in range(pdata.n_subjects):
        thi = typical * np.exp(omega * rng.standard_normal(len(pn)))
        wi = np.zeros((len(times), 5))
        for r in np.flatnonzero(pdata.subject_index == i):
            if pdata.time[r] > t0:
                wi[np.searchsorted(times, pdata.time[r]), :3] += 1.0
        subj.append((np.array([thi[0] * pdata.amt[i, 0], 0.0, 0.0, np.log(blast[i]), 1.0]), thi,
                     wi))
    fn(*subj[0])
    best = []
    for _ in range(2):
        t1 = time.perf_counter()
        for args_ in subj:
            fn(*args_)
        best.append(time.perf_counter() - t1)
    grad_s = min(best)
    n_iter = 4 * 1000
    return {"n_subjects": pdata.n_subjects, "compile_s": compile_s, "grad_s": grad_s,
            "grad_s_first": best[0], "steps_per_iter": steps_per_iter,
            "full_fit_h": grad_s * steps_per_iter * n_iter / 2 / 3600.0}


# ----------------------------------------------------------------------------------------------
# output


def _f(x: float, digits: int = 1, approx: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    s = f"{x:.{digits}f}"
    return f"~{s}" if approx else s


def print_table(results: list[Result]) -> str:
    lines = ["| data set | model | sampler | run | compile s | sampling s | min bulk ESS | "
             "ESS/s | div | mean depth | mean leapfrog | ms/grad | full-run sampling s | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        note = r.note
        if r.error:
            note = "FAILED: " + r.error.splitlines()[0][:120]
        if r.extra.get("build_cached"):
            note = (note + "; " if note else "") + "build from httpstan cache"
        lines.append(
            f"| {r.dataset} | {r.model} | {r.sampler} | {r.settings} | {_f(r.compile_s)} | "
            f"{_f(r.sampling_s)} | {_f(r.min_ess, 0)} | {_f(r.ess_per_s, 2)} | "
            f"{_f(r.divergences, 0)} | {_f(r.mean_depth, 2)} | {_f(r.mean_steps, 1)} | "
            f"{_f(r.s_per_grad_ms, 3)} | {_f(r.full_sampling_s, 0, approx=True)} | {note} |")
    text = "\n".join(lines)
    print(text)
    return text


def ratios(results: list[Result]) -> str:
    """ckmodel over Stan: ESS/s (closed form); for the time-boxed ODE runs, the extrapolated
    full-run sampling time and the cost of one log density + gradient (Stan's through pystan,
    less its HTTP round trip estimated by the closed-form model's figure on the same data)."""
    out = ["| data set | model | sampler | ckmodel / Stan | basis |", "|---|---|---|---|---|"]
    stan = {(r.dataset, r.model): r for r in results if r.sampler == "stan"}
    for r in results:
        s = stan.get((r.dataset, r.model))
        if r.sampler == "stan" or s is None or r.error:
            continue
        if (not r.extrapolated and not s.extrapolated and math.isfinite(r.ess_per_s)
                and math.isfinite(s.ess_per_s)):
            out.append(f"| {r.dataset} | {r.model} | {r.sampler} | "
                       f"{r.ess_per_s / s.ess_per_s:.1f}x | ESS/s (min bulk ESS / sampling s) |")
            continue
        parts, basis = [], []
        if math.isfinite(r.full_sampling_s) and math.isfinite(s.full_sampling_s):
            parts.append(f"~{s.full_sampling_s / r.full_sampling_s:.1f}x")
            basis.append("extrapolated 4x(500+500) sampling time, equal ESS per draw assumed")
        if math.isfinite(r.s_per_grad_ms) and math.isfinite(s.s_per_grad_ms):
            http = next((x.s_per_grad_ms for x in results if x.sampler == "stan"
                         and x.dataset == r.dataset and x.model == CLOSED
                         and math.isfinite(x.s_per_grad_ms)), 0.0)
            stan_ms = max(s.s_per_grad_ms - http, 1e-9)
            parts.append(f"~{stan_ms / r.s_per_grad_ms:.1f}x")
            basis.append("ms per log density + gradient" + (
                f" (Stan {s.s_per_grad_ms:.1f} ms less {http:.1f} ms pystan HTTP round trip)"
                if http else " (Stan's includes pystan's HTTP round trip)"))
        if parts:
            out.append(f"| {r.dataset} | {r.model} | {r.sampler} | {' ; '.join(parts)} | "
                       f"{' ; '.join(basis)} |")
    text = "\n".join(out)
    print(text)
    return text


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10 simulated subjects, 2 chains x (50 + 50), ODE 2 x "
                         "(10 + 10) in 120 s boxes, no pm.ode baseline")
    ap.add_argument("--samplers", default=",".join(ALL_SAMPLERS),
                    help="ckmodel samplers for the closed form (default: %(default)s)")
    ap.add_argument("--ode-samplers", default="nutpie",
                    help="ckmodel samplers for the ODE model (default: %(default)s; PyMC's NUTS "
                         "runs the kernel through Python-level perform() calls)")
    ap.add_argument("--skip-stan", action="store_true", help="no Stan runs")
    ap.add_argument("--datasets", default="example,sim,sparse",
                    help="example (data/example_trial/ck.csv, skipped if absent), sim (simulated "
                         "from the fitted model), sparse (50 patients, 4 blood samples each, "
                         "covariates) (default: %(default)s)")
    ap.add_argument("--models", default=f"{CLOSED},{BM},{ODE}", help="default: %(default)s")
    ap.add_argument("--n-sim", type=int, default=None, help="subjects of the simulated set "
                    "(default 40; 10 with --quick)")
    ap.add_argument("--ode-tune", type=int, default=None, help="ODE warm-up per chain "
                    "(default 100; 10 with --quick)")
    ap.add_argument("--ode-draws", type=int, default=None, help="ODE draws per chain "
                    "(default 100; 10 with --quick)")
    ap.add_argument("--ode-time-box", type=float, default=None,
                    help="seconds per ODE sampler run before it is stopped and extrapolated "
                         "(default 150; 120 with --quick)")
    ap.add_argument("--no-jax-patch", action="store_true",
                    help="do not rerun JAX samplers with the benchmark's gradient-safe softplus "
                         "after ckmodel's own path fails")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end fit() timing")
    ap.add_argument("--no-pm-ode", action="store_true", help="skip the pm.ode baseline")
    ap.add_argument("--check-points", type=int, default=10,
                    help="points of the Stan/PyMC log-density comparison")
    ap.add_argument("--stan-timeout", type=float, default=1800.0,
                    help="hard limit (s) of a closed-form Stan run")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--iiv-sd", default="auto", choices=("auto", "signed", "log"),
                    help="how ckmodel samples the IIV SDs (PopulationOptions.iiv_sd; default: "
                         "the package's); Stan keeps its <lower=0> program")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--_stan-worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._stan_worker:
        _stan_worker(*args._stan_worker)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("pymc", "pytensor", "jax", "numba", "httpstan", "stan", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)

    quick = args.quick
    n_sim = args.n_sim or (10 if quick else 40)
    closed = Settings(2, 50, 50) if quick else FULL[CLOSED]
    ode = Settings(2, args.ode_tune or (10 if quick else 100),
                   args.ode_draws or (10 if quick else 100),
                   time_box=args.ode_time_box or (120.0 if quick else 150.0), low_rank=True)
    ode_full = Settings(4, 500, 500, low_rank=True)
    samplers = [s for s in args.samplers.split(",") if s]
    ode_samplers = [s for s in args.ode_samplers.split(",") if s]
    for s in (*samplers, *ode_samplers):
        if s not in ALL_SAMPLERS:
            ap.error(f"unknown sampler {s!r} (choose from {ALL_SAMPLERS})")
    models = [m for m in args.models.split(",") if m]
    datasets = [d for d in args.datasets.split(",") if d]

    import platform

    import pymc
    import pytensor

    print(f"bench_fit: python {platform.python_version()}, pymc {pymc.__version__}, pytensor "
          f"{pytensor.__version__}, {os.cpu_count()} CPU(s); quick={quick}; seed {args.seed}")
    if not EXAMPLE.exists() and "example" in datasets:
        print(f"note: {EXAMPLE.relative_to(ROOT)} not found; the example data set is skipped")
    t_start = time.perf_counter()
    results: list[Result] = []
    checks: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    example_data = {}
    for ds_name in datasets:
        for model in models:
            if ds_name not in DATASETS_OF.get(model, (ds_name,)):
                print(f"\nnote: {ds_name}/{model} skipped ({model} is benchmarked on "
                      f"{', '.join(DATASETS_OF[model])})", flush=True)
                continue
            loaded = load_dataset(ds_name, model, n_sim)
            if loaded is None:
                continue
            data, covariates = loaded
            if ds_name == "example":
                example_data[model] = data
            label = {"example": "example trial", "sparse": f"sparse{SPARSE_N}"}.get(
                ds_name, f"sim{n_sim}")
            try:
                if model in CLOSED_MODELS:
                    bench_one(label, data, model, samplers, closed, None, args, results, checks,
                              covariates)
                else:
                    bench_one(label, data, model, ode_samplers, ode, ode_full, args, results,
                              checks)
            except Exception as exc:  # noqa: BLE001 - e.g. the data do not fit the model
                err = _fmt_exc(exc)
                print(f"=== {label}/{model} FAILED: {err}", flush=True)
                results.append(Result(label, model, "(setup)", "-", error=err))

    e2e_model = next((m for m in (BM, CLOSED) if m in example_data), None)
    if not args.no_e2e and e2e_model is not None:
        print(f"\n=== end-to-end ckmodel.fit() on the example trial ({e2e_model}, defaults) ===",
              flush=True)
        try:
            extras["fit_e2e"] = bench_fit_e2e(example_data[e2e_model], e2e_model, args)
            e = extras["fit_e2e"]
            print(f"fit(): {e['wall_s']:.1f} s wall ({e['sampling_seconds']} s sampling incl. "
                  f"compile; target < 30 s); divergences {e['divergences']}, min bulk ESS "
                  f"{e['min_ess_bulk']}, max R-hat {e['max_rhat']}", flush=True)
        except Exception as exc:  # noqa: BLE001
            extras["fit_e2e"] = {"error": _fmt_exc(exc)}
            print(f"fit() FAILED: {extras['fit_e2e']['error']}", flush=True)

    if not args.no_pm_ode and not quick and ODE in models:
        print("\n=== baseline: pm.ode.DifferentialEquation, antigen_driven, one logp+grad ===",
              flush=True)
        steps = [r.mean_steps for r in results
                 if r.model == ODE and r.sampler == "nutpie" and math.isfinite(r.mean_steps)]
        try:
            data = simulated_data(ODE, n=30)
            extras["pm_ode"] = bench_pm_ode(data, 30, steps[-1] if steps else 100.0, args.seed)
            p = extras["pm_ode"]
            print(f"pm.ode: {p['n_subjects']} subjects, compile {p['compile_s']:.1f} s, one "
                  f"logp+grad {p['grad_s']:.2f} s (30 solves with sensitivities); at "
                  f"{p['steps_per_iter']:.0f} leapfrog steps/iteration a 4x(500+500) fit on 2 "
                  f"cores would take ~{p['full_fit_h']:.1f} h (extrapolated)", flush=True)
        except Exception as exc:  # noqa: BLE001
            extras["pm_ode"] = {"error": _fmt_exc(exc)}
            print(f"pm.ode FAILED: {extras['pm_ode']['error']}", flush=True)

    print(f"\n=== results (closed form {closed.label()}; ODE {ode.label()}, full-run figures "
          f"extrapolated to {ode_full.label()} on {os.cpu_count()} cores; '~' = "
          "extrapolated) ===")
    table = print_table(results)
    print("\n=== ckmodel / Stan (targets: >= 8x closed form, >= 5x ODE) ===")
    rtext = ratios(results)
    print(f"\ntotal benchmark wall time {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "results": [asdict(r) for r in results], "checks": checks, "extras": extras,
            "table": table, "ratios": rtext}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
