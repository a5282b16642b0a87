"""The fit's room: ``fit()`` and its samplers, the :class:`Fit` result, convergence, summaries.

=================  ==============================================================
module             holds
=================  ==============================================================
``run``            :func:`fit`, the one entry point; sampler dispatch
``result``         :class:`Fit` (views, predictions) and :func:`load_fit` / save
``convergence``    the convergence verdict and table (ArviZ R-hat, ESS, E-BFMI)
``summary``        the parameter table of a fit
``pathfinder``     multi-path Pathfinder (blackjax), a quick approximate sampler
``blackjax_nuts``  blackjax NUTS behind PyMC's ``nuts_sampler`` switch
=================  ==============================================================

The package is not called ``fit`` so that ``ckmodel.fit`` stays the function.
"""

from ckmodel.fitting.result import Fit, load_fit, package_versions
from ckmodel.fitting.run import FUSED_SAMPLERS, SAMPLERS, fit

__all__ = ["fit", "Fit", "load_fit", "package_versions", "SAMPLERS", "FUSED_SAMPLERS"]
