"""The benchmark's report: methods against no KD on dev, ablations against the method's defaults on held-out,
both paired by seed, the learning rate chosen on held-out (`choose`), and the chart."""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path

from benchmarks.quality import BATCH_SIZE, METHODS, ROOT
from benchmarks.quality.models import STUDENTS
from benchmarks.quality.tasks import HELD_OUT_ROWS, SETTINGS, TASKS, Task
from hf_kd.report import group_statistics, paired_differences, selects, verdict

# RESULTS.md below this line is written by hand (what the numbers say) and kept when the tables are rewritten.
ANALYSIS_MARKER = "<!-- analysis: kept when the benchmark rewrites the tables above -->"

DEFAULT_REPORT = ROOT / "benchmarks" / "RESULTS.md"


def with_shared_no_kd(runs: list[dict], settings: set[str]) -> list[dict]:
    """No KD cannot learn from unlabelled text, so its `few_labels` runs are also the `unlabelled`
    setting's baseline (see `run_folder`) wherever `settings` (those of every run, ablations too) has it."""
    if "unlabelled" not in settings:
        return runs
    no_kd = [r for r in runs if r["method"] == "normal" and r["setting"] == "few_labels"]
    return runs + [r | {"setting": "unlabelled"} for r in no_kd]


def choose(runs: list[dict], n_seeds: int) -> dict[tuple[str, str], dict]:
    """Per (setting, method): the learning rate with the best mean held-out accuracy over at least
    `n_seeds` seeds."""
    cells = group_statistics(runs, ("setting", "method", "learning_rate"), "heldout")
    chosen: dict[tuple[str, str], dict] = {}
    for cell in cells:
        key = (cell["setting"], cell["method"])
        if cell["runs"] >= n_seeds and (key not in chosen or cell["mean"] > chosen[key]["mean"]):
            chosen[key] = cell
    summary = {}
    for key, cell in chosen.items():
        picked = [r for r in runs if (r["setting"], r["method"], r["learning_rate"]) == (*key, cell["learning_rate"])]
        summary[key] = {"learning_rate": cell["learning_rate"], "heldout": cell["mean"], "runs": picked}
    return summary


