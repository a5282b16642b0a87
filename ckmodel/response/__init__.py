"""Exposure-response and the trial's endpoint summaries.

:func:`fit_response` fits a Bayesian exposure-response model of any endpoint (logistic or
probit, proportional odds, Weibull or piecewise-exponential PH, HSCT as censoring or a
competing event; plug-in or propagated CK exposure) and returns a :class:`ResponseFit`;
:func:`load_response` reads one back. The estimators (:func:`clopper_pearson`,
:func:`kaplan_meier`, :func:`km_median`, :func:`km_at`) are NumPy/SciPy kernels that follow
R's conventions (``binom.test``, ``survival::survfit``); :func:`endpoint_table` is the
protocol's endpoint summary built from them.
"""

from __future__ import annotations

from ckmodel.response.endpoints import (
    ENDPOINT_COLUMNS,
    HSCT_RULES,
    TIME_TO_EVENT,
    TimeToEvent,
    default_times,
    endpoint_table,
    km_by_group,
    time_to_event,
)
from ckmodel.response.estimators import KM_COLUMNS, clopper_pearson, kaplan_meier, km_at, km_median
from ckmodel.response.fit import fit_response
from ckmodel.response.models import ResponseFit, load_response

__all__ = [
    "ENDPOINT_COLUMNS",
    "HSCT_RULES",
    "KM_COLUMNS",
    "ResponseFit",
    "TIME_TO_EVENT",
    "TimeToEvent",
    "clopper_pearson",
    "default_times",
    "endpoint_table",
    "fit_response",
    "kaplan_meier",
    "km_at",
    "km_by_group",
    "km_median",
    "load_response",
    "time_to_event",
]
