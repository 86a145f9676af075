"""What a model costs to ship: parameters, weights on disk and CPU latency, as the demo and card report them."""

from __future__ import annotations

import math
import os

from transformers import AutoModelForSequenceClassification

from hf_kd.footprint import footprint


def test_footprint_counts_parameters_bytes_and_latency(bert, sst2_texts):
    result = footprint(bert.teacher, sst2_texts[:8], max_length=32)
    model = AutoModelForSequenceClassification.from_pretrained(bert.teacher)
    assert result["parameters"] == sum(p.numel() for p in model.parameters())
    assert result["size_on_disk_mb"] == os.path.getsize(os.path.join(bert.teacher, "model.safetensors")) / 2**20
    for key in ("ms_per_sentence_batch_1", "ms_per_sentence_batch_32"):
        assert 0 < result[key] < 1000 and math.isfinite(result[key])
    student = footprint(bert.student)  # without texts: no latency measured
    assert set(student) == {"parameters", "size_on_disk_mb"} and student["parameters"] < result["parameters"]
