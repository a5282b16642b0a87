# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Choosing a dose: virtual patients, dose selection and escalation designs
#
# On the simulated phase I trial of the CLL1/CD38 CAR-T (accelerated titration, then 3+3):
#
# 1. fit the CK model, and exposure-response models of **DLT** (on Cmax), **CRS grade >= 3**
#    (on Cmax) and **CRc** (on AUC0-28d);
# 2. draw **virtual patients** from the CK posterior at candidate doses, posterior draws and
#    patients kept on separate dims;
# 3. **select a dose**: per dose, P(DLT), P(CRS >= 3), P(CRc) with their uncertainty, the
#    highest dose under overdose control and the dose of highest utility;
# 4. replay the trial through **escalation designs** (3+3, BOIN, CRM and the CK-guided design
#    that reads each patient's exposure) and compare their operating characteristics;
# 5. write the report with the dose-selection section.
#
# `CKMODEL_NOTEBOOK_FAST=1` runs it short (the test suite does).

# %%
import os
from pathlib import Path

import pandas as pd

from ckmodel import fit, fit_response, load_model, read_ck, select_dose, write_report
from ckmodel.design import (
    BOIN,
    CRM,
    CKGuided,
    ExposureModel,
    ThreePlusThree,
    compare_designs,
    crm_skeleton,
    next_dose,
)
from ckmodel.resources import example_data

FAST = os.environ.get("CKMODEL_NOTEBOOK_FAST") == "1"
CK_SAMPLING = (dict(draws=100, tune=150, chains=2, until_converged=0) if FAST
               else dict(draws=500, tune=500, chains=4))
ER_SAMPLING = (dict(draws=200, tune=200, chains=2) if FAST
               else dict(draws=1000, tune=1000, chains=4))
VIRTUAL = dict(n_patients=60, n_draws=40) if FAST else dict(n_patients=400, n_draws=400)
N_TRIALS = 200 if FAST else 10_000
OUT = Path(os.environ.get("CKMODEL_NOTEBOOK_OUT", "notebook_output"))
OUT.mkdir(parents=True, exist_ok=True)
DOSES = [0.5, 1.0, 2.0, 4.0, 8.0]  # the trial's levels, 1e6 CAR+ T cells/kg

# %%
spec = load_model("blood_marrow")
ck_file, outcomes_file = example_data("example_trial")
data = read_ck(ck_file, outcomes=outcomes_file, analytes=spec.output_units)
ck_fit = fit(data, spec, seed=1, progressbar=False, **CK_SAMPLING)
print(ck_fit.summary().verdict())

# %% [markdown]
# ## 1. Exposure-response models
#
# Blood qPCR Cmax drives DLT and CRS, AUC0-28d drives complete remission; marrow blast % (the
# antigen load) enters the DLT model too. Each uses the patients' model-based exposures
# (posterior medians).

# %%
er = {
    "DLT": fit_response(data, "DLT", exposure="CMAX", fit=ck_fit,
                        covariates=["log(BM_BLAST_PCT)"], seed=2, **ER_SAMPLING),
    "CRS3": fit_response(data, "CRS3", exposure="CMAX", fit=ck_fit, seed=3, **ER_SAMPLING),
    "CRc": fit_response(data, "CRc", exposure="AUC0_28", fit=ck_fit, seed=4, **ER_SAMPLING),
}
for name, res in er.items():
    print(name, "converged" if res.meta["convergence"]["ok"] else "NOT converged")
    print(res.coefficients().round(3).to_string(index=False))

# %% [markdown]
# ## 2. Virtual patients
#
# New patients from the posterior: each takes the covariates of a trial patient drawn at
# random, its own random effects, and every candidate dose (common random numbers). The
# `draw` dim is what we do not know about the population, `patient` how patients differ.

# %%
vp = ck_fit.simulate(DOSES, seed=5, metrics=["CMAX", "AUC0_28"], analytes=["PB_QPCR"],
                     **VIRTUAL)
