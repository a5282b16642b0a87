"""Wall time of a full default ODE fit: ``antigen_driven`` on subjects simulated from it.

This is the issue's "30-subject ODE fit" target, measured the way ``ckmodel.fit`` samples: the
model ``fit()`` builds for nutpie (likelihood potentials sharing one solver node), nutpie with
its defaults there (4 chains x (500 tune + 500 draws), low-rank mass matrix, target accept
0.9, seed 1). Prints compile seconds, one log density + gradient, progress each minute, and at
the end sampling seconds, leapfrog steps per draw (warm-up and sampling), divergences, the
smallest bulk ESS over the population parameters and each chain's mean log density.

``--e2e`` instead times ``ckmodel.fit(data, "antigen_driven", seed=1)`` as a user calls it
(model build, nutpie compile, sampling, posterior predictive and pointwise log-likelihood) and
prints its wall time, its sampling time and the convergence summary. Run it twice to see the
effect of the compile cache (PyTensor's numba cache keeps the compiled log density).

Run: ``python benchmarks/bench_ode_fit.py [--n 30 | --data trial] [--time-box 1800] [--e2e]``
(10-15 min on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fit as B  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30, help="subjects (default %(default)s)")
    ap.add_argument("--time-box", type=float, default=1800.0,
                    help="stop sampling after this many seconds (default %(default)s)")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--e2e", action="store_true", help="time ckmodel.fit end to end")
    ap.add_argument("--seed", type=int, default=1, help="sampler seed (default %(default)s)")
    ap.add_argument("--iiv-sd", default="auto", choices=("auto", "signed", "log"),
                    help="how the IIV SDs are sampled, with --e2e (PopulationOptions.iiv_sd)")
    ap.add_argument("--centered", default="auto", choices=("auto", "whitened", "none"),
                    help="parametrisation of the random effects, with --e2e "
                         "(PopulationOptions.centered; none: non-centred, never whitened)")
    ap.add_argument("--target-accept", type=float, default=0.9,
                    help="target acceptance of the fit, with --e2e (default %(default)s)")
    ap.add_argument("--data", default="sim", choices=("sim", "trial"),
                    help="sim: --n subjects simulated from the model, all followed to day "
                         "365; trial: the bundled example trial (30 patients, follow-up "
                         "ended by allo-HSCT, progression or death)")
    ap.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                    help="fix a parameter at a value, with --e2e (PopulationOptions.fixed; "
                         "repeat)")
    args = ap.parse_args(argv)
    fixed = {k: float(v) for k, v in (f.split("=", 1) for f in args.fix)}
    warnings.simplefilter("ignore")
    import arviz as az
    import nutpie

    if args.data == "trial":
        from ckmodel import load_model, read_ck
        from ckmodel.resources import example_data

        data = read_ck(example_data()[0], analytes=load_model(B.ODE).output_units)
    else:
        data = B.simulated_data(B.ODE, n=args.n)
    if args.e2e:
        return fit_e2e(data, args.chains, args.seed, args.iiv_sd, args.centered,
                       args.target_accept, fixed)
    spec, pdata, model, _ = B.build(B.ODE, data, fused=True)
    print(f"{pdata.n_subjects} subjects, {pdata.n_obs} records, analytes "
          f"{', '.join(pdata.analytes)}", flush=True)
    t = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    print(f"compile {time.perf_counter() - t:.1f} s; log density + gradient "
          f"{B._nutpie_grad_ms(compiled, model):.2f} ms", flush=True)
    t0 = time.perf_counter()
    bg = nutpie.sample(compiled, draws=500, tune=500, chains=args.chains, seed=args.seed,
                       progress_bar=False, target_accept=B.TARGET_ACCEPT,
                       low_rank_modified_mass_matrix=True, save_warmup=True, blocking=False)
    idata, done = None, False
    while time.perf_counter() - t0 < args.time_box:
        try:
            idata = bg.wait(timeout=60)
            done = True
            break
        except TimeoutError:
            tr = bg.inspect()
            warm = tr.warmup_sample_stats
            post = getattr(tr, "sample_stats", None)
            n_post = post.sizes.get("draw", 0) if post is not None else 0
            print(f"{time.perf_counter() - t0:6.0f} s: warm-up draws {warm.sizes['draw']}, "
                  f"draws {n_post}", flush=True)
    if not done:
        idata = bg.abort()
    elapsed = time.perf_counter() - t0
    warm = idata.warmup_sample_stats
    print(f"sampling {elapsed:.0f} s ({'finished' if done else 'stopped at the time box'}); "
          f"warm-up steps/draw {float(warm.n_steps.mean()):.0f}")
    if "sample_stats" in idata.groups() and idata.sample_stats.sizes.get("draw", 0) > 4:
        st = idata.sample_stats
        names = [v for v in B.population_vars(spec, pdata) if v in idata.posterior]
        ess = az.ess(idata.posterior[names], method="bulk")
        mins = {v: float(ess[v].min()) for v in ess.data_vars}
        worst = min(mins, key=mins.get)
        print(f"draws {st.sizes['draw']} per chain, steps/draw {float(st.n_steps.mean()):.0f}, "
              f"divergences {int(st.diverging.sum())}, min bulk ESS {mins[worst]:.0f} "
              f"({worst}); mean log density by chain "
              f"{st.logp.mean('draw').values.round(1).tolist()}")
    return 0


def fit_e2e(data: object, chains: int, seed: int = 1, iiv_sd: str = "auto",
            centered: str = "auto", target_accept: float = 0.9,
            fixed: dict[str, float] | None = None) -> int:
    """``ckmodel.fit`` with its defaults on ``data``; prints wall time and diagnostics."""
    import ckmodel

    t0 = time.perf_counter()
    fit = ckmodel.fit(data, "antigen_driven", seed=seed, chains=chains, progressbar=False,
                      target_accept=target_accept, options=ckmodel.PopulationOptions(
                          iiv_sd=iiv_sd, centered=() if centered == "none" else centered,
                          fixed=fixed or {}))
    wall = time.perf_counter() - t0
    conv, m = fit.meta["convergence"], fit.meta
    print(f"ckmodel.fit end to end {wall:.0f} s ({wall / 60:.1f} min), IIV SDs {iiv_sd}: "
          f"compile {m['compile_seconds']:.0f} s, sampling {m['sampling_seconds']:.0f} s, the "
          f"rest (data, model build, posterior predictive, log-likelihood) "
          f"{wall - m['sampling_seconds'] - m['compile_seconds']:.0f} s")
    print(f"likelihood {fit.meta['likelihood']}; divergences {conv.get('divergences')}, "
          f"leapfrog steps/draw {conv.get('mean_leapfrog_steps', float('nan')):.0f}, max R-hat "
          f"{conv.get('max_rhat', float('nan')):.3f}, min bulk ESS "
          f"{conv.get('min_ess_bulk', float('nan')):.0f}, lagging chains "
          f"{conv.get('lagging_chains')}")
    table = fit.summary().parameters.sort_values("ess_bulk")
    print("lowest bulk ESS: " + ", ".join(f"{name} {row.ess_bulk:.0f} (R-hat {row.r_hat:.3f})"
                                          for name, row in table.head(4).iterrows()))
    grid = m.get("step_grid") or {}
    print("step grid: " + "; ".join(f"{k}: unstable {v.get('unstable_fraction')}, near the "
                                    f"limit {v.get('near_limit_fraction')}"
                                    for k, v in grid.items() if isinstance(v, dict)))
    print("runs: " + "; ".join(f"{a.get('random_effects', 'non-centred')} {a['tune']}+"
                               f"{a['draws']} ({a['seconds']:.0f} s, {a.get('divergences')} "
                               "divergences)" for a in m.get("attempts") or []))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
