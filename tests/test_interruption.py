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

from hf_kd.checkpoints import resolve_checkpoint
from hf_kd.errors import ArgumentError
from hf_kd.run import main
from tests.conftest import ROOT, cli_args

EXTRA = ("--save_strategy", "steps", "--save_steps", "3", "--num_train_epochs", "2")


@pytest.mark.slow
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


def run_killed_at(step: int, arguments: list[str], **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "tests" / "kill_job.py"), str(step), "TERM", *arguments]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)


def test_an_interrupted_run_is_not_started_again_by_accident(bert, sst2_files, tmp_path):
    """After a stop, the same command without --resume_from_checkpoint is refused (it started again from step 0
    beside the stale checkpoint); --overwrite_output_dir starts again on purpose."""
    (tmp_path / "run" / "checkpoint-5").mkdir(parents=True)
    arguments = cli_args(bert, sst2_files, tmp_path / "run", "kd", "--max_steps", "2")
    with pytest.raises(
        ArgumentError,
        match=r"holds an interrupted run \(it holds checkpoints\): pass "
        r"--resume_from_checkpoint last to continue it, or --overwrite_output_dir to start again",
    ):
        main(arguments)
    assert os.listdir(tmp_path / "run") == ["checkpoint-5"]
    main([*arguments, "--overwrite_output_dir", "true"])
    assert "checkpoint-5" not in os.listdir(tmp_path / "run")


def test_resuming_a_finished_run_changes_nothing(bert, sst2_files, tmp_path, capsys):
    arguments = cli_args(bert, sst2_files, tmp_path / "run", "kd", "--max_steps", "2", "--save_strategy", "steps")
    results = main(arguments)
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("all_results.json", "model.safetensors")}
    capsys.readouterr()
    assert main([*arguments, "--resume_from_checkpoint", "last"]) == results
    assert f"{tmp_path / 'run'} holds a finished run (all_results.json): nothing to resume" in capsys.readouterr().out
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before


@pytest.mark.slow
def test_a_twin_stopped_by_sigterm_resumes_from_its_own_checkpoint(bert, sst2_files, tmp_path):
    """SIGTERM during the no-KD twin: the resume reads the distilled student back (not trained again) and continues
    the twin from its checkpoint; both end as in an uninterrupted run."""
    extra = ("--baseline_twin", "true", "--save_strategy", "no")
    main(cli_args(bert, sst2_files, tmp_path / "full", "kd", *extra))
    stopped = tmp_path / "stopped"
    arguments = cli_args(bert, sst2_files, stopped, "kd", *extra)
    result = run_killed_at(5, arguments, KILL_JOB_METHOD="normal")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-2000:]
    assert str(stopped / "no_kd_twin" / "checkpoint-5") in result.stderr.strip().splitlines()[-1]
    distilled = (stopped / "model.safetensors").read_bytes()
    with pytest.raises(ArgumentError, match=r"its student is trained but the run did not finish"):
        main(arguments)
    resumed = main([*arguments, "--resume_from_checkpoint", "last"])
    assert (stopped / "model.safetensors").read_bytes() == distilled  # read back, not trained again
    full = json.loads((tmp_path / "full" / "all_results.json").read_text())
    for key in ("eval_accuracy", "eval_loss", "no_kd_twin_eval_accuracy", "no_kd_twin_eval_loss"):
        assert resumed[key] == full[key], key
    twin_full = load_file(tmp_path / "full" / "no_kd_twin" / "model.safetensors")
    twin_resumed = load_file(stopped / "no_kd_twin" / "model.safetensors")
    assert all(torch.equal(twin_full[key], twin_resumed[key]) for key in twin_full)
    assert json.loads((stopped / "no_kd_twin" / "all_results.json").read_text())["train_resumed_from_step"] == 5


def test_student_init_refuses_a_finished_run_and_layers_out_of_range(bert, sst2_files, tmp_path, capsys):
    from hf_kd.cli import exit_on_argument_error
    from hf_kd.student_init import main as student_init

    main(cli_args(bert, sst2_files, tmp_path / "run", "kd", "--max_steps", "1"))
    trained = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(
        ArgumentError, match=r"already holds a finished run \(all_results.json\).*--overwrite_output_dir"
    ):
        student_init([bert.teacher, "--layers", "0", "3", "--output_dir", str(tmp_path / "run")])
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == trained
    student_init([bert.teacher, "--layers", "0", "3", "--output_dir", str(tmp_path / "run"), "--overwrite_output_dir"])
    assert not (tmp_path / "run" / "all_results.json").exists() and not (tmp_path / "run" / "README.md").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:  # the README's example on a teacher of 4 layers
        exit_on_argument_error(
            lambda: student_init([bert.teacher, "--layers", "2", "5", "--output_dir", str(tmp_path / "s")]),
            "hf_kd.student_init",
        )
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "hf_kd.student_init: error: --layers 2 5: the teacher has 4 layers, so give distinct ascending indices "
        "from 0 to 3 (e.g. --layers 1 3).\n"
    )
