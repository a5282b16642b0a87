"""Generate data/example_small/ck.csv and outcomes.csv (seeded, no ckmodel dependency).

Run from anywhere: ``python data/example_small/make_example_small.py``. The kinetics follow a
Stein-type expansion / biphasic-decline curve (Stein et al., CPT Pharmacometrics Syst Pharmacol
2019) with log-normal between-subject variability and log-normal residual noise (SD 0.5):

    C(t) = Cmax * exp(rho * (t - tmax))                                  t <  tmax
    C(t) = Cmax * ((1 - B) * exp(-a (t - tmax)) + B * exp(-b (t - tmax)))   t >= tmax

with a = ln 2 / 4 d (fast phase), b = ln 2 / 200 d (slow phase), Cmax ~ 1e4 copies/ug gDNA
at the middle dose, tmax ~ 10 d.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SEED = 20240611
HERE = Path(__file__).resolve().parent
LLOQ_QPCR = 50.0  # copies/ug gDNA
LLOQ_FLOW = 1.0  # CAR+ cells/uL
PB_DAYS = [1, 4, 7, 10, 14, 21, 28, 42, 56, 84, 180]
BM_DAYS = [14, 28, 84]
FLOW_DAYS = [7, 10, 14, 21, 28, 56, 84]
DOSES = {1: 0.3, 2: 1.0, 3: 3.0}  # dose level -> AMT, 1e6 CAR+ T cells/kg
SUBJECTS = {"101": 1, "102": 1, "103": 2, "104": 2, "105": 2, "106": 3, "107": 3, "108": 3}
HSCT = {"105": 60.0}  # subject -> day of allo-HSCT; only PB_QPCR at day 84 is kept after it
MDV_RECORD = ("102", "PB_FLOW", 21, "hemolysed sample")
HEADER = ["ID", "TIME", "EVID", "AMT", "ANALYTE", "DV", "LLOQ", "BLQ", "MDV", "MDV_REASON",
          "DOSE_LEVEL", "BM_BLAST_PCT", "LD", "AGE"]
OUTCOME_HEADER = ["ID", "DLT", "CRS_GRADE", "ICANS_GRADE", "BOR", "MRD_NEG", "EFS_TIME",
                  "EFS_EVENT", "OS_TIME", "OS_EVENT", "DOR_TIME", "DOR_EVENT", "HSCT_TIME", "ADA",
                  "ADA_TIME"]
# subject -> (DLT, CRS, ICANS, BOR, MRD_NEG, EFS event, OS event, ADA)
OUTCOMES = {
    "101": (0, 0, 0, "PD", 0, 1, 1, 0), "102": (0, 1, 0, "SD", 0, 1, 0, 0),
    "103": (0, 1, 0, "CRi", 0, 1, 0, 0), "104": (0, 2, 0, "CR", 1, 0, 0, 1),
    "105": (0, 2, 1, "CR", 1, 0, 0, 0), "106": (1, 3, 2, "CR", 1, 0, 0, 0),
    "107": (0, 2, 0, "CRh", 1, 1, 0, 0), "108": (0, 1, 0, "MLFS", 0, 1, 1, 0),
}


def stein(t: np.ndarray, cmax: float, tmax: float, rho: float, frac_slow: float) -> np.ndarray:
    """Expansion to tmax, then biphasic decline (copies/ug gDNA)."""
    a, b = np.log(2) / 4.0, np.log(2) / 200.0
    dt = t - tmax
    decline = cmax * ((1 - frac_slow) * np.exp(-a * dt) + frac_slow * np.exp(-b * dt))
    return np.where(t < tmax, cmax * np.exp(rho * np.minimum(dt, 0.0)), decline)


def fmt(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.3g}"


def main() -> None:
    rng = np.random.default_rng(SEED)
    rows, out_rows = [], []
    for sid, level in SUBJECTS.items():
        amt = DOSES[level]
        cmax = 1e4 * amt**0.5 * np.exp(rng.normal(0, 0.5))
        tmax = 10.0 * np.exp(rng.normal(0, 0.15))
        rho = 0.9 * np.exp(rng.normal(0, 0.2))
        frac_slow = 0.01 * np.exp(rng.normal(0, 0.5))
        cov = [str(level), f"{rng.uniform(5, 80):.0f}", "0" if sid == "102" else "1",
               f"{rng.integers(24, 76)}"]
        rows.append([sid, "0", "1", f"{amt}", ".", ".", ".", "0", "1", ".", *cov])
        hsct = HSCT.get(sid)
        samples = [("PB_QPCR", d, 1.0, LLOQ_QPCR) for d in PB_DAYS]
        samples += [("BM_QPCR", d, 0.6, LLOQ_QPCR) for d in BM_DAYS]
        samples += [("PB_FLOW", d, 0.01, LLOQ_FLOW) for d in FLOW_DAYS]
        samples.sort(key=lambda s: (s[1], s[0]))
        for analyte, day, scale, lloq in samples:
            noise = np.exp(rng.normal(0, 0.5))
            if hsct is not None and day > hsct and not (analyte == "PB_QPCR" and day == 84):
                continue
            value = scale * float(stein(np.array(day, float), cmax, tmax, rho, frac_slow)) * noise
            blq = value < lloq
            mdv, reason = ("1", MDV_RECORD[3]) if (sid, analyte, day) == MDV_RECORD[:3] \
                else ("0", ".")
            rows.append([sid, str(day), "0", ".", analyte, "." if blq else fmt(value),
                         f"{lloq:g}", "1" if blq else "0", mdv, reason, *cov])
        dlt, crs, icans, bor, mrd, efs_ev, os_ev, ada = OUTCOMES[sid]
        responder = bor in ("CR", "CRh", "CRi", "MLFS")
        efs = float(rng.uniform(60, 360)) if efs_ev else 365.0
        os_t = efs + float(rng.uniform(20, 120)) if os_ev else 365.0
        dor = f"{efs - 28:.0f}" if responder else "."
        out_rows.append([sid, dlt, crs, icans, bor, mrd, f"{efs:.0f}", efs_ev,
                         f"{min(os_t, 365.0):.0f}", os_ev if os_t <= 365 else 0, dor,
                         (efs_ev if responder else "."), f"{HSCT[sid]:g}" if sid in HSCT else ".",
                         ada, f"{rng.uniform(28, 90):.0f}" if ada else "."])
    with open(HERE / "ck.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows)
    with open(HERE / "outcomes.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(OUTCOME_HEADER)
        w.writerows(out_rows)


if __name__ == "__main__":
    main()
