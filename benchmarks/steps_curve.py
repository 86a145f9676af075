"""Issue 28, section 4's curve: a 2-layer SST-2 student's accuracy against its step budget and its text.

The points are runs of several `quality_sst2.py` output folders, made in different sessions, some of them
on machines since given back: their committed reports are the record. This reads each point's per-seed
accuracies from the `## Every run` table of the report that holds it, checks that the report gives the run
the step budget the curve puts it at, and draws held-out (where choices are made) and dev (reported once),
mean ± std over seeds, with no KD, the teacher and the 87.0 target beside them. The reports give each run to
two decimals, so a mean here can differ from its report's table by 0.01.

    python benchmarks/steps_curve.py  # writes benchmarks/RESULTS_sst2_steps_curve.{png,json}
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 87.0  # issue 28, section 4: a 2-layer student >= 87.0 on dev


@dataclass(frozen=True)
class Point:
    """One budget of one curve: the runs of (setting, ablation, method) in `report`, made with `steps`."""

    steps: int
    report: str
    variant: str = ""  # the ablation's name; "" for the method's default flags
    method: str = "kd"
    setting: str = "unlabelled"


CURVES: dict[str, list[Point]] = {
    "KD, all 55,133 rows": [
        Point(1000, "RESULTS_sst2_all_text_cpu.md"),
        Point(2000, "RESULTS_sst2_all_text_cpu.md", "s2000"),
        Point(4000, "RESULTS_sst2_all_text_cpu.md", "s4000"),
        Point(8000, "RESULTS_sst2_all_text_8000_cpu.md", "s8000"),
    ],
    "KD, 10,000 sentences": [
        Point(1000, "RESULTS.md"),
        Point(2000, "RESULTS_sst2_all_text_cpu.md", "u10k_s2000"),
        Point(4000, "RESULTS_sst2_all_text_8000_cpu.md", "u10k_s4000"),
    ],
    "MATE-KD, 10,000 sentences": [Point(1000, "RESULTS_sst2_adversarial_text_cpu.md", method="mate_kd")],
    "MATE-KD, all 55,133 rows": [Point(2000, "RESULTS_sst2_all_text_8000_cpu.md", "s2000", "mate_kd")],
    "RAIL-KD, all 55,133 rows": [Point(4000, "RESULTS_sst2_all_text_8000_cpu.md", "s4000", "rail_kd")],
    "KD, all 55,133 rows, lr 2e-4": [Point(4000, "RESULTS_sst2_all_text_8000_cpu.md", "s4000_lr2e-4")],
}
NO_KD = Point(1000, "RESULTS.md", method="normal", setting="few_labels")
TEACHER_REPORT = "RESULTS.md"


class ReportError(ValueError):
    """A report lacks what a point needs: named with the report, so the fix is to re-run its --report_only."""


def table(text: str, heading: str) -> list[list[str]]:
    """The cells of the markdown table under the first line that is exactly `heading`."""
    lines = text.splitlines()
    if heading not in lines:
        return []
    rows = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header row


def step_budget(text: str, point: Point) -> int:
    """The steps the report gives the point's runs: the ablation's `--max_steps`, else the report's default."""
    if point.variant:
        for row in table(text, "## Ablations"):
            if row[:3] == [point.setting, point.method, point.variant]:
                found = re.search(r"--max_steps (\d+)", row[3])
                return int(found.group(1)) if found else default_steps(text)
        raise ReportError(f"no ablation row for {point.setting}/{point.method}/{point.variant}")
    return default_steps(text)


def default_steps(text: str) -> int:
    found = re.search(r"([\d,]+) student steps", text)
    if not found:
        raise ReportError("no 'N student steps' in the report's header")
    return int(found.group(1).replace(",", ""))


