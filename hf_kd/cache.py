"""Teacher-output cache: the teacher's outputs on the clean training set, computed once, sharded, read in place.

The frozen teacher runs in eval mode, so its outputs on the clean inputs are the same in every epoch and every
run. `--cache_teacher_outputs` computes them once (logits, and for RAIL-KD / CILDA+minILD the per-layer
features their losses read) into a folder named by a key of what the teacher reads (the token ids of every
distinct training row, in order), the teacher's identity (config and weights), the feature options, the storage
dtype and the shard size. A folder of another key is never used. Perturbed inputs change every batch and are
never cached.

The rows are cut into shards of `--teacher_cache_shard_rows` consecutive rows. Every process (torchrun,
accelerate; one node or several, over a folder they share) computes the shards it owns (shard i belongs to
process i mod world size) that are not already on disk, and the run goes on when every process has written its
own: the pass is shared, and an interrupted one resumes from the shards already written. A shard is a folder of
`.npy` files, one per tensor, written under a scratch name and renamed into place, with `checksums.json` (each
file's size and SHA-256) written last; its owner checks the checksums before using it, so a shard cut short or
corrupted is rebuilt alone. Every process then reads from the shards only the rows of each batch (positioned
reads, `StoredArray`): nothing is held whole, and resident memory does not grow with the number of rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import socket
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from hf_kd.adapters import ForwardResult, LayerFeatures
from hf_kd.cli import announce
from hf_kd.data import INDEX_COLUMN, TEACHER_COLUMNS, arrow_column, collated_batches
from hf_kd.errors import DiskFullError
from hf_kd.guards import disk_guard, free_bytes, human_bytes

logger = logging.getLogger(__name__)

CHECKSUMS = "checksums.json"
# each storage dtype as torch holds it (numpy has no bfloat16: its 16 bits go into the .npy file as uint16)
STORAGE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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


def file_digest(path: str) -> str:
    """SHA-256 of a file, read in chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else many or one + 's'}"


def file_name(tensor: str) -> str:
    """A tensor's file in a shard: `pooled/encoder` -> `pooled.encoder.npy`."""
    return tensor.replace("/", ".") + ".npy"


@dataclass(frozen=True)
class CacheLayout:
    """Where a cache lives and how its rows are cut: shard i holds rows [i * shard_rows, (i + 1) * shard_rows)."""

    folder: str
    rows: int
    shard_rows: int
    dtype: str

    @property
    def shards(self) -> int:
        return math.ceil(self.rows / self.shard_rows)

    def shard_folder(self, shard: int) -> str:
        return os.path.join(self.folder, f"shard-{shard:05d}")

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_rows, min(self.rows, (shard + 1) * self.shard_rows))

    def owned(self, process: int, processes: int) -> list[int]:
        return list(range(process, self.shards, processes))

    def is_written(self, shard: int, verify: bool = True) -> bool:
        """Whether the shard is whole: its checksums file lists files of those sizes (and, with `verify`, those
        SHA-256s). A shard from another layout, cut short or corrupted is not."""
        folder = self.shard_folder(shard)
        try:
            with open(os.path.join(folder, CHECKSUMS)) as f:
                recorded = json.load(f)
            if recorded["rows"] != len(self.shard_range(shard)) or recorded["dtype"] != self.dtype:
                return False
            for name, entry in recorded["files"].items():
                path = os.path.join(folder, name)
                if os.path.getsize(path) != entry["bytes"] or (verify and file_digest(path) != entry["sha256"]):
                    return False
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True

    def write(self, shard: int, tensors: dict[str, torch.Tensor], process: int) -> None:
        """Write one shard under a scratch name, checksums last, and rename it into place."""
        folder = self.shard_folder(shard)
        scratch = f"{folder}.{socket.gethostname()}-{os.getpid()}.tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)  # and the cache's folder
        try:
            files = {}
            for name, value in tensors.items():
                path = os.path.join(scratch, file_name(name))
                np.save(path, to_storage(value, self.dtype))
                files[file_name(name)] = {"bytes": os.path.getsize(path), "sha256": file_digest(path)}
            checksums = {"rows": len(self.shard_range(shard)), "dtype": self.dtype, "process": process, "files": files}
            with open(os.path.join(scratch, CHECKSUMS), "w") as f:
                json.dump(checksums, f, indent=1)
            if self.is_written(shard):  # another run of this teacher wrote it meanwhile: keep theirs
                return
            forget_descriptors(folder)
            shutil.rmtree(folder, ignore_errors=True)  # a damaged copy, rebuilt
            os.replace(scratch, folder)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def to_storage(value: torch.Tensor, dtype: str) -> np.ndarray:
    stored = value.detach().cpu().to(STORAGE[dtype]).contiguous()
    return (stored.view(torch.uint16) if dtype == "bfloat16" else stored).numpy()


