"""The command line's edges: logging, one-line errors with exit statuses, progress bars, the process group.

`exit_on_argument_error` runs an entry point so that bad input, a diverged loss, a full disk or a SIGTERM
ends in one line (the last the user sees) and an exit status; a traceback is left for bugs in hf_kd.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

import datasets
import torch
import transformers

from hf_kd.errors import ArgumentError, DiskFullError, NonFiniteLossError, TrainingInterrupted

logger = logging.getLogger("hf_kd")


def keep_freed_memory() -> bool:
    """On Linux with glibc, keep freed memory for reuse instead of handing it back to the system.

    By default glibc returns freed blocks above a threshold (and the heap's top) to the system, so a
    CPU training step maps its activations afresh every step: ~18,000 page faults a step, and the
    copies and GEMM outputs that first touch the pages pay for them. The process keeps at most its
    peak memory instead. Returns whether the setting was applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**30))


def setup_logging(training_args) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def announce(text: str) -> None:
    """A line every user sees (the log's default level hides info) from the main process, as the Trainer
    prints its metrics."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(text, flush=True)


# how each kind of stop ends the command: the line's prefix after the program's name, and the exit status
STOPS = (
    (ArgumentError, "error: ", 2),
    (NonFiniteLossError, "training stopped: ", 1),
    (DiskFullError, "error: ", 1),
    (TrainingInterrupted, "", 128 + signal.SIGTERM),  # as a process ended by SIGTERM: schedulers see a preemption
)


def exit_on_argument_error(function, program: str = "hf_kd") -> None:
    """Run a command-line entry point; bad input ends it with one line and exit status 2, a loss that
    diverged or a full disk with one line and status 1, a SIGTERM with a checkpoint and a line on how to
    resume, status 143: a traceback is left for bugs in hf_kd. Open progress bars are closed first, so the
    line is the last a user sees."""
    try:
        function()
    except tuple(kind for kind, _, _ in STOPS) as error:
        close_progress_bars()
        prefix, status = next((prefix, status) for kind, prefix, status in STOPS if isinstance(error, kind))
        print(f"{program}: {prefix}{error}", file=sys.stderr)
        sys.exit(status)


def close_progress_bars() -> None:
    """Close every open tqdm bar (the Trainer's, datasets', ...): their last redraw would follow the message."""
    from tqdm import tqdm

    classes = [tqdm]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        for bar in list(cls.__dict__.get("_instances", ())):
            bar.close()


def leave_process_group() -> None:
    """End a torchrun job's process group after its last collective (the final evaluation).

    A gloo group left for the interpreter's exit to tear down can abort a rank that finished
    ("terminate called without an active exception"), failing a run that succeeded. No barrier:
    rank 0 may still be pushing to the Hub, which needs no other rank.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