def write_report(
    runs: list[dict], teacher: dict, options, counts: dict, command: str, ledger: list[dict] | None = None
) -> dict:
    """RESULTS.md (and its data, RESULTS.json) from every finished run: per setting the methods' dev accuracy
    against no KD at each one's chosen budget, the budget curves, each ablation on held-out against the method's
    default flags, and the ledger of looks at the reported set (the analysis below the marker stays)."""
    import statistics

    task = TASKS[getattr(options, "task", "sst2")]
    budgets = getattr(options, "budgets", None) or [options.steps]
    defaults = [r for r in runs if not r["variant"]]
    shared = {r["setting"] for r in runs}
    summary = choose(with_shared_no_kd(defaults, shared), len(options.seeds))
    curves = budget_curves(runs, summary, budgets, len(options.seeds), shared, counts)
    chosen = {key[:2]: curve["chosen"] for key, curve in curves.items() if not key[2]}  # the defaults' curves
    summary = chosen | {
        key: cell | {"steps": first_budget(key[0], budgets[0], counts)}
        for key, cell in summary.items()
        if key not in chosen
    }
    settings = [s for s in SETTINGS if any(key[0] == s for key in summary)]
    methods = [m for m in METHODS if any(key[1] == m for key in summary)]
    swept = {r["learning_rate"] for r in defaults} or set(options.learning_rates)  # not an ablation's own rate
    rates = ", ".join(f"{lr:g}" for lr in sorted(swept))
    steps_text = (
        f"{options.steps:,} student steps"
        if len(budgets) == 1
        else f"student steps chosen per setting and method on held-out among {', '.join(f'{b:,}' for b in budgets)}"
    )
    teacher_steps = getattr(options, "teacher_steps", None)
    teacher_budget = f", `--max_steps {teacher_steps}`" if teacher_steps else ""
    lines = [
        f"# Quality benchmark: {task.title} with a real pretrained BERT{', student from scratch' if options.student == 'scratch' else ''}",
        "",
        f"Tables written by `{command}` from every finished run in its output folder; the commands that "
        "made the runs are in the notes below the tables.",
        "",
        f"Teacher all-MiniLM-L6-v2 (6 x 384) fine-tuned on {teacher_data(options, counts, task)} "
        f"(`{' '.join(task.teacher_flags)}`{teacher_budget}); {STUDENTS[options.student]}. Every method: the original's "
        f"default weights and schedule, batch 32, length 64, linear decay, {steps_text} "
        f"(`full`: 1 epoch; an ablation's own flags are in its table); student learning rate chosen per setting "
        f"and method from {{{rates}}} by mean "
        f"accuracy on {HELD_OUT_ROWS:,} {task.held_out} (sharing no phrase with any other split); seeds "
        f"{', '.join(map(str, options.seeds))}. Reported: {task.reported_on}, never used for a choice. Δ is the paired "
        "per-seed difference to no KD (mean, 95% t-interval, seeds won).",
        "",
        f"Teacher: held-out {100 * teacher['heldout']:.2f}, {task.reported} **{100 * teacher['dev']:.2f}**.",
        "",
    ]
    if getattr(options, "unlabelled_phrases", False):
        lines[-2:-2] = [
            "Unlabelled text (`--unlabelled_phrases`): the complete SST-2 training sentences apart from held-out "
            "(9,993), then the phrase rows of the teacher's data (each once, no labelled row), up to "
            "`--unlabelled` rows; ablations with `--max_unlabeled_samples N` read its first N rows.",
            "",
        ]
    if share := getattr(options, "minority_share", None):
        lines[-2:-2] = [
            f"Imbalanced (`--minority_share {share:g}`): the teacher's data, the students' labels and their unlabelled "
            f"text keep every negative and only the first positives, {100 * share:g}% of each file; held-out and dev "
            "are GLUE's (about half positive), so their accuracy weighs the minority class as much as the majority.",
            "",
        ]
    table_rows = {}
    for setting in settings:
        description = task.settings[setting].format(**counts)
        if getattr(options, "unlabelled_phrases", False):
            description = description.replace("unlabelled sentences", "unlabelled rows (sentences, then phrases)")
        lines += [
            f"## `{setting}`: {description}",
            "",
            f"| method | steps | lr | held-out | {task.reported} (mean ± std) | Δ {task.reported} vs no KD [95% CI] | won "
            "| rule | s / run | variants run |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        baseline = summary.get((setting, "normal"))
        base_dev = {r["seed"]: r["dev"] for r in baseline["runs"]} if baseline else {}
        for method in methods:
            cell = summary.get((setting, method))
            if cell is None:
                continue
            dev = [r["dev"] for r in cell["runs"]]
            wall = statistics.fmean(r["wall_seconds"] or 0.0 for r in cell["runs"])
            delta, won, rule = "", "", ""
            row = {"learning_rate": cell["learning_rate"], "heldout": cell["heldout"], "dev": statistics.fmean(dev)}
            row |= {"steps": cell["steps"], "seeds": [r["seed"] for r in cell["runs"]], "dev_runs": dev}
            row["dev_std"] = statistics.stdev(dev) if len(dev) > 1 else 0.0
            if method != "normal" and base_dev:
                paired = paired_differences({r["seed"]: r["dev"] for r in cell["runs"]}, base_dev)
                delta = f"{format_difference(paired)}"
                won = f"{paired['wins']}/{len(paired['seeds'])}"
                rule = verdict(paired)
                row["paired_difference"], row["verdict"] = paired, rule
                if cell["steps"] != baseline["steps"]:  # each at its own chosen budget: say so where they differ
                    rule += f" (no KD at {baseline['steps']:,} steps)"
            table_rows[f"{setting}/{method}"] = row
            # how many flag sets this method was screened over here (its defaults and each ablation): a method
            # looked at in 8 variants and one in 2 are not compared on equal terms
            variants = len({r["variant"] for r in runs if (r["setting"], r["method"]) == (setting, method)})
            lines.append(
                f"| {method} | {cell['steps']:,} | {cell['learning_rate']:g} | {100 * cell['heldout']:.2f} | "
                f"{100 * row['dev']:.2f} ± {100 * row['dev_std']:.2f} | {delta} | {won} | {rule} | {wall:.0f} "
                f"| {max(variants, 1)} |"
            )
        lines.append("")
    lines += budget_table(curves, counts)
    defaults_at = defaults_by_budget(
        runs, choose(with_shared_no_kd(defaults, shared), len(options.seeds)), len(options.seeds), shared
    )
    ablations = ablation_data(ablation_runs(runs), defaults_at, budgets[0], counts)
    lines += ablation_table(ablations, task.reported)
    lines += ledger_section(ledger or [])
    lines += [
        "## Every run",
        "",
        f"| setting | ablation | method | lr | seed | held-out | {task.reported} | wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['variant']} | {r['method']} | {r['learning_rate']:g} | {r['seed']} "
        f"| {100 * r['heldout']:.2f} | {100 * r['dev']:.2f} | {r['wall_seconds'] or 0:.0f} |"
        for r in runs
    ]
    results_md = Path(options.report)
    chart = results_md.parent / "quality_sst2.png" if results_md == DEFAULT_REPORT else results_md.with_suffix(".png")
    lines += ["", f"![methods]({chart.name})", ""]
    previous = results_md.read_text() if results_md.is_file() else ""
    analysis = previous[previous.index(ANALYSIS_MARKER) :] if ANALYSIS_MARKER in previous else ANALYSIS_MARKER + "\n"
    results_md.write_text("\n".join(lines) + "\n" + analysis)
    plot(
        chart_bars(table_rows, ablation_runs(runs)),
        teacher,
        len(options.seeds),
        chart,
        task.title,
    )
    data = {
        "task": task.title,
        "command": command,
        "teacher": teacher,
        "rows": table_rows,
        "budgets": {  # "setting/method" (the defaults), "setting/method/ablation"
            "/".join(filter(None, key)): {"points": c["points"], "chosen_steps": c["chosen"]["steps"]}
            for key, c in curves.items()
        },
        "counts": counts,  # the rows of each file, so a budget reads as passes (`passes`)
        "ablations": ablations,
        "runs": runs,
        "ledger": ledger or [],
    }
    results_md.with_suffix(".json").write_text(json.dumps(data, indent=1, default=float))
    return table_rows


def own_budget(flags: str) -> tuple[int | None, str]:
    """The step budget a variant's flags set (`--max_steps N`, read as run_glue_kd.py's argparse reads it: the last
    one wins; None: the benchmark's) and the rest of its flags, the recipe that budget was spent on."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--max_steps", type=int)
    known, rest = parser.parse_known_args(shlex.split(flags or ""))
    return known.max_steps, shlex.join(rest)


def is_budget(run: dict) -> bool:
    """A run of the method's defaults at a larger budget (`stepsN`, from --budgets) rather than an ablation."""
    steps, recipe = own_budget(run["flags"])
    return steps is not None and not recipe


def ablation_runs(runs: list[dict]) -> list[dict]:
    """The runs of ablations (their own flags, at any budget), not the defaults at any budget."""
    return [r for r in runs if r["variant"] and not is_budget(r)]


def defaults_by_budget(runs: list[dict], defaults: dict, n_seeds: int, shared: set[str]) -> dict:
    """The method's defaults at each budget they ran (None: the benchmark's), their learning rate chosen there:
    what an ablation at that budget is paired against, as it changes nothing else."""
    cells: dict[int | None, dict] = {None: defaults}
    for budget in sorted({own_budget(r["flags"])[0] for r in runs if r["variant"] and is_budget(r)}):
        at_budget = [r for r in runs if r["variant"] and is_budget(r) and own_budget(r["flags"])[0] == budget]
        cells[budget] = choose(with_shared_no_kd(at_budget, shared), n_seeds)
    return cells


def first_budget(setting: str, steps: int, counts: dict) -> int:
    """The steps a setting's runs at the benchmark's defaults take: `full` trains 1 epoch over its rows, the other
    settings `--steps`."""
    return math.ceil(counts["full"] / BATCH_SIZE) if setting == "full" else steps


def budget_curves(
    runs: list[dict], defaults: dict, budgets: list[int], n_seeds: int, shared: set[str], counts: dict
) -> dict:
    """Per (setting, method, ablation) with larger budgets run ("": the method's defaults, each ablation by its
    name at the benchmark's budget): held-out at each budget (its learning rate chosen there), each against the one
    before, paired by seed, and the chosen budget: the first whose next does not beat it (`hf_kd.report.selects`).
    No KD is chosen the same way; an ablation's cells need 2 seeds, as in its table."""
    if len(budgets) < 2:
        return {}
    by_recipe: dict[str, dict[int | None, list[dict]]] = {}  # recipe -> budget -> runs
    names = {"": ""}  # recipe -> the ablation's name at the benchmark's budget
    for run in runs:
        steps, recipe = own_budget(run["flags"])
        if not run["variant"] or (steps is None and not recipe) or (steps is not None and steps not in budgets[1:]):
            continue  # the defaults (given), a variant without flags, or a budget this report does not cover
        by_recipe.setdefault(recipe, {}).setdefault(steps, []).append(run)
        if steps is None:
            names.setdefault(recipe, run["variant"])
    curves = {}
    for recipe, name in names.items():
        cells = {budgets[0]: defaults} if not recipe else {}
        for steps, found in by_recipe.get(recipe, {}).items():
            cells[steps or budgets[0]] = choose(with_shared_no_kd(found, shared), n_seeds if not recipe else 2)
        for key, first in cells.get(budgets[0], {}).items():
            steps = first_budget(key[0], budgets[0], counts)
            chosen, before, stopped = first | {"steps": steps}, first, False
            points = [{"steps": steps, "heldout": first["heldout"], "verdict": ""}]
            for budget in budgets[1:]:
                cell = cells.get(budget, {}).get(key)
                if cell is None:
                    break
                paired = paired_differences(by_seed(cell, "heldout"), by_seed(before, "heldout"))
                points.append(
                    {"steps": budget, "heldout": cell["heldout"], "verdict": verdict(paired), "paired": paired}
                )
                stopped = stopped or not selects(paired)
                if not stopped:
                    chosen = cell | {"steps": budget}
                before = cell
            curves[(*key, name)] = {"points": points, "chosen": chosen}
    return curves


def still_rising(curve: dict) -> bool:
    """Whether a budget curve's largest budget still beat the one before: chosen because nothing larger ran, not
    because held-out stopped rising. The rule is applied to the paired numbers, as the claims blocks apply it."""
    last = curve["points"][-1]
    return "paired" in last and verdict(last["paired"]) == "beats"


def passes(steps: int, setting: str, method: str, counts: dict) -> float:
    """Passes over the rows a run reads: its labels, and the unlabelled text where it reads it (no KD never does)."""
    if setting == "full":
        rows = counts["full"]
    else:
        rows = counts["labelled"] + (counts["unlabelled"] if setting == "unlabelled" and method != "normal" else 0)
    return steps * BATCH_SIZE / rows


def budget_table(curves: dict, counts: dict) -> list[str]:
    if not curves:
        return []
    lines = [
        "## Budgets",
        "",
        "Each method's step budget is chosen on held-out, and so is each ablation's: the first whose next does not "
        "beat it (the 95% interval of the paired per-seed difference above 0, `hf_kd.report.verdict`); each budget's "
        "learning rate is chosen there. The tables above report each method's defaults at their chosen budget.",
        "",
        "| setting | method | ablation | held-out by steps (passes over its rows; rule against the budget before) "
        "| chosen |",
        "|---|---|---|---|---|",
    ]
    for (setting, method, ablation), curve in curves.items():
        if len(curve["points"]) < 2:  # run at one budget only: no curve, nothing chosen
            continue
        points = "; ".join(
            f"{p['steps']:,} ({passes(p['steps'], setting, method, counts):.1f}): {100 * p['heldout']:.2f}"
            + (f" ({p['verdict']})" if p["verdict"] else "")
            for p in curve["points"]
        )
        chosen = curve["chosen"]["steps"]
        rising = " (the largest run, still rising)" if still_rising(curve) else ""
        lines.append(
            f"| {setting} | {method} | {ablation} | {points} | {chosen:,} "
            f"({passes(chosen, setting, method, counts):.1f} passes)"
            f"{rising} |"
        )
    return [*lines, ""]


def ledger_section(entries: list[dict]) -> list[str]:
    """Every look at the reported set this benchmark's runs made, so a reader sees how often it was looked at."""
    if not entries:
        return []
    runs = {}
    for entry in entries:
        runs.setdefault(entry["set"], []).append(entry)
    lines = ["## Ledger: looks at the reported set", ""]
    for reported, looks in runs.items():
        dates = sorted(entry["date"] for entry in looks)
        decided = sorted({entry["decided"] for entry in looks})
        lines.append(
            f"- {reported}: {len(looks)} evaluations ({dates[0]} to {dates[-1]}), one per finished run and the "
            f"teacher; decided: {'; '.join(decided)}. The full list: `ledger.jsonl` in the output folder and "
            "this report's JSON."
        )
    return [*lines, ""]


def at_same_budget(defaults_at: dict, cell: dict, setting: str, method: str) -> dict | None:
    """`method`'s defaults in `setting` at the budget an ablation's cell ran (`defaults_by_budget`), or None."""
    return defaults_at.get(own_budget(cell["runs"][0]["flags"])[0], {}).get((setting, method))


def flag_pairs(recipe: str) -> set[tuple[str, str]]:
    """A recipe's flags as (name, value) pairs (`--x 1`, `--x=1`; a flag without a value pairs with "")."""
    tokens, pairs = shlex.split(recipe), set()
    for index, token in enumerate(tokens):
        if token.startswith("--"):
            name, equals, value = token.partition("=")
            follows = index + 1 < len(tokens) and not tokens[index + 1].startswith("--")
            pairs.add((name, value if equals else tokens[index + 1] if follows else ""))
    return pairs


def base_of(cells: dict, setting: str, method: str, variant: str, defaults_at: dict) -> tuple[str, dict | None]:
    """What an ablation is paired against: the ablation it extends (at the same budget, every flag of it among
    this one's, the most such flags; e.g. the labelled share plus augmented text against the share alone), else
    the method's defaults at its budget ("", None where they did not run), else, for a method that adds terms to
    KD (TinyBERT's layers, say), KD's run of the same ablation ("kd NAME"): what its own terms add."""
    budget, recipe = own_budget(cells[(setting, method, variant)]["runs"][0]["flags"])
    mine, extended = flag_pairs(recipe), []
    for (s, m, other), cell in cells.items():
        steps, theirs = own_budget(cell["runs"][0]["flags"])
        if (s, m, steps) == (setting, method, budget) and set() < flag_pairs(theirs) < mine:
            extended.append((len(flag_pairs(theirs)), other, cell))
    if extended:
        _, other, cell = max(extended, key=lambda found: found[0])
        return other, cell
    defaults = at_same_budget(defaults_at, cells[(setting, method, variant)], setting, method)
    if defaults is None and method not in ("normal", "kd") and (setting, "kd", variant) in cells:
        # run without its defaults: a method that adds its own terms to KD against KD with the same flags
        return f"kd {variant}", cells[(setting, "kd", variant)]
    return "", defaults


def ablation_data(runs: list[dict], defaults_at: dict, steps: int, counts: dict) -> list[dict]:
    """Each ablation against what it extends at the same budget (`base_of`) on held-out, paired by seed, with the
    rule's verdict (the reported set's difference beside it, for the record); its reported set once, against no
    KD at the same budget."""
    import statistics

    data = []
    cells = ablation_cells(runs)
    for (setting, method, variant), cell in cells.items():
        against, base = base_of(cells, setting, method, variant, defaults_at)
        paired = None if base is None else paired_differences(by_seed(cell, "heldout"), by_seed(base, "heldout"))
        no_kd = at_same_budget(defaults_at, cell, setting, "normal")
        reported = [r["dev"] for r in cell["runs"]]
        shared = set(paired["seeds"]) if paired else set()  # both held-out means over the seeds they share
        data.append(
            {
                "setting": setting,
                "method": method,
                "ablation": variant,
                "flags": cell["runs"][0]["flags"],
                "steps": own_budget(cell["runs"][0]["flags"])[0] or first_budget(setting, steps, counts),
                "learning_rate": cell["learning_rate"],
                "heldout": cell["heldout"],
                "against": against,  # "": the method's defaults at the same budget
                "heldout_vs_base": paired,
                "means_on_shared_seeds": None
                if base is None
                else [
                    statistics.fmean(r["heldout"] for r in side["runs"] if r["seed"] in shared) for side in (base, cell)
                ],
                "verdict": None if paired is None else verdict(paired),
                "selected": paired is not None and selects(paired),
                # the reported set, for the record: its mean, against the base and against no KD at the same budget
                "dev": statistics.fmean(reported),
                "dev_std": statistics.stdev(reported) if len(reported) > 1 else 0.0,
                "dev_vs_base": None if base is None else paired_differences(by_seed(cell, "dev"), by_seed(base, "dev")),
                "dev_vs_no_kd": None
                if no_kd is None or method == "normal"
                else paired_differences(by_seed(cell, "dev"), by_seed(no_kd, "dev")),
            }
        )
    return data


def teacher_data(options, counts: dict, task: Task) -> str:
    if getattr(options, "teacher_per_class", None):
        return (
            f"the first {options.teacher_per_class} {task.title} training examples of each class only"
            f"{', then cut as below' if getattr(options, 'minority_share', None) else ''} (a weak teacher: "
            f"{counts.get('teacher', 0):,} examples, all among the students' labelled ones)"
        )
    return f"every {task.title} training example but the held-out ones ({counts['full']:,})"


def by_seed(cell: dict, key: str) -> dict[int, float]:
    return {r["seed"]: r[key] for r in cell["runs"]}


def format_difference(paired: dict) -> str:
    """`+1.64 [+0.77, +2.51]`: a paired difference in points with its 95% interval."""
    if len(paired["seeds"]) < 2:  # no interval from one seed
        return f"{100 * paired['mean']:+.2f}"
    return f"{100 * paired['mean']:+.2f} [{100 * paired['low']:+.2f}, {100 * paired['high']:+.2f}]"


def ablation_cells(runs: list[dict]) -> dict[tuple[str, str, str], dict]:
    """Per (setting, method, ablation): the learning rate `choose` picks, from 2 seeds on (a paired lead)."""
    cells = {}
    for variant in sorted({r["variant"] for r in runs if r["variant"]}):
        chosen = choose([r for r in runs if r["variant"] == variant], 2)
        cells |= {(setting, method, variant): cell for (setting, method), cell in chosen.items()}
    return cells


def ablation_table(ablations: list[dict], reported: str = "dev") -> list[str]:
    """`ablation_data` as a table: each ablation against what it extends at the same budget, paired by seed on
    held-out (where choices are made); the reported set is shown for the record, not for choosing."""
    rows = []
    for row in ablations:
        named = f"{row['setting']} | {row['method']} | {row['ablation']} | `{row['flags']}` | {row['against'] or 'defaults'}"
        versus = row["dev_vs_no_kd"]
        against_no_kd = (
            "" if versus is None else f"{format_difference(versus)} ({versus['wins']}/{len(versus['seeds'])})"
        )
        paired = row["heldout_vs_base"]
        if paired is None:  # remedies run without the method's defaults: still compared with no KD
            rows.append(f"| {named} | not run | {100 * row['heldout']:.2f} | | | | {against_no_kd} |")
            continue
        base_mean, mean = row["means_on_shared_seeds"]
        rows.append(
            f"| {named} | {100 * base_mean:.2f} | {100 * mean:.2f} | {format_difference(paired)} "
            f"| {paired['wins']}/{len(paired['seeds'])} | {100 * row['dev_vs_base']['mean']:+.2f} | {against_no_kd} |"
        )
    if not rows:
        return []
    return [
        "## Ablations",
        "",
        "Each ablation (`--ablation NAME=FLAGS`) adds its flags to the method's defaults and changes nothing else. "
        "Δ is paired by seed against what it extends at the same step budget (`against`: the ablation whose flags "
        "it has plus its own, else the method's defaults, else, for a method run without its defaults, KD with the "
        "same flags, `kd NAME`; `not run` where none ran), on held-out, where "
        f"choices are made; Δ {reported} is shown for the record, and so is the ablation's {reported} against no KD "
        "at the same budget (paired, 95% interval, seeds won). `won` counts the seeds (at least 2; the interval "
        "needs 3 to mean much).",
        "",
        "| setting | method | ablation | flags | against | held-out, against | held-out, ablation | Δ held-out [95% CI] "
        f"| won | Δ {reported} | {reported} vs no KD [95% CI] (won) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def chart_bars(table_rows: dict[str, dict], runs: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """The chart's bars, label -> setting -> (dev mean, std) in points: each method's chosen default, then
    its ablations (`kd · s8000`), so a report made of ablations shows them, not no KD alone."""
    import statistics

    cells: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for key, row in table_rows.items():
        setting, method = key.split("/")
        cells.setdefault((method, ""), {})[setting] = (100 * row["dev"], 100 * row["dev_std"])
    for (setting, method, variant), cell in ablation_cells(runs).items():
        dev = [100 * r["dev"] for r in cell["runs"]]
        cells.setdefault((method, variant), {})[setting] = (statistics.fmean(dev), statistics.stdev(dev))
    order = sorted(cells, key=lambda key: (METHODS.index(key[0]), key[1]))
    return {" · ".join(filter(None, key)): cells[key] for key in order}


def plot(
    bars: dict[str, dict[str, tuple[float, float]]],
    teacher: dict,
    n_seeds: int,
    path: Path,
    title: str = "SST-2",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in SETTINGS if any(s in cells for cells in bars.values())]  # one colour each
    figure, axis = plt.subplots(figsize=(max(9, 1.1 * len(bars)), 4.5))
    width = 0.8 / max(len(settings), 1)
    for i, setting in enumerate(settings):
        shown = [(j, cells[setting]) for j, cells in enumerate(bars.values()) if setting in cells]
        axis.bar(
            [j + (i - (len(settings) - 1) / 2) * width for j, _ in shown],
            [mean for _, (mean, _) in shown],
            width,
            yerr=[std for _, (_, std) in shown],
            capsize=4,
            label=setting,
        )
    axis.axhline(100 * teacher["dev"], color="#C44E52", linestyle="--", label="teacher")
    low = min((mean - std for cells in bars.values() for mean, std in cells.values()), default=70)
    axis.set_ylim(low - 3, 100 * teacher["dev"] + 2)
    axis.set_xticks(range(len(bars)), [label.replace(" · ", "\n") for label in bars], fontsize=8)
    axis.set(ylabel=f"{title} accuracy, reported split (%)", title=f"{n_seeds} seeds (mean ± std)")
    axis.legend(ncol=len(settings) + 1, fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
