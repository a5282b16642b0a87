"""The JAX softplus registered for PyMC's JAX samplers: finite gradients at large |x|.

numpyro/blackjax differentiate the JAX translation of the log density with ``jax.grad`` (not
PyTensor's symbolic gradient), so the test does the same.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
import pytest
from scipy.special import expit

jax = pytest.importorskip("jax")


def _jax_grad():
    from pymc.sampling.jax import get_jaxified_graph

    x = pt.dvector("x")
    fn = get_jaxified_graph(inputs=[x], outputs=[pt.softplus(x).sum()])
    return jax.jit(jax.grad(lambda v: fn(v)[0]))


def test_softplus_gradient_is_finite_and_exact_under_jax_grad():
    from ckmodel.population.jax_support import register_jax_softplus

    jax.config.update("jax_enable_x64", True)
    register_jax_softplus()
    xs = np.array([-2000.0, -40.0, -1.0, 0.0, 1.0, 40.0, 2000.0])
    grad = np.asarray(_jax_grad()(xs))
    assert np.all(np.isfinite(grad))
    # atol: gradients below 1e-15 (x < -35) may come out as 0, immaterial for sampling
    np.testing.assert_allclose(grad, expit(xs), rtol=1e-12, atol=1e-15)
