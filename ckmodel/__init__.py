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

from ckmodel.errors import (
    CKModelError,
    ConvergenceWarning,
    DatasetError,
    DataWarning,
    FitMismatchError,
    ModelSpecError,
    Problem,
    SolverError,
    SolverWarning,
)

__version__ = "0.1.0"

#: Public name -> module that defines it; imported on first use (SPEC 1 lazy loading), so
#: ``import ckmodel`` and ``ckmodel --help`` do not pay for pandas, sympy or PyMC.
_LAZY = {
    "CKData": "ckmodel.data",
    "check_ck": "ckmodel.data",
    "read_ck": "ckmodel.data",
    "nca_summary": "ckmodel.nca",
    "plot_profiles": "ckmodel.plots",
    "plot_profiles_by_subject": "ckmodel.plots",
    "ModelSpec": "ckmodel.spec",
    "Prior": "ckmodel.spec",
    "list_models": "ckmodel.spec",
    "load_model": "ckmodel.spec",
    "SolverOptions": "ckmodel.solve",
    "solve_states": "ckmodel.solve",
    "evaluate_outputs": "ckmodel.solve",
    "simulate_ckdata": "ckmodel.testing",
    "fit": "ckmodel.fitting",
    "Fit": "ckmodel.fitting",
    "FitSummary": "ckmodel.fitting.summary",
    "load_fit": "ckmodel.fitting",
    "PopulationOptions": "ckmodel.population.model",
    "ODEOptions": "ckmodel.population.ode",
    "fit_stability": "ckmodel.population.ode_stability",
    "AcceleratedTitration": "ckmodel.design",
    "Cohort": "ckmodel.design",
    "Decision": "ckmodel.design",
    "ThreePlusThree": "ckmodel.design",
    "operating_characteristics": "ckmodel.design",
    "run_escalation": "ckmodel.design",
    "atomic_write": "ckmodel.files",
    "read_outcomes": "ckmodel.data",
    "convergence_checks": "ckmodel.diagnostics",
    "gof_table": "ckmodel.diagnostics",
    "npde": "ckmodel.diagnostics",
    "vpc": "ckmodel.diagnostics",
    "eta_shrinkage": "ckmodel.diagnostics",
    "compare_fits": "ckmodel.diagnostics",
    "plot_gof": "ckmodel.plots",
    "plot_vpc": "ckmodel.plots",
    "plot_individual": "ckmodel.plots",
    "plot_rank": "ckmodel.plots",
    "plot_km": "ckmodel.plots",
    "prior_posterior_table": "ckmodel.diagnostics",
    "plot_prior_posterior": "ckmodel.plots",
    "exposure_draws": "ckmodel.exposure",
    "exposure_table": "ckmodel.exposure",
    "trajectory_metrics": "ckmodel.exposure",
    "compare_with_nca": "ckmodel.exposure",
    "build_report": "ckmodel.report",
    "save_report": "ckmodel.report",
    "write_report": "ckmodel.report",
    "endpoint_table": "ckmodel.response",
    "fit_response": "ckmodel.response",
    "load_response": "ckmodel.response",
    "ResponseFit": "ckmodel.response",
    "plot_response": "ckmodel.plots",
    "plot_forest": "ckmodel.plots",
    "kaplan_meier": "ckmodel.response",
    "clopper_pearson": "ckmodel.response",
    "simulate_patients": "ckmodel.virtual_patients",
    "select_dose": "ckmodel.select",
    "load_selection": "ckmodel.select",
    "DoseSelection": "ckmodel.select",
    "plot_selection": "ckmodel.plots",
    "BOIN": "ckmodel.design",
    "CRM": "ckmodel.design",
    "CKGuided": "ckmodel.design",
    "ExposureModel": "ckmodel.design",
    "next_dose": "ckmodel.design",
    "simulate_design": "ckmodel.design",
    "compare_designs": "ckmodel.design",
}

__all__ = [
    "__version__",
    # data
    "CKData",
    "check_ck",
    "read_ck",
    "read_outcomes",
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
    "FitSummary",
    "load_fit",
    "PopulationOptions",
    "ODEOptions",
    "fit_stability",
    # diagnostics
    "convergence_checks",
    "gof_table",
    "npde",
    "vpc",
    "eta_shrinkage",
    "compare_fits",
    "plot_gof",
    "plot_vpc",
    "plot_individual",
    "plot_rank",
    "prior_posterior_table",
    "plot_prior_posterior",
    # exposure
    "exposure_draws",
    "exposure_table",
    "trajectory_metrics",
    "compare_with_nca",
    # report
    "build_report",
    "save_report",
    "write_report",
    # endpoints and exposure-response
    "endpoint_table",
    "fit_response",
    "load_response",
    "ResponseFit",
    "plot_response",
    "plot_forest",
    "kaplan_meier",
    "clopper_pearson",
    "plot_km",
    # virtual patients and dose selection
    "simulate_patients",
    "select_dose",
    "load_selection",
    "DoseSelection",
    "plot_selection",
    # dose escalation
    "BOIN",
    "CRM",
    "CKGuided",
    "ExposureModel",
    "next_dose",
    "simulate_design",
    "compare_designs",
    "AcceleratedTitration",
    "Cohort",
    "Decision",
    "ThreePlusThree",
    "operating_characteristics",
    "run_escalation",
    # files
    "atomic_write",
    # errors and warnings
    "CKModelError",
    "ConvergenceWarning",
    "DatasetError",
    "DataWarning",
    "FitMismatchError",
    "ModelSpecError",
    "Problem",
    "SolverError",
    "SolverWarning",
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
