"""The error types every hf_kd module may raise; this module imports nothing of hf_kd."""

from __future__ import annotations


class ArgumentError(ValueError):
    """Bad input found before any work starts; the message names the argument (or file) and the fix.

    The command line turns it into one line on stderr and exit status 2: a traceback is a bug in hf_kd.
    """


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite during training."""


class DiskFullError(OSError):
    """A write failed because the disk is full; the message names the path and the space it needed."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; the message says how to resume."""


def brief(error: BaseException, limit: int = 300) -> str:
    """A third-party error as one short line for a message of ours: its type and the first line of its text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
