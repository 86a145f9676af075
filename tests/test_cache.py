"""The teacher-output cache: same results as without it, reused across runs, never used for another teacher;
sharded (a damaged or missing shard rebuilt alone), memory-mapped, stored in the dtype asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset, concatenate_datasets
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_kd.cache import (
    CHECKSUMS,
    CacheLayout,
    StoredArray,
    TeacherCache,
    distinct_rows,
    from_storage,
    rows_digest,
    to_storage,
)
from hf_kd.data import INDEX_COLUMN
from hf_kd.run import main
from tests.conftest import cli_args

SHARDS_OF_40 = ("--teacher_cache_shard_rows", "40")  # the 96 training rows in 3 shards: 40, 40, 16


def cache_args(folder: Path, *extra: str) -> tuple[str, ...]:
    return ("--cache_teacher_outputs", "true", "--teacher_cache_dir", str(folder), *extra)


def only_cache(folder: Path) -> TeacherCache:
    """The one cache in `folder`, opened as a run opens it."""
    (key_folder,) = [path for path in folder.iterdir() if path.name.startswith("teacher-")]
    key = json.loads((key_folder / "key.json").read_text())
    return TeacherCache(CacheLayout(str(key_folder), key["rows"], key["shard_rows"], key["storage_dtype"]))


def stamps(folder: Path) -> dict[str, int]:
    """When each shard was written (its checksums file's mtime)."""
    return {path.parent.name: path.stat().st_mtime_ns for path in sorted(folder.glob("teacher-*/shard-*/" + CHECKSUMS))}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["kd", "rail_kd", "cilda_minild"])
def test_cached_run_ends_with_the_uncached_run_weights(bert, sst2_files, tmp_path, method):
    extra = ("--num_train_epochs", "2", "--seed", "3")
    uncached = main(cli_args(bert, sst2_files, tmp_path / "plain", method, *extra))
    cached = main(
        cli_args(bert, sst2_files, tmp_path / "cached", method, *extra, *cache_args(tmp_path / "cache", *SHARDS_OF_40))
    )
    plain, with_cache = (
        load_file(tmp_path / "plain" / "model.safetensors"),
        load_file(tmp_path / "cached" / "model.safetensors"),
    )
    # the same teacher outputs, computed in other batches: equal up to float rounding (CPU kernels' reduction
    # order varies with threading; the adversarial steps amplify it: up to 1.3e-5 measured over 24 steps)
    assert max((plain[key] - with_cache[key]).abs().max().item() for key in plain) < 1e-4
    assert cached["eval_accuracy"] == uncached["eval_accuracy"]
    assert cached["eval_loss"] == pytest.approx(uncached["eval_loss"], abs=1e-5)
    cache = only_cache(tmp_path / "cache")
    assert cache.layout.shards == 3 and [shard["logits"].shape[0] for shard in cache.shards] == [40, 40, 16]
    assert cache.column("logits").shape == (96, 2)
    if method == "rail_kd":
        assert cache.column("pooled/encoder").shape == (96, 4, 48)  # every teacher layer, mean-pooled
    if method == "cilda_minild":
        assert cache.column("sentence/encoder").shape == (96, 4, 48)  # every teacher layer at [CLS]


def test_rows_are_read_across_shards_in_the_order_asked(tmp_path):
    logits = torch.arange(20.0).reshape(10, 2)
    layout = CacheLayout(str(tmp_path / "teacher-x"), 10, 4, "float32")
    for shard in range(layout.shards):
        layout.write(shard, {"logits": logits[list(layout.shard_range(shard))]}, process=0)
    cache = TeacherCache(layout)
    assert all(isinstance(shard["logits"], StoredArray) for shard in cache.shards)  # read from disk, not loaded
    order = torch.tensor([9, 0, 4, 3, 8, 4])
    assert torch.equal(cache.rows("logits", order), logits[order])
    assert torch.equal(cache.predicted_classes(), torch.ones(10, dtype=torch.long))


