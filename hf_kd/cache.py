"""Teacher-output cache: the teacher's outputs on the clean training set, computed once and reused.

The frozen teacher runs in eval mode, so its outputs on the clean inputs are the same in every
epoch and every run. `--cache_teacher_outputs` computes them once (logits, and for RAIL-KD /
CILDA+minILD the per-layer features their losses read), stores them in a safetensors file named by
a key of what the teacher reads (the token ids of every distinct training row, in order), the
teacher's identity (config and weights) and the feature options, and reuses them. A file whose stored
key differs is never used. Perturbed inputs change every batch and are never cached.

The file is written under a scratch name and renamed into place, so a reader sees one writer's whole
file or none (runs of the same teacher at once included); its header records the tensors' size and
SHA-256, checked on every load: a file cut short (a killed writer) or corrupted (a bad disk) is
rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from safetensors import safe_open
from safetensors.torch import save_file

from hf_kd.adapters import ForwardResult, LayerFeatures
from hf_kd.data import INDEX_COLUMN, TEACHER_COLUMNS, collated_batches
from hf_kd.guards import disk_guard

logger = logging.getLogger(__name__)


def teacher_fingerprint(teacher: torch.nn.Module) -> str:
    """Config plus a checksum of every weight: another teacher (or the same one trained further) differs."""
    digest = hashlib.sha256(teacher.config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, parameter in teacher.state_dict().items():
            values = parameter.double()
            digest.update(
                f"{name}{tuple(parameter.shape)}{values.sum().item():.10e}{values.abs().sum().item():.10e}".encode()
            )
    return digest.hexdigest()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> tuple[str, int]:
    """SHA-256 of the tensors' names, shapes and bytes (in name order), and their size in bytes."""
    digest, size = hashlib.sha256(), 0
    for name in sorted(tensors):
        values = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}{tuple(values.shape)}{values.dtype}".encode())
        digest.update(values.view(torch.uint8).numpy().data)
        size += values.numel() * values.element_size()
    return digest.hexdigest(), size


class TeacherCache:
    """Cached clean-input teacher outputs, looked up by the batch's training-set row indices."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def lookup(self, indices: torch.Tensor, device: torch.device):
        rows = indices.cpu()
        features = {name: tensor[rows].to(device) for name, tensor in self.tensors.items()}
        groups = {
            kind: {n.split("/", 1)[1]: v for n, v in features.items() if n.startswith(kind + "/")}
            for kind in ("pooled", "sentence")
        }
        return LayerFeatures(features["logits"], groups["pooled"] or None, groups["sentence"] or None)

    @classmethod
    def build_or_load(cls, trainer, dataset: Dataset, folder: str) -> TeacherCache:
        """Load the cache of this (data set, teacher, options) or compute it with the trainer's teacher."""
        rows = distinct_rows(dataset)
        key_source = {
            "teacher_inputs": rows_digest(rows, teacher_input_columns(rows)),
            "rows": len(rows),
            "teacher": teacher_fingerprint(trainer.teacher.model),
            "features": trainer.layers.kind,
            "rail_pooling": trainer.args.rail_pooling,
            "dtype": str(next(trainer.teacher.model.parameters()).dtype),
        }
        key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:24]
        path = os.path.join(folder, f"teacher-{key}.safetensors")
        with trainer.accelerator.main_process_first():
            if os.path.isfile(path):
                cache = cls._load(path, key)
                if cache is not None:
                    logger.info("Using the cached teacher outputs in %s.", path)
                    return cache
            cache = cls._compute(trainer, rows)  # draws no random number: the run's RNG stays as it was
            if trainer.accelerator.is_main_process:
                os.makedirs(folder, exist_ok=True)
                scratch = f"{path}.{os.getpid()}.tmp"
                checksum, size = tensors_digest(cache.tensors)
                metadata = {"key": key, "sha256": checksum, "bytes": str(size)}
                try:
                    with disk_guard(path, size, "the teacher-output cache"):
                        save_file(
                            {n: t.contiguous() for n, t in cache.tensors.items()},
                            scratch,
                            metadata={**metadata, **{k: str(v) for k, v in key_source.items()}},
                        )
                        os.replace(scratch, path)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(scratch)
                logger.info("Cached the teacher's outputs on %d examples in %s.", len(dataset), path)
        return cache

    @classmethod
    def _load(cls, path: str, key: str) -> TeacherCache | None:
        """The cache in `path`, or None (it is then rebuilt) when it is of another key, cut short or corrupted."""
        try:
            with safe_open(path, framework="pt") as f:
                metadata = f.metadata() or {}
                if metadata.get("key") != key:
                    logger.warning("Ignoring %s: it was made for another data set, teacher or options.", path)
                    return None
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (no iteration)
        except Exception as error:  # safetensors' own error for a file cut short, OSError for an unreadable one
            logger.warning("Rebuilding the teacher-output cache %s: it does not read back (%s).", path, error)
            return None
        checksum, size = tensors_digest(tensors)
        if (metadata.get("sha256"), metadata.get("bytes")) != (checksum, str(size)):
            logger.warning(
                "Rebuilding the teacher-output cache %s: its contents do not match the size and checksum recorded "
                "when it was written (a corrupted file, or one from an hf_kd without checksums).",
                path,
            )
            return None
        return cls(tensors)

    @classmethod
    def _compute(cls, trainer, rows: Dataset) -> TeacherCache:
        hidden = trainer.layers.kind is not None
        parts: dict[str, list[torch.Tensor]] = {}
        for result, view in teacher_passes(trainer, rows, hidden):
            features = trainer.features(result, view, trainer.teacher.adapter)
            named = {"logits": features.logits}
            for kind in ("pooled", "sentence"):
                for stack, value in (getattr(features, kind) or {}).items():
                    named[f"{kind}/{stack}"] = value
            for name, value in named.items():
                parts.setdefault(name, []).append(value.float().cpu())
        return cls({name: torch.cat(values) for name, values in parts.items()})


