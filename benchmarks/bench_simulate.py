"""Wall-clock benchmark of simulate() on the two solver paths.

Run from the repository root::

    python benchmarks/bench_simulate.py            # all cases
    python benchmarks/bench_simulate.py --quick    # 10x fewer patients
    python benchmarks/bench_simulate.py --profile  # cProfile of the closed-form case

Cases
-----
1. expansion_biphasic, 100,000 virtual patients x 100 time points, closed form, IIV and
   residual error on; best of 3 (target < 2 s).
2. antigen_driven, 10,000 patients x 100 time points, default ODE settings (RK45, all subjects
   of a chunk of 1000 stacked in one system, rtol 1e-8).
3. the same with DOP853 at rtol 1e-6 (atol and chunk at their defaults).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import time

import numpy as np

from ckmodel.simulate import simulate
from ckmodel.solve import SolverOptions

TIMES_DAYS = np.linspace(0.0, 365.0, 100)
TARGET_CLOSED_S = 2.0


def _best_of(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_closed(n: int, repeat: int) -> float:
    def run():
        simulate("expansion_biphasic", n=n, dose=1.0, times=TIMES_DAYS, seed=1)

    simulate("expansion_biphasic", n=10, times=TIMES_DAYS, seed=0)  # warm up (load, compile)
    return _best_of(run, repeat)


def bench_ode(n: int, options: SolverOptions | None, repeat: int) -> float:
    def run():
        simulate("antigen_driven", n=n, dose=1.0, times=TIMES_DAYS, seed=1,
                 covariates={"BM_BLAST_PCT": np.linspace(1.0, 90.0, n)}, options=options)

    return _best_of(run, repeat)


def profile_closed(n: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    simulate("expansion_biphasic", n=n, dose=1.0, times=TIMES_DAYS, seed=1)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10x fewer patients")
    ap.add_argument("--profile", action="store_true", help="cProfile the closed-form case")
    ap.add_argument("--skip-ode", action="store_true", help="only the closed-form case")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    n_closed, n_ode = 100_000 // scale, 10_000 // scale
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs visible")

    t = bench_closed(n_closed, repeat=3)
    flag = "OK" if t < TARGET_CLOSED_S or args.quick else f"ABOVE the {TARGET_CLOSED_S} s target"
    print(f"expansion_biphasic closed form: {n_closed:,} patients x {TIMES_DAYS.size} times, "
          f"IIV + residual: best of 3 = {t:.2f} s ({flag})")
    if args.profile:
        print(profile_closed(n_closed))
    if args.skip_ode:
        return
    t = bench_ode(n_ode, None, repeat=1)
    print(f"antigen_driven ODE RK45 (default, chunk 1000, rtol 1e-8): {n_ode:,} patients x "
          f"{TIMES_DAYS.size} times: {t:.1f} s")
    opts = SolverOptions(method="ode", ode_method="DOP853", rtol=1e-6)  # atol default 1e-10
    t = bench_ode(n_ode, opts, repeat=1)
    print(f"antigen_driven ODE DOP853 (rtol 1e-6, chunk 1000): {n_ode:,} patients x "
          f"{TIMES_DAYS.size} times: {t:.1f} s")


if __name__ == "__main__":
    main()
