"""ckmodel: cellular kinetics of CAR-T cell therapies.

Load and check NONMEM-style CK data, describe it by NCA, simulate and fit ODE-based models
hierarchically with PyMC, and carry the posterior to exposure-response and dose selection.

The public API is listed in ``__all__``; heavy parts (PyMC fitting, plotting) are imported
lazily on first use, so ``import ckmodel`` stays fast. Functions named like their module
(``ckmodel.nca.nca``, ``ckmodel.simulate.simulate``) are not re-exported here, so that
``ckmodel.nca`` and ``ckmodel.simulate`` always are the modules.
"""

from __future__ import annotations

import importlib
from typing import Any

from ckmodel.data import CKData, check_ck, read_ck
from ckmodel.design import (
    AcceleratedTitration,
    Cohort,
    Decision,
    ThreePlusThree,
    operating_characteristics,
    run_escalation,
)
from ckmodel.errors import (
    CKModelError,
    ConvergenceWarning,
    DatasetError,
    DataWarning,
    FitMismatchError,
    ModelSpecError,
    Problem,
    SolverError,
)
from ckmodel.nca import nca_summary
from ckmodel.solve import SolverOptions, evaluate_outputs, solve_states
from ckmodel.spec import ModelSpec, Prior, list_models, load_model

__version__ = "0.1.0"

_LAZY = {
    "fit": "ckmodel.fitting",
    "Fit": "ckmodel.fitting",
    "load_fit": "ckmodel.fitting",
    "PopulationOptions": "ckmodel.population.model",
    "ODEOptions": "ckmodel.population.ode",
    "plot_profiles": "ckmodel.plots",
    "plot_profiles_by_subject": "ckmodel.plots",
    "simulate_ckdata": "ckmodel.testing",
}

__all__ = [
    "__version__",
    # data
    "CKData",
    "check_ck",
    "read_ck",
    # description (NCA itself: ckmodel.nca.nca; the module keeps its name)
    "nca_summary",
    "plot_profiles",
    "plot_profiles_by_subject",
    # models and simulation
    "ModelSpec",
    "Prior",
    "list_models",
    "load_model",
    "SolverOptions",
    "solve_states",
    "evaluate_outputs",
    "simulate_ckdata",
    # fitting
    "fit",
    "Fit",
    "load_fit",
    "PopulationOptions",
    "ODEOptions",
    # dose escalation
    "AcceleratedTitration",
    "Cohort",
    "Decision",
    "ThreePlusThree",
    "operating_characteristics",
    "run_escalation",
    # errors and warnings
    "CKModelError",
    "ConvergenceWarning",
    "DatasetError",
    "DataWarning",
    "FitMismatchError",
    "ModelSpecError",
    "Problem",
    "SolverError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ckmodel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