def distinct_rows(dataset: Dataset) -> Dataset:
    """The training rows without the copies `--labelled_share` appends (they repeat earlier rows' index): the
    teacher's outputs on these, looked up by index, cover every row."""
    if INDEX_COLUMN not in dataset.column_names:
        return dataset
    indices = dataset[INDEX_COLUMN]
    distinct = max(indices, default=-1) + 1
    if distinct == len(dataset):
        return dataset
    if indices[:distinct] != list(range(distinct)):
        raise ValueError(f"the training rows' '{INDEX_COLUMN}' does not start with 0, 1, 2, ...: cannot tell copies")
    return dataset.select(range(distinct))


def teacher_input_columns(dataset: Dataset) -> list[str]:
    """The columns the teacher's forward reads: the shared tokenization's, or its own where it has one."""
    return [c for c in ("input_ids", "attention_mask", "token_type_ids", *TEACHER_COLUMNS) if c in dataset.column_names]


def rows_digest(dataset: Dataset, columns: list[str]) -> str:
    """SHA-256 of `columns`' values, row after row: the same rows give the same digest however the data set was
    built (datasets' fingerprint follows the steps that built it, so --labelled_share's copies, dropped again,
    left another one and the teacher's whole pass was redone)."""
    digest = hashlib.sha256()
    for batch in dataset.select_columns(columns).with_format("arrow").iter(batch_size=16384):
        for name in columns:
            column = batch.column(name)
            digest.update(f"{name}:{column.type}".encode())
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                digest.update(pc.list_value_length(column).to_numpy(zero_copy_only=False).tobytes())
                column = pc.list_flatten(column)
            digest.update(column.to_numpy(zero_copy_only=False).tobytes())
    return digest.hexdigest()


@torch.no_grad()
def teacher_passes(trainer, dataset: Dataset, hidden: bool = False) -> Iterator[tuple[ForwardResult, dict]]:
    """The teacher's forward over `dataset` in order (eval batches, its own view of each batch), with the
    batch as it read it. No random number is drawn: the run's RNG stays as it was."""
    kept = (*teacher_input_columns(dataset), INDEX_COLUMN)
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in kept])
    size, device = trainer.args.per_device_eval_batch_size, trainer.args.device
    for batch in collated_batches(dataset, trainer.data_collator, size, device):
        view = trainer.teacher.view(batch)  # the teacher's own tokenization, where it has one
        with trainer.accelerator.autocast():
            yield trainer.teacher.forward(view, output_hidden_states=hidden), view


def teacher_logits(trainer, dataset: Dataset) -> torch.Tensor:
    """The teacher's logits on `dataset`, in order, float32 on the CPU."""
    return torch.cat([result.logits.float().cpu() for result, _ in teacher_passes(trainer, dataset)])
