"""`python -m hf_kd.teacher_pass`: the teacher-output cache written ahead of training, on the machines that hold
the big teacher; the training runs (anywhere, later) find it by the same key.

Takes the run's own flags (teacher, data, tokenization, method, `--teacher_cache_dir`, `--teacher_cache_dtype`):
the cache's key is what the teacher reads and the features the method needs, so the pass must see the same
arguments as the run that reads it. Under torchrun / accelerate every process computes its own shards; with one
process, `--teacher_device_map auto` spreads a teacher too large for one accelerator over the machine's.

    torchrun --nproc_per_node 8 -m hf_kd.teacher_pass --method rail_kd --teacher_name_or_path T \\
        --model_name_or_path S --train_file train.csv --unlabeled_file text.csv --teacher_cache_dir /shared/cache
"""

from __future__ import annotations

import os
import sys
import time

from hf_kd.build import build_trainer
from hf_kd.cache import TeacherCache
from hf_kd.cli import announce, exit_on_argument_error, leave_process_group, setup_logging
from hf_kd.config import parse_args
from hf_kd.errors import ArgumentError


def main(argv: list[str] | None = None) -> TeacherCache:
    """Build what the run would (data, teacher, the method's feature options), write the missing shards, return
    the cache."""
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    if not training_args.teacher_cache_dir:
        raise ArgumentError(
            "--teacher_cache_dir is required: the folder the training runs will read the shards from (shared by "
            "every machine of the pass)."
        )
    training_args.cache_teacher_outputs = True
    trainer, _ = build_trainer(model_args, data_args, training_args)
    if trainer.teacher is None:
        raise ArgumentError(f"--method {training_args.method} reads no teacher: there is no teacher pass to make.")
    start = time.perf_counter()
    cache = TeacherCache.build_or_load(trainer, trainer.train_dataset, training_args.teacher_cache_dir)
    announce(
        f"Teacher outputs of {cache.layout.rows:,} rows in {cache.layout.folder} ({len(cache.shards)} shards, "
        f"{cache.layout.dtype}; pass {time.perf_counter() - start:.1f} s): a run with the same flags reads them."
    )
    return cache


def cli() -> None:
    exit_on_argument_error(lambda: main(sys.argv[1:]), program="hf_kd.teacher_pass")
    leave_process_group()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli()
