"""Speed of ckmodel.nca on a large simulated cohort.

10,000 subjects x 15 samples of Stein-like CAR-T profiles (exponential expansion to Tmax, then
biphasic decline), log-normal noise, BLQ below a per-record LLOQ. Prints the best of three
end-to-end ``nca()`` timings and the NumPy-kernel-only time (``nca_arrays`` on pre-padded arrays).
PKNCA is an R package, so no peer ratio is printed.

Run: ``python benchmarks/bench_nca.py [n_subjects]``
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from ckmodel.nca import nca, nca_arrays

DAYS = np.array([0, 1, 4, 7, 10, 14, 21, 28, 42, 56, 84, 112, 168, 270, 365], dtype=float)


def simulate(n_subjects: int = 10_000, random_seed: int = 20240601) -> pd.DataFrame:
    """Long observation table (ID, ANALYTE, TIME, DV, LLOQ, BLQ, MDV, AFTER_HSCT)."""
    rng = np.random.default_rng(random_seed)
    n = n_subjects

    def lognormal(median, sd):
        return median * np.exp(rng.normal(0.0, sd, (n, 1)))

    c0, rho, tmax = lognormal(10.0, 0.8), lognormal(0.9, 0.3), lognormal(10.0, 0.3)
    alpha, beta, frac = lognormal(0.3, 0.3), lognormal(0.01, 0.4), lognormal(0.05, 0.5)
    t = DAYS[None, :]
    peak = c0 * np.exp(rho * tmax)
    dt = np.clip(t - tmax, 0.0, None)
    decline = peak * ((1 - frac) * np.exp(-alpha * dt) + frac * np.exp(-beta * dt))
    conc = np.where(t < tmax, c0 * np.exp(rho * np.minimum(t, tmax)), decline)
    conc = conc * np.exp(rng.normal(0.0, 0.3, conc.shape))
    conc[:, 0] = 0.0  # pre-infusion sample: no CAR-T cells
    lloq = np.full(conc.shape, 5.0)
    blq = conc < lloq
    ids = np.repeat(np.char.add("S", np.arange(n).astype(str)), len(DAYS))
    after = np.zeros(conc.shape, bool)
    after[rng.random(n) < 0.05, -3:] = True  # some subjects go to allo-HSCT
    return pd.DataFrame({
        "ID": ids, "ANALYTE": "PB_QPCR", "TIME": np.tile(DAYS, n),
        "DV": np.where(blq, np.nan, conc).ravel(), "LLOQ": lloq.ravel(),
        "BLQ": blq.ravel().astype(int), "MDV": 0, "AFTER_HSCT": after.ravel(),
    })  # fmt: skip


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(n_subjects: int = 10_000) -> None:
    obs = simulate(n_subjects)
    res = nca(obs)  # warm-up and a sanity check
    assert len(res) == n_subjects
    t_full = best_of(lambda: nca(obs))
    shape = (n_subjects, len(DAYS))
    arrays = [obs[c].to_numpy(dtype=float).reshape(shape) for c in ("TIME", "DV", "BLQ", "LLOQ")]
    t_kernel = best_of(lambda: nca_arrays(*arrays))
    lamz_ok = np.isfinite(res["LAMZ"]).mean()
    print(f"profiles: {n_subjects} x {len(DAYS)} samples ({len(obs)} records), "
          f"lambda_z estimable in {lamz_ok:.0%}")  # fmt: skip
    for label, sec in (("nca() end to end", t_full), ("nca_arrays() kernel only", t_kernel)):
        print(f"{label + ', best of 3:':38s} {sec:.3f} s  ({n_subjects / sec:,.0f} profiles/s)")
    print("target: < 2 s end to end; PKNCA (R) not available, no peer ratio")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
