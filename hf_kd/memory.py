"""A process's resident memory that does not grow with the data: datasets' mapped Arrow pages let go.

datasets memory-maps its Arrow files, and every row read maps the page-cache folios around it into the process
(on Linux 6.x with large folios, about 240 KB a row read at random). Over a long run on a large file the whole
file ends up counted in the resident memory of every process (clean, shared pages the kernel can drop, but
counted by RSS limits, schedulers and the OOM killer's score). `MappedPages` unmaps them from this process with
`madvise(MADV_DONTNEED)`: they stay in the page cache, and the next read maps them again (a minor fault, no
disk read). Only read-only mappings of the named files are touched, so no byte of anything is lost; on a
platform without `/proc/self/maps` and `madvise` it does nothing. DataLoader worker processes
(`--dataloader_num_workers`) map the file in their own memory, which this process cannot release.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import sys
import time
from collections.abc import Iterable

from transformers import TrainerCallback

MAPS = "/proc/self/maps"
# seconds: a release and the faults that map its pages again cost about 2 ms (benchmarks/teacher_pass.py)
RELEASE_INTERVAL = 0.25


def _madvise():
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_DONTNEED") or not os.path.exists(MAPS):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise


_MADVISE = _madvise()


def read_only_mappings(paths: set[str]) -> list[tuple[int, int]]:
    """The address ranges of this process's read-only mappings of `paths` (real paths)."""
    ranges = []
    with open(MAPS) as maps:
        for line in maps:
            fields = line.rstrip("\n").split(maxsplit=5)
            if len(fields) == 6 and fields[5] in paths and "w" not in fields[1]:
                start, end = (int(address, 16) for address in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


class MappedPages:
    """The mapped pages of some files, let go of now (`release`) or at most every `interval` seconds."""

    def __init__(self, paths: Iterable[str], interval: float = RELEASE_INTERVAL) -> None:
        self.paths = {os.path.realpath(path) for path in paths}
        self.interval = interval
        self.released_at = -math.inf

    @classmethod
    def of(cls, *datasets, interval: float = RELEASE_INTERVAL) -> MappedPages:
        """The Arrow files behind `datasets` (a dict of them, as the Trainer's eval_dataset may be, counts its
        values; a dataset held in memory, a torch dataset or None has none)."""
        flat = [item for dataset in datasets for item in (dataset.values() if isinstance(dataset, dict) else [dataset])]
        return cls((file["filename"] for dataset in flat for file in getattr(dataset, "cache_files", [])), interval)

    def release(self) -> int:
        """Unmap the files' pages from this process; the bytes of the mappings let go of."""
        self.released_at = time.monotonic()
        if _MADVISE is None or not self.paths:
            return 0
        released = 0
        for start, end in read_only_mappings(self.paths):
            if _MADVISE(start, end - start, mmap.MADV_DONTNEED) == 0:
                released += end - start
        return released

    def maybe_release(self) -> None:
        if self.paths and time.monotonic() - self.released_at >= self.interval:
            self.release()


class ReleaseMappedPages(TrainerCallback):
    """Lets go of the training and evaluation data's mapped pages between steps, between evaluation batches and
    after each evaluation."""

    def __init__(self, pages: MappedPages) -> None:
        self.pages = pages

    def on_train_begin(self, args, state, control, **kwargs):
        self.pages.release()  # what the data checks and the teacher pass read before training

    def on_step_end(self, args, state, control, **kwargs):
        self.pages.maybe_release()

    def on_prediction_step(self, args, state, control, **kwargs):
        self.pages.maybe_release()

    def on_evaluate(self, args, state, control, **kwargs):
        self.pages.release()
