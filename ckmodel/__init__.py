"""ckmodel: cellular kinetics of CAR-T cell therapies.

Load and check NONMEM-style CK data, describe it by NCA, fit ODE-based models hierarchically with
PyMC, and carry the posterior to exposure-response and dose selection.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "CKModelError",
    "ConvergenceWarning",
    "DatasetError",
    "DataWarning",
    "FitMismatchError",
    "ModelSpecError",
    "Problem",
    "SolverError",
]
