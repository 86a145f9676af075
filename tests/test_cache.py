"""The teacher-output cache: same results as without it, reused across runs, never used for another teacher."""

from __future__ import annotations

import os

import pytest
import torch
from datasets import Dataset, concatenate_datasets
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_kd.cache import TeacherCache, distinct_rows, rows_digest
from hf_kd.data import INDEX_COLUMN
from hf_kd.run import main
from tests.conftest import cli_args


@pytest.mark.parametrize("method", ["kd", "rail_kd", "cilda_minild"])
def test_cached_run_ends_with_the_uncached_run_weights(bert, sst2_files, tmp_path, method):
    extra = ("--num_train_epochs", "2", "--seed", "3")
    uncached = main(cli_args(bert, sst2_files, tmp_path / "plain", method, *extra))
    cache_args = ("--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "cache"))
    cached = main(cli_args(bert, sst2_files, tmp_path / "cached", method, *extra, *cache_args))
    plain, with_cache = (
        load_file(tmp_path / "plain" / "model.safetensors"),
        load_file(tmp_path / "cached" / "model.safetensors"),
    )
    # the same teacher outputs, computed in other batches: equal up to float rounding (CPU kernels' reduction
    # order varies with threading; the adversarial steps amplify it: up to 1.3e-5 measured over 24 steps)
    assert max((plain[key] - with_cache[key]).abs().max().item() for key in plain) < 1e-4
    assert cached["eval_accuracy"] == uncached["eval_accuracy"]
    assert cached["eval_loss"] == pytest.approx(uncached["eval_loss"], abs=1e-5)
    files = os.listdir(tmp_path / "cache")
    assert len(files) == 1
    stored = load_file(tmp_path / "cache" / files[0])
    assert stored["logits"].shape == (96, 2)
    if method == "rail_kd":
        assert stored["pooled/encoder"].shape == (96, 4, 48)  # every teacher layer, mean-pooled
    if method == "cilda_minild":
        assert stored["sentence/encoder"].shape == (96, 4, 48)  # every teacher layer at [CLS]


def test_cache_is_reused_and_refused_for_another_teacher(bert, sst2_files, tmp_path):
    cache_args = ("--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "cache"))
    main(cli_args(bert, sst2_files, tmp_path / "a", "kd", *cache_args))
    first = sorted(os.listdir(tmp_path / "cache"))
    stamp = os.path.getmtime(tmp_path / "cache" / first[0])
    main(cli_args(bert, sst2_files, tmp_path / "b", "kd", *cache_args))
    assert sorted(os.listdir(tmp_path / "cache")) == first and os.path.getmtime(tmp_path / "cache" / first[0]) == stamp
    # a teacher whose weights differ gets its own cache, never the first one
    other = AutoModelForSequenceClassification.from_pretrained(bert.teacher)
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    other.save_pretrained(tmp_path / "other")
    AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(tmp_path / "other")
    args = cli_args(bert, sst2_files, tmp_path / "c", "kd", *cache_args)
    args[args.index("--teacher_name_or_path") + 1] = str(tmp_path / "other")
    main(args)
    assert len(os.listdir(tmp_path / "cache")) == 2
    # so does a different max length (another tokenised data set)
    main(cli_args(bert, sst2_files, tmp_path / "d", "kd", *cache_args, "--max_seq_length", "16"))
    assert len(os.listdir(tmp_path / "cache")) == 3


def test_labelled_share_runs_read_the_cache_a_plain_run_wrote(bert, half_labelled, tmp_path):
    """--labelled_share appends copies of rows the teacher already read: the cache is keyed by the distinct
    rows' token ids, so the run with copies reuses the plain run's file and trains as it would without one."""
    cache_args = ("--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "cache"))
    unlabelled = ("--unlabeled_file", half_labelled["unlabelled"], "--seed", "5")
    main(cli_args(bert, half_labelled, tmp_path / "plain", "kd", *unlabelled, *cache_args))
    (path,) = (tmp_path / "cache").iterdir()
    stamp = path.stat().st_mtime_ns
    share = ("--labelled_share", "0.8")
    cached = main(cli_args(bert, half_labelled, tmp_path / "share", "kd", *unlabelled, *share, *cache_args))
    assert list((tmp_path / "cache").iterdir()) == [path] and path.stat().st_mtime_ns == stamp
    assert load_file(path)["logits"].shape == (136, 2)  # 96 training rows and 40 unlabelled, not their copies
    uncached = main(cli_args(bert, half_labelled, tmp_path / "uncached", "kd", *unlabelled, *share))
    assert cached["eval_loss"] == pytest.approx(uncached["eval_loss"], abs=1e-5)


def test_rows_digest_follows_the_rows_not_how_they_were_built():
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5], [6]], INDEX_COLUMN: [0, 1, 2]})
    with_copies = concatenate_datasets([rows, rows.select([1, 1])])
    assert rows_digest(distinct_rows(with_copies), ["input_ids"]) == rows_digest(rows, ["input_ids"])
    regrouped = Dataset.from_dict({"input_ids": [[1, 2], [3, 4, 5], [6]], INDEX_COLUMN: [0, 1, 2]})
    assert rows_digest(regrouped, ["input_ids"]) != rows_digest(rows, ["input_ids"])  # same ids, other rows


@pytest.mark.parametrize("damage", ["truncated", "flipped bytes", "no checksum"])
def test_a_damaged_cache_is_rebuilt_never_used(bert, sst2_files, tmp_path, damage):
    cache_args = ("--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "cache"))
    first = main(cli_args(bert, sst2_files, tmp_path / "a", "kd", *cache_args))
    (path,) = (tmp_path / "cache").iterdir()
    intact = path.read_bytes()
    tensors = {name: value.clone() for name, value in load_file(path).items()}  # not a view of the file
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert TeacherCache._load(str(path), metadata["key"]) is not None
    if damage == "truncated":  # a writer killed half-way (a reader never sees this: writers rename into place)
        path.write_bytes(intact[: len(intact) // 2])
    elif damage == "flipped bytes":  # a bad disk: same size, other values
        path.write_bytes(intact[:-8] + bytes(b ^ 0xFF for b in intact[-8:]))
    else:  # written by an hf_kd that recorded no checksum
        save_file(tensors, str(path), metadata={k: v for k, v in metadata.items() if k != "sha256"})
    assert TeacherCache._load(str(path), metadata["key"]) is None
    second = main(cli_args(bert, sst2_files, tmp_path / "b", "kd", *cache_args))
    rebuilt = load_file(path)  # the same outputs (up to CPU reduction order), its checksum recorded
    assert rebuilt.keys() == tensors.keys() and all(torch.allclose(rebuilt[k], tensors[k], atol=1e-6) for k in tensors)
    assert TeacherCache._load(str(path), metadata["key"]) is not None
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], abs=1e-5)
