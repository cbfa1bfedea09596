"""Optimizers Keras does not ship.

`RAdam` (Liu et al., ICLR 2020, "On the Variance of the Adaptive Learning
Rate and Beyond"): Adam whose adaptive step is switched on only once the
variance of its second-moment estimate is tractable, and then scaled by the
rectification term r_t, which grows from about 0 to 1 over the first few
thousand steps. In effect a warm-up of the learning rate that needs no
schedule. JaxMARL's QMIX baselines train with it (optax's `radam`, whose
update this follows: `m_hat / (sqrt(v_hat) + eps) * r_t` once
`rho_t > threshold`, plain `m_hat` before).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kqmix")
class RAdam(keras.optimizers.Adam):
    """Rectified Adam.

    Args:
        learning_rate, beta_1, beta_2, epsilon: as `keras.optimizers.Adam`
            (optax's defaults: 0.9, 0.999, 1e-8).
        threshold: the rectification switches the adaptive step on once
            rho_t exceeds it (5, as optax; the paper uses 4).
        **kwargs: as `keras.optimizers.Adam` (clipping, weight decay, ...).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, threshold=5.0,
                 name="radam", **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=False, name=name, **kwargs)
        if not threshold >= 4.0:
            raise ValueError(f"`threshold` must be at least 4 (r_t is undefined below). Received: threshold={threshold!r}")
        self.threshold = float(threshold)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        t = ops.cast(self.iterations + 1, variable.dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, variable.dtype), ops.cast(self.beta_2, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - beta_2))
        beta_2_t = ops.power(beta_2, t)
        m_hat = ops.divide(m, 1 - ops.power(beta_1, t))
        rho_inf = 2.0 / (1.0 - beta_2) - 1.0
        rho_t = rho_inf - 2.0 * t * beta_2_t / (1.0 - beta_2_t)
        # r_t is only defined for rho_t > 4; the clamp keeps the unused branch finite.
        rho_safe = ops.maximum(rho_t, self.threshold)
        r_t = ops.sqrt((rho_safe - 4.0) * (rho_safe - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_safe))
        adaptive = m_hat / (ops.sqrt(v / (1.0 - beta_2_t)) + self.epsilon) * r_t
        self.assign_sub(variable, lr * ops.where(rho_t > self.threshold, adaptive, m_hat))

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad", None)
        return {**config, "threshold": self.threshold}
