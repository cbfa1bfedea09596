"""`kqmix.optimizers.RAdam` against a numpy transcription of rectified Adam (optax's `radam`)."""

import keras
import numpy as np
import pytest

from kqmix.optimizers import RAdam


def radam_reference(grads, x0, lr, b1=0.9, b2=0.999, eps=1e-8, threshold=5.0):
    x, m, v, path = x0.astype(np.float64), 0.0, 0.0, []
    rho_inf = 2 / (1 - b2) - 1
    for t, grad in enumerate(grads, start=1):
        g = grad(x)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho > threshold:
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            step = r * m_hat / (np.sqrt(v / (1 - b2**t)) + eps)
        else:
            step = m_hat
        x = x - lr * step
        path.append(x.copy())
    return np.array(path)


def test_radam_follows_the_reference_through_the_switch_to_adaptive_steps(rng):
    target = rng.normal(size=5)
    x0 = rng.normal(size=5).astype(np.float32)
    grad = lambda x: 2.0 * (x - target)  # noqa: E731 - d/dx |x - target|^2
    expected = radam_reference([grad] * 12, x0, lr=0.05)  # rho_t passes 5 at the 6th step
    var = keras.Variable(x0)
    opt = RAdam(learning_rate=0.05)
    for step in range(12):
        opt.apply([keras.ops.convert_to_tensor(grad(np.asarray(var)).astype(np.float32))], [var])
        np.testing.assert_allclose(np.asarray(var), expected[step], rtol=1e-5, atol=1e-6, err_msg=f"step {step + 1}")


def test_radam_config_round_trips_and_refuses_a_threshold_below_4():
    opt = RAdam(learning_rate=0.005, threshold=6.0)
    clone = RAdam.from_config(opt.get_config())
    assert clone.threshold == 6.0 and float(clone.learning_rate) == pytest.approx(0.005)
    with pytest.raises(ValueError, match="threshold"):
        RAdam(threshold=3.0)
