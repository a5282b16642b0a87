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
# # From kinetics to response: model-based exposure and exposure-response on the example trial
#
# 1. fit the CK model and derive each patient's **model-based exposure** (Cmax, AUC0-28d ...)
#    with its posterior uncertainty, and compare it with NCA;
# 2. relate it to **CRc** (logistic), **CRS grade** (proportional odds) and **EFS**
#    (Weibull proportional hazards, allo-HSCT as a competing event), adjusting for marrow
#    blast % (tumour burden drives both expansion and response);
# 3. compare **plug-in** (posterior median exposure, as if known) with **propagated** (the CK
#    posterior carried through) estimates;
# 4. put it all in the report.
#
# `CKMODEL_NOTEBOOK_FAST=1` runs it short (the test suite does).

# %%
import os
from pathlib import Path

import numpy as np

from ckmodel import (
    compare_with_nca,
    exposure_draws,
    exposure_table,
    fit,
    fit_response,
    load_model,
    plot_forest,
    read_ck,
    write_report,
)
from ckmodel.resources import example_data

FAST = os.environ.get("CKMODEL_NOTEBOOK_FAST") == "1"
CK_SAMPLING = (dict(draws=100, tune=150, chains=2, until_converged=0) if FAST
               else dict(draws=500, tune=500, chains=4))
ER_SAMPLING = (dict(draws=300, tune=300, chains=2) if FAST
               else dict(draws=1000, tune=1000, chains=4))
OUT = Path(os.environ.get("CKMODEL_NOTEBOOK_OUT", "notebook_output"))
OUT.mkdir(parents=True, exist_ok=True)

# %%
spec = load_model("blood_marrow")
ck_file, outcomes_file = example_data("example_trial")
data = read_ck(ck_file, outcomes=outcomes_file, analytes=spec.output_units)
ck_fit = fit(data, spec, seed=1, progressbar=False, **CK_SAMPLING)
print(ck_fit.summary().verdict())

# %% [markdown]
# ## 1. Model-based exposure
#
# Each subject's trajectory over the whole dosing history, per posterior draw, on a dense
# grid: an `xarray.Dataset` with dims (chain, draw, subject).

# %%
draws = exposure_draws(ck_fit)
draws

# %%
table = exposure_table(draws)
table[table["METRIC"].isin(["CMAX", "AUC0_28"])].head(8)

# %% [markdown]
# Where sampling is rich, NCA and the model should agree; the ratio NCA / model per profile:

# %%
nca_vs_model = compare_with_nca(ck_fit, draws)
nca_vs_model.groupby(["ANALYTE", "METRIC", "RICH"])["RATIO"].median().unstack()

# %% [markdown]
# ## 2. Exposure-response
#
# CRc (CR + CRh + CRi) against AUC0-28d of blood qPCR, adjusted for log marrow blast %,
# plug-in and propagated.

# %%
crc = {u: fit_response(data, "CRc", exposure="AUC0_28", fit=ck_fit,
                       covariates=["log(BM_BLAST_PCT)"], uncertainty=u, seed=2, **ER_SAMPLING)
       for u in ("plugin", "propagate")}
for u, res in crc.items():
    print(u, res.meta["convergence"]["ok"])
    print(res.coefficients().round(3).to_string(index=False))

# %%
crc["propagate"].plot()

# %% [markdown]
# CRS grade (proportional odds, log odds towards a higher grade) against Cmax; the Cmax
# giving a 30 % probability of grade >= 3 CRS:

# %%
crs = fit_response(data, "CRS_GRADE", exposure="CMAX", fit=ck_fit,
                   covariates=["log(BM_BLAST_PCT)"], seed=3, **ER_SAMPLING)
x30 = crs.exposure_at(0.3, threshold=3)
print(crs.coefficients().round(3).to_string(index=False))
print("Cmax at P(CRS >= 3) = 30 %:", np.nanquantile(x30, [0.025, 0.5, 0.975]).round(0))

# %% [markdown]
# EFS: Weibull proportional hazards on AUC0-28d; allo-HSCT as a competing event
# (cause-specific hazards), so the model's probabilities are cumulative incidences of an EFS
# event before any transplant.

# %%
efs = fit_response(data, "EFS", exposure="AUC0_28", fit=ck_fit, hsct="competing", seed=4,
                   **ER_SAMPLING)
print(efs.meta["rule"])
efs.coefficients().round(3)

# %%
efs.plot()

# %%
plot_forest([crc["plugin"], crc["propagate"], crs, efs])

# %% [markdown]
# ## 3. Report
#
# The CK report with the exposure and exposure-response sections added.

# %%
responses = [crc["plugin"], crc["propagate"], crs, efs]
for k, res in enumerate(responses):
    res.save(OUT / f"er_{k + 1}.nc")
path = write_report(ck_fit, OUT / "report.html", seed=1, n_sim=20 if FAST else 200,
                    exposure=draws, responses=responses)
print(f"report: {path}")
