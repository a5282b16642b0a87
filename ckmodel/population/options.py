"""How the hierarchy and likelihood of a population model are built: options and their checks.

:class:`PopulationOptions` (centring, correlation, error models, BLQ method, fixed parameters,
the ODE solver, the form of the IIV SDs) is checked against a spec before any work
(:meth:`PopulationOptions.check`); :func:`ckmodel.population.build_model` builds the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ckmodel.errors import ModelSpecError
from ckmodel.population.covariates import CovariateEffect
from ckmodel.spec.model import ERROR_MODELS, ModelSpec

__all__ = ["CENTRING_MODES", "FOLDED_PRIORS", "IIV_SD_FORMS", "PopulationOptions",
           "iiv_parameters", "iiv_sd_forms"]


@dataclass(frozen=True)
class PopulationOptions:
    """How the hierarchy and likelihood are built.

    Attributes
    ----------
    centered : "auto", "whitened", "shrinkage", tuple of str or mapping of str to float
        How random effects are parametrised. ``"auto"`` (default): for closed forms non-centred, and
        when that run fails in a way more draws do not mend (divergences, E-BFMI below 0.3),
        :func:`ckmodel.fitting.fit` samples again with whitened effects built from it, within its
        time budget; models solved as ODEs are whitened after a pilot run from the start (their
        gradient costs milliseconds, so the leapfrog steps per draw, which whitening cuts 2-3x, rule
        the fit's time). ``"whitened"``: each subject's effects in the coordinates of their
        conditional posterior given the typical values, IIV SDs and residual SDs, built from a short
        non-centred pilot run (:mod:`ckmodel.population.whitening`). A tuple names the parameters to
        centre fully (``()``: all non-centred, never whitened); a mapping gives each named parameter
        one weight in [0, 1] (0 non-centred, 1 centred); ``"shrinkage"``: a weight per subject and
        effect from a short pilot run (1 minus the subject's variance-based eta shrinkage,
        :mod:`ckmodel.fitting.centering`).
    correlated : bool
        Correlated random effects with an LKJ(2) prior (needs HalfNormal IIV priors).
    error : mapping of str to str
        Residual error model per analyte, overriding the spec (e.g. ``{"PB_QPCR": "student_t"}``).
    blq_method : {"M3", "M1"}
        Censored likelihood for BLQ records, or drop them.
    method : {"auto", "closed", "closed_graph", "ode"}
        Closed form when available (fused kernel; ``closed_graph``: plain PyTensor graph), or
        the compiled ODE solver.
    fixed : mapping of str to float
        Parameters held at a value (no typical-value prior, no random effect).
    iiv_sd : {"auto", "signed", "log"}
        How the IIV SDs of non-centred, uncorrelated random effects are sampled. ``"signed"``:
        ``omega = |v|`` with ``v`` from the symmetric parent of the half-distribution prior
        and ``eta = v z`` (the same model; up to 1.7x the ESS per second of the log form on
        the IIV SD that mixes worst, see ``benchmarks/README.md``); ``"log"``:
        ``log omega`` (PyMC's transform of a positive prior); ``"auto"`` (default): signed
        for every effect whose prior folds (HalfNormal, HalfCauchy, HalfStudentT) when the
        effects are non-centred and uncorrelated, log otherwise.
        :func:`ckmodel.fitting.fit` uses ``"log"`` under ``"auto"`` for the approximate
        methods (Pathfinder, ADVI, MAP), whose Gaussian or point approximations suit the
        one-mode log form (the signed form has two mirror-image modes, ``(v, z)`` and
        ``(-v, -z)``, that give the same ``omega`` and ``eta``).
    """

    centered: str | tuple[str, ...] | Mapping[str, float] = "auto"
    correlated: bool = False
    error: Mapping[str, str] = field(default_factory=dict)
    blq_method: str = "M3"
    method: str = "auto"
    fixed: Mapping[str, float] = field(default_factory=dict)
    ode: Any = None
    iiv_sd: str = "auto"

    def error_models(self, spec: ModelSpec, analytes: Sequence[str]) -> dict[str, str]:
        """The residual error model of each analyte: this option's override, else the spec's."""
        return {a: self.error.get(a, spec.output(a).error) for a in analytes}

    def check(self, spec: ModelSpec, effects: Sequence[CovariateEffect] = ()) -> None:
        """Refuse options that do not fit ``spec``, before any work, naming what is wrong.

        Raises
        ------
        ModelSpecError
            An unknown parameter (centred, fixed or with a covariate effect), an unknown
            analyte or error model, a fixed value outside the parameter's support, or an
            unknown BLQ method.
        """
        pnames = spec.param_names
        if isinstance(self.centered, str) and self.centered not in CENTRING_MODES:
            raise ModelSpecError(f"centered must be a list of parameters, weights per "
                                 f"parameter or one of {', '.join(CENTRING_MODES)}, got "
                                 f"{self.centered!r}")
        named = () if isinstance(self.centered, str) else tuple(self.centered)
        for name in (*named, *self.fixed, *(e.parameter for e in effects)):
            if name not in pnames:
                raise ModelSpecError(f"'{name}' is not a parameter of model '{spec.name}' "
                                     f"(parameters: {', '.join(pnames)})")
        for name, value in self.fixed.items():
            scale = spec.parameter(name).scale
            v = float(value)
            # a fixed value is a constant, so the closed ends of a logit scale are allowed
            # (bioavailability F = 1)
            if not np.isfinite(v) or (scale == "log" and v <= 0) or (
                    scale == "logit" and not 0 <= v <= 1):
                need = {"log": "> 0", "logit": "in [0, 1]"}.get(scale, "finite")
                raise ModelSpecError(f"fixed value {name}={value} is outside the parameter's "
                                     f"support (it must be {need})")
        for name in named:
            if spec.parameter(name).iiv is None:
                raise ModelSpecError(f"'{name}' has no random effect in model '{spec.name}', "
                                     "so it cannot be centred")
        if isinstance(self.centered, Mapping):
            for name, w in self.centered.items():
                if not 0.0 <= float(w) <= 1.0:
                    raise ModelSpecError(f"centring weight {name}={w} must lie in [0, 1] "
                                         "(0 non-centred, 1 centred)")
        if self.correlated and named:
            raise ModelSpecError("centred and correlated random effects cannot be combined; "
                                 "use one or the other")
        for a, err in self.error.items():
            if a not in spec.output_names:
                raise ModelSpecError(f"model '{spec.name}' has no output {a!r} for an error "
                                     f"model (outputs: {', '.join(spec.output_names)})")
            if err not in ERROR_MODELS:
                raise ModelSpecError(f"unknown error model {err!r} for {a} (choose one of "
                                     f"{', '.join(ERROR_MODELS)})")
        if self.blq_method not in ("M3", "M1"):
            raise ModelSpecError(f"blq_method must be 'M3' or 'M1', got {self.blq_method!r}")
        if self.iiv_sd not in IIV_SD_FORMS:
            raise ModelSpecError(f"iiv_sd (--iiv-sd) must be one of "
                                 f"{', '.join(IIV_SD_FORMS)}, got {self.iiv_sd!r}")
        if self.correlated and self.centered == "whitened":
            raise ModelSpecError("whitened and correlated random effects cannot be combined "
                                 "(--centered whitened with --correlated; centered='whitened' "
                                 "with correlated=True): use one or the other")
        if self.iiv_sd == "signed":
            if self.correlated or named or self.centered == "shrinkage":
                raise ModelSpecError("the signed form of the IIV SDs (--iiv-sd signed, "
                                     "iiv_sd='signed') needs non-centred, uncorrelated random "
                                     "effects; drop the centring / correlation, or choose the "
                                     "log form (--iiv-sd log, iiv_sd='log')")
            for p in spec.parameters:
                if (p.iiv is not None and p.name not in self.fixed
                        and p.iiv.dist not in FOLDED_PRIORS):
                    raise ModelSpecError(
                        f"the IIV prior of '{p.name}' ({p.iiv}) is not a half-distribution, so "
                        f"its SD has no signed form (priors that fold: "
                        f"{', '.join(FOLDED_PRIORS)}); choose --iiv-sd auto or log "
                        "(iiv_sd='auto' or 'log')")


#: Named parametrisations of the random effects (``PopulationOptions.centered``).
CENTRING_MODES = ("auto", "whitened", "shrinkage")
#: How IIV SDs are sampled (``PopulationOptions.iiv_sd``).
IIV_SD_FORMS = ("auto", "signed", "log")
#: Half-distribution IIV priors: the symmetric PyMC distribution each is the absolute value
#: of, and the name of its location parameter (set to 0; the scale parameters carry over).
FOLDED_PRIORS = {"HalfNormal": ("Normal", "mu"), "HalfCauchy": ("Cauchy", "alpha"),
                 "HalfStudentT": ("StudentT", "mu")}


def iiv_sd_forms(spec: ModelSpec, options: PopulationOptions,
                 centering: np.ndarray | None = None) -> dict[str, str]:
    """``"signed"`` or ``"log"`` per random effect, as :func:`build_model` samples its SD.

    Signed needs non-centred, uncorrelated effects (no ``centered`` option and no centring
    weights given to :func:`build_model`) and a prior that folds (:data:`FOLDED_PRIORS`);
    ``iiv_sd="auto"`` takes it wherever it applies.
    """
    names = iiv_parameters(spec, options)
    plain = (not options.correlated and centering is None and options.iiv_sd != "log"
             and (not options.centered or options.centered in ("auto", "whitened")))
    return {n: ("signed" if plain and spec.parameter(n).iiv.dist in FOLDED_PRIORS else "log")
            for n in names}


def iiv_parameters(spec: ModelSpec, options: PopulationOptions) -> list[str]:
    """Parameters with a random effect in the model: those with IIV that are not fixed."""
    return [p.name for p in spec.parameters if p.iiv is not None and p.name not in options.fixed]
