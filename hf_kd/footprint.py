"""What a model costs to ship: parameters, size on disk, and CPU latency per sentence.

Users distil for a model that is smaller and faster at a known cost in accuracy; the demo and the
model card report these beside the accuracies.
"""

from __future__ import annotations

import os
import statistics
import time

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


def timed(call, inputs, least_calls: int = 5, least_seconds: float = 0.2) -> float:
    """Median seconds of `call(inputs)`, after two warm-up calls, over at least `least_calls` calls and
    `least_seconds` (at most 200 calls)."""
    call(inputs)
    call(inputs)
    times: list[float] = []
    while len(times) < least_calls or (sum(times) < least_seconds and len(times) < 200):
        start = time.perf_counter()
        call(inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ms_per_sentence(call, encode, texts: list[str]) -> dict[str, float]:
    """Milliseconds per sentence of `call(encode(batch))`: at batch 1, the median over 8 of `texts` one at a time
    (lengths differ); at batch 32, 32 of them at once (`texts` repeated as needed)."""
    texts = (texts * (32 // max(len(texts), 1) + 1))[:32]
    single = statistics.median(1000 * timed(call, encode([text]), least_seconds=0.05) for text in texts[:8])
    return {"batch 1": single, "batch 32": 1000 * timed(call, encode(texts)) / len(texts)}


@torch.inference_mode()
def cpu_latency(model_dir: str, texts: list[str], max_length: int = 128) -> dict[str, float]:
    """Median milliseconds per sentence on this machine's CPU at batch 1 and batch 32 (fp32, eval mode)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def encode(batch: list[str]) -> dict:
        return tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    times = ms_per_sentence(lambda inputs: model(**inputs), encode, texts)
    return {"ms_per_sentence_batch_1": times["batch 1"], "ms_per_sentence_batch_32": times["batch 32"]}


def footprint(model_dir: str, texts: list[str] | None = None, max_length: int = 128) -> dict[str, float]:
    """Parameters and size on disk of a saved classifier; with `texts`, its CPU latency too."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    result: dict[str, float] = {
        "parameters": parameter_count(model),
        "size_on_disk_mb": size_on_disk(model_dir) / 2**20,
    }
    if texts:
        result |= cpu_latency(model_dir, texts, max_length)
        result["cpu_threads"] = torch.get_num_threads()
    return result
