"""The error types every hf_kd module may raise; this module imports nothing of hf_kd."""

from __future__ import annotations


class ArgumentError(ValueError):
    """Bad input found before any work starts; the message names the argument (or file) and the fix.

    The command line turns it into one line on stderr and exit status 2: a traceback is a bug in hf_kd.
    """


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite during training."""
