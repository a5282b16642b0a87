"""Convergence at default settings on sparse real-shaped CAR-T data (issue 13).

Fits ``expansion_biphasic`` to :func:`ckmodel.testing.simulate_sparse_cohort` (50 patients,
blood qPCR near days 7, 14, 30, 100, a fifth BLQ, DOSE and PRODUCT covariates, small IIV of
rho), or the example trial (``--data trial``: ``blood_marrow``, all analytes), or a rich
40-subject set (``--data rich``: 12 samples each, ``bench_fit.simulated_data``), and prints,
per parametrisation tried: wall time, draws per chain kept (the fit samples on until its
checks pass, within ``--until-converged`` seconds), divergences, worst R-hat, lowest bulk
ESS with the parameter, ESS/s of that parameter, and whether the fit converged.

    python benchmarks/bench_sparse.py                       # defaults
    python benchmarks/bench_sparse.py --centered f0,tmax    # centre some random effects
    python benchmarks/bench_sparse.py --seeds 1,2,3 --json sparse.json
    python benchmarks/bench_sparse.py --data trial --centered "" --centered f0,tmax
                                           # the example trial, blood_marrow, all analytes
    python benchmarks/bench_sparse.py --mass-matrix low_rank --target-accept 0.95
    python benchmarks/bench_sparse.py --until-converged 0   # one run of --draws, as before
    python benchmarks/bench_sparse.py --centered shrinkage  # centring weights from a pilot
    python benchmarks/bench_sparse.py --centered whitened --centered none   # whitened, never
    python benchmarks/bench_sparse.py --iiv-sd log          # IIV SDs on the log scale (before)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

from ckmodel.errors import ConvergenceWarning
from ckmodel.fitting import fit
from ckmodel.fitting.convergence import convergence_table
from ckmodel.fitting.run_length import UNTIL_CONVERGED
from ckmodel.population.model import PopulationOptions
from ckmodel.testing import SPARSE_COVARIATES, simulate_sparse_cohort


def one(seed: int, centered: str | tuple[str, ...], args: argparse.Namespace) -> dict:
    if args.data == "trial":
        from ckmodel.data import read_ck
        from ckmodel.resources import example_data
        from ckmodel.spec import load_model

        model, covariates = load_model("blood_marrow"), []
        data = read_ck(example_data()[0], analytes=model.output_units)
    elif args.data == "rich":
        from bench_fit import simulated_data

        model, covariates = "expansion_biphasic", []
        data = simulated_data("expansion_biphasic", n=40, seed=seed)
    else:
        model, covariates = "expansion_biphasic", list(SPARSE_COVARIATES)
        data, _ = simulate_sparse_cohort(n=args.n, seed=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always", ConvergenceWarning)   # recorded, reported below
        res = fit(data, model, seed=seed, draws=args.draws, tune=args.tune,
                  chains=args.chains, covariates=covariates, mass_matrix=args.mass_matrix,
                  target_accept=args.target_accept, until_converged=args.until_converged,
                  options=PopulationOptions(centered=centered, iiv_sd=args.iiv_sd),
                  progressbar=False,
                  posterior_predictive=False, log_likelihood=False)
    wall = time.perf_counter() - t0
    c = res.meta["convergence"]
    table = convergence_table(res.idata)
    worst = table["ess_bulk"].idxmin()
    label = centered if isinstance(centered, str) else ",".join(centered) or "-"
    return {"data": args.data, "seed": seed, "centered": label, "iiv_sd": args.iiv_sd,
            "mass_matrix": args.mass_matrix, "target_accept": args.target_accept,
            "wall_s": round(wall, 1), "draws_kept": res.meta["draws"],
            "tune_kept": res.meta["tune"], "runs": len(res.meta.get("attempts") or [1]),
            "sampling_s": res.meta["sampling_seconds"], "divergences": c.get("divergences"),
            "max_rhat": round(c.get("max_rhat", float("nan")), 3),
            "min_ess_bulk": round(c.get("min_ess_bulk", float("nan"))), "worst": worst,
            "ess_per_s": round(table["ess_bulk"].min() / res.meta["sampling_seconds"], 1),
            "ok": c["ok"], "problems": [p[:60] for p in c.get("problems", [])],
            "weak_iiv": [w["parameter"] for w in c.get("weak_iiv", [])]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("sparse", "trial", "rich"), default="sparse")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--centered", action="append", default=None,
                    help="comma list of parameters to centre; repeat to compare settings")
    ap.add_argument("--mass-matrix", default="auto", choices=("auto", "diag", "low_rank"))
    ap.add_argument("--target-accept", type=float, default=0.9)
    ap.add_argument("--iiv-sd", default="auto", choices=("auto", "signed", "log"),
                    help="how the IIV SDs are sampled (PopulationOptions.iiv_sd)")
    ap.add_argument("--until-converged", type=float, default=UNTIL_CONVERGED,
                    help="time budget in seconds (0: one run)")
    ap.add_argument("--json")
    args = ap.parse_args()
    settings = [c if c in ("auto", "shrinkage", "whitened")
                else tuple(x for x in c.split(",") if x and x != "none")
                for c in (args.centered or ["auto"])]
    rows = [one(int(s), c, args) for c in settings for s in args.seeds.split(",")]
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
