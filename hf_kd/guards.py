"""What keeps a run from losing work: one run per output folder, a clean stop on SIGTERM, a full disk named.

- `OutputDirLock`: a run holds an advisory lock (`flock`) on `--output_dir/.hf_kd.lock` for its life; a
  second run on the same folder is refused at once. The kernel drops the lock when its process ends,
  however it ends, so a lock file left by a dead process is taken over (and said so).
- `GracefulStop`: SIGTERM (what schedulers send before a kill) asks for a checkpoint at the next step
  boundary and the end of training; every process of a torchrun job agrees on the step.
- `disk_guard`: a write that fails because the disk is full (ENOSPC or a quota, also when a library
  reports it in its own words) becomes one `DiskFullError` naming the path and the space it needed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import threading
import time

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from hf_kd.errors import ArgumentError, DiskFullError, TrainingInterrupted

logger = logging.getLogger("hf_kd")
LOCK_FILE = ".hf_kd.lock"
# how libraries that do not raise OSError report a full disk (safetensors' Rust error, torch's zip writer)
DISK_FULL_WORDS = ("no space left", "storagefull", "disk quota", "file write failed")


class OutputDirLock:
    """An exclusive lock on an output folder for as long as a run uses it (a context manager)."""

    def __init__(self, folder: str, enabled: bool = True) -> None:
        self.folder, self.enabled = folder, enabled
        self.path = os.path.join(folder, LOCK_FILE)
        self.handle = None
        self.created_folder = False

    def __enter__(self) -> OutputDirLock:
        if not self.enabled:
            return self
        self.created_folder = not os.path.exists(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(handle)
            handle.close()
            raise ArgumentError(
                f"--output_dir {self.folder} is in use by another run ({holder}). Wait for it to end, or pick "
                "another --output_dir."
            ) from None
        handle.seek(0)
        stale = handle.read().strip()
        if stale:
            logger.warning("Taking over %s: the run that held it (%s) is no longer running.", self.path, stale)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # removed while still held: no other run can take a file about to vanish
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
        self.handle = None
        if self.created_folder and isinstance(error, ArgumentError):  # refused: leave nothing behind
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)


def _holder(handle) -> str:
    """The line the run holding the lock wrote into the lock file."""
    handle.seek(0)
    return handle.read().strip() or "another process"


def lock_holder(folder: str | os.PathLike) -> str | None:
    """Who holds `OutputDirLock` on `folder` (a run using it now), or None when nobody does; takes nothing."""
    try:
        with open(os.path.join(folder, LOCK_FILE)) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when the handle closes
            except OSError:
                return _holder(handle)
            return None
    except FileNotFoundError:
        return None


class GracefulStop(TrainerCallback):
    """On SIGTERM, save a checkpoint at the next step boundary and end training (`requested_at` says when).

    A second SIGTERM ends the process at once, as it would without hf_kd. Under torchrun every process
    gets the signal, not necessarily before the same step: they agree through a small gloo all-reduce
    at each step end (CPU only: no device synchronisation).
    """

    def __init__(self) -> None:
        self.signalled = False
        self.stopped_at: int | None = None
        self._group = None
        self._previous = None

    def install(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, number, frame) -> None:
        if self.signalled:  # asked twice: stop now
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        self.signalled = True
        logger.warning("SIGTERM received: saving a checkpoint at the end of this step, then stopping.")

    def on_train_begin(self, args, state, control, **kwargs):
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and self._group is None:
            self._group = dist.new_group(backend="gloo")

    def _agreed(self) -> bool:
        if self._group is None:
            return self.signalled
        flag = torch.tensor([1 if self.signalled else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_at is None and self._agreed():
            self.signalled = True
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def interruption(self, output_dir: str) -> TrainingInterrupted:
        return TrainingInterrupted(
            f"stopped by SIGTERM after step {self.stopped_at}; checkpoint saved in "
            f"{os.path.join(output_dir, f'checkpoint-{self.stopped_at}')}. Run the same command with "
            "--resume_from_checkpoint last to continue."
        )


def is_disk_full(error: BaseException, folder: str, needed: int) -> bool:
    """Whether `error` is a full disk: ENOSPC / EDQUOT, a library's words for it, or no room left for `needed`."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(word in str(error).lower().replace(" ", "") for word in (w.replace(" ", "") for w in DISK_FULL_WORDS)):
        return True
    return isinstance(error, (OSError, RuntimeError)) and free_bytes(folder) < needed


def free_bytes(folder: str) -> int:
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return shutil.disk_usage(existing).free


@contextlib.contextmanager
def disk_guard(path: str, needed: int, what: str, remove_on_failure: str | None = None):
    """Turn a full disk while writing `what` to `path` into a `DiskFullError`; remove a partial folder."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        if not is_disk_full(error, os.path.dirname(path) or ".", needed):
            raise
        if remove_on_failure is not None:
            shutil.rmtree(remove_on_failure, ignore_errors=True)
        raise DiskFullError(
            f"the disk is full: writing {what} to {path} needs about {human_bytes(needed)}, "
            f"{human_bytes(free_bytes(path))} is free. Free some space (or pick a folder on another disk) and run the "
            "same command again with --resume_from_checkpoint last; what was already written is intact."
        ) from None


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
