"""Sweeps: learning rates x repetitions x tasks in one command, the original code's experiment protocol.

    python -m hf_kd.sweep configs/cilda_minild.yaml --sweep_learning_rates 1e-5 2e-5 \\
        --sweep_repetitions 5 --sweep_tasks rte mrpc --output_dir runs/cilda_minild

Each run gets its own folder, `OUTPUT_DIR/TASK/lr-LR/rep-R` (seed = --seed + R), and is an ordinary
`run_glue_kd.py` run with every other argument passed through. Finished runs are reused, so an
interrupted sweep continues where it stopped (a run cut short resumes from its newest complete
checkpoint). At the end `results.csv` / `results.md` hold one row per run and the mean and standard
deviation per task and learning rate, and the best run's student is copied to `OUTPUT_DIR/TASK/best`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path

from hf_kd.checkpoints import resolve_checkpoint
from hf_kd.cli import exit_on_argument_error
from hf_kd.config import config_file_to_argv
from hf_kd.errors import ArgumentError
from hf_kd.hub import student_folder
from hf_kd.outputs import RESULTS_FILE, RUN_INFO_FILE
from hf_kd.report import group_statistics
from hf_kd.run import main

SWEEP_FLAGS = ("--sweep_learning_rates", "--sweep_repetitions", "--sweep_tasks")


def parse_sweep(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's own flags, and the per-run flags it sets (--output_dir, --seed, --learning_rate, --task_name,
    read in both `--flag value` and `--flag=value` forms); the rest passes through to every run."""
    parser = argparse.ArgumentParser(
        prog="python -m hf_kd.sweep", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--sweep_learning_rates", type=float, nargs="*", default=None, help="learning rates to try")
    parser.add_argument("--sweep_repetitions", type=int, default=1, help="runs per learning rate (seeds --seed + r)")
    parser.add_argument("--sweep_tasks", nargs="*", default=None, help="tasks (default: --task_name)")
    parser.add_argument("--output_dir", help="every run gets a folder below it")
    parser.add_argument("--seed", type=int, default=42, help="the first repetition's seed")
    parser.add_argument("--learning_rate", type=float, help="the one rate, without --sweep_learning_rates")
    parser.add_argument("--task_name", help="the one task, without --sweep_tasks")
    parser.add_argument("--resume_from_checkpoint", help=argparse.SUPPRESS)  # the sweep resumes by itself
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = config_file_to_argv(argv[0]) + argv[1:]
    try:
        sweep, rest = parser.parse_known_args(argv)
    except SystemExit as stop:
        if stop.code == 0:  # --help
            raise
        raise ArgumentError("the sweep's arguments do not parse (see the message above).") from None
    sweep.learning_rates = (
        sweep.sweep_learning_rates
        if sweep.sweep_learning_rates is not None
        else [sweep.learning_rate] * (sweep.learning_rate is not None)
    )
    sweep.tasks = (
        sweep.sweep_tasks if sweep.sweep_tasks is not None else [sweep.task_name] * (sweep.task_name is not None)
    )
    if not sweep.learning_rates:
        raise ArgumentError("--sweep_learning_rates is empty: give at least one learning rate (e.g. 1e-5 2e-5).")
    if sweep.sweep_repetitions < 1:
        raise ArgumentError(f"--sweep_repetitions must be at least 1, got {sweep.sweep_repetitions}.")
    if not sweep.tasks:
        raise ArgumentError("--sweep_tasks is empty: give a task (or --task_name).")
    if not sweep.output_dir:
        raise ArgumentError("A sweep needs --output_dir: every run gets a folder below it.")
    return sweep, rest


SWEEP_RUN_FILE = "hf_kd_sweep_run.json"  # the arguments a sweep gave the run in that folder


def check_reusable(folder: str, arguments: list[str]) -> None:
    """`folder` may hold a run of `arguments`: it is empty, or a sweep made it with the same arguments. A run of
    other arguments there (another --method, --seed or data file) is refused, never reused or replaced."""
    if not os.path.isdir(folder) or not os.listdir(folder):
        return
    path = os.path.join(folder, SWEEP_RUN_FILE)
    recorded = None
    if os.path.isfile(path):
        with open(path) as f:
            recorded = json.load(f).get("arguments")
    if recorded == arguments:
        return
    changed = sorted(set(arguments) ^ set(recorded or []))[:6]
    raise ArgumentError(
        f"{folder} holds a run of other arguments than this sweep's ({'differing: ' + ' '.join(changed) if recorded else 'not made by a sweep'}): "
        "give the sweep another --output_dir, or remove that folder."
    )


def run_sweep(argv: list[str] | None = None) -> list[dict]:
    sweep, base = parse_sweep(list(sys.argv[1:] if argv is None else argv))
    rows = []
    for task in sweep.tasks:
        for learning_rate in sweep.learning_rates:
            for repetition in range(sweep.sweep_repetitions):
                folder = os.path.join(sweep.output_dir, task, f"lr-{learning_rate:g}", f"rep-{repetition}")
                arguments = [
                    *base,
                    "--task_name",
                    task,
                    "--learning_rate",
                    str(learning_rate),
                    "--seed",
                    str(sweep.seed + repetition),
                    "--output_dir",
                    folder,
                ]
                check_reusable(folder, arguments)
                if not os.path.isfile(os.path.join(folder, RESULTS_FILE)):
                    resume = []
                    with contextlib.suppress(ArgumentError):  # no complete checkpoint: a fresh run
                        resume = ["--resume_from_checkpoint", resolve_checkpoint("last", folder)]
                    print(f"hf_kd.sweep: {task}, learning rate {learning_rate:g}, repetition {repetition}", flush=True)
                    os.makedirs(folder, exist_ok=True)
                    with open(os.path.join(folder, SWEEP_RUN_FILE), "w") as f:
                        json.dump({"arguments": arguments}, f, indent=2)
                    main([*arguments, "--overwrite_output_dir", "true", *resume])
                rows.append(_row(folder, task, learning_rate, repetition))
    write_tables(rows, sweep.output_dir)
    for task in sweep.tasks:
        task_rows = [row for row in rows if row["task"] == task]
        best = max(task_rows, key=lambda row: row["metric"])
        destination = os.path.join(sweep.output_dir, task, "best")
        shutil.rmtree(destination, ignore_errors=True)
        card_path = os.path.join(best["folder"], "README.md")
        card = Path(card_path).read_text() if os.path.isfile(card_path) else ""
        student_folder(best["folder"], card, destination)
        with open(os.path.join(destination, "best_run.json"), "w") as f:
            json.dump({k: v for k, v in best.items()}, f, indent=2)
    return rows


def _row(folder: str, task: str, learning_rate: float, repetition: int) -> dict:
    with open(os.path.join(folder, RESULTS_FILE)) as f:
        results = json.load(f)
    with open(os.path.join(folder, RUN_INFO_FILE)) as f:
        info = json.load(f)
    metric = info["main_metric"]
    return {
        "task": task,
        "learning_rate": learning_rate,
        "repetition": repetition,
        "seed": info["seed"],
        "method": info["method"],
        "metric_name": metric,
        "metric": results[f"eval_{metric}"],
        "twin": results.get(f"no_kd_twin_eval_{metric}"),  # --baseline_twin's no-KD student
        "folder": folder,
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and (sample) standard deviation of the main metric per task and learning rate."""
    return group_statistics(rows, ("task", "learning_rate", "metric_name"), "metric")


def _points(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def write_tables(rows: list[dict], output_dir: str) -> None:
    summary = summarise(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["task", "learning_rate", "repetition", "seed", "method", "metric", "value"])
    for row in rows:
        writer.writerow(
            [
                row["task"],
                row["learning_rate"],
                row["repetition"],
                row["seed"],
                row["method"],
                row["metric_name"],
                f"{row['metric']:.6f}",
            ]
        )
    writer.writerow([])
    writer.writerow(["task", "learning_rate", "runs", "metric", "mean", "std"])
    for item in summary:
        writer.writerow(
            [
                item["task"],
                item["learning_rate"],
                item["runs"],
                item["metric_name"],
                f"{item['mean']:.6f}",
                f"{item['std']:.6f}",
            ]
        )
    with open(os.path.join(output_dir, "results.csv"), "w") as f:
        f.write(buffer.getvalue())
    lines = [
        "| task | learning rate | repetition | seed | method | metric | value | no-KD twin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['task']} | {r['learning_rate']:g} | {r['repetition']} | {r['seed']} | {r['method']} | {r['metric_name']} "
        f"| {100 * r['metric']:.2f} | {_points(r.get('twin'))} |"
        for r in rows
    ]
    lines += ["", "| task | learning rate | runs | metric | mean | std |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {s['task']} | {s['learning_rate']:g} | {s['runs']} | {s['metric_name']} | {100 * s['mean']:.2f} | {100 * s['std']:.2f} |"
        for s in summary
    ]
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    exit_on_argument_error(run_sweep, "hf_kd.sweep")
