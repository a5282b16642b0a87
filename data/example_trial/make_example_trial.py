"""Generate the bundled example trial: ``ck.csv``, ``outcomes.csv`` and ``truth.json``.

A simulated phase I of a CLL1/CD38 dual-target CAR-T in relapsed/refractory AML: accelerated
titration (single patients, escalating until the first DLT or grade >= 2 CRS/ICANS), then 3+3,
over five dose levels in 1e6 CAR+ T cells/kg. Every patient's cellular kinetics (CK) are
simulated from the ``blood_marrow`` model of the ckmodel catalog *before* the escalation rule sees
their DLT, so the escalation follows the simulated toxicity. Outcomes come from stated
exposure-response relations on each patient's true (noise-free) exposure. Nothing here is real
patient data. See ``README.md`` next to this file for the full description.

Run ``python data/example_trial/make_example_trial.py [OUT_DIR]``; it is seeded (``SEED``),
needs no network, takes about a second, and rewrites the three files bit-for-bit (each through a
temporary file and :func:`os.replace`, after :func:`ckmodel.data.check_ck` has passed them).

Kinetics (``models/blood_marrow.toml``, time ``t`` in days since infusion, dose ``AMT`` in
1e6 CAR+ T cells/kg)::

    X(t)    = f0 AMT [(1 - fb) exp(rho t - (rho + alpha) G) + fb exp(rho t - (rho + beta) G)]
    PB_QPCR = X(t) (kmb + kbm exp(-c t)) / c          c = kbm + kmb, G = smooth integral of a
    BM_QPCR = X(t) kbm (1 - exp(-c t)) / c            switch at tmax (width 0.25 d)
    PB_FLOW = PB_QPCR / cpc

Individual parameters: ``log theta_i = log theta_pop + covariate effects + eta_i`` (logit for
``fb``), ``eta_i ~ N(0, omega^2)``; tumour burden drives expansion through
``f0_i = f0 * (BM_BLAST_PCT / 30)^0.6 * exp(-0.7 [LD = 0]) * exp(eta)``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from ckmodel.data import check_ck
from ckmodel.design import (
    AcceleratedTitration,
    EscalationResult,
    ThreePlusThree,
    ToxicityTrigger,
    run_escalation,
)
from ckmodel.simulate import add_residual_error, individual_parameters
from ckmodel.solve import evaluate_outputs, solve_states
from ckmodel.spec import ModelSpec, load_model

SEED = 20250541  # the one seed: escalation/toxicity, observation and outcome streams spawn from it

HERE = Path(__file__).resolve().parent
MODEL = "blood_marrow"
TIME_UNIT = "day"
AMOUNT_UNIT = "1e6 CAR+ T cells/kg"

# --- design ---------------------------------------------------------------------------------
DOSE_LEVELS = (0.5, 1.0, 2.0, 4.0, 8.0)  # 1e6 CAR+ T cells/kg; DOSE_LEVEL 1..5 in the files
RULE = AcceleratedTitration(
    then=ThreePlusThree(), trigger=ToxicityTrigger(min_grade=2, n_events=1, on_dlt=True)
)
RULE_TEXT = ("AcceleratedTitration(then=ThreePlusThree(), trigger=ToxicityTrigger(min_grade=2, "
             "n_events=1, on_dlt=True)): one patient per level until the first DLT or grade >= 2 "
             "CRS/ICANS, then 3+3 with de-escalation (six patients at the MTD)")
MAX_PATIENTS = 37  # planned sample size of NCT06880354
MIN_PATIENTS = 25  # below this the escalation is followed by an expansion cohort at the MTD
EXPANSION_TOTAL = 30  # total enrolment after the expansion cohort
FIRST_ID = 101

# --- CK truth (names exactly as in models/blood_marrow.toml) --------------------------------
TYPICAL = {
    "f0": 3.0,  # copies/ug gDNA per 1e6 CAR+ T cells/kg, at BM_BLAST_PCT = 30 and LD = 1
    "rho": 0.9,  # 1/day, doubling time 0.77 d
    "tmax": 9.0,  # day
    "alpha": 0.16,  # 1/day, fast decline t1/2 4.3 d
    "beta": 0.0032,  # 1/day, slow decline t1/2 217 d
    "fb": 0.01,  # fraction of cells in the slow (memory-like) phase
    "kbm": 0.5,  # 1/day, blood -> marrow
    "kmb": 1.0,  # 1/day, marrow -> blood
    "cpc": 100.0,  # (copies/ug gDNA) per (CAR+ cells/uL)
}
OMEGA = {  # SD of the random effect on the parameter's log scale (logit for fb)
    "f0": 0.5, "rho": 0.08, "tmax": 0.12, "alpha": 0.3, "beta": 0.4, "fb": 0.5, "kbm": 0.3,
    "kmb": 0.0, "cpc": 0.3,
}
BLAST_REF = 30.0  # % marrow blasts, reference of the tumour-burden effects
COVARIATES = (
    {"formula": f"f0 ~ log(BM_BLAST_PCT / {BLAST_REF:g})", "parameter": "f0",
     "covariate": "BM_BLAST_PCT", "kind": "power", "reference": BLAST_REF,
     "coefficient": 0.6},
    {"formula": "f0 ~ cat(LD)", "parameter": "f0", "covariate": "LD", "kind": "categorical",
     "reference": 1, "coefficient": {"0": -0.7}},
)
SIGMA = {"PB_QPCR": 0.4, "BM_QPCR": 0.4, "PB_FLOW": 0.5}  # log-normal residual SD
LLOQ = {"PB_QPCR": 50.0, "BM_QPCR": 50.0, "PB_FLOW": 1.0}
SCHEDULE = {  # nominal days after infusion
    "PB_QPCR": (1, 4, 7, 10, 14, 21, 28, 42, 56, 84, 180, 365),
    "BM_QPCR": (14, 28, 84),
    "PB_FLOW": (4, 7, 10, 14, 21, 28, 56, 84),
}
VISITS = tuple(sorted(set().union(*SCHEDULE.values())))
JITTER = {"after_day": 10, "half_width": 0.5, "resolution": 0.1}  # visits after day 10: +-0.5 d
ASSESS_DAY = 28  # response assessment visit (marrow)
EXPOSURE_GRID = np.linspace(0.0, 28.0, 561)  # 0.05 d grid for the true Cmax, Tmax, AUC0-28

BASELINE = {  # distributions of the baseline covariates (one draw per patient, in this order)
    "BM_BLAST_PCT": "round(clip(exp(N(log 30, 0.8)), 5, 90)), %",
    "CLL1_POS": "round(Beta(6, 1.5), 2), fraction of blasts CLL1+",
    "CD38_POS": "round(Beta(8, 1.2), 2), fraction of blasts CD38+",
    "LD": "Bernoulli(0.9), Flu/Cy lymphodepletion given",
    "AGE": "round(clip(N(50, 13), 18, 70)), years",
    "WT": "round(clip(N(68, 12), 40, 110), 1), kg",
}

# --- outcome relations (exposure = true PB_QPCR Cmax and AUC0-28 on EXPOSURE_GRID) ----------
CMAX_REF = 1.0e4  # copies/ug gDNA
AUC_REF = 1.0e5  # day x copies/ug gDNA
BOR_ORDER = ("PD", "SD", "PR", "MLFS", "CRi", "CRh", "CR")  # worst to best
RESPONDERS = ("CR", "CRh", "CRi", "MLFS")
CRC = ("CR", "CRh", "CRi")
RELATIONS: dict[str, dict[str, Any]] = {
    "CRS_GRADE": {
        "model": "proportional odds: grade = #{k: L > theta_k}, L = b_cmax log(CMAX/CMAX_REF) "
                 "+ b_blast log(BM_BLAST_PCT/BLAST_REF) + Logistic(0, 1)",
        "b_cmax": 1.0, "b_blast": 0.5, "theta": [-1.0, 1.2, 2.8, 4.5]},
    "ICANS_GRADE": {
        "model": "proportional odds: grade = #{k: L > theta_k}, L = b_cmax log(CMAX/CMAX_REF) "
                 "+ Logistic(0, 1)",
        "b_cmax": 0.8, "theta": [2.5, 3.5, 4.5, 6.0]},
    "DLT": {
        "model": "DLT = 1 if CRS_GRADE >= 4 or ICANS_GRADE >= 3, else Bernoulli(p), logit p = "
                 "intercept + b_cmax log(CMAX/CMAX_REF) + b_blast log(BM_BLAST_PCT/BLAST_REF) "
                 "(other DLTs: prolonged grade-4 cytopenia, grade >= 3 infection)",
        "intercept": -3.0, "b_cmax": 1.0, "b_blast": 0.4},
    "ATD_GRADE": {
        "model": "worst toxicity grade seen by the accelerated-titration trigger = "
                 "max(CRS_GRADE, ICANS_GRADE) (haematological toxicity is expected in AML and "
                 "does not count)"},
    "BOR": {
        "model": "ordinal: category = BOR_ORDER[#{k: L > cut_k}], L = b_auc log(AUC0_28/AUC_REF)"
                 " - b_blast log(BM_BLAST_PCT/BLAST_REF) + b_cover (COVER - 0.95) + Logistic(0,"
                 " 1), COVER = 1 - (1 - CLL1_POS)(1 - CD38_POS) (blasts carrying at least one "
                 "target if expressed independently); NR is not generated (no death before "
                 "the day-28 assessment, see NRM)",
        "order": list(BOR_ORDER), "b_auc": 0.9, "b_blast": 0.6, "b_cover": 4.0,
        "cut": [-2.8, -1.3, -0.6, -0.2, 0.3, 0.8]},
    "MRD_NEG": {
        "model": "CRc only (else 0): Bernoulli(expit(intercept + b_auc log(AUC0_28/AUC_REF)))",
        "intercept": 0.3, "b_auc": 0.8},
    "NRM": {
        "model": "death without relapse/progression (infection during agranulocytosis) at "
                 "start + Weibull(shape, scale) days after infusion, everyone; it starts after "
                 "the DLT window and the day-28 assessment (a death inside the DLT window would "
                 "be a DLT)",
        "start": 29.0, "shape": 1.0, "scale": 2500.0},
    "RELAPSE": {
        "model": "responders: relapse at day-28 assessment + Weibull(shape, scale * "
                 "hr_mrd_neg^(-MRD_NEG/shape)), i.e. proportional hazards, HR for MRD-negative",
        "shape": 1.2, "scale": 250.0, "hr_mrd_neg": 0.35},
    "PROGRESSION": {
        "model": "non-responders: progression at the day-28 assessment for PD, else day-28 "
                 "assessment + Weibull(shape, scale[BOR])",
        "shape": 1.3, "scale": {"SD": 45.0, "PR": 75.0}},
    "POST_PROGRESSION_SURVIVAL": {
        "model": "death at relapse/progression + Weibull(shape, scale)",
        "shape": 1.2, "scale": 150.0},
    "HSCT": {
        "model": "responders proceed to allo-HSCT with probability p at day U(low, high) "
                 "(rounded), if still alive, relapse-free and followed at that day; CK sampling "
                 "stops before HSCT; EFS and DOR are censored at HSCT; OS continues",
        "p": 0.4, "low": 30, "high": 90},
    "POST_HSCT_SURVIVAL": {
        "model": "death at HSCT + Weibull(shape, scale)", "shape": 0.9, "scale": 900.0},
    "ADA": {
        "model": "round(fraction x N) patients drawn at random among those followed beyond "
                 "the first ADA visit are ADA positive, onset (ADA_TIME) at one of the ADA "
                 "visits before HSCT and last follow-up (uniform); no effect on CK (Mueller "
                 "2018)",
        "fraction": 0.12, "visits": [14, 28, 56, 84]},
    "FOLLOW_UP": {
        "model": "cohorts start 28 d (DLT window) + U{7..21} d screening after the previous "
                 "cohort's last infusion, patients within a cohort 7 d apart, expansion patients"
                 " U{7..14} d apart; data cut-off = last infusion + cutoff_after_last; follow-up"
                 " = min(max_follow_up, cut-off - own infusion day)",
        "cutoff_after_last": 400, "max_follow_up": 730},
    "EFS": {
        "model": "event = relapse, progression or death, whichever first; censored at HSCT "
                 "and at last follow-up; non-responders fail at progression (not backdated)"},
    "OS": {"model": "death from any cause; censored at last follow-up only"},
    "DOR": {
        "model": "responders: from the day-28 assessment to relapse or death; censored at "
                 "HSCT and at last follow-up"},
}
CK_END = ("CK sampling stops at death, at allo-HSCT (samples strictly before HSCT_TIME), at "
          "relapse/progression (off study for salvage; the visit documenting it is kept) and "
          "at the data cut-off; exception: one BLQ PB_QPCR record after HSCT for one patient")

CK_HEADER = ("ID", "TIME", "EVID", "AMT", "ANALYTE", "DV", "LLOQ", "BLQ", "MDV", "DOSE_LEVEL",
             "DOSE", "COHORT", "PART", "BM_BLAST_PCT", "CLL1_POS", "CD38_POS", "LD", "AGE", "WT")
OUTCOME_HEADER = ("ID", "DLT", "CRS_GRADE", "ICANS_GRADE", "BOR", "MRD_NEG", "EFS_TIME",
                  "EFS_EVENT", "OS_TIME", "OS_EVENT", "DOR_TIME", "DOR_EVENT", "HSCT_TIME", "ADA",
                  "ADA_TIME")


@dataclass
class Patient:
    """One simulated patient: covariates, true parameters, exposure, toxicity and outcomes."""

    pid: str
    level: int  # 0-based dose level
    cov: dict[str, float]
    params: dict[str, float]
    cmax: float
    tmax: float
    auc28: float
    crs: int
    icans: int
    dlt: int
    cohort: int = 0
    part: str = ""
    infusion_day: int = 0
    follow_up: float = 0.0
    visits: dict[int, float] = field(default_factory=dict)
    out: dict[str, Any] = field(default_factory=dict)
    ck_end: float = math.inf  # last sampling time allowed (inclusive)
    ck_before: float = math.inf  # samples strictly before this time (death, HSCT)

    @property
    def amt(self) -> float:
        """Dose in 1e6 CAR+ T cells/kg."""
        return DOSE_LEVELS[self.level]


def _blast_term(blasts: np.ndarray) -> np.ndarray:
    return np.log(blasts / BLAST_REF)


def _draw_baseline(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Baseline covariates of ``n`` new patients (see ``BASELINE``)."""
    blasts = np.round(np.clip(np.exp(rng.normal(np.log(30.0), 0.8, n)), 5, 90))
    cll1 = np.round(rng.beta(6.0, 1.5, n), 2)
    cd38 = np.round(rng.beta(8.0, 1.2, n), 2)
    ld = (rng.random(n) < 0.9).astype(np.int64)
    age = np.round(np.clip(rng.normal(50.0, 13.0, n), 18, 70))
    wt = np.round(np.clip(rng.normal(68.0, 12.0, n), 40, 110), 1)
    return {"BM_BLAST_PCT": blasts, "CLL1_POS": cll1, "CD38_POS": cd38, "LD": ld, "AGE": age,
            "WT": wt}


