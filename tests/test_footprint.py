"""What a model costs to ship: parameters, weights on disk and CPU latency, as the demo and card report them."""

from __future__ import annotations

import math
import os

import pytest
from transformers import AutoModelForSequenceClassification

import hf_kd.footprint as footprint_module
from hf_kd.footprint import all_threads_column, footprint, ms_per_sentence


def test_footprint_counts_parameters_bytes_and_latency(bert, sst2_texts):
    result = footprint(bert.teacher, sst2_texts[:8], max_length=32)
    model = AutoModelForSequenceClassification.from_pretrained(bert.teacher)
    assert result["parameters"] == sum(p.numel() for p in model.parameters())
    assert result["size_on_disk_mb"] == os.path.getsize(os.path.join(bert.teacher, "model.safetensors")) / 2**20
    for key in ("ms_per_sentence_batch_1", "ms_per_sentence_batch_32"):
        assert 0 < result[key] < 1000 and math.isfinite(result[key])
    student = footprint(bert.student)  # without texts: no latency measured
    assert set(student) == {"parameters", "size_on_disk_mb"} and student["parameters"] < result["parameters"]


class SharedMachine:
    """A fake clock and models whose calls cost `cost` seconds, three times that during a slow spell of calls."""

    def __init__(self, slow_calls: range) -> None:
        self.now, self.calls, self.slow_calls, self.order = 0.0, 0, slow_calls, []

    def model(self, name: str, cost: float):
        def call(inputs: list[str]) -> None:
            self.order.append(name)
            self.now += cost * len(inputs) * (3.0 if self.calls in self.slow_calls else 1.0)
            self.calls += 1

        return call, lambda batch: batch


def test_models_timed_in_turn_keep_their_ratio_through_a_slow_spell(monkeypatch):
    # A slow spell covering all of the first model's first round (its 8 sentences x 3 calls, then 2 batch calls):
    # timed one after the other, it would read 3x slower; timed in turn with medians over rounds, the ratio holds.
    machine = SharedMachine(slow_calls=range(4, 4 + 8 * 3 + 2))
    monkeypatch.setattr(footprint_module.time, "perf_counter", lambda: machine.now)
    models = {"teacher": machine.model("teacher", 0.01), "student": machine.model("student", 0.005)}
    times = ms_per_sentence(models, [f"sentence {i}" for i in range(8)], rounds=5)
    assert times["teacher"] == {"batch 1": pytest.approx(10.0), "batch 32": pytest.approx(10.0)}
    assert times["student"] == {"batch 1": pytest.approx(5.0), "batch 32": pytest.approx(5.0)}
    # every round times every model, the one that went first going last in the next
    firsts = [name for i, name in enumerate(machine.order[4:]) if i % (2 * 26) == 0]
    assert firsts == ["teacher", "student", "teacher", "student", "teacher"]
    assert machine.order[:4] == ["teacher", "teacher", "student", "student"]  # warmed up before any is timed


def test_the_all_threads_column_is_the_one_thread_column_on_a_one_thread_machine():
    two = {"1 thread, batch 1": 1.0, "1 thread, batch 32": 0.5, "2 threads, batch 1": 0.8, "2 threads, batch 32": 0.3}
    assert all_threads_column(two) == "2 threads, batch 32" and all_threads_column(two, 1) == "2 threads, batch 1"
    assert all_threads_column({"1 thread, batch 1": 1.0, "1 thread, batch 32": 0.5}) == "1 thread, batch 32"
