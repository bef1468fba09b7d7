"""Is an image like the ones a model was trained on? Statistics of training features and a threshold.

A captioner trained on shapes will caption a photo of a cat with full confidence: its decoder has
only ever seen shape features, and any vector produces words. Before captioning, rnncap measures
how far an image's feature vector x (D,) lies from the training features, and flags it when it is
farther than almost every training image.

The distance is the diagonal Mahalanobis distance, averaged over dimensions::

    score(x) = (1 / D) * sum_d (x_d - mean_d)^2 / (var_d + lam * mean(var))

- mean and var are the per-dimension mean and variance of the training features. Under a
  Gaussian with diagonal covariance the score is chi-squared with D degrees of freedom over D
  (about 1 for a typical training image). The built-in extractor ends in a PCA fitted on training
  images, so its dimensions are uncorrelated on them and the diagonal is the full Mahalanobis
  distance; for a pretrained backbone the full covariance would need D^2 numbers and at least D
  images to estimate, the diagonal needs 2D numbers and is stable from a few hundred images.
- ``lam * mean(var)`` (lam = 0.01) keeps a dimension that barely varies in training (a constant
  background, say) from turning the tiniest change into an infinite distance.

The threshold is set by split conformal prediction (Vovk et al.; Angelopoulos and Bates 2021): the
statistics are computed on the training images, n held-out images are scored, and the threshold is
their k-th smallest score with k = ceil((n + 1)(1 - alpha)). If the images to caption come from
the same distribution as the held-out ones, the chance that one is flagged is then at most alpha,
whatever the features' distribution; with fewer than 1/alpha held-out images k exceeds n and the
largest held-out score is used (a weaker guarantee, 1/(n + 1)). alpha is 0.2%: the guarantee holds
on average over calibration sets, and the rate of one threshold from n = 1,000 images varies
around it (it is Beta(n + 1 - k, k)-distributed), so a target well under the 1% that users may
tolerate keeps that one threshold under 1% too.

An attention model's features are grids (N, L, D), one vector per cell; the check reads the
mean over the cells, a (D,) vector per image, and everything above applies to it unchanged. Three
reasons for the mean and not the L*D numbers of the whole grid: (1) for the pretrained backbone
(and an ONNX model's "pooled" output) the mean over the 7x7 cells *is* the pooled vector a
CaptioningRNN reads, so the same picture gets the same statistic from either kind of model trained
on the same features file; (2) it is the attention model's own summary of a picture (its h0 and
c0 come from the mean annotation); (3) the diagonal statistics of 49 x 1280 = 62,720 numbers per
image would have to be estimated from the same few thousand images as 1,280, with every cell's
variance inflated by where things happen to be in each photo. What the mean gives up is layout: a
picture whose cells each look familiar but sit in an unfamiliar arrangement is not flagged.

The held-out images are the validation split when the data has one: images of the training
distribution that neither the model nor the feature extractor saw. Training images held out from
the statistics are not enough when the extractor was fitted on them (the built-in extractor's PCA
is): they sit closer to the mean than any new image. Measured on a shapes dataset of 1,000
training images (docs/real-images.md), a threshold from 20% held-out training images flagged 19
of 500 test images (3.8%), one from the validation split 1 of 500. Without a validation split, 20%
of the training images (at most 2,000) are held out and the statistics use the rest. What the check cannot promise is the other direction: an unfamiliar image
whose features happen to fall near the training mean is not flagged.

This module does NOT know images, checkpoints or models; it sees feature matrices (and grids,
which it reduces to matrices).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["FeatureStats", "fit_stats", "scores", "flag", "warning", "to_checkpoint", "from_checkpoint"]

METHOD = "diagonal-mahalanobis"
SHRINK = 0.01
ALPHA = 0.002
HOLDOUT_FRACTION = 0.2
MAX_HOLDOUT = 2000


class FeatureStats(NamedTuple):
    """What a checkpoint keeps about its training features."""

    mean: np.ndarray       # (D,) float64
    var: np.ndarray        # (D,) float64, regularised: var_d + SHRINK * mean(var)
    threshold: float       # scores above it are flagged
    info: dict             # method, alpha, n_fit, n_holdout, rank, held-out score quantiles


CHUNK = 4096  # rows converted to float64 at a time: no float64 copy of a whole split
GRID_SUMMARY = "mean over grid cells"


def _vectors(block) -> np.ndarray:
    """float64 (n, D) of a block of rows: the rows themselves, or each grid's mean over its cells.

    Args:
        block: (n, D) feature vectors or (n, L, D) grids (see the module docstring for why the mean).
    """
    if block.ndim == 3:
        return block.mean(axis=1, dtype=np.float64)  # (n, D)
    return block.astype(np.float64)


def _check_shape(x, dim: int) -> None:
    if x.ndim not in (2, 3) or x.shape[-1] != dim or (x.ndim == 3 and x.shape[1] < 1):
        raise ValueError(f"features must have shape (N, {dim}) or grids (N, L, {dim}), got {x.shape}")


def scores(features, stats: FeatureStats) -> np.ndarray:
    """Scores (N,) of features (N, D) or grids (N, L, D): mean squared standardised distance
    (see module docstring)."""
    x = np.asarray(features)
    _check_shape(x, stats.mean.shape[0])
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], CHUNK):
        d = _vectors(x[s:s + CHUNK]) - stats.mean  # (n, D)
        out[s:s + CHUNK] = np.mean(d * d / stats.var, axis=1)
    return out


def _moments(x, rows):
    """Mean and variance (D,) in float64 of the rows ``rows`` of x (I, D) or (I, L, D), a chunk
    at a time (a grid row counts as its mean over cells)."""
    total = np.zeros(x.shape[-1])
    for s in range(0, len(rows), CHUNK):
        total += _vectors(x[rows[s:s + CHUNK]]).sum(axis=0)
    mean = total / len(rows)
    squares = np.zeros(x.shape[-1])
    for s in range(0, len(rows), CHUNK):
        d = _vectors(x[rows[s:s + CHUNK]]) - mean  # (n, D)
        squares += (d * d).sum(axis=0)
    return mean, squares / len(rows)


def fit_stats(features, rng: np.random.Generator, *, calibration=None, alpha: float = ALPHA,
              holdout_fraction: float = HOLDOUT_FRACTION, max_holdout: int = MAX_HOLDOUT):
    """Statistics of training features (I, D) or grids (I, L, D) and a conformal threshold;
    None if I < 3.

    Args:
        features: the training features, one row (or one grid) per image.
        rng: picks the held-out training images (when there is no calibration set).
        calibration: features (n, D) or grids (n, L, D) of held-out images of the training
            distribution (the validation split), or None to hold out training images.
        alpha: the target rate of flagged in-distribution images.
    """
    x = np.asarray(features)
    n_all = x.shape[0]
    if calibration is not None and len(calibration):
        held, fit_rows, source = np.asarray(calibration), np.arange(n_all), "validation split"
        n_hold = held.shape[0]
        if n_all < 2:
            return None
    else:
        if n_all < 3:
            return None
        n_hold = int(min(max_holdout, max(1, round(holdout_fraction * n_all))))
        order = rng.permutation(n_all)
        held = np.concatenate([_vectors(x[order[s:min(s + CHUNK, n_hold)]])  # (n_hold, D)
                               for s in range(0, n_hold, CHUNK)])
        fit_rows, source = order[n_hold:], "held-out training images"
    mean, var = _moments(x, fit_rows)
    var = var + SHRINK * max(float(var.mean()), 1e-12)
    prelim = FeatureStats(mean, var, math.inf, {})
    held_scores = np.sort(scores(held, prelim))
    rank = math.ceil((n_hold + 1) * (1 - alpha))
    threshold = float(held_scores[min(rank, n_hold) - 1])
    info = {"method": METHOD, "shrink": SHRINK, "alpha": alpha, "n_fit": int(len(fit_rows)),
            "n_holdout": n_hold, "holdout": source, "rank": int(min(rank, n_hold)),
            "guarantee": float(alpha if rank <= n_hold else 1 / (n_hold + 1)),
            "holdout_median": float(np.median(held_scores)),
            "holdout_max": float(held_scores[-1])}
    if x.ndim == 3:
        info["summary"] = GRID_SUMMARY
    return FeatureStats(mean, var, threshold, info)


def flag(features, stats: FeatureStats | None):
    """(scores (N,), flagged bool (N,)), or (None, None) without statistics."""
    if stats is None:
        return None, None
    s = scores(features, stats)
    return s, s > stats.threshold


def warning(name: str, score: float, stats: FeatureStats) -> str:
    """The one line a flagged image gets: what the model was trained on, and how far off it is."""
    return (f"{name} looks unlike the images this model was trained on "
            f"({stats.info.get('trained_on', 'unknown data')}): feature distance {score:.2f} > "
            f"threshold {stats.threshold:.2f}; its caption is not to be trusted")


def to_checkpoint(stats: FeatureStats, trained_on: str):
    """(document, arrays) to store in a checkpoint (JSON and a pickle-free .npz)."""
    doc = dict(stats.info, threshold=stats.threshold, trained_on=trained_on)
    return doc, {"mean": stats.mean, "var": stats.var}


def from_checkpoint(doc: dict, arrays: dict, source: str = "checkpoint") -> FeatureStats:
    """Inverse of :func:`to_checkpoint`; a ValueError naming ``source`` if anything is off."""
    try:
        mean, var = np.asarray(arrays["mean"], np.float64), np.asarray(arrays["var"], np.float64)
        threshold = doc["threshold"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source}: feature statistics are incomplete ({err})") from None
    # JSON's true would pass float() as 1.0, and a string as its number: only numbers are thresholds
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"{source}: feature statistics' threshold is {threshold!r:.40}; expected a number")
    threshold = float(threshold)
    if mean.ndim != 1 or var.shape != mean.shape or not (var > 0).all():
        raise ValueError(f"{source}: feature statistics have shapes {mean.shape} and {var.shape}; "
                         f"expected two equal (D,) vectors with positive variances")
    # NaN would make every distance NaN, and a NaN or infinite threshold would flag nothing.
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and np.isfinite(threshold)):
        raise ValueError(f"{source}: feature statistics hold NaN or infinite values (threshold "
                         f"{threshold}); expected finite numbers")
    info = {k: v for k, v in doc.items() if k != "threshold"}
    return FeatureStats(mean, var, threshold, info)
