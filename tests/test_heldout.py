"""The benchmark's held-out split shares no phrase with any other split, checked on the real SST-2 files."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from benchmarks.heldout import OverlapIndex, draw_heldout, normalise, without_overlap
from tests.conftest import ROOT

GLUE_SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"
BANKING77 = ROOT.parent / "shared" / "data" / "banking77"


def test_tokens_keep_contractions_and_leave_out_punctuation_at_the_ends():
    assert normalise("  It 's   A GREAT film . ") == "it 's a great film"
    assert normalise("'s a great film .") == "'s a great film"  # the contraction is a token, never cut
    assert normalise("does n't work") == "does n't work" and normalise("I'm lost?") == "i'm lost"
    assert normalise('"Well..."') == "well" and normalise("-- , .") == ""


def test_overlap_is_containment_of_three_or_more_whole_tokens_either_way():
    index = OverlapIndex(["it 's a great film", "goodness gracious me"])
    assert index.overlaps("'s a great film .")  # inside a row (the old normaliser cut the ' and missed it)
    assert index.overlaps("Wow , it 's a great film indeed")  # a row inside the text
    assert index.overlaps("a great film")  # a run of 3 tokens inside a row
    assert not index.overlaps("great film")  # 2 tokens: in thousands of sentences, says nothing of one
    assert index.overlaps("goodness gracious me") and not index.overlaps("goodness gracious you")
    assert not index.overlaps("good gracious me")  # not whole tokens of 'goodness'


def test_draw_follows_the_reference_length_profile_and_skips_near_duplicates():
    reference = ["one two three"] * 5 + ["a b c d e f g h i j"] * 5
    short = [f"short {i} sentence ." for i in range(50)]
    long = [f"a long one with {i} more words in it ." for i in range(50)]
    drawn = draw_heldout(short + long + ["short 1 sentence ."], reference, 10, seed=1)
    assert sum(text in short for text in drawn) == 5 and sum(text in long for text in drawn) == 5
    assert drawn == draw_heldout(short + long, reference, 10, seed=1)  # reproducible from the seed
    assert without_overlap(["it is short 3 sentence", "short 3", "cold"], ["short 3 sentence ."]) == ["short 3", "cold"]


# ------------------------------------------------------------------------ the real files, checked apart
def own_tokens(text: str) -> list[str]:
    """The test's own reading of "tokens as SST-2 writes them" (no code shared with benchmarks/heldout.py):
    punctuation set apart (BANKING77 writes it against words), an apostrophe kept inside its token, lower
    case, tokens without a letter or digit at the ends dropped."""
    spaced = "".join(f" {ch} " if not (ch.isalnum() or ch in "'_" or ch.isspace()) else ch for ch in text.lower())
    words = spaced.split()
    while words and not any(ch.isalnum() for ch in words[0]):
        words.pop(0)
    while words and not any(ch.isalnum() for ch in words[-1]):
        words.pop()
    return words


def shared_phrases(heldout: list[str], rows: list[str]) -> list[tuple[str, str]]:
    """(held-out text, row) pairs where one is the other, or is inside it as 3 or more whole tokens: by plain
    substring search over space-padded token strings."""
    padded_heldout = {f" {' '.join(own_tokens(h))} ": h for h in heldout if own_tokens(h)}
    padded_rows = {f" {' '.join(own_tokens(r))} ": r for r in rows if own_tokens(r)}
    rows_text, heldout_text = "\n".join(padded_rows), "\n".join(padded_heldout)
    found = []
    for key, h in padded_heldout.items():
        if key in rows_text and (len(key.split()) >= 3 or key in padded_rows):
            found.append((h, next(r for k, r in padded_rows.items() if key in k)))
    for key, r in padded_rows.items():
        if len(key.split()) >= 3 and key in heldout_text:
            found.append((next(h for k, h in padded_heldout.items() if key in k), r))
    return found


def read_sst2(path: Path) -> list[str]:
    return [line.split("\t")[0] for line in path.read_text().splitlines()[1:]]


@pytest.mark.skipif(not GLUE_SST2.is_file(), reason="needs GLUE SST-2 at ../shared/data (the benchmark's data)")
def test_sst2_heldout_shares_no_phrase_with_any_split_and_looks_like_dev(tmp_path):
    """Checked by the test's own matching: no row of the teacher's data, the unlabelled text or the students'
    labels is or contains a held-out sentence or 3 tokens of one (the bundled files' rows that do are left out
    of the splits); held-out is 1,000 complete sentences whose lengths are dev's."""
    from benchmarks.quality.tasks import HELD_OUT_ROWS, split_sst2

    paths = split_sst2(GLUE_SST2, tmp_path, 9_000)
    heldout = read_sst2(paths["heldout"])
    assert len(heldout) == HELD_OUT_ROWS == len({tuple(own_tokens(h)) for h in heldout})
    others = {
        "teacher": read_sst2(paths["full"]),
        "unlabelled": paths["unlabelled"].read_text().splitlines()[1:],
        "students' labels": read_sst2(paths["labelled"]),
    }
    assert len(others["unlabelled"]) == 9_000 and len(others["teacher"]) > 55_000
    assert len(others["students' labels"]) > 3_400  # the bundled 4,000 but the phrases of held-out sentences
    for name, rows in others.items():
        assert shared_phrases(heldout, rows) == [], name
    dev = read_sst2(ROOT / "data/sst2/dev.tsv")
    mean = lambda texts: statistics.fmean(len(t.split()) for t in texts)  # noqa: E731
    assert abs(mean(heldout) - mean(dev)) < 1.0  # the old carving's held-out: 14.1 words against dev's 19.5
    assert all(h.rstrip().endswith((".", "!", "?")) for h in heldout)
    assert paths["heldout"].read_text().splitlines()[1].split("\t")[1] in ("0", "1")

    # --unlabelled_phrases: the same sentences first (a curve's first N rows are the sentence setting's), then
    # phrase rows of the teacher's data, each once, none a labelled row, none sharing a phrase with held-out
    with_phrases = split_sst2(GLUE_SST2, tmp_path / "phrases", 50_000, phrases=True)
    assert with_phrases["heldout"].read_text() == paths["heldout"].read_text()
    longer = with_phrases["unlabelled"].read_text().splitlines()[1:]
    assert len(longer) == len(set(longer)) == 50_000 and longer[:9_000] == others["unlabelled"]
    assert not set(longer) & set(others["students' labels"])
    assert shared_phrases(heldout, longer) == []


