"""Fitting a masked LM to the text it will rewrite (`python -m hf_kd.masked_lm`): the check texts stay out of
training in every form, the model learns the text (its word recovery rises on texts it never saw), and the
command refuses what it cannot do before it trains."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_kd.augment import main as augment
from hf_kd.errors import ArgumentError
from hf_kd.masked_lm import WholeWordCollator, fit_masked_lm, main, split_for_check
from hf_kd.overlap import OverlapIndex
from tests.conftest import SST2


def test_the_check_texts_share_no_phrase_with_the_training_texts():
    texts = ["i lost my card", "i lost my card yesterday", "where is my money", "top up failed", "top up failed"]
    texts += [f"card number {n} was declined" for n in range(40)]
    train, check = split_for_check(texts, 0.1, seed=3)
    assert len(check) == round(0.1 * len(set(texts)))
    assert split_for_check(texts, 0.1, seed=3) == (train, check)  # the seed decides
    held = OverlapIndex(check)
    assert train and not any(held.overlaps(text) for text in train)
    assert len(train) == len([text for text in texts if not held.overlaps(text)])  # nothing else is dropped
    both = split_for_check(["i lost my card", "i lost my card yesterday"], 0.5, seed=0)
    assert both[0] == []  # one contains the other: checking one leaves nothing to train on


def test_the_collator_masks_every_piece_of_a_word_or_none_in_rows_of_any_length(bert):
    tokenizer = AutoTokenizer.from_pretrained(bert.generator)  # a vocabulary of 600: most words are several pieces
    texts = [line.split("\t")[0] for line in (SST2 / "train.tsv").read_text().splitlines()[1:41]]
    rows = [dict(tokenizer(text, return_offsets_mapping=True)) for text in texts]
    collator = WholeWordCollator(
        tokenizer, whole_word_mask=True, mlm_probability=0.5, mask_replace_prob=1.0, random_replace_prob=0.0, seed=0
    )
    batch = collator(rows)
    assert batch["input_ids"].shape == batch["labels"].shape == (40, max(len(row["input_ids"]) for row in rows))
    several = 0
    for row, inputs, labels in zip(rows, batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        words: list[list[int]] = []  # token positions by word: a token that starts where the last ended goes on it
        for position, (start, end) in enumerate(row["offset_mapping"]):
            if start == end:  # a special token
                continue
            if words and start == row["offset_mapping"][words[-1][-1]][1]:
                words[-1].append(position)
            else:
                words.append([position])
        for word in words:
            masked = [labels[position] != -100 for position in word]
            assert all(masked) or not any(masked), (tokenizer.decode(row["input_ids"]), word)
            if all(masked):
                several += len(word) > 1
                assert all(inputs[position] == tokenizer.mask_token_id for position in word)
                assert [labels[position] for position in word] == [row["input_ids"][p] for p in word]
    assert several > 10  # words of several pieces were masked, whole


def test_fitting_raises_word_recovery_on_unseen_text_and_saves_a_masked_lm(bert, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    train.write_text((SST2 / "train.tsv").read_text())  # 4,000 real SST-2 sentences
    original = AutoModelForMaskedLM.from_pretrained(bert.generator)
    output = tmp_path / "fitted"
    summary = fit_masked_lm(
        [str(train)], bert.generator, str(output), max_steps=150, learning_rate=2e-3, progress=False
    )
    distinct = {line.split("\t")[0] for line in train.read_text().splitlines()[1:]}
    assert summary["texts_checked"] == round(0.05 * len(distinct))  # 5% of the distinct texts, kept out
    assert summary["texts_trained"] <= 4000 - summary["texts_checked"]
    assert summary["newly_initialised"] == []  # a masked LM already: its head came with it
    before, after = summary["before"], summary["after"]
    assert before["checked"] == after["checked"] > 50  # the same texts, the same masked word, before and after
    assert after["found"] >= before["found"] + 15  # the tiny random model learnt the text (0 -> 25 of 83)
    assert json.loads((output / "masked_lm.json").read_text()) == summary
    fitted = AutoModelForMaskedLM.from_pretrained(output)
    changed = [
        name for name, value in fitted.state_dict().items() if not torch.equal(value, original.state_dict()[name])
    ]
    assert any("encoder" in name for name in changed) and any("predictions" in name for name in changed)
    # augment rewrites with the folder, and repeats its check on unseen text beside its own
    augment([str(train), "--masked_lm", str(output), "--output", str(tmp_path / "aug.tsv"), "--max_rows", "3"])
    assert f"never saw: {after['found']} of {after['checked']} " in capsys.readouterr().out
    assert len((tmp_path / "aug.tsv").read_text().splitlines()) > 3


def test_the_command_refuses_bad_flags_a_used_folder_and_a_model_without_a_mask_token(bert, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "a fine film indeed\t1\nnot a fine film at all\t0\n")
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    for flags, expected in (
        (["--output_dir", str(used)], "not empty"),
        (["--output_dir", str(tmp_path / "new"), "--check_share", "1"], "--check_share"),
        (["--output_dir", str(tmp_path / "new"), "--max_steps", "0"], "--max_steps"),
        (["--output_dir", str(tmp_path / "new"), "--masked_lm", str(tmp_path / "nothing")], "no masked LM loads"),
    ):
        with pytest.raises(ArgumentError, match=expected):
            main([str(train), "--masked_lm", bert.generator, *flags])
    assert (used / "keep.txt").read_text() == "mine" and not (tmp_path / "new").exists()
    one = tmp_path / "one.tsv"
    one.write_text("sentence\tlabel\nthe same text\t1\nthe same text\t0\n")
    with pytest.raises(ArgumentError, match="fewer than 2 distinct texts"):
        main([str(one), "--masked_lm", bert.generator, "--output_dir", str(tmp_path / "new")])
    main([str(train), "--masked_lm", bert.generator, "--output_dir", str(tmp_path / "new"), "--max_steps", "2"])
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith("Masked word among the top 8 on ") and f"Saved to {tmp_path / 'new'}" in printed
    assert {"masked_lm.json", "config.json", "tokenizer_config.json"} <= {p.name for p in (tmp_path / "new").iterdir()}
