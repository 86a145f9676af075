#!/usr/bin/env python
"""Issue 48's ladder: students of 2, 3, 4 and 6 of MiniLM's layers from one teacher, accuracy against CPU latency.

    python benchmarks/quality_sst2.py --task banking77 --settings unlabelled --methods normal kd --seeds 42 43 44 \\
        --student minilm3 --output_dir RUNS/banking77      # and minilm2 (the default), minilm4, minilm6
    python benchmarks/ladder.py --output_dir RUNS/banking77 --task banking77 --setting unlabelled --method kd \\
        --json benchmarks/RESULTS_ladder_banking77.json

For each size that has finished runs of `--method` in `--setting` (every seed the benchmark ran), the held-out and
reported-set accuracies per seed; no KD's at the same size and step budget where it ran (points and the share of
the gap between no KD and the teacher that KD closes; a variant that sets `--max_steps N` is paired with no KD's
`--budgets N` runs); and, for one seed's student (the first seed whose model is here), what shipping it costs:
exported to ONNX fp32 and int8 and checked against PyTorch on held-out (`hf_kd.export.export_student`), size on
disk, and ms per sentence at batch 1 and 32 timed in turn beside the teacher (ratios compare like with like).
Each step up the ladder is paired by seed with the size below on held-out and worded by the selection rule
(`hf_kd.report.verdict`). Writes the JSON (`benchmarks/claims.py` renders it into README.md) and the chart beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.claims import ONE, ladder_table  # noqa: E402
from benchmarks.quality.models import LADDER, minilm_layers  # noqa: E402
from benchmarks.quality.records import EXPORT_FINDINGS  # noqa: E402
from benchmarks.quality.report import own_budget, with_shared_no_kd  # noqa: E402
from benchmarks.quality.runner import budget_variant, run_folder, runs_root  # noqa: E402
from benchmarks.quality.tasks import TASKS  # noqa: E402
from hf_kd.report import paired_differences, verdict  # noqa: E402

EXPORTED = ("exported_seed", "size_on_disk_mb", "latency_ms_per_sentence", "agreement")  # what shipping costs


def results_of(output_dir: Path, student: str) -> dict | None:
    path = output_dir / ("results.json" if student == "minilm2" else f"results_{student}.json")
    return json.loads(path.read_text()) if path.is_file() else None


def matching(runs: list[dict], setting: str, method: str, variant: str = "") -> list[dict]:
    """The runs of `method` in `setting` with `variant`'s flags ("": the method's defaults); no KD's `unlabelled`
    runs are its few_labels (`with_shared_no_kd`). One learning rate: the ladder compares sizes, not rates."""
    found = [
        run
        for run in with_shared_no_kd(runs, {setting})
        if (run["setting"], run["method"], run["variant"]) == (setting, method, variant)
    ]
    if len({run["learning_rate"] for run in found}) > 1:
        sys.exit(f"{method} {variant} in {setting}: runs at several learning rates; run the ladder at one.")
    return found


def at_benchmark_budget(runs: list[dict], setting: str, method: str, recipe: str) -> tuple[str, list[dict]] | None:
    """The ablation that ran `recipe` (flags without a budget of their own) at the benchmark's --steps: the point
    a variant with more steps is paired against on held-out, to say whether the extra steps were worth it."""
    for run in runs:
        variant = run["variant"]
        if (run["setting"], run["method"]) == (setting, method) and own_budget(run["flags"]) == (None, recipe):
            return variant, matching(runs, setting, method, variant)
    return None


def per_seed(runs: list[dict], column: str) -> dict[int, float]:
    return {run["seed"]: run[column] for run in runs}


def student_point(
    output_dir: Path,
    size: int,
    setting: str,
    method: str,
    variant: str,
    export: bool,
    exported_before: int | None = None,
) -> dict | None:
    """`size`'s runs of the recipe, paired with no KD and with the benchmark's budget, and what shipping one seed's
    student costs: the first seed whose model is here, exported and timed now; with none, the seed an earlier
    ladder exported (`exported_before`), else the first, as measured before."""
    student = f"minilm{size}"
    results = results_of(output_dir, student)
    if results is None:
        return None
    runs = matching(results["runs"], setting, method, variant)
    if not runs:
        return None
    heldout, reported = per_seed(runs, "heldout"), per_seed(runs, "dev")
    budget, recipe = own_budget(runs[0]["flags"])  # no KD at the same step budget: its --budgets run of it
    no_kd = per_seed(matching(results["runs"], setting, "normal", budget_variant(budget) if budget else ""), "dev")
    point = {"layers": minilm_layers(student), "flags": runs[0]["flags"], "heldout": heldout, "reported": reported}
    if no_kd:  # on the reported set, for the record: the paired difference and the share of the gap KD closes
        paired = paired_differences(reported, no_kd)
        base = statistics.fmean(no_kd.values())
        gap = (statistics.fmean(reported.values()) - base) / (results["teacher"]["dev"] - base)
        point["versus_no_kd"] = {"paired": paired, "verdict": verdict(paired), "gap_closed": gap, "steps": budget}
    if budget and (fewer := at_benchmark_budget(results["runs"], setting, method, recipe)):
        name, shorter = fewer
        paired = paired_differences(heldout, per_seed(shorter, "heldout"))
        point["over_benchmark_budget"] = {"variant": name, "paired": paired, "verdict": verdict(paired)}
    if export:
        from hf_kd.export import export_student

        tag = f"_{variant}" if variant else ""
        folders = {
            seed: run_folder(runs_root(output_dir, student), setting, method, runs[0]["learning_rate"], seed, tag)
            for seed in sorted(reported)
        }
        measured_before = exported_before if exported_before in reported else min(reported)
        here = [seed for seed, folder in folders.items() if (folder / "config.json").is_file()]
        seed = here[0] if here else measured_before
        folder = folders[seed]
        if here:
            findings = export_student(str(folder))
            point |= {
                "exported_seed": seed,
                "size_on_disk_mb": findings["size_on_disk_mb"],
                "latency_ms_per_sentence": findings["latency_ms_per_sentence"],
                "agreement": findings.get("agreement"),
            }
            (folder / EXPORT_FINDINGS).write_text(json.dumps({field: point[field] for field in EXPORTED}) + "\n")
        elif (folder / EXPORT_FINDINGS).is_file():  # restored from the records: measured by an earlier call
            point |= json.loads((folder / EXPORT_FINDINGS).read_text()) | {"timed_earlier": True}
        else:
            point["model_missing"] = (str(folder), seed)
    return point


def with_earlier_export(point: dict, earlier: dict | None, size: int) -> dict:
    """`point`, whose model is not here, with the export an earlier ladder measured of the same seed's same run;
    without one, the run must be trained again (one line naming the seed)."""
    folder, seed = point.pop("model_missing")
    if (
        earlier
        and earlier.get("exported_seed") == seed
        and (earlier["heldout"].get(seed), earlier["reported"].get(seed))
        == (point["heldout"][seed], point["reported"][seed])
    ):
        return point | {field: earlier[field] for field in EXPORTED} | {"timed_earlier": True}
    sys.exit(
        f"{size} layers: {folder} holds no model (a run restored from the records keeps its results only), and no "
        f"earlier measurement of that run was kept: train seed {seed} again (quality_sst2.py ... --student minilm{size} "
        f"--seeds {seed}) to export it."
    )


def carried_point(previous: dict | None, size: int, teacher: dict | None, recipe: tuple[str, str, str]) -> dict | None:
    """`size`'s point from an earlier ladder of the same recipe and teacher, for a size whose runs are not in this
    output folder (a machine lost them; the records keep no model to export): measured, so kept, and marked.
    Its step up is paired again against today's size below."""
    if previous is None or str(size) not in previous["students"] or teacher is None:
        return None
    if (previous["setting"], previous["method"], previous["variant"]) != recipe or not same_teacher(
        previous["teacher"], teacher
    ):
        return None
    point = {key: value for key, value in previous["students"][str(size)].items() if key != "over_smaller"}
    point["heldout"] = {int(seed): value for seed, value in point["heldout"].items()}  # JSON made the seeds strings
    point["reported"] = {int(seed): value for seed, value in point["reported"].items()}
    return point | {"carried": True}


