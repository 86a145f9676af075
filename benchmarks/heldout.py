"""Held-out splits that nothing else contains, not even as a phrase.

SST-2's training rows are phrases cut from the same sentences: a held-out sentence that is disjoint from
the teacher's data only as an exact string still has its phrases (often 90% of it, with the same label)
in there, and held-out then rewards copying the teacher. Here two texts *overlap* when one, normalised
(lower case, spaces collapsed, punctuation at the ends stripped), is a run of whole words of the other.
A held-out text is accepted only if no protected row overlaps it, and every other split keeps only the
rows that overlap no held-out text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

END_PUNCTUATION = ".,!?;:'\"`-()[] "


def normalise(text: str) -> str:
    """Lower case, spaces collapsed, punctuation at both ends stripped."""
    return re.sub(r"\s+", " ", text.lower()).strip(END_PUNCTUATION).strip()


def word_runs(text: str) -> set[str]:
    """Every run of consecutive whole words of a normalised text (its possible contained phrases)."""
    words = text.split()
    return {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}


class OverlapIndex:
    """The rows of a split, to ask at once whether a text overlaps any of them (either contains the other)."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.rows: set[str] = set()
        self.runs: set[str] = set()
        for text in texts:
            self.add(text)

    def add(self, text: str) -> None:
        row = normalise(text)
        if row:
            self.rows.add(row)
            self.runs |= word_runs(row)

    def overlaps(self, text: str) -> bool:
        row = normalise(text)
        if not row:
            return False
        return row in self.runs or not self.rows.isdisjoint(word_runs(row))


def carve_heldout(candidates: Iterable[str], protected: Iterable[str], size: int) -> list[str]:
    """The first `size` distinct candidates that overlap no protected row nor each other."""
    index = OverlapIndex(protected)
    chosen: list[str] = []
    for text in candidates:
        if len(chosen) == size:
            break
        if normalise(text) and not index.overlaps(text):
            chosen.append(text)
            index.add(text)  # held-out texts must not overlap each other either (no near-duplicates)
    return chosen


def without_overlap(texts: Iterable[str], heldout: Iterable[str]) -> list[str]:
    """The texts that overlap no held-out text, in order."""
    index = OverlapIndex(heldout)
    return [text for text in texts if not index.overlaps(text)]
