"""The hierarchical PyMC population model: data preparation, covariates, likelihood, graph."""

from ckmodel import _arviz  # noqa: F401  (ArviZ's import warning silenced before PyMC loads)
from ckmodel.population.covariates import (
    CovariateEffect,
    apply_time_varying,
    parse_covariates,
)
from ckmodel.population.likelihood import log_ndtr, pointwise_loglik
from ckmodel.population.model import PopulationOptions, build_model
from ckmodel.population.prepare import PopulationData, prepare, switch_onsets

__all__ = [
    "CovariateEffect",
    "PopulationData",
    "PopulationOptions",
    "apply_time_varying",
    "build_model",
    "log_ndtr",
    "parse_covariates",
    "pointwise_loglik",
    "prepare",
    "switch_onsets",
]
