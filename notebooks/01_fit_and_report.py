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
# # Fit the example trial and write its posterior report
#
# The whole path on the simulated phase I trial that ships with ckmodel (a CLL1/CD38
# dual-target CAR-T in r/r AML; 30 patients on four dose levels, blood and marrow qPCR and
# blood flow cytometry, BLQ records, allo-HSCT ending some CAR-T records):
#
# 1. read and check the data;
# 2. describe it by NCA;
# 3. fit the `blood_marrow` model hierarchically (PyMC model, nutpie sampler);
# 4. judge the fit: convergence, estimates, shrinkage, goodness of fit, VPC;
# 5. write the report, one self-contained HTML file.
#
# Set `CKMODEL_NOTEBOOK_FAST=1` for a short run (the test suite does: few draws and one run
# only, `until_converged=0`, so the verdict will say the fit has not converged, which is the
# report's first job to tell). Otherwise the fit samples on until its checks pass.

# %%
import os
from pathlib import Path

import ckmodel
from ckmodel import (
    convergence_checks,
    eta_shrinkage,
    fit,
    gof_table,
    load_model,
    nca_summary,
    plot_gof,
    plot_profiles,
    plot_vpc,
    read_ck,
    vpc,
    write_report,
)
from ckmodel.nca import nca
from ckmodel.resources import example_data

FAST = os.environ.get("CKMODEL_NOTEBOOK_FAST") == "1"
SAMPLING = (dict(draws=100, tune=150, chains=2, until_converged=0) if FAST
            else dict(draws=500, tune=500, chains=4))
N_SIM = 20 if FAST else 200  # replicates of the trial behind NPDE and the VPCs
OUT = Path(os.environ.get("CKMODEL_NOTEBOOK_OUT", "notebook_output"))
OUT.mkdir(parents=True, exist_ok=True)
print(f"ckmodel {ckmodel.__version__}; sampling {SAMPLING}; outputs in {OUT}/")

# %% [markdown]
# ## 1. Data
#
# The model declares its outputs and their units, so the reader knows the analytes; every
# record left out of the fit is counted by reason in the summary.

# %%
spec = load_model("blood_marrow")
ck_file, outcomes_file = example_data("example_trial")
data = read_ck(ck_file, outcomes=outcomes_file, analytes=spec.output_units)
print(data.summary())

# %% [markdown]
# ## 2. NCA
#
# PKNCA conventions (linear-up/log-down AUC; BLQ before the first quantified value as 0, later
# ones dropped); AUC windows in days after infusion.

# %%
table = nca(data)
summary = nca_summary(table, data, by="DOSE_LEVEL")
summary[summary["METRIC"].isin(["CMAX", "TMAX", "AUC0_28"])].head(12)

# %%
plot_profiles(data, by="DOSE_LEVEL")

# %% [markdown]
# ## 3. Fit
#
# All three analytes jointly, BLQ records censored (M3), random effects non-centred. The seed
# makes the posterior reproducible on any machine.

# %%
result = fit(data, spec, seed=1, progressbar=False, **SAMPLING)
result.save(OUT / "fit.nc")
print(result.summary())

# %% [markdown]
# ## 4. Diagnose
#
# Sampler checks with their thresholds, then eta shrinkage (above 30 %, individual
# diagnostics lean on the population).

# %%
convergence_checks(result)

# %%
eta_shrinkage(result)

# %% [markdown]
# Goodness of fit: observed against population and individual predictions, NPDE from new
# virtual subjects against time and prediction (BLQ records through their censoring).

# %%
gof = gof_table(result, n_sim=N_SIM, seed=1, stratify="DOSE_LEVEL")
plot_gof(gof)

# %% [markdown]
# Prediction-corrected VPC per analyte and dose level, with the observed against simulated
# fraction BLQ below each panel; the table behind it is what `ckmodel vpc --csv` writes.

# %%
check = vpc(result, pc=True, stratify="DOSE_LEVEL", n_sim=N_SIM, seed=1)
plot_vpc(check)

# %%
check.table.head()

# %% [markdown]
# ## 5. Report
#
# The same content, and more (model equations, priors against posteriors, rank plots,
# individual fits, the trial's endpoints), as one HTML file with its figures embedded; the
# same fit and seed give the same bytes. `ckmodel report fit.nc -o report.html` does the same
# from the command line.

# %%
path = write_report(result, OUT / "report.html", seed=1, n_sim=N_SIM)
print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
