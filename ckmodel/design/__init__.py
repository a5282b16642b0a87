"""Dose-escalation designs and their operating characteristics.

Rule-based designs for phase I dose finding (accelerated titration, 3+3), the model-assisted
BOIN, the model-based CRM and the CK-guided design (DLT as a function of each patient's
exposure, the CK posterior mapping dose to exposure), as immutable rule objects with a pure
``decide(history, n_levels)``; the escalation meeting's decision on a trial file
(:func:`next_dose`); reproducible simulation on one core or a Dask cluster
(:func:`simulate_design`); a trial runner that plugs in any DLT sampler
(e.g. DLTs derived from simulated CAR-T exposure); and operating characteristics by simulation,
by exact enumeration, and in closed form for the 3+3.
"""

from __future__ import annotations

from ckmodel.design.batch import StopCode, TrialBatch
from ckmodel.design.boin import (
    BOIN,
    BoinBoundaries,
    boin_boundaries,
    boin_boundary_table,
    boin_select_mtd,
    pava,
)
from ckmodel.design.characteristics import (
    OperatingCharacteristics,
    exact_operating_characteristics,
    operating_characteristics,
    three_plus_three_escalation_probability,
    three_plus_three_mtd_probabilities,
)
from ckmodel.design.ck import PHASE_CK, CKGuided, ExposureModel
from ckmodel.design.crm import CRM, CrmPosterior, crm_posterior, crm_skeleton
from ckmodel.design.meeting import DESIGNS, NextDose, design_from_name, next_dose, read_trial
from ckmodel.design.records import (
    PHASE_3PLUS3,
    PHASE_ATD,
    Cohort,
    Decision,
    EscalationRule,
    Step,
    level_tallies,
    next_decision,
    tally_key,
)
from ckmodel.design.rules import AcceleratedTitration, ThreePlusThree, ToxicityTrigger
from ckmodel.design.runner import (
    DltSampler,
    EscalationResult,
    bernoulli_sampler,
    run_escalation,
)
from ckmodel.design.simulation import (
    DesignSimulation,
    compare_designs,
    read_scenarios,
    simulate_design,
    true_mtd,
)

__all__ = [
    "BOIN",
    "CKGuided",
    "ExposureModel",
    "PHASE_CK",
    "CRM",
    "DESIGNS",
    "BoinBoundaries",
    "CrmPosterior",
    "DesignSimulation",
    "NextDose",
    "StopCode",
    "TrialBatch",
    "boin_boundaries",
    "boin_boundary_table",
    "boin_select_mtd",
    "compare_designs",
    "crm_posterior",
    "crm_skeleton",
    "design_from_name",
    "next_dose",
    "pava",
    "read_scenarios",
    "read_trial",
    "simulate_design",
    "true_mtd",
    "PHASE_3PLUS3",
    "PHASE_ATD",
    "AcceleratedTitration",
    "Cohort",
    "Decision",
    "DltSampler",
    "EscalationResult",
    "EscalationRule",
    "OperatingCharacteristics",
    "Step",
    "ThreePlusThree",
    "ToxicityTrigger",
    "bernoulli_sampler",
    "exact_operating_characteristics",
    "level_tallies",
    "next_decision",
    "operating_characteristics",
    "run_escalation",
    "tally_key",
    "three_plus_three_escalation_probability",
    "three_plus_three_mtd_probabilities",
]
