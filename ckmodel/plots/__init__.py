"""Matplotlib figures used by notebooks and reports.

Matplotlib is imported lazily inside each ``plot_*`` function, so ``import ckmodel.plots`` is cheap
and never selects a backend.
"""

from __future__ import annotations

from ckmodel.plots.km import plot_km
from ckmodel.plots.profiles import plot_profiles, plot_profiles_by_subject

__all__ = ["plot_km", "plot_profiles", "plot_profiles_by_subject"]
