"""Diagnostics of fitted CK models: convergence, GOF, NPDE, VPC/pcVPC, shrinkage, LOO.

ArviZ computes what it already computes (R-hat, ESS, E-BFMI, PSIS-LOO and model comparison);
the rest works on the fit's records and on replicates of the trial with new virtual subjects
drawn from the posterior (:mod:`ckmodel.diagnostics.virtual`):

- :func:`convergence_checks`: one row per sampler check with threshold and pass/fail;
- :func:`gof_table`: PRED, IPRED, NPDE and PD of every record (BLQ through censoring);
- :func:`npde`: NPDE from new subjects (Brendel/Comets decorrelation; BLQ imputed as in
  Nguyen et al. 2012);
- :func:`vpc`: VPC and pcVPC per analyte and stratum, with observed against simulated
  fraction BLQ; :meth:`VPC.to_csv` writes the table;
- :func:`prior_posterior_table`: priors against posteriors, with posterior contraction;
- :func:`eta_shrinkage`: ``1 - SD(posterior mean eta) / omega`` per parameter;
- :func:`compare_fits`: PSIS-LOO ranking of fits of the same data (``az.compare``).
"""

from __future__ import annotations

from ckmodel.diagnostics.compare import compare_fits, loo, pointwise_loglik
from ckmodel.diagnostics.convergence import convergence_checks, parameter_convergence
from ckmodel.diagnostics.gof import gof_table
from ckmodel.diagnostics.npde import npde, npde_arrays
from ckmodel.diagnostics.priors import (
    prior_posterior_densities,
    prior_posterior_items,
    prior_posterior_table,
)
from ckmodel.diagnostics.shrinkage import eta_shrinkage
from ckmodel.diagnostics.strata import stratum_label, subject_strata
from ckmodel.diagnostics.virtual import (
    Replicates,
    fit_records,
    population_bands,
    record_predictions,
    simulate_replicates,
)
from ckmodel.diagnostics.vpc import VPC, VPC_COLUMNS, bin_edges, vpc, vpc_arrays

__all__ = [
    "VPC",
    "VPC_COLUMNS",
    "Replicates",
    "bin_edges",
    "compare_fits",
    "convergence_checks",
    "eta_shrinkage",
    "fit_records",
    "gof_table",
    "loo",
    "npde",
    "npde_arrays",
    "parameter_convergence",
    "pointwise_loglik",
    "population_bands",
    "prior_posterior_densities",
    "prior_posterior_items",
    "prior_posterior_table",
    "record_predictions",
    "simulate_replicates",
    "stratum_label",
    "subject_strata",
    "vpc",
    "vpc_arrays",
]
