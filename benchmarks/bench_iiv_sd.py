"""IIV SDs on the log scale against their signed form, one run each, same data and seeds.

For each data set and seed, nutpie samples the fused model (as ``ckmodel.fit`` does) once per
form of the IIV SDs (``PopulationOptions.iiv_sd``: ``log``, ``signed``), 4 x (500 + 500), and
prints sampling seconds, mean leapfrog steps, divergences, worst R-hat and the lowest bulk ESS
over the population parameters (typical values, omega, covariate effects, residual SDs) with
the three slowest, and ESS per second of the slowest. ``--draw-based`` uses nutpie's
draw-based (Stan-like) diagonal mass matrix instead of its gradient-based default.

    python benchmarks/bench_iiv_sd.py                                  # 4 data sets, seeds 1-3
    python benchmarks/bench_iiv_sd.py --sets example/blood_marrow --seeds 1
"""

from __future__ import annotations

import argparse
import time

from bench_fit import build, load_dataset, population_vars

SETS = "example/expansion_biphasic,sim/expansion_biphasic,sparse/expansion_biphasic," \
       "example/blood_marrow"


def one(dataset: str, model: str, form: str, seeds: list[int], args: argparse.Namespace
        ) -> list[dict]:
    import nutpie

    from ckmodel.fitting.convergence import convergence_table

    data, cov = load_dataset(dataset, model, 40)
    spec, pdata, pm_model, _ = build(model, data, fused=True, covariates=cov, iiv_sd=form)
    names = population_vars(spec, pdata, cov)
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(pm_model)
    compile_s = time.perf_counter() - t0
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        idata = nutpie.sample(compiled, draws=args.draws, tune=args.tune, chains=4, seed=seed,
                              cores=4, progress_bar=False, target_accept=0.9,
                              use_grad_based_mass_matrix=not args.draw_based)
        took = time.perf_counter() - t0
        table = convergence_table(idata, [n for n in names if n in idata.posterior])
        worst = sorted(table["ess_bulk"].items(), key=lambda kv: kv[1])[:3]
        rows.append({"data": f"{dataset}/{model}", "iiv_sd": form, "seed": seed,
                     "compile_s": round(compile_s, 1), "sampling_s": round(took, 1),
                     "steps": round(float(idata.sample_stats["n_steps"].mean())),
                     "div": int(idata.sample_stats["diverging"].sum()),
                     "max_rhat": round(float(table["r_hat"].max()), 3),
                     "min_ess": round(worst[0][1]), "ess_per_s": round(worst[0][1] / took, 1),
                     "slowest": ", ".join(f"{k} {v:.0f}" for k, v in worst)})
        print(" | ".join(str(x) for x in rows[-1].values()), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=SETS, help=f"DATASET/MODEL, comma-separated ({SETS})")
    ap.add_argument("--forms", default="log,signed")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--draw-based", action="store_true",
                    help="nutpie's draw-based (Stan-like) diagonal mass matrix")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("data | iiv_sd | seed | compile s | sampling s | steps | div | max R-hat | min ESS | "
          "ESS/s | slowest (bulk ESS)")
    rows = []
    for item in args.sets.split(","):
        dataset, model = item.split("/")
        for form in args.forms.split(","):
            rows += one(dataset, model, form, seeds, args)
    print("\npooled ESS/s (sum of min ESS over sum of sampling s), per data set and form:")
    for item in args.sets.split(","):
        for form in args.forms.split(","):
            sel = [r for r in rows if r["data"] == item and r["iiv_sd"] == form]
            pooled = sum(r["min_ess"] for r in sel) / sum(r["sampling_s"] for r in sel)
            print(f"  {item} {form}: {pooled:.1f}")


if __name__ == "__main__":
    main()
