"""Choosing one candidate per class on validation data, with the overfitting shown.

Shared by the per-class thresholds (:mod:`yolohand.results.thresholds`: the candidates are
thresholds) and the class-wise source pick (:mod:`yolohand.results.fusion`: the candidates are
models). numpy only.

Scores are the competition's: the Dice of each (image, class), averaged over images. They are
accumulated as sums per *half* of the images (:class:`HalfSums`), the halves split by patient
(both hands of one patient land in the same half, so the halves are independent draws), so
memory is two (K, C) arrays whatever the number of images.

The rule (:func:`fit_choice`): per class, keep the *default* candidate unless the best one beats
it by more than ``margin`` mean Dice, and (``split_half``) beats it on each half on its own.
What is reported per class, so that overfitting is visible:

- ``gain``: in-sample gain of the best candidate over the default (all images);
- ``half_gains``: the same gain measured on each half alone;
- ``heldout_gain``: the rule fitted on one half (margin only) and scored on the other half, both
  ways, averaged: an honest estimate of what the choice gains on unseen images. A large
  ``gain`` with a ``heldout_gain`` near 0 (or negative) is overfitting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from yolohand.errors import YolohandError

__all__ = ["HalfSums", "Choice", "patient_halves", "choose", "fit_choice"]


def patient_halves(patient_ids: Sequence[str]) -> dict[str, int]:
    """``{patient_id: 0 or 1}``: the sorted distinct IDs alternate between the two halves."""
    return {pid: k % 2 for k, pid in enumerate(sorted(set(patient_ids)))}


class HalfSums:
    """Sums of per-image scores, float64 (K, C), kept separately for half 0 and half 1."""

    def __init__(self, n_candidates: int, n_classes: int) -> None:
        self.sums = np.zeros((2, n_candidates, n_classes), dtype=np.float64)
        self.counts = np.zeros(2, dtype=np.int64)

    def add(self, half: int, scores: np.ndarray) -> None:
        """Add one image's scores: float (K, C), candidate k's Dice of class c."""
        self.sums[half] += scores
        self.counts[half] += 1

    @property
    def n_images(self) -> int:
        return int(self.counts.sum())

    def mean(self, half: int | None = None) -> np.ndarray:
        """float64 (K, C): mean score over the images of ``half`` (None: all images)."""
        if half is None:
            return self.sums.sum(axis=0) / max(self.n_images, 1)
        return self.sums[half] / max(int(self.counts[half]), 1)


def choose(means: np.ndarray, default: np.ndarray, margin: float, order: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(best (C,) int, chosen (C,) int) from mean scores float (K, C).

    ``best``: per class the highest score, ties going to the candidate earliest in ``order``;
    ``chosen``: ``best`` where it beats ``default`` (int (C,)) by more than ``margin``, else
    ``default``.
    """
    order = np.asarray(order, dtype=np.int64)
    ranked = means[order]                       # (K, C) in preference order
    best = order[np.argmax(ranked, axis=0)]     # argmax takes the first maximum
    cols = np.arange(means.shape[1])
    gain = means[best, cols] - means[default, cols]
    return best, np.where(gain > margin, best, default)


@dataclass
class Choice:
    """The per-class choice and everything needed to judge it (see the module docstring).

    Arrays over classes C; ``scores`` float64 (K, C) in-sample mean Dice of every candidate.
    """

    scores: np.ndarray
    default: np.ndarray          # int (C,): the default candidate (on all images)
    best: np.ndarray             # int (C,): the in-sample best candidate
    chosen: np.ndarray           # int (C,): what the rule keeps
    gain: np.ndarray             # float (C,): scores[best] - scores[default]
    half_gains: np.ndarray       # float (2, C): the same gain on each half
    heldout_gain: np.ndarray     # float (C,): chosen on one half, scored on the other, averaged
    heldout_score: np.ndarray    # float (C,): that held-out policy's mean Dice
    heldout_default: np.ndarray  # float (C,): the held-out default's mean Dice
    n_images: int
    half_images: tuple[int, int]
    margin: float
    split_half: bool

    def chosen_score(self) -> np.ndarray:
        """float (C,): in-sample mean Dice of the chosen candidates."""
        return self.scores[self.chosen, np.arange(self.scores.shape[1])]

    def default_score(self) -> np.ndarray:
        """float (C,): in-sample mean Dice of the default candidates."""
        return self.scores[self.default, np.arange(self.scores.shape[1])]

    def why(self, c: int) -> str:
        """Why class ``c`` kept its default or changed, in words."""
        if self.best[c] == self.default[c]:
            return "default is best"
        if self.gain[c] <= self.margin:
            return f"gain {self.gain[c]:+.4f} <= margin {self.margin:g}"
        if self.split_half and not (self.half_gains[:, c] > 0).all():
            return (f"gain {self.gain[c]:+.4f} does not hold on both halves "
                    f"({self.half_gains[0, c]:+.4f}, {self.half_gains[1, c]:+.4f})")
        return f"gain {self.gain[c]:+.4f} > margin" + (", on both halves" if self.split_half else "")


def fit_choice(
    sums: HalfSums,
    default: Callable[[np.ndarray], np.ndarray],
    margin: float,
    order: Sequence[int],
    split_half: bool = True,
) -> Choice:
    """Apply the rule of the module docstring to accumulated scores.

    ``default(means (K, C)) -> int (C,)``: the default candidate per class given mean scores
    (a constant for thresholds, the best overall candidate for sources). ``order``: candidate
    preference for ties. YolohandError when nothing was scored, or when ``split_half`` is asked
    and a half is empty (fewer than two patients).
    """
    if sums.n_images == 0:
        raise YolohandError("no images to fit on")
    if not (np.isfinite(margin) and margin >= 0):
        raise YolohandError(f"--margin {margin}: must be a number >= 0")
    empty_half = bool((sums.counts == 0).any())
    if split_half and empty_half:
        raise YolohandError(f"the split-half check needs images of at least two patients (got {sums.n_images} "
                            "image(s) of one); give more images or turn the check off (--no-split-half)")
    cols = np.arange(sums.sums.shape[2])
    means = sums.mean()
    dflt = np.asarray(default(means), dtype=np.int64)
    best, chosen = choose(means, dflt, margin, order)
    gain = means[best, cols] - means[dflt, cols]
    halves = [sums.mean(h) if sums.counts[h] else np.full_like(means, np.nan) for h in (0, 1)]
    half_gains = np.stack([m[best, cols] - m[dflt, cols] for m in halves])
    if split_half:
        chosen = np.where((half_gains > 0).all(axis=0), chosen, dflt)  # NaN (an empty half) is not > 0
    held, held_default = np.zeros(len(cols)), np.zeros(len(cols))
    if not empty_half:
        for fit_h, test_h in ((0, 1), (1, 0)):
            d_h = np.asarray(default(halves[fit_h]), dtype=np.int64)
            _, pick_h = choose(halves[fit_h], d_h, margin, order)
            held += halves[test_h][pick_h, cols] / 2
            held_default += halves[test_h][d_h, cols] / 2
    else:
        held[:] = held_default[:] = np.nan
    return Choice(
        scores=means, default=dflt, best=best, chosen=chosen, gain=gain, half_gains=half_gains,
        heldout_gain=held - held_default, heldout_score=held, heldout_default=held_default,
        n_images=sums.n_images, half_images=(int(sums.counts[0]), int(sums.counts[1])), margin=float(margin),
        split_half=split_half,
    )
