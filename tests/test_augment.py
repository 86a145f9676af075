"""Augmented transfer text (`python -m hf_kd.augment`): whole words replaced by a masked LM's candidates, the
rest of each text kept, duplicates and phrases of excluded text dropped, the same seed the same file."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_kd.augment import (
    augment_file,
    augment_text,
    candidate_masks,
    main,
    one_letter_words,
    word_recovery,
    word_spans,
)
from hf_kd.errors import ArgumentError
from hf_kd.overlap import OverlapIndex
from tests.conftest import SST2

TEXTS = [
    line.split("\t")[0].strip() for line in (SST2 / "train.tsv").read_text().splitlines()[1:] if line.count(" ") > 6
][:12]


def sentences(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{text}\t1\n" for text in TEXTS))
    return path


def test_words_are_spans_between_spaces(bert):
    tokenizer = AutoTokenizer.from_pretrained(bert.generator)
    text = "a gorgeous , witty film ."
    assert [text[s:e] for s, e in word_spans(tokenizer, text)] == ["a", "gorgeous", ",", "witty", "film", "."]


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_each_rewrite_changes_whole_words_only_and_keeps_the_rest(families, family):
    generator = families[family].generator
    tokenizer = AutoTokenizer.from_pretrained(generator)
    model = AutoModelForMaskedLM.from_pretrained(generator).eval()
    allowed = candidate_masks(tokenizer, model.get_output_embeddings().weight.size(0))
    text = TEXTS[0]
    rewrites = augment_text(text, model, tokenizer, allowed, 6, 0.5, 5, random.Random(0), torch.device("cpu"))
    assert 1 <= len(rewrites) <= 6
    original = text.split(" ")
    for rewrite in rewrites:
        words = rewrite.split(" ")
        assert len(words) == len(original), rewrite  # one word for one word: spacing and punctuation kept
        changed = [(a, b) for a, b in zip(original, words, strict=True) if a != b]
        assert changed and all(a.isalpha() and b.isalpha() and a.lower() != b.lower() for a, b in changed), changed


def test_the_file_is_reproducible_deduplicated_and_clear_of_excluded_phrases(bert, source, tmp_path):
    exclude = tmp_path / "heldout.tsv"
    exclude.write_text("sentence\tlabel\n" + f"{TEXTS[1]}\t0\n")
    first = augment_file(
        str(source), bert.generator, str(tmp_path / "a.tsv"), 5, 0.3, 4, [str(exclude)], 7, progress=False
    )
    second = augment_file(
        str(source), bert.generator, str(tmp_path / "b.tsv"), 5, 0.3, 4, [str(exclude)], 7, progress=False
    )
    written = sentences(tmp_path / "a.tsv")
    assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()
    assert {**first, "output": ""} == {**second, "output": ""}
    assert first["written"] == len(written) == len(set(written)) > 0 and set(written).isdisjoint(TEXTS)
    index = OverlapIndex([TEXTS[1]])
    assert not any(index.overlaps(text) for text in written)
    assert first["written"] + first["dropped"]["duplicate"] + first["dropped"]["excluded"] <= 5 * len(TEXTS)
    assert (tmp_path / "a.tsv").read_text().splitlines()[0] == "sentence"  # an unlabelled file hf_kd reads


def test_the_command_refuses_bad_flags_and_an_existing_output(bert, source, tmp_path):
    (tmp_path / "out.tsv").write_text("x")
    with pytest.raises(ArgumentError, match="exists"):
        main([str(source), "--masked_lm", bert.generator, "--output", str(tmp_path / "out.tsv")])
    with pytest.raises(ArgumentError, match="--probability in"):
        main([str(source), "--masked_lm", bert.generator, "--output", str(tmp_path / "new.tsv"), "--probability", "0"])
    with pytest.raises(ArgumentError, match="no masked LM loads"):
        main([str(source), "--masked_lm", str(tmp_path / "nothing"), "--output", str(tmp_path / "new.tsv")])
    with pytest.raises(ArgumentError, match=r"--output .*new.txt: name it .tsv or .csv"):
        main([str(source), "--masked_lm", bert.generator, "--output", str(tmp_path / "new.txt")])


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_the_output_is_read_back_whole_whatever_the_text_holds(bert, tmp_path, suffix):
    """Texts with commas, quotes and line breaks (as BANKING77's queries have) come back whole from a `.csv`
    (quoted) or a `.tsv` (GLUE's, unquoted: a line break becomes a space, other spacing stays): the writer once
    stopped at the first quote, after the whole masked-LM pass, and a TSV named .csv was split at its commas."""
    from hf_kd.data import _load_file

    source = tmp_path / "queries.csv"
    texts = [f'{text}, "please",\nnow  or' for text in TEXTS if "," not in text and '"' not in text][:4]
    with open(source, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text"], *[[text] for text in texts]])
    output = tmp_path / f"aug{suffix}"
    summary = augment_file(str(source), bert.generator, str(output), 3, 0.3, 4, progress=False)
    read = _load_file(str(output), None, None, option="--unlabeled_file")  # as a run reads it
    assert read.column_names == ["text"] and len(read) == summary["written"] > 0
    # the words may be rewritten, never the marks: two commas and two quotes each, the line break kept in a CSV
    marks = [(text.count(","), text.count('"'), "\n" in text, "  " in text) for text in read["text"]]
    assert set(marks) == {(2, 2, suffix == ".csv", True)}  # the double space kept in both


def test_word_recovery_counts_the_masked_words_among_the_top_candidates(bert):
    """Texts of one repeated word: whichever word is masked, the original is that word, so a masked LM that ranks
    it first finds it in its top 1 every time and one that ranks it last never does, unless its top k is the whole
    vocabulary; a text without a word of letters is not checked."""
    tokenizer = AutoTokenizer.from_pretrained(bert.generator)
    film = tokenizer.convert_tokens_to_ids("film")

    class Ranks:  # a masked LM whose logits rank `film` first (or last) at every position
        def __init__(self, sign: float):
            self.sign = sign

        def __call__(self, input_ids, **_):
            logits = torch.zeros(*input_ids.shape, len(tokenizer))
            logits[..., film] = self.sign
            return type("Output", (), {"logits": logits})()

    texts, cpu = ["film film film .", "film", ". ,"], torch.device("cpu")
    assert word_recovery(texts, Ranks(1.0), tokenizer, 1, random.Random(0), cpu) == (2, 2)
    assert word_recovery(texts, Ranks(-1.0), tokenizer, 1, random.Random(0), cpu) == (0, 2)
    assert word_recovery(texts, Ranks(-1.0), tokenizer, len(tokenizer), random.Random(0), cpu) == (2, 2)


def test_a_one_letter_candidate_is_one_the_text_uses_as_a_word(bert):
    """`t` and `s` are whole-word tokens (WordPiece cuts `don't` and `it's` there) but no words of the text: a
    masked LM that ranks them first still never writes "I t the film"; `a`, a word of the text, stays a candidate."""
    tokenizer = AutoTokenizer.from_pretrained(bert.generator)
    texts = ["I don't think it's a good film", "a film"]
    one_letter = one_letter_words(tokenizer, texts)
    assert one_letter == {"i", "a"}
    first, later = candidate_masks(tokenizer, len(tokenizer), one_letter)
    t, s, a, film = tokenizer.convert_tokens_to_ids(["t", "s", "a", "film"])
    assert not (first[t] or later[t] or first[s] or later[s]) and first[a] and later[a] and later[film]
    assert not candidate_masks(tokenizer, len(tokenizer))[1][a]  # no one-letter word given: none at all

    class Prefers:  # a masked LM whose logits rank `t`, then `s`, then `a` above every other token
        def __call__(self, input_ids, **_):
            logits = torch.zeros(*input_ids.shape, len(tokenizer))
            logits[..., [t, s, a]] = torch.tensor([3.0, 2.0, 1.0])
            return type("Output", (), {"logits": logits})()

    rewrites = augment_text(
        texts[0], Prefers(), tokenizer, (first, later), 8, 0.5, 1, random.Random(0), torch.device("cpu")
    )
    assert rewrites and all(" t " not in f" {r} " and " s " not in f" {r} " for r in rewrites)
    for rewrite in rewrites:  # top 1 of what is left: each replaced word became `a`, unless it was `a`
        changed = [(old, new) for old, new in zip(texts[0].split(), rewrite.split(), strict=True) if old != new]
        assert changed and all(new == "a" or old == "a" for old, new in changed), changed
