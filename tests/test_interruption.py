"""A training process killed mid-epoch resumes from its last checkpoint and ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_kd.errors import ArgumentError
from hf_kd.run import main, resolve_checkpoint
from tests.conftest import ROOT, cli_args

EXTRA = ("--save_strategy", "steps", "--save_steps", "3", "--num_train_epochs", "2")


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(bert, sst2_files, tmp_path):
    main(cli_args(bert, sst2_files, tmp_path / "full", "cilda_minild", *EXTRA))
    killed = tmp_path / "killed"
    command = [
        sys.executable,
        str(ROOT / "tests" / "kill_job.py"),
        "7",
        *cli_args(bert, sst2_files, killed, "cilda_minild", *EXTRA),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert not (killed / "all_results.json").exists()  # not mistaken for a finished run
    # the killed run's lock file stays, but the kernel released its lock: the resumed run takes it over
    assert sorted(os.listdir(killed)) == [".hf_kd.lock", "checkpoint-3", "checkpoint-6"]

    main(cli_args(bert, sst2_files, killed, "cilda_minild", *EXTRA, "--resume_from_checkpoint", "last"))
    assert not (killed / ".hf_kd.lock").exists()  # released and removed at the end
    full, resumed = load_file(tmp_path / "full" / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(full[key], resumed[key]) for key in full)
    generator_full = load_file(tmp_path / "full" / "hf_kd_extras" / "generator" / "model.safetensors")
    generator_resumed = load_file(killed / "hf_kd_extras" / "generator" / "model.safetensors")
    assert all(torch.equal(generator_full[key], generator_resumed[key]) for key in generator_full)
    metrics = [json.loads((folder / "eval_results.json").read_text()) for folder in (tmp_path / "full", killed)]
    assert (
        metrics[0]["eval_loss"] == metrics[1]["eval_loss"]
        and metrics[0]["eval_accuracy"] == metrics[1]["eval_accuracy"]
    )


def test_incomplete_checkpoints_are_never_resumed_from(tmp_path, caplog):
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    save_file({"weight": torch.ones(4)}, tmp_path / "checkpoint-3" / "model.safetensors")
    (tmp_path / "checkpoint-6").mkdir()  # killed while being written: no trainer_state.json yet
    (tmp_path / "checkpoint-9").mkdir()
    (tmp_path / "checkpoint-9" / "trainer_state.json").write_text('{"log_hist')  # half written
    (tmp_path / "checkpoint-12").mkdir()  # state written, but its weights cut short (a bad disk)
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text("{}")
    weights = (tmp_path / "checkpoint-3" / "model.safetensors").read_bytes()
    (tmp_path / "checkpoint-12" / "model.safetensors").write_bytes(weights[: len(weights) - 4])
    with caplog.at_level("WARNING", logger="hf_kd"):
        assert resolve_checkpoint("last", str(tmp_path)) == str(tmp_path / "checkpoint-3")
    skipped = [record.getMessage() for record in caplog.records]
    assert len(skipped) == 3 and all("incomplete checkpoint" in line for line in skipped)
    assert "checkpoint-12" in skipped[0] and "model.safetensors does not read back" in skipped[0]
    assert "checkpoint-9" in skipped[1] and "checkpoint-6" in skipped[2]
    with pytest.raises(ArgumentError, match="not a complete checkpoint"):
        resolve_checkpoint(str(tmp_path / "checkpoint-6"), str(tmp_path))
    with pytest.raises(ArgumentError, match="holds no complete checkpoint"):
        resolve_checkpoint("last", str(tmp_path / "nothing"))
