"""Finite-difference gradient checking, with CS231n's names and signatures.

The analytic backward passes of the layers and the model are only trusted because they
match these numerical gradients. Every check perturbs one entry of x at a time by +-h
and takes the centred difference (f(x+h) - f(x-h)) / 2h, whose error is O(h^2); x is
restored to its exact original value afterwards. Use float64: in float32 the rounding
error of f swamps the difference at any useful h.

This module does not know what f computes; it only calls it.
"""

from __future__ import annotations

import numpy as np


def _check_float_array(x, name="x"):
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        got = type(x).__name__ if not isinstance(x, np.ndarray) else f"dtype {x.dtype}"
        raise ValueError(
            f"{name} must be a floating-point numpy array (it is perturbed in place); got {got}"
        )


def _centred_differences(g, x, h, difference, on_entry=None):
    """The loop both checks share: for every entry ix of x, g at x[ix] + h and at
    x[ix] - h, then grad[ix] = difference(g_plus, g_minus) / 2h; x restored exactly.
    on_entry(ix, grad[ix]) is called after each entry if given."""
    _check_float_array(x)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        plus = g(x)
        x[ix] = old - h
        minus = g(x)
        x[ix] = old
        grad[ix] = difference(plus, minus) / (2 * h)
        if on_entry is not None:
            on_entry(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """Numerical gradient of a scalar function f at x, one entry at a time.

    Args:
        f: function of one argument returning a scalar; called as f(x) with x
            modified in place.
        x: the point, a floating array of any shape (modified during the call and
            restored exactly).
        verbose: print each index and its gradient (as CS231n does).
        h: the finite-difference step.

    Returns:
        Array of x's shape: the gradient df/dx.
    """
    return _centred_differences(lambda a: float(f(a)), x, h, lambda plus, minus: plus - minus,
                                on_entry=print if verbose else None)


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Numerical gradient of sum(f(x) * df) with respect to x.

    This is how an array-valued layer is checked: df plays the upstream gradient,
    and the result should equal the layer's backward pass given df.

    Args:
        f: function of one argument returning an array; called as f(x) with x
            modified in place.
        x: the point, a floating array of any shape (restored exactly).
        df: upstream gradient, same shape as f(x).
        h: the finite-difference step.

    Returns:
        Array of x's shape.
    """
    return _centred_differences(lambda a: np.array(f(a), copy=True), x, h,
                                lambda plus, minus: np.sum((plus - minus) * df))


def numerical_input_gradients(forward, args, douts, h=1e-5):
    """Numerical gradients of a layer's forward pass with respect to each of its inputs.

    For a CS231n-style ``forward(*args) -> (out_1, ..., out_k, cache)`` and upstream
    gradients ``douts = [dout_1, ..., dout_k]``, returns, for every array in args, the
    numerical gradient of sum_j sum(out_j * dout_j): what the matching backward pass
    must return for that input. (Several outputs, like an LSTM step's next_h and
    next_c, are checked together.)

    Args:
        forward: the layer's forward function; called with one argument perturbed.
        args: list of its floating-point array arguments (each restored exactly).
        douts: upstream gradients of its first len(douts) outputs.
        h: the finite-difference step.

    Returns:
        List of arrays, one per argument, each of that argument's shape.
    """
    def outputs(i):
        def f(a):
            out = forward(*args[:i], a, *args[i + 1:])
            return np.concatenate([np.ravel(o) for o in out[:len(douts)]])
        return f

    dflat = np.concatenate([np.ravel(d) for d in douts])
    return [eval_numerical_gradient_array(outputs(i), a, dflat, h) for i, a in enumerate(args)]


def rel_error(x, y):
    """Largest elementwise relative error max |x - y| / max(1e-8, |x| + |y|).

    The 1e-8 floor keeps entries where both values are ~0 from dividing by zero.

    Args:
        x, y: arrays (or scalars) of the same shape.

    Returns:
        A Python float.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error needs arrays of the same shape; got {x.shape} and {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))