def individual_truth(spec: ModelSpec, cov: dict[str, np.ndarray], rng: np.random.Generator
                     ) -> dict[str, np.ndarray]:
    """True natural-scale CK parameters: typical values, covariate effects, random effects.

    Parameters
    ----------
    spec : ModelSpec
        The ``blood_marrow`` model.
    cov : dict of str to numpy.ndarray
        Baseline covariates, one value per patient (``BM_BLAST_PCT`` in %, ``LD`` 0/1).
    rng : numpy.random.Generator
        Source of the random effects.

    Returns
    -------
    dict of str to numpy.ndarray
        One array per parameter of the spec.
    """
    n = len(cov["LD"])
    params = individual_parameters(spec, n, rng, typical=TYPICAL, omega=OMEGA)
    power, ld = COVARIATES
    shift = power["coefficient"] * _blast_term(cov["BM_BLAST_PCT"])
    shift = shift + np.where(cov["LD"] == 0, ld["coefficient"]["0"], 0.0)
    params["f0"] = params["f0"] * np.exp(shift)
    return params


def true_exposure(spec: ModelSpec, params: dict[str, np.ndarray], amt: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free PB_QPCR Cmax, Tmax and AUC0-28 (trapezoid on ``EXPOSURE_GRID``).

    Returns
    -------
    cmax, tmax, auc28 : numpy.ndarray
        copies/ug gDNA, day, day x copies/ug gDNA; one value per patient.
    """
    states = solve_states(spec, params, EXPOSURE_GRID, amt=amt)
    pb = evaluate_outputs(spec, states, params, EXPOSURE_GRID)["PB_QPCR"]
    i = np.argmax(pb, axis=1)
    return pb.max(axis=1), EXPOSURE_GRID[i], np.trapezoid(pb, EXPOSURE_GRID, axis=1)


def _ordinal(latent: np.ndarray, cuts: list[float]) -> np.ndarray:
    return (latent[:, None] > np.asarray(cuts)[None, :]).sum(axis=1)


def toxicity(cmax: np.ndarray, blasts: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CRS grade, ICANS grade and DLT from true Cmax and baseline blasts (``RELATIONS``)."""
    n = len(cmax)
    lc, lb = np.log(cmax / CMAX_REF), _blast_term(blasts)
    r = RELATIONS["CRS_GRADE"]
    crs = _ordinal(r["b_cmax"] * lc + r["b_blast"] * lb + rng.logistic(size=n), r["theta"])
    r = RELATIONS["ICANS_GRADE"]
    icans = _ordinal(r["b_cmax"] * lc + rng.logistic(size=n), r["theta"])
    r = RELATIONS["DLT"]
    p = special.expit(r["intercept"] + r["b_cmax"] * lc + r["b_blast"] * lb)
    other = rng.random(n) < p
    dlt = ((crs >= 4) | (icans >= 3) | other).astype(np.int64)
    return crs, icans, dlt


class _Enrolment:
    """DLT sampler for :func:`ckmodel.design.run_escalation` that simulates whole patients.

    Each call enrols ``n`` patients at ``level``: baseline covariates, true CK parameters, true
    exposure, then CRS/ICANS grades and the DLT, all drawn from the runner's generator.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.patients: list[Patient] = []

    def enrol(self, level: int, n: int, rng: np.random.Generator) -> list[Patient]:
        cov = _draw_baseline(rng, n)
        params = individual_truth(self.spec, cov, rng)
        amt = np.full(n, DOSE_LEVELS[level])
        cmax, tmax, auc = true_exposure(self.spec, params, amt)
        crs, icans, dlt = toxicity(cmax, cov["BM_BLAST_PCT"], rng)
        new = []
        for j in range(n):
            pid = str(FIRST_ID + len(self.patients))
            p = Patient(pid, level, {k: v[j].item() for k, v in cov.items()},
                        {k: float(v[j]) for k, v in params.items()}, float(cmax[j]),
                        float(tmax[j]), float(auc[j]), int(crs[j]), int(icans[j]), int(dlt[j]))
            self.patients.append(p)
            new.append(p)
        return new

    def __call__(self, level: int, n: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        new = self.enrol(level, n, rng)
        return (np.array([p.dlt for p in new]),
                np.array([min(max(p.crs, p.icans), 5) for p in new]))


def _calendar(patients: list[Patient], rng: np.random.Generator) -> None:
    """Infusion study days and follow-up at the data cut-off (``RELATIONS['FOLLOW_UP']``)."""
    day, prev_cohort, last = 0, None, 0
    for p in patients:
        if prev_cohort is None:
            day = 0
        elif p.part == "EXP" and prev_cohort == p.cohort:
            day = last + int(rng.integers(7, 15))
        elif p.cohort != prev_cohort:
            day = last + 28 + int(rng.integers(7, 22))
        else:
            day = last + 7
        p.infusion_day, last, prev_cohort = day, day, p.cohort
    fu = RELATIONS["FOLLOW_UP"]
    cutoff = last + fu["cutoff_after_last"]
    for p in patients:
        p.follow_up = float(min(fu["max_follow_up"], cutoff - p.infusion_day))


def _visit_times(rng: np.random.Generator) -> dict[int, float]:
    """Actual visit days: nominal, jittered uniformly after day 10, rounded to 0.1 d."""
    u = rng.uniform(-JITTER["half_width"], JITTER["half_width"], len(VISITS))
    return {d: (float(d) if d <= JITTER["after_day"] else round(d + float(e), 1))
            for d, e in zip(VISITS, u, strict=True)}


def _r1(x: float) -> float:
    return round(float(x), 1)


def _outcomes(p: Patient, rng: np.random.Generator) -> None:
    """Response, MRD, event times, HSCT and ADA of one patient (``RELATIONS``)."""
    rel = RELATIONS
    # fixed number of draws per patient, whatever the branch
    e_bor, u_mrd = rng.logistic(), rng.random()
    w_nrm, w_rel, w_prog, w_pps = (rng.weibull(rel[k]["shape"]) for k in
                                   ("NRM", "RELAPSE", "PROGRESSION", "POST_PROGRESSION_SURVIVAL"))
    u_hsct, h_day, w_hsct = rng.random(), rng.uniform(rel["HSCT"]["low"], rel["HSCT"]["high"]), \
        rng.weibull(rel["POST_HSCT_SURVIVAL"]["shape"])

    t_assess = p.visits[ASSESS_DAY]
    fu = p.follow_up
    death_nrm = rel["NRM"]["start"] + rel["NRM"]["scale"] * w_nrm
    cover = 1.0 - (1.0 - p.cov["CLL1_POS"]) * (1.0 - p.cov["CD38_POS"])
    r = rel["BOR"]
    latent = (r["b_auc"] * math.log(p.auc28 / AUC_REF)
              - r["b_blast"] * math.log(p.cov["BM_BLAST_PCT"] / BLAST_REF)
              + r["b_cover"] * (cover - 0.95) + e_bor)
    bor = BOR_ORDER[int(np.sum(latent > np.asarray(r["cut"])))]
    mrd = 0
    if bor in CRC:
        m = rel["MRD_NEG"]
        mrd = int(u_mrd < special.expit(m["intercept"] + m["b_auc"] * math.log(p.auc28 / AUC_REF)))
    # relapse or progression time (days since infusion)
    if bor in RESPONDERS:
        m = rel["RELAPSE"]
        scale = m["scale"] * m["hr_mrd_neg"] ** (-mrd / m["shape"])
        fail = t_assess + scale * w_rel
    elif bor == "PD":
        fail = t_assess
    else:  # SD, PR
        fail = t_assess + rel["PROGRESSION"]["scale"][bor] * w_prog
    fail, death_nrm = _r1(fail), _r1(death_nrm)
    event = min(fail, death_nrm)
    death = death_nrm if death_nrm <= fail else _r1(fail + rel["POST_PROGRESSION_SURVIVAL"]
                                                     ["scale"] * w_pps)
    hsct = math.nan
    h = rel["HSCT"]
    if bor in RESPONDERS and u_hsct < h["p"]:
        day = float(round(h_day))
        if t_assess < day < min(event, fu):
            hsct = day
            death = _r1(day + rel["POST_HSCT_SURVIVAL"]["scale"] * w_hsct)
    os_time, os_event = (death, 1) if death <= fu else (fu, 0)
    if not math.isnan(hsct):
        efs_time, efs_event = hsct, 0
    else:
        efs_time, efs_event = (event, 1) if event <= fu else (fu, 0)
    dor_time = dor_event = math.nan
    if bor in RESPONDERS:
        dor_time, dor_event = _r1(efs_time - t_assess), efs_event
    p.out = {"DLT": p.dlt, "CRS_GRADE": p.crs, "ICANS_GRADE": p.icans, "BOR": bor,
             "MRD_NEG": mrd, "EFS_TIME": efs_time, "EFS_EVENT": efs_event, "OS_TIME": os_time,
             "OS_EVENT": os_event, "DOR_TIME": dor_time, "DOR_EVENT": dor_event,
             "HSCT_TIME": hsct, "ADA": 0, "ADA_TIME": math.nan}
    p.ck_end = min(fail, fu)
    p.ck_before = min(death, hsct if not math.isnan(hsct) else math.inf)


def _assign_ada(patients: list[Patient], rng: np.random.Generator) -> None:
    """ADA-positive patients and onset visits (``RELATIONS['ADA']``); no effect on CK."""
    r = RELATIONS["ADA"]
    visits = np.asarray(r["visits"], dtype=float)

    def last(p: Patient) -> float:
        h = p.out["HSCT_TIME"]
        return min(p.out["OS_TIME"], math.inf if math.isnan(h) else h)

    eligible = [p for p in patients if last(p) > visits[0]]
    n_pos = min(round(r["fraction"] * len(patients)), len(eligible))
    for i in sorted(rng.permutation(len(eligible))[:n_pos]):
        p = eligible[i]
        onsets = visits[visits < last(p)]
        p.out["ADA"], p.out["ADA_TIME"] = 1, float(onsets[rng.integers(len(onsets))])


def _fmt_sig(x: float, digits: int = 4) -> str:
    """``x`` rounded to ``digits`` significant digits, written without an exponent."""
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    y = round(x, decimals)
    return f"{y:.{max(decimals, 0)}f}"


def _fmt(x: Any) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "."
    if isinstance(x, int | np.integer):
        return str(int(x))
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:g}"


def _ck_rows(spec: ModelSpec, patients: list[Patient], rng: np.random.Generator
             ) -> tuple[list[list[str]], str]:
    """Dose and observation records; returns them and the ID of the after-HSCT example."""
    rows: list[list[str]] = []
    flagged = None
    for p in patients:
        cov = [str(p.level + 1), _fmt(p.amt), str(p.cohort), p.part,
               *(_fmt(p.cov[k]) for k in BASELINE)]
        rows.append([p.pid, "0", "1", _fmt(p.amt), ".", ".", ".", "0", "1", *cov])
        times = np.array([p.visits[d] for d in VISITS])
        par = {k: np.array([v]) for k, v in p.params.items()}
        states = solve_states(spec, par, times, amt=np.array([p.amt]))
        pred = evaluate_outputs(spec, states, par, times)
        obs = add_residual_error(spec, pred, rng, sigma=SIGMA)
        extra = flagged is None and not math.isnan(p.out["HSCT_TIME"])
        for i, d in enumerate(VISITS):
            t = p.visits[d]
            for analyte in sorted(a for a in SCHEDULE if d in SCHEDULE[a]):
                if not (t <= p.ck_end and t < p.ck_before):
                    if extra and analyte == "PB_QPCR" and p.out["HSCT_TIME"] < t \
                            and t < p.out["OS_TIME"]:
                        # data-entry example: conditioning ablated the CAR-T cells -> BLQ
                        rows.append([p.pid, _fmt(t), "0", ".", analyte, ".",
                                     _fmt(LLOQ[analyte]), "1", "0", *cov])
                        flagged, extra = p.pid, False
                    continue
                value = float(obs[analyte][0, i])
                blq = value < LLOQ[analyte]
                rows.append([p.pid, _fmt(t), "0", ".", analyte,
                             "." if blq else _fmt_sig(value), _fmt(LLOQ[analyte]),
                             "1" if blq else "0", "0", *cov])
    if flagged is None:
        raise RuntimeError("no HSCT patient has a PB_QPCR visit after HSCT for the example")
    return rows, flagged


def _csv_text(header: tuple[str, ...], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _round_sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def simulate_trial(seed: int = SEED) -> dict[str, Any]:
    """Simulate the whole trial.

    Parameters
    ----------
    seed : int
        Root seed; the escalation (patients and toxicity), observation and outcome streams are
        spawned from it with :class:`numpy.random.SeedSequence`.

    Returns
    -------
    dict
        ``patients`` (list of Patient), ``escalation`` (EscalationResult), ``ck_text`` and
        ``outcomes_text`` (CSV text), ``truth`` (JSON-ready dict), ``after_hsct_id``.
    """
    spec = load_model(MODEL)
    rng_tox, rng_obs, rng_out = (np.random.default_rng(s)
                                 for s in np.random.SeedSequence(seed).spawn(3))
    enrol = _Enrolment(spec)
    esc = run_escalation(RULE, enrol, len(DOSE_LEVELS), MAX_PATIENTS, rng_tox)
    frame = esc.patients
    for p, (_, row) in zip(enrol.patients, frame.iterrows(), strict=True):
        p.cohort, p.part = int(row["cohort"]), str(row["phase"])
    n_esc = len(enrol.patients)
    n_exp = 0
    if n_esc < MIN_PATIENTS and esc.mtd is not None:
        n_exp = EXPANSION_TOTAL - n_esc
        for p in enrol.enrol(esc.mtd, n_exp, rng_tox):
            p.cohort, p.part = len(esc.cohorts) + 1, "EXP"
    patients = enrol.patients
    _calendar(patients, rng_out)
    for p in patients:
        p.visits = _visit_times(rng_obs)
    for p in patients:
        _outcomes(p, rng_out)
    _assign_ada(patients, rng_out)
    rows, flagged = _ck_rows(spec, patients, rng_obs)
    out_rows = [[p.pid, *(_fmt(p.out[c]) for c in OUTCOME_HEADER[1:])] for p in patients]
    truth = _truth(spec, seed, esc, patients, n_exp, flagged)
    return {"patients": patients, "escalation": esc, "ck_text": _csv_text(CK_HEADER, rows),
            "outcomes_text": _csv_text(OUTCOME_HEADER, out_rows), "truth": truth,
            "after_hsct_id": flagged}


def _truth(spec: ModelSpec, seed: int, esc: EscalationResult, patients: list[Patient],
           n_exp: int, flagged: str) -> dict[str, Any]:
    if set(TYPICAL) != set(spec.param_names) or set(OMEGA) != set(spec.param_names):
        raise RuntimeError("TYPICAL/OMEGA must name exactly the parameters of the model")
    steps = esc.steps
    cohorts = [{"cohort": i + 1, "phase": c.phase, "dose_level": c.level + 1,
                "dose": DOSE_LEVELS[c.level], "n": c.n, "n_dlt": c.n_dlt,
                "grades": list(c.grades or ()), "decision": steps[i + 1].decision.value}
               for i, c in enumerate(esc.cohorts)]
    mtd = None if esc.mtd is None else esc.mtd + 1
    return {
        "description": "Simulated phase I of a CLL1/CD38 dual-target CAR-T in r/r AML (ATD "
                       "then 3+3); no patient-level data of NCT06880354 exist in public",
        "model": MODEL, "seed": seed, "time_unit": TIME_UNIT, "amount_unit": AMOUNT_UNIT,
        "dose_levels": {str(i + 1): d for i, d in enumerate(DOSE_LEVELS)},
        "typical": TYPICAL,
        "omega": OMEGA,
        "omega_scale": {q.name: q.scale for q in spec.parameters},
        "covariates": list(COVARIATES),
        "sigma": SIGMA, "sigma_scale": "log (log-normal residual error)",
        "lloq": LLOQ,
        "sampling": {"schedule": {k: list(v) for k, v in SCHEDULE.items()}, "jitter": JITTER,
                     "ck_end": CK_END, "after_hsct_example_id": flagged},
        "baseline_covariates": BASELINE,
        "exposure": {"metrics": "true PB_QPCR CMAX and AUC0_28 (trapezoid) on a 0.05 d grid "
                                "over 0-28 d", "CMAX_REF": CMAX_REF, "AUC_REF": AUC_REF,
                     "BLAST_REF": BLAST_REF},
        "relations": RELATIONS,
        "design": {"rule": RULE_TEXT, "n_levels": len(DOSE_LEVELS),
                   "max_patients": MAX_PATIENTS, "min_patients_before_expansion": MIN_PATIENTS,
                   "expansion_total": EXPANSION_TOTAL, "expansion_n": n_exp,
                   "mtd_dose_level": mtd, "stop": esc.stop.value, "cohorts": cohorts},
        "subjects": {p.pid: {"dose_level": p.level + 1, "infusion_day": p.infusion_day,
                             "follow_up": p.follow_up,
                             **{k: _round_sig(v) for k, v in p.params.items()},
                             "CMAX": _round_sig(p.cmax), "TMAX": round(p.tmax, 2),
                             "AUC0_28": _round_sig(p.auc28)} for p in patients},
    }


def _write_atomic(files: dict[Path, str]) -> None:
    """Write every file to a temporary sibling, then move them all into place."""
    tmps: dict[Path, str] = {}
    try:
        for path, text in files.items():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            tmps[path] = tmp
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are shared data files
        ck_tmp = tmps[next(p for p in files if p.name == "ck.csv")]
        oc_tmp = tmps[next(p for p in files if p.name == "outcomes.csv")]
        problems = check_ck(ck_tmp, outcomes=oc_tmp)
        unexpected = [x for x in problems if x.rule != "after_hsct"]
        if unexpected or len(problems) != 1:
            raise RuntimeError("generated data fail check_ck:\n" +
                               "\n".join(str(x) for x in problems))
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def main(out_dir: str | os.PathLike[str] = HERE) -> dict[str, Any]:
    """Simulate the trial and write ``ck.csv``, ``outcomes.csv`` and ``truth.json``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to write into (created if needed); default the folder of this script.

    Returns
    -------
    dict
        What :func:`simulate_trial` returns, plus ``paths`` (the three files written).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim = simulate_trial(SEED)
    paths = {"ck": out / "ck.csv", "outcomes": out / "outcomes.csv", "truth": out / "truth.json"}
    _write_atomic({paths["ck"]: sim["ck_text"], paths["outcomes"]: sim["outcomes_text"],
                   paths["truth"]: json.dumps(sim["truth"], indent=1) + "\n"})
    sim["paths"] = paths
    return sim


def _report(sim: dict[str, Any]) -> None:  # pragma: no cover - console summary
    import warnings

    from ckmodel.data import read_ck
    from ckmodel.errors import DataWarning
    from ckmodel.nca import nca

    print("cohort | part | level | dose | n | DLT | grades | decision")
    for c in sim["truth"]["design"]["cohorts"]:
        print(f"{c['cohort']} | {c['phase']} | {c['dose_level']} | {c['dose']:g} | {c['n']} | "
              f"{c['n_dlt']} | {c['grades']} | {c['decision']}")
    print(sim["escalation"].stop_reason, "(0-based levels)")
    paths = sim["paths"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ck = read_ck(paths["ck"], outcomes=paths["outcomes"])
    table = nca(ck, analytes="PB_QPCR")
    print(ck.summary())
    print(f"NCA PB_QPCR: median Cmax {table['CMAX'].median():.4g} copies/ug, median Tmax "
          f"{table['TMAX'].median():.3g} d, median AUC0-28 {table['AUC0_28'].median():.4g}")
    print(ck.outcomes["BOR"].value_counts().to_dict())


if __name__ == "__main__":  # pragma: no cover
    _report(main(sys.argv[1] if len(sys.argv) > 1 else HERE))
