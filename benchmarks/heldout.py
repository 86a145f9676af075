"""Held-out splits that nothing else contains, not even as a phrase, drawn like the set they stand in for.

SST-2's training rows are phrases cut from the same sentences: a held-out sentence that is disjoint from
the teacher's data only as an exact string still has its phrases (often 90% of it, with the same label)
in there, and held-out then rewards copying the teacher. Here two texts *overlap* when they are equal or
one is a run of at least 3 whole tokens of the other (a shorter phrase, `funny` or `the film`, is in
thousands of sentences and tells nothing of one), tokens as SST-2 writes them (`it 's`, `does n't`: a
contraction is a token of its own, never cut), lower case, punctuation-only tokens at the ends left out.

Held-out is a random sample of candidates with the length profile of the reported set (`draw_heldout`),
not the candidates that happen to overlap nothing (that rejected long sentences and left held-out
shorter than dev); every other split is then carved around it (`without_overlap`).
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_kd.overlap import MIN_SHARED, OverlapIndex, normalise, tokens, word_runs

__all__ = [
    "MIN_SHARED",
    "OverlapIndex",
    "draw_heldout",
    "length_bins",
    "normalise",
    "tokens",
    "without_overlap",
    "word_runs",
]


def length_bins(reference: Iterable[str], bins: int = 10) -> list[int]:
    """Upper bounds (in tokens) of `bins` length classes holding equal shares of the reference texts."""
    lengths = sorted(len(tokens(text)) for text in reference)
    return sorted({lengths[min(len(lengths) - 1, (i + 1) * len(lengths) // bins - 1)] for i in range(bins)})


def draw_heldout(candidates: Iterable[str], reference: Iterable[str], size: int, seed: int = 0) -> list[str]:
    """`size` distinct candidates drawn at random with the reference set's length profile: as many from each
    length class (`length_bins`) as the reference holds there. A draw that overlaps an earlier one is skipped
    (no near-duplicates inside held-out); nothing else is rejected: the other splits give way (`without_overlap`)."""
    reference = list(reference)
    bounds = length_bins(reference)

    def length_class(text: str) -> int:
        length = len(tokens(text))
        return next((i for i, bound in enumerate(bounds) if length <= bound), len(bounds) - 1)

    wanted: dict[int, int] = defaultdict(int)
    for text in reference:
        wanted[length_class(text)] += 1
    pools: dict[int, list[str]] = defaultdict(list)
    for text in dict.fromkeys(candidates):
        if normalise(text):
            pools[length_class(text)].append(text)
    rng = random.Random(seed)
    quotas = {k: round(size * n / len(reference)) for k, n in wanted.items()}
    quotas[max(wanted, key=wanted.get)] += size - sum(quotas.values())  # rounding: the largest class evens out
    index, chosen = OverlapIndex(), []
    for length in sorted(quotas):
        pool = pools[length]
        rng.shuffle(pool)
        taken = 0
        for text in pool:
            if taken == quotas[length]:
                break
            if not index.overlaps(text):
                chosen.append(text)
                index.add(text)
                taken += 1
    return chosen


def without_overlap(texts: Iterable[str], heldout: Iterable[str]) -> list[str]:
    """The texts that overlap no held-out text, in order."""
    index = OverlapIndex(heldout)
    return [text for text in texts if not index.overlaps(text)]
