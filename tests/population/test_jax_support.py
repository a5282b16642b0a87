"""The JAX softplus registered for PyMC's JAX samplers: finite gradients at large |x|."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import expit

pytest.importorskip("jax")


def test_softplus_gradient_is_finite_and_exact_under_jax():
    from ckmodel.population.jax_support import register_jax_softplus

    register_jax_softplus()
    x = pt.dvector("x")
    y = pt.softplus(x)
    f = pytensor.function([x], [y, pytensor.grad(y.sum(), x)], mode="JAX")
    xs = np.array([-2000.0, -40.0, -1.0, 0.0, 1.0, 40.0, 2000.0])
    val, grad = (np.asarray(a) for a in f(xs))
    assert np.all(np.isfinite(val)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(val, np.logaddexp(0.0, xs), rtol=1e-12)
    np.testing.assert_allclose(grad, expit(xs), rtol=1e-12, atol=1e-300)
