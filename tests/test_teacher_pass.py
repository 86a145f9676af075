"""`python -m hf_kd.teacher_pass`: the cache written ahead of training, shared by processes, read by the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_kd.cache import CHECKSUMS
from hf_kd.errors import ArgumentError
from hf_kd.run import main as run
from hf_kd.teacher_pass import main as teacher_pass
from tests.conftest import ROOT, cli_args
from tests.test_cache import only_cache, stamps
from tests.test_distributed import torchrun_two


def pass_args(family, files, tmp_path, folder, *extra: str) -> list[str]:
    cache = ("--teacher_cache_dir", str(folder), "--teacher_cache_shard_rows", "16")  # 96 rows: 6 shards
    return cli_args(family, files, tmp_path / "pass", "rail_kd", *cache, *extra)


@pytest.mark.slow
def test_two_processes_share_the_pass_and_the_run_reads_it(bert, sst2_files, tmp_path):
    one = teacher_pass(pass_args(bert, sst2_files, tmp_path, tmp_path / "one"))
    torchrun_two(
        29400 + len(str(tmp_path)) % 100,
        "-m",
        "hf_kd.teacher_pass",
        *pass_args(bert, sst2_files, tmp_path, tmp_path / "two", "--use_cpu", "true"),
    )
    two = only_cache(tmp_path / "two")
    writers = [json.loads(Path(two.layout.shard_folder(i), CHECKSUMS).read_text())["process"] for i in range(6)]
    assert writers == [0, 1, 0, 1, 0, 1]  # each process wrote its own shards
    assert two.layout.folder.rsplit("/", 1)[-1] == one.layout.folder.rsplit("/", 1)[-1]  # the same key
    for name in one.names:  # the same outputs as one process wrote, up to CPU reduction order
        assert torch.allclose(two.column(name), one.column(name), atol=1e-5), name
    before = stamps(tmp_path / "two")
    reader = ("--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "two"))
    trained = run(cli_args(bert, sst2_files, tmp_path / "run", "rail_kd", *reader, "--teacher_cache_shard_rows", "16"))
    assert stamps(tmp_path / "two") == before and "eval_accuracy" in trained  # read, not recomputed


def test_a_teacher_placed_by_device_map_writes_the_same_cache(bert, sst2_files, tmp_path):
    plain = teacher_pass(pass_args(bert, sst2_files, tmp_path, tmp_path / "plain"))
    placed = teacher_pass(pass_args(bert, sst2_files, tmp_path, tmp_path / "placed", "--teacher_device_map", "auto"))
    assert torch.equal(placed.column("logits"), plain.column("logits"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--teacher_cache_dir", None), "--teacher_cache_dir is required"),
        (("--method", "normal"), "--method normal reads no teacher"),
    ],
)
def test_a_pass_without_somewhere_to_write_or_a_teacher_is_refused(bert, sst2_files, tmp_path, change, message):
    args = pass_args(bert, sst2_files, tmp_path, tmp_path / "cache")
    flag, value = change
    at = args.index(flag)
    args[at : at + 2] = [] if value is None else [flag, value]
    if value == "normal":
        args = [
            a
            for a in args
            if a not in ("--teacher_name_or_path", bert.teacher, "--generator_name_or_path", bert.generator)
        ]
    with pytest.raises(ArgumentError, match=message):
        teacher_pass(args)


def test_the_command_refuses_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hf_kd.teacher_pass", "--method", "kd", "--output_dir", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hf_kd.teacher_pass: error: --teacher_cache_dir is required: the folder the training runs will read the "
        "shards from (shared by every machine of the pass)."
    ]
