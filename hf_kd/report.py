"""Tables and plots of finished runs, for a paper or a lab notebook.

    python -m hf_kd.report runs/kd runs/cilda_minild ... --output_dir report/

Finds every finished run below the given folders (a folder with `all_results.json` and
`hf_kd_run.json`; sweeps included) and writes, per task:
- `comparison.md` / `comparison.csv`: methods side by side (runs, mean and standard deviation of the
  task's metric), and `runs.csv`, one row per run;
- `validation_TASK.png`: the validation metric after every evaluation, one line per run;
- `losses_TASK.png`: every logged loss term over training steps, one panel per term;
- `methods_TASK.png`: a bar chart of the methods with standard-deviation error bars.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
from pathlib import Path

from hf_kd.cli import exit_on_argument_error
from hf_kd.errors import ArgumentError
from hf_kd.outputs import DISTILLED_FOLDER, RESULTS_FILE, RUN_INFO_FILE, TWIN_FOLDER

SUB_FOLDERS = (TWIN_FOLDER, DISTILLED_FOLDER)
METHOD_ORDER = ["normal", "kd", "rail_kd", "mate_kd", "cilda", "cilda_minild", "tinybert", "minilm"]


def find_runs(folders: list[str]) -> list[dict]:
    runs = []
    for top in folders:
        if not os.path.isdir(top):
            raise ArgumentError(f"{top} is not a folder of runs.")
        for folder, _, files in os.walk(top):
            # a run's no_kd_twin/ and distilled/ are parts of it, not runs of their own
            if RESULTS_FILE in files and RUN_INFO_FILE in files and os.path.basename(folder) not in SUB_FOLDERS:
                with open(os.path.join(folder, RESULTS_FILE)) as f:
                    results = json.load(f)
                with open(os.path.join(folder, RUN_INFO_FILE)) as f:
                    info = json.load(f)
                history = []
                state = os.path.join(folder, "trainer_state.json")
                if os.path.isfile(state):
                    with open(state) as f:
                        history = json.load(f).get("log_history", [])
                metric = info["main_metric"]
                runs.append(
                    {
                        **info,
                        "folder": folder,
                        # the method's own student, also where --load_best_of_twins saved its twin instead
                        "metric": results.get(f"distilled_eval_{metric}", results.get(f"eval_{metric}")),
                        "twin_metric": results.get(f"no_kd_twin_eval_{metric}"),  # --baseline_twin
                        "history": history,
                        "label": f"{info['method']} lr={info['learning_rate']:g} seed={info['seed']}",
                    }
                )
    runs = [run for run in runs if run["metric"] is not None]
    name_data_sets(runs)
    if not runs:
        raise ArgumentError(
            f"No finished runs (folders with {RESULTS_FILE} and {RUN_INFO_FILE}) below {', '.join(folders)}."
        )
    return sorted(runs, key=lambda r: (r["task"], _method_rank(r["method"]), r["learning_rate"], r["seed"]))


def name_data_sets(runs: list[dict]) -> None:
    """Each run's `task`, unique per data set: runs of different data whose files share a name (`train.csv` of
    RTE and of CoLA) become `train.csv (1)`, `train.csv (2)`, ... in order of their data's full path."""
    data_sets: dict[str, set[str]] = {}
    for run in runs:
        data_sets.setdefault(run["task"], set()).add(run.get("data") or run["task"])
    for run in runs:
        identities = sorted(data_sets[run["task"]])
        if len(identities) > 1:
            run["task"] = f"{run['task']} ({identities.index(run.get('data') or run['task']) + 1})"


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def group_statistics(items: list[dict], keys: tuple[str, ...], value: str) -> list[dict]:
    """Runs, mean and sample standard deviation of `value` per combination of `keys` (first-seen order)."""
    groups: dict[tuple, list[float]] = {}
    for item in items:
        groups.setdefault(tuple(item[key] for key in keys), []).append(item[value])
    return [
        {
            **dict(zip(keys, group, strict=True)),
            "runs": len(values),
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
        for group, values in groups.items()
    ]


def paired_differences(values: dict[int, float], baseline: dict[int, float], confidence: float = 0.95) -> dict:
    """Per-seed differences `values[s] - baseline[s]` over the seeds both have: mean, sample std, the
    t-interval of the mean at `confidence`, and how many seeds the method won (a paired comparison
    removes the seed-to-seed noise that both runs of a seed share)."""
    from scipy import stats

    seeds = sorted(set(values) & set(baseline))
    differences = [values[seed] - baseline[seed] for seed in seeds]
    n = len(differences)
    low = high = float("nan")
    if n > 1 and has_spread(differences):
        interval = stats.ttest_rel([values[s] for s in seeds], [baseline[s] for s in seeds]).confidence_interval(
            confidence
        )
        low, high = float(interval.low), float(interval.high)
    elif n > 1:  # every seed moved by the same amount: the interval is zero wide (scipy would warn of precision loss)
        low = high = statistics.fmean(differences)
    return {
        "seeds": seeds,
        "differences": differences,
        "mean": statistics.fmean(differences) if n else float("nan"),
        "std": statistics.stdev(differences) if n > 1 else float("nan"),
        "low": low,
        "high": high,
        "wins": sum(d > 0 for d in differences),
    }


def has_spread(differences: list[float]) -> bool:
    """Whether the differences are not all equal (beyond float noise): a metric in steps of one row often moves
    every seed by the same amount, and then a t-interval says nothing."""
    return max(differences) - min(differences) > 1e-9 * max(1.0, *map(abs, differences))


MIN_SEEDS_TO_DECIDE = 3  # fewer seeds can lean, never beat: a quality claim needs three (five for a headline)


def verdict(paired: dict) -> str:
    """The one selection rule, in words. A setting (a method, a flag, a budget) replaces the default it is paired
    with only when it "beats" it: the 95% interval of the per-seed differences is above 0 (`selects`), over at
    least `MIN_SEEDS_TO_DECIDE` seeds that do not all differ by the same amount. Otherwise it "loses" (interval
    below 0, on the same terms), "leans above" / "leans below" (every seed on one side, but the interval crosses
    0, or too few seeds, or no spread to measure one: equal differences, common on a metric in steps of one row,
    make the t-interval zero wide), or "ties"; a single seed has no interval ("one seed"). Words in the docs
    follow this."""
    seeds = len(paired["seeds"])
    if seeds < 2 or paired["low"] != paired["low"]:
        return "one seed"
    decided = seeds >= MIN_SEEDS_TO_DECIDE and has_spread(paired["differences"])
    if decided and paired["low"] > 0:
        return "beats"
    if decided and paired["high"] < 0:
        return "loses"
    if paired["wins"] == seeds:
        return "leans above"
    if all(difference < 0 for difference in paired["differences"]):
        return "leans below"
    return "ties"


def selects(paired: dict) -> bool:
    """Whether the rule selects the setting over its default (see `verdict`)."""
    return verdict(paired) == "beats"


def comparison(runs: list[dict]) -> list[dict]:
    """Methods side by side per task, in the order of METHODS.md; where runs have a no-KD twin
    (--baseline_twin), the twins' mean and the paired difference to them."""
    rows = group_statistics(runs, ("task", "method", "main_metric"), "metric")
    rows = [{("metric" if key == "main_metric" else key): value for key, value in row.items()} for row in rows]
    for row in rows:
        mine = [r for r in runs if (r["task"], r["method"]) == (row["task"], row["method"])]
        # each run is paired with its own twin (two runs of a seed at two learning rates are two pairs)
        twins = {r["folder"]: r["twin_metric"] for r in mine if r.get("twin_metric") is not None}
        if twins:
            row["twin_mean"] = statistics.fmean(twins.values())
            row["twin_difference"] = paired_differences({r["folder"]: r["metric"] for r in mine}, twins)
    return sorted(rows, key=lambda row: (row["task"], _method_rank(row["method"])))


def format_twin(row: dict) -> tuple[str, str]:
    """The twin's mean and the paired difference (mean [95% interval], runs won) in points, or blanks."""
    if "twin_mean" not in row:
        return "", ""
    paired = row["twin_difference"]
    interval = "" if paired["low"] != paired["low"] else f" [{100 * paired['low']:+.2f}, {100 * paired['high']:+.2f}]"
    won = f", {paired['wins']}/{len(paired['seeds'])} runs"  # each run against its own twin
    return f"{100 * row['twin_mean']:.2f}", f"{100 * paired['mean']:+.2f}{interval}{won}: {verdict(paired)}"


def write_tables(runs: list[dict], rows: list[dict], output_dir: str) -> None:
    with open(os.path.join(output_dir, "runs.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "method", "learning_rate", "seed", "metric", "value", "folder"])
        for run in runs:
            writer.writerow(
                [
                    run["task"],
                    run["method"],
                    run["learning_rate"],
                    run["seed"],
                    run["main_metric"],
                    f"{run['metric']:.6f}",
                    run["folder"],
                ]
            )
    with open(os.path.join(output_dir, "comparison.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "method", "metric", "runs", "mean", "std", "no_kd_twin_mean", "difference_to_twin"])
        for row in rows:
            twin = (
                [f"{row['twin_mean']:.6f}", f"{row['twin_difference']['mean']:.6f}"] if "twin_mean" in row else ["", ""]
            )
            writer.writerow(
                [
                    row["task"],
                    row["method"],
                    row["metric"],
                    row["runs"],
                    f"{row['mean']:.6f}",
                    f"{row['std']:.6f}",
                    *twin,
                ]
            )
    lines = [
        "| task | method | metric | runs | mean | std | no-KD twin | Δ vs twin (paired) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['task']} | {r['method']} | {r['metric']} | {r['runs']} | {100 * r['mean']:.2f} | {100 * r['std']:.2f} "
        f"| {' | '.join(format_twin(r))} |"
        for r in rows
    ]
    with open(os.path.join(output_dir, "comparison.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(runs: list[dict], rows: list[dict], output_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for task in sorted({run["task"] for run in runs}):
        task_runs = [run for run in runs if run["task"] == task]
        metric = task_runs[0]["main_metric"]
        colors = {run["label"]: f"C{i % 10}" for i, run in enumerate(task_runs)}  # one colour per run everywhere

        figure, axis = plt.subplots(figsize=(7, 4.5))
        for run in task_runs:
            points = [
                (entry["epoch"], entry[f"eval_{metric}"]) for entry in run["history"] if f"eval_{metric}" in entry
            ]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=run["label"], color=colors[run["label"]])
        axis.set(xlabel="epoch", ylabel=f"validation {metric}", title=f"{task}: validation {metric}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        written.append(_save(figure, os.path.join(output_dir, f"validation_{task}.png")))

        terms = sorted(
            {
                key
                for run in task_runs
                for entry in run["history"]
                for key in entry
                if key.startswith(("loss_", "generator_loss"))
            }
        )
        if terms:
            columns = min(3, len(terms))
            rows_count = (len(terms) + columns - 1) // columns
            figure, axes = plt.subplots(rows_count, columns, figsize=(4.2 * columns, 3.2 * rows_count), squeeze=False)
            for axis, term in zip(axes.flat, terms, strict=False):
                for run in task_runs:
                    points = [(entry["step"], entry[term]) for entry in run["history"] if term in entry]
                    if points:
                        axis.plot(*zip(*points, strict=True), label=run["label"], color=colors[run["label"]])
                axis.set(title=term, xlabel="step")
                axis.grid(alpha=0.3)
            for axis in list(axes.flat)[len(terms) :]:
                axis.axis("off")
            legend = {}  # one legend for the figure: every run, whichever panels it appears in
            for axis in axes.flat:
                for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
                    legend.setdefault(label, handle)
            figure.suptitle(f"{task}: loss terms")
            figure.tight_layout(rect=(0, 0.035 * ((len(legend) + 2) // 3), 1, 1))
            figure.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(3, len(legend)), fontsize=7)
            written.append(_save(figure, os.path.join(output_dir, f"losses_{task}.png"), layout=False))

        task_rows = [row for row in rows if row["task"] == task]
        figure, axis = plt.subplots(figsize=(1.3 * len(task_rows) + 2.5, 4.5))
        means = [100 * row["mean"] for row in task_rows]
        errors = [100 * row["std"] for row in task_rows]
        bars = axis.bar([row["method"] for row in task_rows], means, yerr=errors, capsize=6, color="#4C72B0")
        for bar, row in zip(bars, task_rows, strict=True):
            axis.annotate(
                f"{100 * row['mean']:.1f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        low = min(m - e for m, e in zip(means, errors, strict=True))
        axis.set_ylim(max(0.0, low - 5), max(m + e for m, e in zip(means, errors, strict=True)) + 3)
        axis.set(
            ylabel=f"{metric} (x100), mean ± std",
            title=f"{task}: methods ({', '.join(str(r['runs']) for r in task_rows)} runs)",
        )
        axis.grid(axis="y", alpha=0.3)
        written.append(_save(figure, os.path.join(output_dir, f"methods_{task}.png")))
    return written


def _save(figure, path: str, layout: bool = True) -> str:
    if layout:
        figure.tight_layout()
    figure.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def report(folders: list[str], output_dir: str) -> dict:
    runs = find_runs(folders)
    rows = comparison(runs)
    os.makedirs(output_dir, exist_ok=True)
    write_tables(runs, rows, output_dir)
    images = plot(runs, rows, output_dir)
    return {"runs": runs, "comparison": rows, "images": images}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hf_kd.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="folders holding finished runs (searched recursively)")
    parser.add_argument("--output_dir", required=True, help="where the tables and plots go")
    args = parser.parse_args(argv)
    result = report(args.run_dirs, args.output_dir)
    print(Path(args.output_dir, "comparison.md").read_text())
    print("\n".join(f"wrote {path}" for path in result["images"]))


if __name__ == "__main__":
    exit_on_argument_error(main, "hf_kd.report")
