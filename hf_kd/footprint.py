"""What a model costs to ship: parameters, size on disk, and CPU latency per sentence.

Users distil for a model that is smaller and faster at a known cost in accuracy; the demo and the
model card report these beside the accuracies.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def size_on_disk(model_dir: str) -> int:
    """Bytes of the weight files in `model_dir` (not its checkpoints or extras)."""
    return sum(
        os.path.getsize(os.path.join(model_dir, name))
        for name in os.listdir(model_dir)
        if name.endswith(WEIGHT_SUFFIXES) and os.path.isfile(os.path.join(model_dir, name))
    )


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def timed(call, inputs, least_calls: int = 5, least_seconds: float = 0.2, warmup: int = 2) -> float:
    """Median seconds of `call(inputs)`, after `warmup` calls, over at least `least_calls` calls and
    `least_seconds` (at most 200 calls)."""
    for _ in range(warmup):
        call(inputs)
    times: list[float] = []
    while len(times) < least_calls or (sum(times) < least_seconds and len(times) < 200):
        start = time.perf_counter()
        call(inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


Timed = tuple[Callable[[Any], Any], Callable[[list[str]], Any]]  # a model's call and the encoder of its inputs


def ms_per_sentence(models: dict[str, Timed], texts: list[str], rounds: int = 5) -> dict[str, dict[str, float]]:
    """Milliseconds per sentence of each model's `call(encode(batch))`: at batch 1, the median over 8 of `texts`
    one at a time (lengths differ); at batch 32, 32 of them at once (`texts` repeated as needed).

    The models are timed in turn, round after round (each round in a rotated order), and each figure is the median
    over rounds: a slow spell of a shared machine then falls on every model alike, so the ratios between them,
    which the ladder and the card compare, hold (timing one model after another put the same architecture 20%
    apart)."""
    texts = (texts * (32 // max(len(texts), 1) + 1))[:32]
    encoded = {name: ([encode([text]) for text in texts[:8]], encode(texts)) for name, (_, encode) in models.items()}
    for name, (call, _) in models.items():  # warm up every model before any is timed
        call(encoded[name][0][0])
        call(encoded[name][1])
    names = list(models)
    per_round: dict[str, dict[str, list[float]]] = {name: {"batch 1": [], "batch 32": []} for name in names}
    for round_index in range(rounds):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            call, (singles, batch) = models[name][0], encoded[name]
            single = statistics.median(timed(call, one, 3, 0.01, warmup=0) for one in singles)
            per_round[name]["batch 1"].append(1000 * single)
            per_round[name]["batch 32"].append(1000 * timed(call, batch, 2, 0.04, warmup=0) / len(texts))
    return {
        name: {batch: statistics.median(times) for batch, times in table.items()} for name, table in per_round.items()
    }


def all_threads_column(row: dict[str, float], batch: int = 32) -> str:
    """The column of a latency row (`latencies`) at `batch` timed with the most threads: "1 thread, batch 32" on a
    machine that gives one."""
    columns = [column for column in row if column.endswith(f", batch {batch}")]
    return max(columns, key=lambda column: int(column.split()[0]))


@torch.inference_mode()
def cpu_latency(model_dirs: dict[str, str], texts: list[str], max_length: int = 128) -> dict[str, dict[str, float]]:
    """Median milliseconds per sentence of each saved classifier (name -> folder) on this machine's CPU at batch 1
    and batch 32 (fp32, eval mode), timed in turn so that their ratios hold."""
    models: dict[str, Timed] = {}
    for name, model_dir in model_dirs.items():
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

        def encode(batch: list[str], tokenizer=tokenizer) -> dict:
            return tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

        models[name] = (lambda inputs, model=model: model(**inputs), encode)
    return {
        name: {"ms_per_sentence_batch_1": times["batch 1"], "ms_per_sentence_batch_32": times["batch 32"]}
        for name, times in ms_per_sentence(models, texts).items()
    }


def footprint(model_dir: str, texts: list[str] | None = None, max_length: int = 128) -> dict[str, float]:
    """Parameters and size on disk of a saved classifier; with `texts`, its CPU latency too."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    result: dict[str, float] = {
        "parameters": parameter_count(model),
        "size_on_disk_mb": size_on_disk(model_dir) / 2**20,
    }
    if texts:
        result |= cpu_latency({"model": model_dir}, texts, max_length)["model"]
        result["cpu_threads"] = torch.get_num_threads()
    return result
