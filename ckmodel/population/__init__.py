"""The hierarchical PyMC population model: data preparation, covariates, likelihood, graph."""

from ckmodel import _arviz  # noqa: F401  (ArviZ's import warning silenced before PyMC loads)
from ckmodel.population.covariates import CovariateEffect, parse_covariates
from ckmodel.population.likelihood import log_ndtr, pointwise_loglik
from ckmodel.population.model import PopulationOptions, build_model
from ckmodel.population.prepare import PopulationData, prepare

__all__ = [
    "CovariateEffect",
    "PopulationData",
    "PopulationOptions",
    "build_model",
    "log_ndtr",
    "parse_covariates",
    "pointwise_loglik",
    "prepare",
]