def point_runs(folder: Path, point: Point) -> dict[str, list]:
    """Held-out and dev accuracy (points), one per seed, of the point's runs in its report."""
    path = folder / point.report
    text = path.read_text()
    try:
        steps = step_budget(text, point)
        if steps != point.steps:
            raise ReportError(f"its runs of {point} have {steps} steps, not {point.steps}")
        runs = [r for r in table(text, "## Every run") if r[:3] == [point.setting, point.variant, point.method]]
        if len(runs) < 2:
            raise ReportError(f"{len(runs)} run(s) of {point.setting}/{point.variant}/{point.method}: need 2 seeds")
    except ReportError as error:
        raise ReportError(f"{path}: {error}") from None
    return {
        "seeds": [int(r[4]) for r in runs],
        "heldout": [float(r[5]) for r in runs],
        "dev": [float(r[6]) for r in runs],
    }


def summary(runs: dict[str, list]) -> dict:
    """The runs with their mean and sample std on each split."""
    stats = {"mean": statistics.fmean, "std": statistics.stdev}
    return runs | {f"{split}_{stat}": fn(runs[split]) for split in ("heldout", "dev") for stat, fn in stats.items()}


def teacher_accuracy(folder: Path) -> dict[str, float]:
    """The teacher's held-out and dev accuracy from its report's header line."""
    found = re.search(r"Teacher: held-out ([\d.]+), dev \*\*([\d.]+)\*\*", (folder / TEACHER_REPORT).read_text())
    if not found:
        raise ReportError(f"{folder / TEACHER_REPORT}: no 'Teacher: held-out H, dev **D**' line")
    return {"heldout": float(found.group(1)), "dev": float(found.group(2))}


def collect(folder: Path) -> dict:
    """Teacher, no KD and every curve's points, as the JSON beside the figure holds them."""
    return {
        "teacher": teacher_accuracy(folder),
        "no_kd": summary(point_runs(folder, NO_KD)),
        "curves": {
            name: [{"steps": p.steps, "report": p.report} | summary(point_runs(folder, p)) for p in points]
            for name, points in CURVES.items()
        },
    }


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    styles = {"KD": "-o", "MATE-KD": "--s", "RAIL-KD": ":^"}  # by method; a curve of another method gets "-D"
    for axis, split, label in zip(axes, ("heldout", "dev"), ("held-out (choices)", "dev (reported once)"), strict=True):
        for index, (name, points) in enumerate(data["curves"].items()):
            axis.errorbar(
                [p["steps"] for p in points],
                [p[f"{split}_mean"] for p in points],
                yerr=[p[f"{split}_std"] for p in points],
                fmt=styles.get(name.split(",")[0], "-D"),
                color=f"C{index}",
                capsize=3,
                label=name,
            )
        axis.axhline(data["no_kd"][f"{split}_mean"], color="grey", linestyle=":", label="no KD, 1,000 steps")
        axis.axhline(data["teacher"][split], color="#C44E52", linestyle="--", label="teacher")
        if split == "dev":
            axis.axhline(TARGET, color="black", linewidth=0.8, linestyle="-.", label=f"target {TARGET}")
        axis.set_xscale("log", base=2)
        steps = sorted({p["steps"] for points in data["curves"].values() for p in points})
        axis.set_xticks(steps, [f"{s:,}" for s in steps])
        axis.set(xlabel="student steps (batch 32)", title=f"SST-2 {label}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%), 3 seeds, mean ± std")
    axes[1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=HERE, help="the folder of the committed reports")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS_sst2_steps_curve.png", help=".png; .json beside")
    options = parser.parse_args(argv)
    try:
        data = collect(options.reports)
    except (OSError, ReportError) as error:
        print(f"steps_curve.py: {error}", file=sys.stderr)
        return 2
    options.output.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    plot(data, options.output)
    print("| curve | steps | held-out | dev |\n|---|---|---|---|")
    for name, points in data["curves"].items():
        for p in points:
            print(
                f"| {name} | {p['steps']:,} | {p['heldout_mean']:.2f} ± {p['heldout_std']:.2f} "
                f"| {p['dev_mean']:.2f} ± {p['dev_std']:.2f} |"
            )
    print(f"wrote {options.output} and {options.output.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