@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 0.0), ("float16", 1e-3), ("bfloat16", 8e-3)])
def test_storage_dtypes_round_trip_within_their_precision(dtype, tolerance):
    values = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    stored = to_storage(values, dtype)
    assert stored.itemsize == (4 if dtype == "float32" else 2)
    back = from_storage(stored, dtype)
    assert back.dtype == torch.float32
    assert ((back - values).abs() <= tolerance * values.abs().clamp(min=1)).all()


def test_a_float16_cache_trains_as_the_float32_one_within_its_rounding(bert, sst2_files, tmp_path):
    runs = {}
    for dtype in ("float32", "float16"):
        args = cli_args(bert, sst2_files, tmp_path / dtype, "rail_kd", "--seed", "3")
        runs[dtype] = main([*args, *cache_args(tmp_path / "cache", "--teacher_cache_dtype", dtype)])
    assert len(list((tmp_path / "cache").glob("teacher-*"))) == 2  # the dtype is part of the key
    sizes = {
        folder.name: sum(path.stat().st_size for path in folder.glob("shard-*/*.npy"))
        for folder in (tmp_path / "cache").glob("teacher-*")
    }
    small, large = sorted(sizes.values())
    assert small < 0.55 * large  # half the bytes, plus the .npy headers
    assert runs["float16"]["eval_loss"] == pytest.approx(runs["float32"]["eval_loss"], abs=2e-3)


def test_cache_is_reused_and_refused_for_another_teacher(bert, sst2_files, tmp_path):
    cache = cache_args(tmp_path / "cache")
    main(cli_args(bert, sst2_files, tmp_path / "a", "kd", *cache))
    first = stamps(tmp_path / "cache")
    main(cli_args(bert, sst2_files, tmp_path / "b", "kd", *cache))
    assert stamps(tmp_path / "cache") == first  # reused, not rewritten
    # a teacher whose weights differ gets its own cache, never the first one
    other = AutoModelForSequenceClassification.from_pretrained(bert.teacher)
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    other.save_pretrained(tmp_path / "other")
    AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(tmp_path / "other")
    args = cli_args(bert, sst2_files, tmp_path / "c", "kd", *cache)
    args[args.index("--teacher_name_or_path") + 1] = str(tmp_path / "other")
    main(args)
    assert len(list((tmp_path / "cache").glob("teacher-*"))) == 2
    # so does a different max length (another tokenised data set)
    main(cli_args(bert, sst2_files, tmp_path / "d", "kd", *cache, "--max_seq_length", "16"))
    assert len(list((tmp_path / "cache").glob("teacher-*"))) == 3


@pytest.mark.slow
def test_labelled_share_runs_read_the_cache_a_plain_run_wrote(bert, half_labelled, tmp_path):
    """--labelled_share appends copies of rows the teacher already read: the cache is keyed by the distinct
    rows' token ids, so the run with copies reuses the plain run's shards and trains as it would without one."""
    cache = cache_args(tmp_path / "cache")
    unlabelled = ("--unlabeled_file", half_labelled["unlabelled"], "--seed", "5")
    main(cli_args(bert, half_labelled, tmp_path / "plain", "kd", *unlabelled, *cache))
    first = stamps(tmp_path / "cache")
    share = ("--labelled_share", "0.8")
    cached = main(cli_args(bert, half_labelled, tmp_path / "share", "kd", *unlabelled, *share, *cache))
    assert stamps(tmp_path / "cache") == first
    assert only_cache(tmp_path / "cache").column("logits").shape == (136, 2)  # 96 rows and 40 unlabelled, no copies
    uncached = main(cli_args(bert, half_labelled, tmp_path / "uncached", "kd", *unlabelled, *share))
    assert cached["eval_loss"] == pytest.approx(uncached["eval_loss"], abs=1e-5)


