"""Two CPU processes (gloo) under torchrun: every trained module stays identical across ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_kd.cli import leave_process_group
from tests.conftest import ROOT, cli_args
from tests.test_layouts import flat, layout_args, relative, train


def torchrun_two(port: int, *command: str) -> None:
    """`command` (a script and its arguments) as two torchrun processes; they must succeed."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([*launcher, *command], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def run_two_processes(dump_dir: Path, arguments: list[str], *options: str) -> None:
    """torchrun two CPU (gloo) processes of tests/distributed_job.py, dumping each rank's weights into dump_dir."""
    job = str(ROOT / "tests" / "distributed_job.py")
    torchrun_two(29500 + os.getpid() % 1000, job, str(dump_dir), *options, "--", *arguments, "--use_cpu", "true")


@pytest.mark.parametrize(
    ("method", "unlabelled", "cached"),
    [("kd", False, False), ("cilda", False, False), ("cilda_minild", True, False), ("cilda_minild", True, True)],
)
@pytest.mark.slow
def test_two_processes_keep_weights_in_sync(bert, sst2_files, tmp_path, method, unlabelled, cached):
    extra = []
    if cached:  # the teacher-output cache in 6 shards, 3 computed by each process, read memory-mapped by both
        extra = ["--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "cache")]
        extra += ["--teacher_cache_shard_rows", "24"]
    if unlabelled:  # 40 dev sentences as text-only training rows, mixed into the ranks' batches
        texts = [line.split("\t")[0] for line in Path(sst2_files["dev"]).read_text().splitlines()[1:41]]
        (tmp_path / "unlabelled.tsv").write_text("sentence\n" + "\n".join(texts) + "\n")
        extra += ["--unlabeled_file", str(tmp_path / "unlabelled.tsv")]
    run_two_processes(
        tmp_path,
        cli_args(bert, sst2_files, tmp_path / "run", method, "--per_device_train_batch_size", "4", *extra),
    )
    names = {"student"} | ({"generator", "projections"} if method != "kd" else set())
    for name in names:
        rank0, rank1 = (
            load_file(tmp_path / f"{name}-rank0.safetensors"),
            load_file(tmp_path / f"{name}-rank1.safetensors"),
        )
        assert all(torch.equal(rank0[key], rank1[key]) for key in rank0), f"{name} differs between ranks"
    initial = load_file(os.path.join(bert.student, "model.safetensors"))
    trained = load_file(tmp_path / "student-rank0.safetensors")
    assert any(not torch.equal(initial[key], trained[key]) for key in initial if key in trained)
    for rank in (0, 1):
        report = json.loads((tmp_path / f"eval-rank{rank}.json").read_text())
        assert report["world_size"] == 2
        assert report["evaluated"] == [48]  # the 48 validation sentences, each once, gathered from both ranks
    if cached:
        writers = [
            json.loads(path.read_text())["process"] for path in sorted(tmp_path.glob("cache/*/shard-*/checksums.json"))
        ]
        assert writers == [0, 1, 0, 1, 0, 1]  # 96 training rows and 40 unlabelled in shards of 24


@pytest.mark.slow
@pytest.mark.parametrize(("method", "batch", "accumulation"), [("kd", 8, 1), ("cilda_minild", 4, 2)])
def test_two_processes_give_the_update_of_one(deterministic_bert, half_labelled, tmp_path, method, batch, accumulation):
    """2 processes x 8 rows (x 1), and 2 x 4 x 2 accumulated, end where one process with batches of 16 does."""
    extra = ["--unlabeled_file", half_labelled["unlabelled"]]
    weights, _, _, logs = train(deterministic_bert, half_labelled, tmp_path / "one", method, 16, 1, *extra)
    arguments = cli_args(
        deterministic_bert, half_labelled, tmp_path / "two", method, *layout_args(batch, accumulation), *extra
    )
    run_two_processes(tmp_path, arguments, "--float64")
    for role, value in weights.items():
        trained = load_file(tmp_path / f"{role}-rank0.safetensors")
        assert relative(flat({name: trained[name] for name in value}), flat(value)) < 1e-5, role
    history = json.loads((tmp_path / "eval-rank0.json").read_text())["log_history"]
    two_logs = [{k: v for k, v in entry.items() if k.startswith(("loss", "generator_loss"))} for entry in history]
    for entry, other in zip(logs, [entry for entry in two_logs if entry], strict=True):
        assert other == pytest.approx(entry, rel=1e-5, abs=1e-7)


def test_leave_process_group_ends_the_group(tmp_path):
    """The CLI ends a torchrun job's group itself rather than leave gloo to the interpreter's exit."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    leave_process_group()
    assert not torch.distributed.is_initialized()
    leave_process_group()  # outside a group it does nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="the case of a machine without accelerators")
def test_torchrun_without_use_cpu_runs_data_parallel_on_a_cpu_machine(bert, sst2_files, tmp_path):
    """`torchrun --nproc_per_node 2 run_glue_kd.py ...` without --use_cpu: one job over gloo (each step reads both
    processes' batches: 2 steps x 2 x 8 of 96 rows), not two runs fighting over --output_dir."""
    arguments = cli_args(bert, sst2_files, tmp_path / "run", "kd", "--max_steps", "2", "--max_eval_samples", "8")
    torchrun_two(29400 + os.getpid() % 1000, str(ROOT / "scripts" / "run_glue_kd.py"), *arguments)
    results = json.loads((tmp_path / "run" / "all_results.json").read_text())
    assert results["epoch"] == pytest.approx(2 * 2 * 8 / 96)