def ladder_teacher(output_dir: Path) -> dict | None:
    """The teacher every size's results were scored against (one teacher: a ladder compares students of it)."""
    teachers = {
        size: teacher for size in LADDER if (teacher := (results_of(output_dir, f"minilm{size}") or {}).get("teacher"))
    }
    if any(not same_teacher(teacher, next(iter(teachers.values()))) for teacher in teachers.values()):
        sizes = ", ".join(f"{size} layers {teacher['dev']:.4f}" for size, teacher in teachers.items())
        sys.exit(f"{output_dir}: the sizes' results name different teachers ({sizes}); rerun the report of each.")
    return next(iter(teachers.values()), None)


def same_teacher(one: dict, other: dict) -> bool:
    return (one["heldout"], one["dev"]) == (other["heldout"], other["dev"])


def ladder(
    output_dir: Path,
    task: str,
    setting: str,
    method: str,
    variant: str = "",
    export: bool = True,
    previous: dict | None = None,
) -> dict:
    """The ladder from the runs in `output_dir`; a size without runs there keeps its point from `previous` (the
    JSON this command wrote before) when that ran the same recipe with the same teacher. Each size exports its first
    seed whose model is here; a size whose runs were all restored from the records (no model) keeps the export
    measured before of the seed `previous` exported (else its first): the records' findings, else `previous`'s."""
    teacher = ladder_teacher(output_dir)
    students = {}
    for size in LADDER:
        earlier = carried_point(previous, size, teacher, (setting, method, variant))
        exported_before = (earlier or {}).get("exported_seed")
        point = student_point(output_dir, size, setting, method, variant, export, exported_before)
        if point is not None and "model_missing" in point:
            point = with_earlier_export(point, earlier, size)
        if point is None:
            point = earlier
        elif (
            earlier
            and earlier["heldout"] == point["heldout"]
            and "over_benchmark_budget" in earlier
            and "over_benchmark_budget" not in point
        ):
            # the same runs, but the shorter ones they were paired with are gone from this folder: keep that pairing
            point["over_benchmark_budget"] = earlier["over_benchmark_budget"]
        if point is not None:
            students[str(size)] = point
    if teacher is None or not students:
        named = f"{method} ({variant})" if variant else method
        sys.exit(f"{output_dir}: no teacher or no finished {named} runs in {setting} (run quality_sst2.py first).")
    sizes = list(students)
    for smaller, larger in itertools.pairwise(sizes):  # each step up, paired by seed on held-out
        paired = paired_differences(students[larger]["heldout"], students[smaller]["heldout"])
        students[larger]["over_smaller"] = {"size": smaller, "paired": paired, "verdict": verdict(paired)}
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "output_dir": str(output_dir),
        "task": TASKS[task].title,
        "reported": TASKS[task].reported,
        "setting": setting,
        "method": method,
        "variant": variant,
        "flags": next(iter(students.values()))["flags"],
        "teacher": teacher,
        "students": students,
    }


