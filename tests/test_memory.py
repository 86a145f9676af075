"""datasets' mapped Arrow pages leave the process's resident memory, and nothing read changes."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest
from datasets import Dataset, load_from_disk

from hf_kd.build import build_trainer
from hf_kd.config import parse_args
from hf_kd.memory import MappedPages, ReleaseMappedPages
from tests.conftest import cli_args

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")


def resident_kb(path: str) -> int:
    """This process's resident kB mapped from `path` (/proc/self/smaps)."""
    path, total, inside = os.path.realpath(path), 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) >= 5 and "-" in fields[0] and ":" in fields[3]:
            inside = len(fields) == 6 and fields[5] == path
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@pytest.fixture
def on_disk(tmp_path) -> Dataset:
    """A 4 MB Arrow file, memory-mapped as datasets maps every file it caches."""
    rows = 50_000
    Dataset.from_dict({"input_ids": [[i, i + 1, i + 2] * 6 for i in range(rows)]}).save_to_disk(tmp_path / "data")
    return load_from_disk(tmp_path / "data")


def test_release_unmaps_the_rows_read_and_they_read_the_same_after(on_disk):
    (path,) = [file["filename"] for file in on_disk.cache_files]
    before = on_disk[::97]["input_ids"]
    assert resident_kb(path) > 0
    pages = MappedPages.of(on_disk)
    assert pages.release() >= os.path.getsize(path) // 2  # the bytes of the mappings let go of
    assert resident_kb(path) == 0
    assert on_disk[::97]["input_ids"] == before  # mapped again from the page cache, unchanged
    assert resident_kb(path) > 0


def test_a_release_waits_its_interval(on_disk):
    (path,) = [file["filename"] for file in on_disk.cache_files]
    pages = MappedPages.of(on_disk, interval=3600)
    pages.maybe_release()  # the first one is due
    assert resident_kb(path) == 0
    on_disk[::97]
    pages.maybe_release()  # within the hour: kept
    assert resident_kb(path) > 0
    pages.interval = 0
    pages.maybe_release()
    assert resident_kb(path) == 0


def test_a_writable_mapping_is_never_touched(tmp_path):
    """A private writable mapping holds bytes its file does not: letting its pages go would lose them."""
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\0" * mmap.PAGESIZE * 4)
    with open(path, "r+b") as handle:
        copy = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        copy[:5] = b"kept!"
        assert MappedPages([str(path)]).release() == 0
        assert copy[:5] == b"kept!"
        copy.close()


def test_in_memory_and_missing_datasets_have_nothing_to_release():
    assert MappedPages.of(Dataset.from_dict({"a": [1, 2]}), None, {"dev": None}).paths == set()


def test_the_trainer_lets_go_of_its_training_and_evaluation_files(bert, sst2_files, tmp_path):
    model_args, data_args, training_args = parse_args(cli_args(bert, sst2_files, tmp_path / "run", "kd"))
    trainer, data = build_trainer(model_args, data_args, training_args)
    (callback,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, ReleaseMappedPages)]
    expected = {os.path.realpath(f["filename"]) for split in (data.train, data.validation) for f in split.cache_files}
    assert expected and callback.pages.paths == expected
    trainer.train()  # ends with an evaluation-free step; the release at its start left nothing from the data checks
    trainer.evaluate()
    assert all(resident_kb(path) == 0 for path in expected)