vp["PB_QPCR_CMAX"]

# %%
q = vp["PB_QPCR_CMAX"].quantile([0.05, 0.5, 0.95], dim=("draw", "patient"))
pd.DataFrame(q.values.T, index=pd.Index(DOSES, name="dose (1e6 CAR+ T cells/kg)"),
             columns=["P05", "median", "P95"]).round(0)

# %% [markdown]
# ## 3. Dose selection
#
# Per dose and posterior draw, the population rate of each endpoint is the mean of the
# patients' probabilities; overdose control admits doses with P(P(DLT) > 0.3) <= 0.25, and
# the utility is P(CRc) - P(DLT) - P(CRS >= 3).

# %%
selection = select_dose(ck_fit, list(er.values()), DOSES, target=0.3, overdose_limit=0.25,
                        patients=vp)
print(selection.summary())
selection.table[["DOSE", "P_DLT", "P_DLT_LOWER", "P_DLT_UPPER", "P_CRS3", "P_CRC",
                 "P_OVERDOSE", "P_MTD", "UTILITY", "P_BEST", "RECOMMENDED", "BEST"]].round(3)

# %%
selection.plot()

# %% [markdown]
# ## 4. Escalation designs
#
# The trial's patients in enrolment order, replayed through the designs at the last
# escalation meeting; the CK-guided design also reads each patient's exposure (its
# model-based Cmax).

# %%
cov = data.covariates
order = sorted(cov.index, key=lambda s: int(s))
exposure = ck_fit.exposure(metrics=["CMAX"], analytes=["PB_QPCR"], n_draws=100)
cmax = exposure["PB_QPCR_CMAX"].median(("chain", "draw")).to_series()
trial = pd.DataFrame({"DOSE_LEVEL": cov.loc[order, "DOSE_LEVEL"].astype(int).to_numpy(),
                      "DLT": data.outcomes.loc[order, "DLT"].astype(int).to_numpy(),
                      "EXPOSURE": cmax.reindex(order).to_numpy()})
trial.groupby("DOSE_LEVEL")["DLT"].agg(["size", "sum"])

# %%
model = ExposureModel.from_patients(vp, "PB_QPCR_CMAX")
designs = {"3+3": ThreePlusThree(), "BOIN": BOIN(target=0.3),
           "CRM": CRM(skeleton=tuple(crm_skeleton(0.3, 5)), target=0.3),
           "CK": CKGuided(model, target=0.3)}
for name in ("BOIN", "CRM", "CK"):
    decision = next_dose(designs[name], trial, 5)
    print(decision.text().splitlines()[0])

# %% [markdown]
# Operating characteristics side by side on three dose-toxicity scenarios (the same
# simulated patients for every design). The CK-guided design runs with overdose control
# (P(rate > target) <= 0.25, as EWOC): it aims below the target, so it selects the dose
# closest to the target less often and treats far fewer patients above the MTD; without
# overdose control (`CKGuided(model, overdose_limit=None)`) it behaves like the CRM.

# %%
scenarios = {"MTD at 4": [0.05, 0.1, 0.2, 0.3, 0.5], "MTD at 2": [0.1, 0.3, 0.45, 0.6, 0.7],
             "all safe": [0.02, 0.04, 0.06, 0.1, 0.15]}
oc = compare_designs(designs, scenarios, N_TRIALS, seed=6, target=0.3)
oc[["SCENARIO", "DESIGN", "TRUE_MTD", "P_CORRECT", "N_ABOVE_MTD", "EXPECTED_N",
    "EXPECTED_DLT"]].round(3)

# %% [markdown]
# ## 5. Report

# %%
selection.save(OUT / "selection.nc")
oc.to_csv(OUT / "operating_characteristics.csv", index=False)
path = write_report(ck_fit, OUT / "report.html", seed=1, n_sim=20 if FAST else 200,
                    responses=list(er.values()), selection=selection)
print(f"report: {path}")