@pytest.mark.skipif(not GLUE_SST2.is_file(), reason="needs GLUE SST-2 at ../shared/data (the benchmark's data)")
def test_the_old_normaliser_is_caught_by_the_independent_check(tmp_path, monkeypatch):
    """The mutation: carving with the old normaliser (punctuation characters stripped from the ends, so `'s a
    great film .` lost its contraction) leaves held-out sentences inside the teacher's rows, and the test's own
    matching sees them."""
    import hf_kd.overlap
    from benchmarks.quality.tasks import split_sst2

    def old_normalise(text: str) -> str:
        return re.sub(r"\s+", " ", text.lower()).strip(".,!?;:'\"`-()[] ").strip()

    monkeypatch.setattr(hf_kd.overlap, "normalise", old_normalise)
    paths = split_sst2(GLUE_SST2, tmp_path, 9_000)
    leaks = shared_phrases(read_sst2(paths["heldout"]), read_sst2(paths["full"]))
    assert leaks and any(h.startswith("'") for h, _ in leaks), leaks[:3]


@pytest.mark.skipif(not (BANKING77 / "train.csv").is_file(), reason="needs BANKING77 at ../shared/data")
def test_banking77_heldout_shares_no_phrase_and_the_students_get_ten_labels_per_intent(tmp_path):
    import csv
    from collections import Counter

    from benchmarks.quality.tasks import HELD_OUT_ROWS, split_banking77

    paths = split_banking77(BANKING77 / "train.csv", tmp_path)
    parts = {}
    for name, path in paths.items():
        with open(path, encoding="utf-8", newline="") as f:
            parts[name] = list(csv.DictReader(f))
    heldout = [row["text"] for row in parts["heldout"]]
    assert len(heldout) == len(set(heldout)) == HELD_OUT_ROWS
    assert set(Counter(row["category"] for row in parts["labelled"]).values()) == {10}
    assert len(parts["labelled"]) == 770 and set(parts["unlabelled"][0]) == {"text"}
    assert len(parts["labelled"]) + len(parts["unlabelled"]) == len(parts["full"])
    for name in ("labelled", "unlabelled", "full"):
        assert shared_phrases(heldout, [row["text"] for row in parts[name]]) == [], name
    with open(BANKING77 / "test.csv", encoding="utf-8", newline="") as f:
        test = [row["text"] for row in csv.DictReader(f)]
    assert abs(statistics.fmean(len(t.split()) for t in heldout) - statistics.fmean(len(t.split()) for t in test)) < 1
