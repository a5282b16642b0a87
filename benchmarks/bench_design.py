"""Time 10,000 simulated trials per escalation design on one core (and optionally on Dask).

Usage: ``python benchmarks/bench_design.py [--n-trials 10000] [--workers N] [--repeat 3]``.
Targets (issue 16): 3+3 < 1 s, BOIN < 2 s, CRM < 10 s for 10,000 trials on one core; the
CK-guided design (41 x 41 posterior grid, updated patient by patient) is timed beside them. Each
figure is the best of ``--repeat`` runs (the first also pays for imports and table setup).
"""

from __future__ import annotations

import argparse
import time

from ckmodel.design import (
    BOIN,
    CRM,
    AcceleratedTitration,
    CKGuided,
    ExposureModel,
    ThreePlusThree,
    simulate_design,
)

TOX = [0.05, 0.1, 0.2, 0.35, 0.5]
TARGETS = {"3+3": 1.0, "3+3-mtd6": 1.0, "atd": None, "boin": 2.0, "crm": 10.0, "ck": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-trials", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    designs = {
        "3+3": ThreePlusThree(),
        "3+3-mtd6": ThreePlusThree(six_at_top=True),
        "atd": AcceleratedTitration(),
        "boin": BOIN(target=0.3, cohort_size=3, max_n=30),
        "crm": CRM(target=0.3, cohort_size=3, max_n=30,
                   skeleton=(0.05, 0.12, 0.25, 0.4, 0.55)),
        # CK-guided: log-normal exposure proportional to dose (log SD 0.8), 2000 samples/level
        "ck": CKGuided(ExposureModel.lognormal([0.5, 1, 2, 4, 8], median=3000.0, sd=0.8),
                       target=0.3, cohort_size=3, max_n=30),
    }
    where = "one core" if args.workers == 1 else f"{args.workers} local Dask workers"
    print(f"{args.n_trials} trials per design on {where}, true DLT rates {TOX}")
    print(f"{'design':10s} {'best s':>8s} {'target s':>9s}  P(select) per level")
    for name, rule in designs.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sim = simulate_design(rule, TOX, args.n_trials, seed=1, workers=args.workers)
            times.append(time.perf_counter() - t0)
        target = TARGETS[name]
        print(f"{name:10s} {min(times):8.3f} {'' if target is None else f'< {target:g}':>9s}  "
              f"{sim.p_select.round(3).tolist()}")


if __name__ == "__main__":
    main()
