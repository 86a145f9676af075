"""Faults that must lose no work: a second run on the same folder, SIGTERM, a full disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from hf_kd.checkpoints import checkpoint_problem
from hf_kd.cli import exit_on_argument_error
from hf_kd.errors import ArgumentError, DiskFullError
from hf_kd.guards import LOCK_FILE, OutputDirLock
from hf_kd.outputs import RESULTS_FILE
from hf_kd.run import main
from tests.conftest import ROOT, cli_args

SAVE_EVERY_3 = ("--save_strategy", "steps", "--save_steps", "3")


# ------------------------------------------------------------------------------------ the lock
def test_a_second_run_on_the_same_folder_is_refused_at_once(bert, sst2_files, tmp_path):
    holder = subprocess.Popen(  # another run holding the folder
        [
            sys.executable,
            "-c",
            "import sys, time; from hf_kd.guards import OutputDirLock\n"
            "with OutputDirLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(ArgumentError, match=rf"in use by another run \(pid {holder.pid} on "):
            main(cli_args(bert, sst2_files, tmp_path / "run", "kd"))
        assert time.monotonic() - started < 5  # refused before any model loads
        assert os.listdir(tmp_path / "run") == [LOCK_FILE]  # nothing of the holder's touched
    finally:
        holder.kill()  # SIGKILL: no chance to clean up; the kernel drops the lock
        holder.wait()
    assert (tmp_path / "run" / LOCK_FILE).exists()  # a stale lock file, taken over by the next run
    main(cli_args(bert, sst2_files, tmp_path / "run", "kd"))
    assert (tmp_path / "run" / RESULTS_FILE).exists() and not (tmp_path / "run" / LOCK_FILE).exists()


def test_the_lock_is_released_on_any_exit(bert, sst2_files, tmp_path):
    with pytest.raises(ArgumentError):  # refused after the lock was taken (an unknown option value)
        main(cli_args(bert, sst2_files, tmp_path / "run", "kd", "--teacher_name_or_path", str(tmp_path / "none")))
    assert not (tmp_path / "run").exists()  # the folder it made for the lock is gone again
    with OutputDirLock(str(tmp_path / "other")):
        pass
    with OutputDirLock(str(tmp_path / "other")):  # taken again at once
        assert (tmp_path / "other" / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")


# ------------------------------------------------------------------------------------- SIGTERM
@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_matches_the_uninterrupted_run(bert, sst2_files, tmp_path):
    extra = ("--num_train_epochs", "2", "--save_strategy", "no")
    main(cli_args(bert, sst2_files, tmp_path / "full", "cilda_minild", *extra))
    stopped = tmp_path / "stopped"
    command = [
        sys.executable,
        str(ROOT / "tests" / "kill_job.py"),
        "5",
        "TERM",
        *cli_args(bert, sst2_files, stopped, "cilda_minild", *extra),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        f"hf_kd: stopped by SIGTERM after step 5; checkpoint saved in {stopped / 'checkpoint-5'}. "
        "Run the same command with --resume_from_checkpoint last to continue."
    )
    assert sorted(os.listdir(stopped)) == ["checkpoint-5"]  # no student, no results: not a finished run
    assert checkpoint_problem(str(stopped / "checkpoint-5")) is None

    main(cli_args(bert, sst2_files, stopped, "cilda_minild", *extra, "--resume_from_checkpoint", "last"))
    for path in ("model.safetensors", "hf_kd_extras/generator/model.safetensors"):
        full, resumed = load_file(tmp_path / "full" / path), load_file(stopped / path)
        assert all(torch.equal(full[key], resumed[key]) for key in full), path


# ----------------------------------------------------------------------------------- full disk
@pytest.fixture
def small_disk(tmp_path):
    """A filesystem of its own with a size limit (tmpfs); skipped where this machine cannot mount one."""
    mounts = []

    def make(size: str):
        folder = tmp_path / f"disk-{len(mounts)}"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a size-limited tmpfs here ({result.stderr.decode().strip()[:100]})")
        mounts.append(folder)
        return folder

    yield make
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoints(bert, sst2_files, small_disk, capsys):
    output = small_disk("1400k") / "run"  # room for two ~555 KB checkpoints, not a third
    args = cli_args(bert, sst2_files, output, "kd", *SAVE_EVERY_3)
    with pytest.raises(SystemExit) as exit_info:
        exit_on_argument_error(lambda: main(args))
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    error = stderr.strip().splitlines()[-1]  # after the progress bars, one line and no traceback
    assert "Traceback" not in stderr and error.startswith("hf_kd: error: the disk is full: writing a checkpoint")
    assert str(output / "checkpoint-9") in error and "needs about" in error and "is free" in error
    assert sorted(os.listdir(output)) == ["checkpoint-3", "checkpoint-6"]  # the partial one removed, lock released
    assert checkpoint_problem(str(output / "checkpoint-6")) is None


def test_a_full_disk_while_caching_or_saving_the_student_is_one_error(bert, sst2_files, small_disk, tmp_path):
    cache = small_disk("32k")  # the RAIL-KD cache holds every layer pooled: ~73 KB
    args = cli_args(bert, sst2_files, tmp_path / "run", "rail_kd", "--cache_teacher_outputs", "true")
    with pytest.raises(DiskFullError, match=r"the teacher-output cache needs 72\.8 KB more on this process"):
        main([*args, "--teacher_cache_dir", str(cache)])  # refused before the pass
    assert os.listdir(cache) == []
    # a disk that fills during the pass (the space counted up front taken meanwhile): one error, no scratch left
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("hf_kd.cache.free_bytes", lambda folder: 1 << 40)
        with pytest.raises(DiskFullError, match="writing the teacher-output cache to"):
            main([*args, "--teacher_cache_dir", str(cache)])
    assert not list(cache.glob("*/*.tmp"))
    output = small_disk("64k") / "run"  # the student is ~190 KB
    with pytest.raises(DiskFullError, match=rf"writing the student to {output}"):
        main(cli_args(bert, sst2_files, output, "kd"))
    assert os.listdir(output) == []  # the scratch folder removed


@pytest.mark.parametrize("stop", ["RAISE", "TERM"])
def test_the_stop_message_is_the_last_line_after_the_progress_bars(bert, sst2_files, tmp_path, stop):
    """With the progress bars on, hf_kd's one line is the last a user sees (a bar's final redraw followed it)."""
    arguments = cli_args(bert, sst2_files, tmp_path / "run", "kd")
    arguments[arguments.index("--disable_tqdm") + 1] = "false"
    command = [sys.executable, str(ROOT / "tests" / "kill_job.py"), "3", stop, *arguments]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300
    )
    assert "it/s]" in result.stderr  # the bars were on
    last = result.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    expected = "hf_kd: training stopped: loss_kd" if stop == "RAISE" else "hf_kd: stopped by SIGTERM after step 3"
    assert last.startswith(expected), result.stderr[-600:]
