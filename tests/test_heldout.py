"""The benchmark's held-out split shares no phrase with any other split, checked on the real SST-2 files."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.heldout import OverlapIndex, carve_heldout, normalise, without_overlap
from tests.conftest import ROOT

GLUE_SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"
BANKING77 = ROOT.parent / "shared" / "data" / "banking77"


def test_normalise_lowers_collapses_and_strips_end_punctuation():
    assert normalise("  It 's   A GREAT film . ") == "it 's a great film"
    assert normalise('"Well..."') == "well"


def test_overlap_is_containment_of_whole_words_either_way():
    index = OverlapIndex(["a great film", "goodness"])
    assert index.overlaps("It is a great film .")  # a row inside the text
    assert index.overlaps("great")  # the text inside a row
    assert not index.overlaps("good")  # not a whole word of 'goodness'
    assert index.overlaps("a great")  # a run of words inside a row
    assert not index.overlaps("a film")


def test_carve_skips_candidates_that_overlap_protected_rows_or_each_other():
    candidates = ["the plot is thin .", "a great film .", "the plot is thin and slow .", "warm and funny ."]
    chosen = carve_heldout(candidates, protected=["a great"], size=3)
    assert chosen == ["the plot is thin .", "warm and funny ."]
    assert without_overlap(["thin", "slow", "warm and funny today", "cold"], chosen) == ["slow", "cold"]


def _padded(texts) -> str:
    """Normalised texts, each between spaces, one per line: `' x ' in` it finds x as whole words of a text."""
    return "\n".join(f" {normalise(text)} " for text in texts if normalise(text))


@pytest.mark.skipif(not GLUE_SST2.is_file(), reason="needs GLUE SST-2 at ../shared/data (the benchmark's data)")
def test_heldout_shares_no_phrase_with_any_other_split_on_the_real_files(tmp_path):
    """Checked by plain substring search, apart from the code that carved it: no row of the teacher's data,
    the unlabelled text, the students' labels or the demo's files contains a held-out sentence or is in one."""
    from benchmarks.quality.tasks import HELD_OUT_ROWS, split_sst2

    paths = split_sst2(GLUE_SST2, tmp_path, 10_000)
    heldout = [line.split("\t")[0] for line in paths["heldout"].read_text().splitlines()[1:]]
    assert len(heldout) == HELD_OUT_ROWS
    others = {
        "teacher": [line.split("\t")[0] for line in paths["full"].read_text().splitlines()[1:]],
        "unlabelled": paths["unlabelled"].read_text().splitlines()[1:],
        "labelled sample": [
            line.split("\t")[0] for line in (ROOT / "data/sst2/train.tsv").read_text().splitlines()[1:]
        ],
        "demo unlabelled": (ROOT / "data/sst2/unlabelled.tsv").read_text().splitlines()[1:],
    }
    assert len(others["unlabelled"]) == 10_000 and len(others["teacher"]) > 55_000
    _assert_disjoint(heldout, others)
    assert len({normalise(h) for h in heldout}) == HELD_OUT_ROWS
    assert Path(paths["heldout"]).read_text().splitlines()[1].split("\t")[1] in ("0", "1")

    # --unlabelled_phrases: the same sentences first (a curve's first N rows are the sentence setting's), then
    # phrase rows of the teacher's data, each once, none a labelled row, none overlapping held-out
    with_phrases = split_sst2(GLUE_SST2, tmp_path / "phrases", 50_000, phrases=True)
    assert with_phrases["heldout"].read_text() == paths["heldout"].read_text()
    longer = with_phrases["unlabelled"].read_text().splitlines()[1:]
    assert len(longer) == len(set(longer)) == 50_000 and longer[:10_000] == others["unlabelled"]
    assert not set(longer) & set(others["labelled sample"])
    _assert_disjoint(heldout, {"unlabelled with phrases": longer})


def _assert_disjoint(heldout: list[str], others: dict[str, list[str]]) -> None:
    heldout_text = _padded(heldout)
    for name, rows in others.items():
        rows_text = _padded(rows)
        inside = [h for h in heldout if f" {normalise(h)} " in rows_text]
        contained = [r for r in rows if normalise(r) and f" {normalise(r)} " in heldout_text]
        assert not inside and not contained, (name, inside[:3], contained[:3])


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
    _assert_disjoint(
        heldout, {name: [row["text"] for row in parts[name]] for name in ("labelled", "unlabelled", "full")}
    )
