"""Whether two texts share a phrase: the containment test of held-out splits and of augmented text.

Two texts *overlap* when they are equal or one is a run of at least `MIN_SHARED` whole tokens of the other,
tokens as SST-2 writes them (`it 's`, `does n't`: a contraction is a token of its own, never cut), lower
case, punctuation-only tokens at the ends left out. A shorter phrase (`funny`, `the film`) is in thousands
of sentences and says nothing of one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# a word (with a contraction inside it: BANKING77's "i'm"), a token that starts with an apostrophe (SST-2's
# "'s", "'re"), or a run of punctuation
TOKEN = re.compile(r"\w+(?:'\w+)*|'\w+|[^\w\s]+")


def tokens(text: str) -> list[str]:
    """Lower-cased tokens, punctuation-only tokens at both ends left out (`a great film .` is `a great film`)."""
    found = TOKEN.findall(text.lower())
    is_word = [any(ch.isalnum() for ch in token) for token in found]
    if not any(is_word):
        return []
    first, last = is_word.index(True), len(found) - 1 - is_word[::-1].index(True)
    return found[first : last + 1]


def normalise(text: str) -> str:
    """The tokens of `text`, joined by single spaces."""
    return " ".join(tokens(text))


MIN_SHARED = 3  # a contained text shorter than this (`funny`, `the film`) says nothing of one sentence


def word_runs(text: str, shortest: int = MIN_SHARED) -> set[str]:
    """Every run of at least `shortest` consecutive whole tokens of a normalised text (its phrases that could be
    another row), and the text itself."""
    words = text.split()
    runs = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + shortest, len(words) + 1)}
    return runs | {text}


class OverlapIndex:
    """The rows of a split, to ask at once whether a text overlaps any of them: equal to one, or one a run of
    at least `MIN_SHARED` whole tokens of the other."""

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
