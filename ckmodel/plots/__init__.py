"""Matplotlib figures used by notebooks and reports.

Matplotlib is imported lazily inside each ``plot_*`` function, so ``import ckmodel.plots`` is cheap
and never selects a backend. Colours are the colour-blind-safe Okabe-Ito palette; CK values
are on log axes labelled with their units.
"""

from __future__ import annotations

from ckmodel.plots.convergence import plot_rank
from ckmodel.plots.gof import plot_gof
from ckmodel.plots.individual import plot_individual
from ckmodel.plots.km import plot_km
from ckmodel.plots.priors import plot_prior_posterior
from ckmodel.plots.profiles import plot_profiles, plot_profiles_by_subject
from ckmodel.plots.response import plot_forest, plot_response
from ckmodel.plots.selection import plot_selection
from ckmodel.plots.vpc import plot_vpc

__all__ = ["plot_forest", "plot_gof", "plot_individual", "plot_km", "plot_prior_posterior",
           "plot_profiles", "plot_profiles_by_subject", "plot_rank", "plot_response",
           "plot_selection", "plot_vpc"]