def test_rows_digest_follows_the_rows_not_how_they_were_built():
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5], [6]], INDEX_COLUMN: [0, 1, 2]})
    with_copies = concatenate_datasets([rows, rows.select([1, 1])])
    assert rows_digest(distinct_rows(with_copies), ["input_ids"]) == rows_digest(rows, ["input_ids"])
    regrouped = Dataset.from_dict({"input_ids": [[1, 2], [3, 4, 5], [6]], INDEX_COLUMN: [0, 1, 2]})
    assert rows_digest(regrouped, ["input_ids"]) != rows_digest(rows, ["input_ids"])  # same ids, other rows


@pytest.mark.parametrize("damage", ["truncated", "flipped bytes", "no checksums", "never written"])
def test_a_damaged_shard_is_rebuilt_alone(bert, sst2_files, tmp_path, damage):
    cache = cache_args(tmp_path / "cache", *SHARDS_OF_40)
    first = main(cli_args(bert, sst2_files, tmp_path / "a", "kd", *cache))
    before = stamps(tmp_path / "cache")
    intact = only_cache(tmp_path / "cache").column("logits")
    (folder,) = (tmp_path / "cache").glob("teacher-*/shard-00001")
    layout = only_cache(tmp_path / "cache").layout
    logits = folder / "logits.npy"
    data = logits.read_bytes()
    if damage == "truncated":  # a disk that lost the file's end
        logits.write_bytes(data[: len(data) // 2])
    elif damage == "flipped bytes":  # a bad disk: same size, other values
        logits.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))
    elif damage == "no checksums":  # a writer killed before its last file
        (folder / CHECKSUMS).unlink()
    else:  # a pass interrupted before this shard
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    assert not layout.is_written(1) and layout.is_written(0) and layout.is_written(2)
    second = main(cli_args(bert, sst2_files, tmp_path / "b", "kd", *cache))
    after = stamps(tmp_path / "cache")
    assert [name for name in before if after[name] != before[name]] == ["shard-00001"]  # only it was rebuilt
    assert torch.allclose(only_cache(tmp_path / "cache").column("logits"), intact, atol=1e-6)
    assert layout.is_written(1)
    assert not list((tmp_path / "cache").glob("teacher-*/*.tmp"))  # no scratch left behind
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], abs=1e-5)


def test_the_size_is_told_up_front_and_a_disk_too_small_refused(bert, sst2_files, tmp_path, monkeypatch, capsys):
    args = cli_args(bert, sst2_files, tmp_path / "run", "rail_kd", *cache_args(tmp_path / "cache"))
    monkeypatch.setattr("hf_kd.cache.free_bytes", lambda folder: 10_000)
    with pytest.raises(
        OSError, match=r"needs 72\.8 KB more on this process and 9\.8 KB is free.*--teacher_cache_dtype"
    ):
        main(args)
    assert not (tmp_path / "cache").exists()  # refused before anything was written
    # 2 logits + 4 layers x 48 pooled, float32: 776 bytes a row, 96 rows
    assert (
        "Teacher-output cache: 96 rows x 776 B a row = 72.8 KB (float32; 1 shard of up to 8,192 rows, 1 process computing them) in"
        in capsys.readouterr().out
    )


def test_a_run_after_the_pass_recalls_the_key_without_reading_every_row(bert, sst2_files, tmp_path, monkeypatch):
    """The digest of the rows is remembered by datasets' fingerprint: reading every token id again would map the
    whole tokenised data set into the run's resident memory."""
    cache = cache_args(tmp_path / "cache")
    main(cli_args(bert, sst2_files, tmp_path / "a", "kd", *cache))
    first = stamps(tmp_path / "cache")

    def no_full_read(*args):
        raise AssertionError("every row read again")

    monkeypatch.setattr("hf_kd.cache.rows_digest", no_full_read)
    main(cli_args(bert, sst2_files, tmp_path / "b", "kd", *cache))
    assert stamps(tmp_path / "cache") == first
    (tmp_path / "cache" / "digests.json").write_text("{}")  # forgotten: one full read, the same key
    monkeypatch.undo()
    main(cli_args(bert, sst2_files, tmp_path / "c", "kd", *cache))
    assert stamps(tmp_path / "cache") == first and len(list((tmp_path / "cache").glob("teacher-*"))) == 1
