"""The hierarchical PyMC population model: data preparation, covariates, likelihood, graph.

The model and the likelihood (PyMC, PyTensor, numba) are imported on first use, so that
simulation can import :mod:`~ckmodel.population.residual` without loading PyMC.
"""

from __future__ import annotations

import importlib
from typing import Any

from ckmodel.population.covariates import (
    CovariateEffect,
    apply_time_varying,
    parse_covariates,
)
from ckmodel.population.prepare import PopulationData, prepare, switch_onsets

_LAZY = {
    "log_ndtr": "ckmodel.population.residual",
    "pointwise_loglik": "ckmodel.population.residual",
    "PopulationOptions": "ckmodel.population.options",
    "build_model": "ckmodel.population.model",
}

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
