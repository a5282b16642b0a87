"""Virtual patients from a posterior: speed per worker, and the RK4 kernel's error.

Usage: ``python benchmarks/bench_virtual.py [--patients 1000000] [--workers 1,2]
[--model antigen_driven]``.

The posterior is written by hand (:func:`ckmodel.testing.posterior_fit`: 30 subjects, the
spec's typical values and IIV), which is all a simulation reads; ``--patients`` virtual
patients are split into posterior draws x patients x 2 doses and reduced to PB_QPCR Cmax and
AUC0-28d on the dense exposure grid. ODE models run through the compiled RK4 kernel of the
fits with dense output (:func:`ckmodel.population.ode.rk4_states`). Printed: seconds and
patients per second per worker count (a local Dask cluster for more than one), the speed-up
against one worker on a warm cluster (the cold column adds the cluster start and each
worker's kernel compilation, on 20 patients per draw), whether the results are identical,
and the kernel's relative error against SciPy's DOP853 (rtol 1e-10) on 2,000 patients.
Target (issue 16): 1,000,000 ``antigen_driven`` patients in under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np


def main() -> None:
    from ckmodel.parallel import dask_client
    from ckmodel.population.ode import rk4_states
    from ckmodel.solve import SolverOptions, evaluate_outputs, solve_states
    from ckmodel.testing import posterior_fit, simulate_ckdata
    from ckmodel.virtual_patients import simulate_patients

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--model", default="antigen_driven")
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    covs = {"BM_BLAST_PCT": np.linspace(10, 80, 30)} if args.model == "antigen_driven" else None
    data, _ = simulate_ckdata(args.model, n=15, dose=[1.0, 3.0], seed=1, covariates=covs)
    fit, _ = posterior_fit(data, args.model, seed=1, n_draw=250)
    doses = [1.0, 3.0]
    n_draws = 100
    n_pat = max(1, args.patients // (len(doses) * n_draws))
    total = n_pat * n_draws * len(doses)
    kw = dict(n_patients=n_pat, n_draws=n_draws, seed=1, metrics=["CMAX", "AUC0_28"],
              analytes=["PB_QPCR"])
    simulate_patients(fit, doses, n_patients=20, n_draws=2, seed=1, metrics=["CMAX"],
                      analytes=["PB_QPCR"])  # compile the kernels
    print(f"{total:,} virtual {args.model} patients ({n_draws} draws x {n_pat} patients x "
          f"{len(doses)} doses), PB_QPCR CMAX and AUC0_28")
    print(f"{'workers':>8s} {'cold s':>8s} {'warm s':>8s} {'patients/s':>12s} "
          f"{'speed-up':>9s} identical")
    base = ref = None
    for w in [int(x) for x in args.workers.split(",")]:
        t0 = time.perf_counter()
        with dask_client(workers=w) as client:
            # cold: cluster start and each worker's kernel compilation included
            simulate_patients(fit, doses, client=client, **dict(kw, n_patients=20))
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            vp = simulate_patients(fit, doses, client=client, **kw)
            dt = time.perf_counter() - t0
        base = base or dt
        same = "" if ref is None else str(bool(np.array_equal(
            ref["PB_QPCR_CMAX"].values, vp["PB_QPCR_CMAX"].values)))
        ref = vp if ref is None else ref
        print(f"{w:8d} {cold:8.1f} {dt:8.1f} {total / dt:12,.0f} {base / dt:9.2f} {same}")
    spec = fit.spec
    if spec.solution is None:
        rng = np.random.default_rng(2)
        from ckmodel.simulate import individual_parameters

        n = 2000
        par = individual_parameters(spec, n, rng)
        cov = {c: np.exp(rng.normal(np.log(30), 0.6, n)) for c in spec.covariates}
        t = np.unique(np.concatenate([np.linspace(0, 84, 400), np.arange(0, 35, 0.1)]))
        t0 = time.perf_counter()
        a = rk4_states(spec, par, t, amt=np.ones(n), covariates=cov)
        t_rk4 = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = solve_states(spec, par, t, amt=np.ones(n), covariates=cov,
                         options=SolverOptions(method="ode", ode_method="DOP853", rtol=1e-10,
                                               atol=1e-12))
        t_dop = time.perf_counter() - t0
        fa = evaluate_outputs(spec, a, par, t, cov, names=["PB_QPCR"])["PB_QPCR"][:, 1:]
        fb = evaluate_outputs(spec, b, par, t, cov, names=["PB_QPCR"])["PB_QPCR"][:, 1:]
        rel = np.abs(fa - fb) / np.abs(fb)
        cmax = np.abs(fa.max(axis=1) / fb.max(axis=1) - 1)
        print(f"RK4 kernel (dense output) vs DOP853 rtol 1e-10, {n} patients x {t.size} times:"
              f" {t_rk4:.2f} s vs {t_dop:.1f} s ({t_dop / t_rk4:.0f}x); PB_QPCR relative error "
              f"median {np.median(rel):.1e}, 99th pct {np.quantile(rel, 0.99):.1e}, max "
              f"{rel.max():.1e}; Cmax max {cmax.max():.1e}")


if __name__ == "__main__":
    main()