def from_storage(values: np.ndarray, dtype: str) -> torch.Tensor:
    """Rows read from a shard as float32 (the losses' precision)."""
    tensor = torch.from_numpy(values)
    return (tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor).float()


OPEN_FILES = 256  # shard files a process keeps open (most recently read), far below any descriptor limit
_descriptors: OrderedDict[str, int] = OrderedDict()


def open_descriptor(path: str) -> int:
    """A read-only descriptor of `path`, kept open across batches (opening one per read cost the step 6.5%)."""
    if path in _descriptors:
        _descriptors.move_to_end(path)
        return _descriptors[path]
    if len(_descriptors) >= OPEN_FILES:
        os.close(_descriptors.popitem(last=False)[1])
    _descriptors[path] = os.open(path, os.O_RDONLY)
    return _descriptors[path]


def forget_descriptors(folder: str) -> None:
    """Close the descriptors of files under `folder` (a shard about to be replaced)."""
    for path in [path for path in _descriptors if path.startswith(folder + os.sep)]:
        os.close(_descriptors.pop(path))


@dataclass(frozen=True)
class StoredArray:
    """A `.npy` file read in place: its header parsed once, then only the rows asked for, with positioned reads.

    Not memory-mapped: a mapped row brings its page-cache folio (up to 2 MB on kernels with large folios) into
    the process's resident set, so a training run's RSS grew with the cache it had touched (measured: +336 MB
    over 100 RAIL-KD steps on a 1M-row cache). Read rows stay in the page cache, shared by every process."""

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def open(cls, path: str) -> StoredArray:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            return cls(path, f.tell(), shape, dtype)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at `rows` (in that order); each run of consecutive rows is one read."""
        row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        descriptor = open_descriptor(self.path)
        order = sorted(range(len(rows)), key=rows.__getitem__)
        start = 0
        while start < len(order):  # a batch's rows are few: plain Python beats numpy's per-call cost here
            end = start + 1
            while end < len(order) and rows[order[end]] == rows[order[end - 1]] + 1:
                end += 1
            data = os.pread(descriptor, row_bytes * (end - start), self.offset + int(rows[order[start]]) * row_bytes)
            flat[order[start:end]] = np.frombuffer(data, np.uint8).reshape(end - start, row_bytes)
            start = end
        return out

    def read(self) -> np.ndarray:
        return np.fromfile(self.path, self.dtype, offset=self.offset).reshape(self.shape)


class TeacherCache:
    """Cached clean-input teacher outputs, read in place from the shards, looked up by the batch's training-set
    row indices."""

    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout
        self.shards = [self._open(shard) for shard in range(layout.shards)]
        self.names = sorted(self.shards[0]) if self.shards else []

    def _open(self, shard: int) -> dict[str, StoredArray]:
        folder = self.layout.shard_folder(shard)
        with open(os.path.join(folder, CHECKSUMS)) as f:
            files = json.load(f)["files"]
        return {
            name[: -len(".npy")].replace(".", "/", 1): StoredArray.open(os.path.join(folder, name)) for name in files
        }

    def rows(self, name: str, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Tensor `name` at the training-set rows `indices` (in that order), float32 on the CPU: only those rows
        are read from the shards."""
        indices = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
        first = self.shards[0][name]
        out = np.empty((len(indices), *first.shape[1:]), dtype=first.dtype)
        shard_of = indices // self.layout.shard_rows
        for shard in np.unique(shard_of):
            where = shard_of == shard
            out[where] = self.shards[shard][name].take(indices[where] - shard * self.layout.shard_rows)
        return from_storage(out, self.layout.dtype)

    def lookup(self, indices: torch.Tensor, device: torch.device) -> LayerFeatures:
        features = {name: self.rows(name, indices).to(device) for name in self.names}
        groups = {
            kind: {n.split("/", 1)[1]: v for n, v in features.items() if n.startswith(kind + "/")}
            for kind in ("pooled", "sentence")
        }
        return LayerFeatures(features["logits"], groups["pooled"] or None, groups["sentence"] or None)

    def column(self, name: str) -> torch.Tensor:
        """Tensor `name` of every distinct row (a whole column in memory: for small caches and tests)."""
        return self.rows(name, np.arange(self.layout.rows))

    def predicted_classes(self) -> torch.Tensor:
        """The teacher's predicted class of every distinct row, read shard by shard."""
        return torch.cat([from_storage(shard["logits"].read(), self.layout.dtype).argmax(-1) for shard in self.shards])

    @classmethod
    def build_or_load(cls, trainer, dataset: Dataset, folder: str) -> TeacherCache:
        """The cache of this (data set, teacher, options): the shards already written, the missing ones computed
        by the processes that own them, every process waiting until all are written."""
        args, accelerator = trainer.args, trainer.accelerator
        rows = distinct_rows(dataset)
        dtype = args.teacher_cache_dtype
        key_source = {
            "teacher_inputs": recalled_digest(rows, teacher_input_columns(rows), folder),
            "rows": len(rows),
            "teacher": teacher_fingerprint(trainer.teacher.model),
            "features": trainer.layers.kind,
            "rail_pooling": args.rail_pooling,
            "teacher_dtype": str(next(trainer.teacher.model.parameters()).dtype),
            "storage_dtype": dtype,
            "shard_rows": args.teacher_cache_shard_rows,
        }
        key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:24]
        layout = CacheLayout(os.path.join(folder, f"teacher-{key}"), len(rows), args.teacher_cache_shard_rows, dtype)
        process, processes = accelerator.process_index, accelerator.num_processes
        owned = layout.owned(process, processes)
        missing = [shard for shard in owned if not layout.is_written(shard)]
        if missing:
            per_row = cls.bytes_per_row(trainer, rows, dtype)
            announce(
                f"Teacher-output cache: {layout.rows:,} rows x {human_bytes(per_row)} a row = "
                f"{human_bytes(per_row * layout.rows)} ({dtype}; {plural(layout.shards, 'shard')} of up to "
                f"{layout.shard_rows:,} rows, {plural(processes, 'process', 'processes')} computing them) in {layout.folder}"
            )
            needed = per_row * sum(len(layout.shard_range(shard)) for shard in missing)
            if needed > free_bytes(folder):
                raise DiskFullError(
                    f"--teacher_cache_dir {folder}: the teacher-output cache needs {human_bytes(needed)} more on this "
                    f"process and {human_bytes(free_bytes(folder))} is free: free some space, pick another folder, or "
                    "store it smaller (--teacher_cache_dtype float16)."
                )
            cls._compute(trainer, rows, layout, missing, process, per_row)
        else:
            logger.info("Using the cached teacher outputs in %s.", layout.folder)
        accelerator.wait_for_everyone()
        absent = [shard for shard in range(layout.shards) if not layout.is_written(shard, verify=False)]
        if absent:  # a process that failed to write its shards stops every process, not only itself
            raise RuntimeError(f"teacher-output cache {layout.folder}: shards {absent[:5]} were not written")
        if accelerator.is_main_process:  # what the key stands for, for a person reading the folder
            with open(os.path.join(layout.folder, "key.json"), "w") as f:
                json.dump({"key": key, **key_source}, f, indent=1)
            remember_digest(rows, teacher_input_columns(rows), folder, key_source["teacher_inputs"])
        return cls(layout)

    @staticmethod
    def bytes_per_row(trainer, rows: Dataset, dtype: str) -> int:
        """Bytes a row takes on disk, from the teacher's outputs on the first row."""
        (named,) = [named for named in teacher_outputs(trainer, rows.select([0]))]
        return sum(value[0].numel() for value in named.values()) * STORAGE[dtype].itemsize

    @classmethod
    def _compute(
        cls, trainer, rows: Dataset, layout: CacheLayout, shards: list[int], process: int, per_row: int
    ) -> None:
        total = sum(len(layout.shard_range(shard)) for shard in shards)
        bar = tqdm(total=total, desc=f"Teacher pass (process {process})", disable=not trainer.is_local_process_zero())
        with bar:
            for shard in shards:
                parts: dict[str, list[torch.Tensor]] = {}
                for named in teacher_outputs(trainer, rows.select(layout.shard_range(shard))):
                    for name, value in named.items():
                        parts.setdefault(name, []).append(value)
                    bar.update(len(named["logits"]))
                tensors = {name: torch.cat(values) for name, values in parts.items()}
                needed = per_row * len(layout.shard_range(shard))
                with disk_guard(layout.shard_folder(shard), needed, "the teacher-output cache"):
                    layout.write(shard, tensors, process)


