"""Fixtures of the solver tests: random subjects with log-normal parameter variation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import special

from ckmodel.spec import ModelSpec


@pytest.fixture(scope="session")
def random_subjects() -> Callable[..., dict[str, np.ndarray]]:
    """``n`` subjects around the typical values: log (logit) of each parameter + N(0, sd^2)."""

    def draw(spec: ModelSpec, n: int = 20, sd: float = 0.3, seed: int = 7
             ) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        out = {}
        for p in spec.parameters:
            z = rng.standard_normal(n) * sd
            if p.scale == "log":
                out[p.name] = p.value * np.exp(z)
            elif p.scale == "logit":
                out[p.name] = special.expit(special.logit(p.value) + z)
            else:
                out[p.name] = p.value + z
        return out

    return draw
