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

The held-out images are the validation split when the data has one: images of the training
distribution that neither the model nor the feature extractor saw. Training images held out from
the statistics are not enough when the extractor was fitted on them (the built-in extractor's PCA
is): they sit closer to the mean than any new image. Measured on a shapes dataset of 1,000
training images (docs/real-images.md), a threshold from 20% held-out training images flagged 19
of 500 test images (3.8%), one from the validation split 1 of 500. Without a validation split, 20%
of the training images (at most 2,000) are held out and the statistics use the rest. What the check cannot promise is the other direction: an unfamiliar image
whose features happen to fall near the training mean is not flagged.

This module does NOT know images, checkpoints or models; it sees feature matrices.
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


def scores(features, stats: FeatureStats) -> np.ndarray:
    """Scores (N,) of features (N, D): mean squared standardised distance (see module docstring)."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[1] != stats.mean.shape[0]:
        raise ValueError(f"features must have shape (N, {stats.mean.shape[0]}), got {x.shape}")
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], CHUNK):
        d = x[s:s + CHUNK].astype(np.float64) - stats.mean  # (n, D)
        out[s:s + CHUNK] = np.mean(d * d / stats.var, axis=1)
    return out


def _moments(x, rows):
    """Mean and variance (D,) in float64 of the rows ``rows`` of x (I, D), a chunk at a time."""
    total = np.zeros(x.shape[1])
    for s in range(0, len(rows), CHUNK):
        total += x[rows[s:s + CHUNK]].sum(axis=0, dtype=np.float64)
    mean = total / len(rows)
    squares = np.zeros(x.shape[1])
    for s in range(0, len(rows), CHUNK):
        d = x[rows[s:s + CHUNK]].astype(np.float64) - mean  # (n, D)
        squares += (d * d).sum(axis=0)
    return mean, squares / len(rows)


def fit_stats(features, rng: np.random.Generator, *, calibration=None, alpha: float = ALPHA,
              holdout_fraction: float = HOLDOUT_FRACTION, max_holdout: int = MAX_HOLDOUT):
    """Statistics of training features (I, D) and a conformal threshold; None if I < 3.

    Args:
        features: the training features, one row per image.
        rng: picks the held-out training images (when there is no calibration set).
        calibration: features (n, D) of held-out images of the training distribution (the
            validation split), or None to hold out training images.
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
        held, fit_rows, source = x[order[:n_hold]], order[n_hold:], "held-out training images"
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
        threshold = float(doc["threshold"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source}: feature statistics are incomplete ({err})") from None
    if mean.ndim != 1 or var.shape != mean.shape or not (var > 0).all():
        raise ValueError(f"{source}: feature statistics have shapes {mean.shape} and {var.shape}; "
                         f"expected two equal (D,) vectors with positive variances")
    info = {k: v for k, v in doc.items() if k != "threshold"}
    return FeatureStats(mean, var, threshold, info)
