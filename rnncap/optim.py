"""First-order update rules with CS231n's interface, and global-norm gradient clipping.

Every rule is `update(w, dw, config=None) -> (next_w, config)`:

    w: the current parameter array, any shape;
    dw: the gradient of the loss with respect to w, same shape;
    config: dict of hyperparameters AND state (moments, step count). Missing keys get
        CS231n's defaults, so `config=None` starts a fresh optimizer.

All state lives in `config` as numpy arrays and Python floats/ints, so a solver can save
it and resume bit-identically. `w` is never modified in place; `next_w`, and every state
array, have w's dtype (float32 stays float32: hyperparameters are read as Python floats,
which never widen an array under NumPy's promotion rules).

This module knows one array and its gradient. It does not know models, parameter names
(beyond the dict `clip_grad_norm` takes), schedules or data.
"""

from __future__ import annotations

import math

import numpy as np

UPDATE_RULES = ("sgd", "sgd_momentum", "rmsprop", "adam")


def _hyper(config, name, default):
    """Reads a hyperparameter as a Python float (a NumPy float64 scalar would upcast)."""
    config.setdefault(name, default)
    return float(config[name])


def _state(config, name, w):
    if name not in config:
        config[name] = np.zeros_like(w)
    return config[name]


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: w - learning_rate * dw.

    config: learning_rate (default 1e-2).
    """
    config = {} if config is None else config
    lr = _hyper(config, "learning_rate", 1e-2)
    next_w = (w - lr * dw).astype(w.dtype, copy=False)
    return next_w, config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: v = momentum * v - learning_rate * dw; w + v.

    config: learning_rate (1e-2), momentum (0.9), velocity (state, like w).
    """
    config = {} if config is None else config
    lr = _hyper(config, "learning_rate", 1e-2)
    mu = _hyper(config, "momentum", 0.9)
    v = _state(config, "velocity", w)
    v = (mu * v - lr * dw).astype(w.dtype, copy=False)
    config["velocity"] = v
    return w + v, config


def rmsprop(w, dw, config=None):
    """RMSProp: divide the step by a running root mean square of recent gradients.

    config: learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache (state).
    """
    config = {} if config is None else config
    lr = _hyper(config, "learning_rate", 1e-2)
    decay = _hyper(config, "decay_rate", 0.99)
    eps = _hyper(config, "epsilon", 1e-8)
    cache = _state(config, "cache", w)
    cache = (decay * cache + (1 - decay) * (dw * dw)).astype(w.dtype, copy=False)
    config["cache"] = cache
    next_w = (w - lr * dw / (np.sqrt(cache) + eps)).astype(w.dtype, copy=False)
    return next_w, config


def adam(w, dw, config=None):
    """Adam: bias-corrected running means of the gradient and its square.

    config: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8),
    m and v (state, like w), t (step count, int; incremented before use).
    """
    config = {} if config is None else config
    lr = _hyper(config, "learning_rate", 1e-3)
    beta1 = _hyper(config, "beta1", 0.9)
    beta2 = _hyper(config, "beta2", 0.999)
    eps = _hyper(config, "epsilon", 1e-8)
    m = _state(config, "m", w)
    v = _state(config, "v", w)
    t = int(config.get("t", 0)) + 1
    m = (beta1 * m + (1 - beta1) * dw).astype(w.dtype, copy=False)
    v = (beta2 * v + (1 - beta2) * (dw * dw)).astype(w.dtype, copy=False)
    m_hat = m / (1 - beta1**t)  # Python float divisor: stays in w's dtype
    v_hat = v / (1 - beta2**t)
    next_w = (w - lr * m_hat / (np.sqrt(v_hat) + eps)).astype(w.dtype, copy=False)
    config.update(m=m, v=v, t=t)
    return next_w, config


def clip_grad_norm(grads, max_norm):
    """Scales every gradient in place so that their global L2 norm is at most max_norm.

    The norm is taken over all arrays together (as if concatenated), so the direction
    of the full gradient is kept. Nothing is scaled when the norm is already small
    enough, or when it is not finite (the caller decides what a NaN means).

    Args:
        grads: dict name -> gradient array; modified in place.
        max_norm: positive float.

    Returns:
        The global norm before clipping, a Python float.
    """
    if not (isinstance(max_norm, (int, float, np.floating, np.integer)) and max_norm > 0):
        raise ValueError(f"max_norm must be a positive number; got {max_norm!r}")
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if math.isfinite(total) and total > max_norm:
        scale = float(max_norm) / (total + 1e-6)
        for g in grads.values():
            g *= scale
    return total