def chart(data: dict, path: Path) -> None:
    """Reported-set accuracy of the students (mean and std over seeds) against their time per sentence on one
    thread at batch 1, as PyTorch and as the ONNX int8 export, relative to the teacher's timed in the same call
    (sizes kept from an earlier ladder were timed in another call, maybe another day); one point per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    timed = {size: point for size, point in data["students"].items() if "latency_ms_per_sentence" in point}
    for model, marker in (("pytorch student", "o"), ("onnx int8", "s")):
        xs, ys, errors, labels = [], [], [], []
        for size, point in timed.items():
            values = [100 * value for value in point["reported"].values()]
            ms = point["latency_ms_per_sentence"]
            xs.append(ms[model][ONE] / ms["pytorch teacher"][ONE])
            ys.append(statistics.fmean(values))
            errors.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            labels.append(f"{size} layers")
        label = f"{data['method']} student, timed as {model.replace(' student', '')}"
        axes.errorbar(xs, ys, yerr=errors, fmt=marker + "-", capsize=3, label=label)
        for x, y, label in zip(xs, ys, labels, strict=True):
            axes.annotate(label, (x, y), textcoords="offset points", xytext=(5, -12), fontsize=8)
    axes.plot([1.0], [100 * data["teacher"]["dev"]], "k*", ms=12, label="teacher")
    axes.set_xscale("log")
    axes.set_xlabel("time per sentence / the teacher's in the same call (CPU, 1 thread, batch 1; log)")
    axes.set_ylabel(f"accuracy on {data['reported']}")
    recipe = f"{data['setting']}" + (f", {data['flags']}" if data.get("variant") else "")
    title = f"{data['task']}: students of MiniLM's layers ({recipe})"
    axes.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)  # a long recipe must not run off the chart
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", type=Path, required=True, help="the quality benchmark's --output_dir")
    parser.add_argument("--task", choices=list(TASKS), default="sst2")
    parser.add_argument("--setting", default="unlabelled")
    parser.add_argument("--method", default="kd")
    parser.add_argument("--variant", default="", help="an --ablation's name: its runs instead of the defaults'")
    parser.add_argument(
        "--json",
        type=Path,
        required=True,
        help="the chart is written beside it (.png); a size it holds whose runs are not in --output_dir is kept",
    )
    parser.add_argument("--fresh", action="store_true", help="build the ladder from --output_dir's runs alone")
    options = parser.parse_args(argv)
    previous = None if options.fresh or not options.json.is_file() else json.loads(options.json.read_text())
    data = ladder(options.output_dir, options.task, options.setting, options.method, options.variant, previous=previous)
    for size, point in data["students"].items():
        if point.get("carried"):
            print(f"{size} layers: no runs in {options.output_dir}; kept from {options.json} (--fresh drops it)")
    options.json.write_text(json.dumps(data, indent=1) + "\n")
    chart(data, options.json.with_suffix(".png"))
    print(ladder_table(data))


if __name__ == "__main__":
    main()