def teacher_outputs(trainer, rows: Dataset) -> Iterator[dict[str, torch.Tensor]]:
    """The cached tensors of `rows`, a batch at a time, float32 on the CPU: logits and the features its method reads."""
    hidden = trainer.layers.kind is not None
    for result, view in teacher_passes(trainer, rows, hidden):
        features = trainer.features(result, view, trainer.teacher.adapter)
        named = {"logits": features.logits}
        for kind in ("pooled", "sentence"):
            for stack, value in (getattr(features, kind) or {}).items():
                named[f"{kind}/{stack}"] = value
        yield {name: value.float().cpu() for name, value in named.items()}


def distinct_rows(dataset: Dataset) -> Dataset:
    """The training rows without the copies `--labelled_share` appends (they repeat earlier rows' index): the
    teacher's outputs on these, looked up by index, cover every row."""
    if INDEX_COLUMN not in dataset.column_names:
        return dataset
    indices = arrow_column(dataset, INDEX_COLUMN)
    distinct = (pc.max(indices).as_py() if len(indices) else -1) + 1
    if distinct == len(dataset):
        return dataset
    head = indices.slice(0, distinct).to_numpy()
    if not np.array_equal(head, np.arange(distinct)):
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


DIGESTS = "digests.json"  # datasets' fingerprint of the distinct rows -> their digest, beside the caches


def digests_entry(rows: Dataset, columns: list[str]) -> str:
    return f"{rows._fingerprint}:{','.join(columns)}"


def recalled_digest(rows: Dataset, columns: list[str], folder: str) -> str:
    """`rows_digest`, recalled by datasets' fingerprint of the rows (the key its own cache of the tokenised data
    trusts) where a pass wrote it: a run after the pass finds its cache without reading every token id, which
    would map the whole tokenised data set into its resident memory. A fingerprint not recalled (another build
    of the same rows) costs one full read, never a wrong key."""
    try:
        with open(os.path.join(folder, DIGESTS)) as f:
            return json.load(f)[digests_entry(rows, columns)]
    except (OSError, ValueError, KeyError, TypeError):
        return rows_digest(rows, columns)


def remember_digest(rows: Dataset, columns: list[str], folder: str, digest: str) -> None:
    path = os.path.join(folder, DIGESTS)
    try:
        with open(path) as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {}
    scratch = f"{path}.{socket.gethostname()}-{os.getpid()}.tmp"
    with open(scratch, "w") as f:
        json.dump({**known, digests_entry(rows, columns): digest}, f, indent=1)
    os.replace(scratch, path)


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
