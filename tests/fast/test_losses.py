"""rnncap.fast.masked_softmax_loss against the reference temporal_softmax_loss."""

import numpy as np

from rnncap.fast import masked_softmax_loss
from rnncap.layers import temporal_softmax_loss


def test_rows_in_any_order_equal_the_reference_loss():
    rng = np.random.default_rng(0)
    N, T, V = 4, 6, 7
    x = rng.standard_normal((N, T, V)) * 5
    y = rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) < 0.7
    want_loss, want_dx = temporal_softmax_loss(x, y, mask)
    perm = rng.permutation(N * T)  # packed rows come in another order
    rows = x.reshape(N * T, V)[perm]
    loss, dx = masked_softmax_loss(rows.copy(), y.reshape(-1)[perm], mask.reshape(-1)[perm], N,
                                   overwrite_x=True)
    assert abs(loss - want_loss) <= 1e-13 * abs(want_loss)
    np.testing.assert_allclose(dx, want_dx.reshape(N * T, V)[perm], rtol=1e-12, atol=1e-16)
    assert not dx[~mask.reshape(-1)[perm]].any()
