"""Fixtures of the dose-escalation tests: scripted DLT samplers for hand-worked trials."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest


def make_scripted_sampler(
    dlts: Mapping[int, Sequence[int]], grades: Mapping[int, Sequence[int]] | None = None
) -> Callable[[int, int, np.random.Generator], object]:
    """DLT sampler that hands out, per level, the given outcomes in enrolment order.

    Raises AssertionError when a trial treats more patients at a level than scripted, so a
    hand-worked test also checks how many patients each level receives.
    """
    used = dict.fromkeys(dlts, 0)

    def sampler(level: int, n: int, rng: np.random.Generator) -> object:
        start = used.get(level, 0)
        script = list(dlts.get(level, ()))
        assert start + n <= len(script), f"level {level}: patient {start + n} was not scripted"
        used[level] = start + n
        dlt = np.array(script[start : start + n], dtype=np.int64)
        if grades is None:
            return dlt
        return dlt, np.array(list(grades[level])[start : start + n], dtype=np.int64)

    sampler.used = used  # type: ignore[attr-defined]
    return sampler


@pytest.fixture
def scripted() -> Callable[..., Callable[[int, int, np.random.Generator], object]]:
    """Factory of scripted DLT samplers (see ``make_scripted_sampler``)."""
    return make_scripted_sampler
