#!/usr/bin/env python
"""The numbers README.md and docs/RECIPES.md state, generated from the quality reports' JSON.

    python benchmarks/claims.py           # rewrite every claims block from the reports
    python benchmarks/claims.py --check   # exit 1 naming each block that differs (tests/test_claims.py)

A block sits between `<!-- claims:NAME -->` and `<!-- /claims:NAME -->`. Its numbers and verdict words come
from a report's JSON (`benchmarks/quality/report.py` writes it beside the Markdown) through the one
selection rule (`hf_kd.report.verdict`, applied here to the paired numbers, never read back from a report, so
a block follows the rule as it is today): a configuration "beats" its baseline only when the paired 95%
interval is above 0 over at least three seeds, and only such a configuration is listed as a recommendation.
Prose outside the blocks cites them and adds no number.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONE = "1 thread, batch 1"
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "RECIPES.md", ROOT / "benchmarks" / "README.md")
BLOCK = re.compile(r"<!-- claims:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /claims:(?P=name) -->", re.S)


def points(value: float) -> str:
    return f"{100 * value:.2f}"


def interval(paired: dict) -> str:
    """`+1.64 [+0.77, +2.51], 3/3`: a paired difference in points, its 95% interval and the seeds won."""
    text = f"{100 * paired['mean']:+.2f}"
    if len(paired["seeds"]) > 1:
        text += f" [{100 * paired['low']:+.2f}, {100 * paired['high']:+.2f}]"
    return f"{text}, {paired['wins']}/{len(paired['seeds'])}"


def headline_table(data: dict) -> str:
    """Every configuration of a report at its chosen budget: held-out (where choices are made), the reported set
    once (mean ± std over seeds), and the paired difference to no KD with the rule's word."""
    from hf_kd.report import verdict

    lines = [
        f"{data['task']}, teacher {points(data['teacher']['dev'])} on the reported set "
        f"(held-out {points(data['teacher']['heldout'])}):",
        "",
        "| setting | method | steps | seeds | held-out | reported (mean ± std) | Δ vs no KD [95% CI], won | rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, row in data["rows"].items():
        setting, method = key.split("/")
        paired = row.get("paired_difference")
        difference = "" if paired is None else interval(paired)
        rule = "" if paired is None else verdict(paired)
        lines.append(
            f"| {setting} | {method} | {row['steps']:,} | {len(row['seeds'])} | {points(row['heldout'])} "
            f"| {points(row['dev'])} ± {points(row['dev_std'])} | {difference} | {rule} |"
        )
    return "\n".join(lines)


def recommendations(data: dict) -> str:
    """The configurations the rule selects over no KD, best reported first; the rest are named as leans or ties."""
    from hf_kd.report import verdict

    chosen, others = [], []
    for key, row in data["rows"].items():
        paired = row.get("paired_difference")
        if paired is None:
            continue
        line = f"`{key}` at {row['steps']:,} steps: {interval(paired)} over no KD"
        (chosen if verdict(paired) == "beats" else others).append((row["dev"], f"{line} ({verdict(paired)})"))
    lines = [f"- {text}" for _, text in sorted(chosen, reverse=True)] or ["- none: no configuration beats no KD"]
    if others:
        lines.append("- not recommended (the rule did not select them): " + "; ".join(t for _, t in sorted(others)))
    return "\n".join(lines)


def budget_curves_table(data: dict) -> str:
    """Each configuration's held-out accuracy at every step budget it ran (in passes over the rows it reads where
    the report has their counts), each against the budget before by the rule, and the budget the rule chose: the
    first whose next does not beat it."""
    from benchmarks.quality.report import passes, still_rising
    from hf_kd.report import verdict

    counts = data.get("counts")
    flags = {row["ablation"]: row["flags"] for row in data.get("ablations", [])}  # each ablation at its own budget
    lines = [
        "| setting | method | held-out by steps (passes over its rows; Δ and rule against the budget before) | chosen |",
        "|---|---|---|---:|",
    ]
    for key, curve in data["budgets"].items():
        if len(curve["points"]) < 2:  # run at one budget only: no curve, nothing chosen
            continue
        if key == "unlabelled/normal" and "few_labels/normal" in data["budgets"]:  # the same runs (no KD's shared)
            continue
        setting, method, *ablation = key.split("/")
        cells = []
        for point in curve["points"]:
            ran = f"{point['steps']:,}" + (
                f" ({passes(point['steps'], setting, method, counts):.1f})" if counts else ""
            )
            against = f" ({interval(point['paired'])}, {verdict(point['paired'])})" if point.get("paired") else ""
            cells.append(f"{ran}: {points(point['heldout'])}{against}")
        chosen = f"{curve['chosen_steps']:,}" + (" (the largest run, still rising)" if still_rising(curve) else "")
        named = f"{method} + {ablation[0]} (`{flags[ablation[0]]}`)" if ablation else method
        lines.append(f"| {setting} | {named} | {'; '.join(cells)} | {chosen} |")
    return "\n".join(lines)


def ablations_table(data: dict) -> str:
    """Each ablation against what it extends at the same budget (another ablation whose flags it adds to, else the
    method's defaults), on held-out with the rule's word (where choices are made); the reported set once, against
    no KD at the same budget."""
    from hf_kd.report import verdict

    lines = [
        f"{data['task']}, teacher {points(data['teacher']['dev'])} on the reported set:",
        "",
        "| setting | method | ablation | steps | against (same steps) | held-out | Δ held-out [95% CI], won | rule "
        "| reported (mean ± std) | vs no KD at its steps |",
        "|---|---|---|---:|---|---:|---|---|---:|---|",
    ]
    for row in data["ablations"]:
        paired, versus = row["heldout_vs_base"], row["dev_vs_no_kd"]
        lines.append(
            f"| {row['setting']} | {row['method']} | {row['ablation']} (`{row['flags']}`) | {row['steps']:,} "
            f"| {row['against'] or 'defaults'}{'' if paired else ' (not run)'} | {points(row['heldout'])} "
            f"| {interval(paired) if paired else ''} | {verdict(paired) if paired else ''} "
            f"| {points(row['dev'])} ± {points(row['dev_std'])} | {f'{interval(versus)}, {verdict(versus)}' if versus else ''} |"
        )
    return "\n".join(lines)


def budgets_and_rows_table(data: dict) -> str:
    """A report with step budgets: every configuration at its chosen budget, then the curves that chose it."""
    return headline_table(data) + "\n\n" + budget_curves_table(data)


def export_table(data: dict) -> str:
    """Per student (benchmarks/export_students.py): PyTorch, ONNX fp32 and int8 side by side with the teacher,
    the metric and agreement on the validation rows, CPU latency and its ratios, measured in one process."""
    from hf_kd.footprint import all_threads_column

    lines = [
        f"Measured on {data['machine']} in one process (ratios compare like with like):",
        "",
        "| student | model | metric | same label as PyTorch | largest logit difference | size on disk "
        "| ms / sentence, 1 thread, batch 1 | all threads, batch 32 | faster than PyTorch student "
        "(1 thread, batch 1) | faster than the teacher (1 thread, batch 1 / all, 32) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, student in data["students"].items():
        checks, times = student["agreement"], student["latency_ms_per_sentence"]
        one = ONE
        many = all_threads_column(times["pytorch student"])
        for model in ("pytorch teacher", "pytorch student", "onnx fp32", "onnx int8"):
            if model not in times:
                continue
            row = checks.get("pytorch" if model == "pytorch student" else model, {})
            metric = f"{checks['metric']} {points(row[checks['metric']])}" if row else ""
            same = f"{100 * row['agreement']:.2f}%" if row.get("agreement") is not None else ""
            largest = f"{row['max_logit_difference']:.1g}" if "max_logit_difference" in row else ""
            ratio = times["pytorch student"][one] / times[model][one]
            teacher = times.get("pytorch teacher")
            against_teacher = (
                f"{teacher[one] / times[model][one]:.1f}x / {teacher[many] / times[model][many]:.1f}x"
                if teacher
                else ""
            )
            lines.append(
                f"| {name} ({checks['rows']:,} rows) | {model} | {metric} | {same} | {largest} "
                f"| {student['size_on_disk_mb'][model]:.1f} MB | {times[model][one]:.2f} | {times[model][many]:.2f} "
                f"| {ratio:.1f}x | {against_teacher} |"
            )
    return "\n".join(lines)


def mean_std(values: list[float]) -> str:
    """`76.30 ± 0.61` in points (the sample std; a single value alone)."""
    text = f"{100 * statistics.fmean(values):.2f}"
    return text + (f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else "")


def ladder_table(data: dict) -> str:
    """The ladder (benchmarks/ladder.py): each size's accuracy beside what shipping it costs, the teacher's gap it
    leaves, and each step up worded by the selection rule on held-out."""
    from hf_kd.report import verdict

    teacher = data["teacher"]
    reported = data["reported"]
    lines = [
        f"{data['task']}, setting `{data['setting']}`, method `{data['method']}`"
        + (f" with `{data['flags']}`" if data.get("variant") else "")
        + f", one teacher (held-out "
        f"{points(teacher['heldout'])}, {reported} {points(teacher['dev'])}); measured on {data['machine']}; latency "
        "and size of the first seed's student unless a line below names another, the teacher timed in the same call.",
        "",
        f"| layers of MiniLM's 6 | seeds | held-out | {reported} (mean ± std) | vs no KD of its size and steps ({reported}) "
        "| share of the no KD-teacher gap closed | step up vs the size below (held-out) | size on disk, PyTorch / int8 "
        "| ms / sentence, 1 thread, batch 1: PyTorch / int8 | int8 faster than the teacher | int8 same label |",
        "|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for size, point in data["students"].items():
        kd = list(point["reported"].values())
        versus = share = step = ""
        if "versus_no_kd" in point:
            against = point["versus_no_kd"]
            versus = f"{interval(against['paired'])}, {verdict(against['paired'])}"
            share = f"{100 * against['gap_closed']:.0f}%"
        if "over_smaller" in point:
            above = point["over_smaller"]
            step = f"{interval(above['paired'])}, {verdict(above['paired'])} {above['size']} layers"
        shipped = times = faster = same = ""
        if "latency_ms_per_sentence" in point:
            ms = point["latency_ms_per_sentence"]
            disk = point["size_on_disk_mb"]
            shipped = f"{disk['pytorch student']:.1f} / {disk['onnx int8']:.1f} MB"
            times = f"{ms['pytorch student'][ONE]:.2f} / {ms['onnx int8'][ONE]:.2f}"
            faster = f"{ms['pytorch teacher'][ONE] / ms['onnx int8'][ONE]:.1f}x"
            if point.get("agreement"):
                same = f"{100 * point['agreement']['onnx int8']['agreement']:.2f}%"
        lines.append(
            f"| {size} ({', '.join(map(str, point['layers']))}) | {len(kd)} | "
            f"{points(statistics.fmean(point['heldout'].values()))} | {mean_std(kd)} | {versus} | {share} | {step} "
            f"| {shipped} | {times} | {faster} | {same} |"
        )
    measured_before = {  # rows (or their timings) another call of ladder.py measured, each said under the table
        "carried": "as an earlier run of `ladder.py` measured them (their runs are not in this output folder, and "
        "the records keep no model to export); each step up is paired again, and their milliseconds are that call's",
        "timed_earlier": "exported and timed by an earlier run of `ladder.py` (the exported run's model is not in "
        "this output folder; its findings were kept)",
    }
    for marker, how in measured_before.items():
        if sizes := [size for size, point in data["students"].items() if point.get(marker)]:
            lines += ["", f"{' and '.join(sizes)} layers: {how}: across rows compare the speed against the teacher, "
                      "timed in each call."]  # fmt: skip
    for size, point in data["students"].items():
        if "exported_seed" in point and str(point["exported_seed"]) != str(min(map(int, point["reported"]))):
            lines += ["", f"{size} layers: seed {point['exported_seed']}'s student exported and timed, the first "
                      "seed's model not being in this output folder."]  # fmt: skip
    for size, point in data["students"].items():
        if shorter := point.get("over_benchmark_budget"):
            name = f"`{shorter['variant']}`" if shorter["variant"] else "the defaults"
            lines += [
                "",
                f"{size} layers, these steps against the same flags at the benchmark's budget ({name}), paired on "
                f"held-out: {interval(shorter['paired'])}, {verdict(shorter['paired'])}.",
            ]
    return "\n".join(lines)


def teacher_pass_table(data: dict) -> str:
    """The sharded teacher pass, read in place (benchmarks/teacher_pass.py) against issue 50's targets, and the
    disk a large pass needs from the measured bytes per row."""
    from hf_kd.memory import RELEASE_INTERVAL

    sizes = sorted(data["sizes"].items(), key=lambda item: int(item[0]))
    smallest = sizes[0][1]["rss"]
    lines = [
        f"Measured on {data['machine']}: a tiny teacher (4 layers x 64), RAIL-KD features, one thread per process.",
        "",
        "| transfer rows | cache on disk | pass, 1 process | pass, 2 processes | 2 / 1 (target <= 0.6) "
        "| training peak RSS (target <= 1.2x) | of it anonymous | cache files' pages | Arrow files' pages |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, entry in sizes:
        rss = entry["rss"]
        ratios = {name: rss[name] / smallest[name] for name in ("VmRSS", "RssAnon")}
        lines.append(
            f"| {int(count):,} | {entry['cache_mb']:,.0f} MB | {entry['pass_1']:.1f} s | {entry['pass_2']:.1f} s | "
            f"{entry['pass_2'] / entry['pass_1']:.2f} | {rss['VmRSS']:.0f} MB ({ratios['VmRSS']:.2f}x) | "
            f"{rss['RssAnon']:.0f} MB ({ratios['RssAnon']:.2f}x) | {rss['cache files']:.1f} MB | "
            f"{rss['Arrow files']:.0f} MB |"
        )
    (_, low), (_, high) = sizes[0], sizes[-1]
    total, anonymous = (high["rss"][name] / low["rss"][name] for name in ("VmRSS", "RssAnon"))
    lines += [
        "",
        f"From {int(sizes[0][0]):,} to {int(sizes[-1][0]):,} rows the pass with 2 processes takes "
        f"{max(entry['pass_2'] / entry['pass_1'] for _, entry in sizes):.2f}x or less the time with 1; the cache's files "
        f"put {max(entry['rss']['cache files'] for _, entry in sizes):.1f} MB into a training process's resident memory "
        f"and its anonymous memory grows {anonymous:.2f}x; the total grows {total:.2f}x"
        + (", past the 1.2x aimed for." if total > 1.2 else " (target <= 1.2x).")
        + f" Of datasets' memory-mapped tokenised text, at most {high['rss']['Arrow files']:.0f} MB of pages were "
        "resident at once: the run lets go of them between steps (`hf_kd.memory`).",
    ]
    step = data["step"]
    ratio = step["from the shards"] / step["in memory"]
    release = step["release"]
    extra = release["released every batch"] - release["kept"]
    lines += [
        "",
        f"The RAIL-KD step reading {int(step['rows']):,} cached rows from the shards: {step['from the shards'] * 1000:.1f} "
        f"ms, reading an in-memory copy: {step['in memory'] * 1000:.1f} ms ({ratio:.3f}x; target <= 1.05). "
        f"Letting go of the data's pages after a batch adds {extra * 1000:.2f} ms to the DataLoader's "
        f"{release['kept'] * 1000:.2f} ms a batch ({extra / step['from the shards']:.1%} of the step); a run does it at "
        f"most every {RELEASE_INTERVAL} s. "
        f"The same cache stored in float16 moves the step's loss by at most {step['float16_loss_difference']:.1e} "
        f"of its value over 40 batches (the same dropout masks).",
        "",
        "| bytes a row on disk | float32 | float16 |",
        "|---|---:|---:|",
    ]
    for what, entry in data["bytes_per_row"].items():
        lines.append(f"| {what} | {entry['float32']:,.0f} | {entry['float16']:,.0f} |")
    rail = next(entry for what, entry in data["bytes_per_row"].items() if "RAIL" in what)
    formula = 4 * (2 + 4 * 64)  # float32 logits of 2 labels and 4 pooled layers of 64
    large = 4 * (2 + 24 * 1024)  # RoBERTa-large: 24 layers of 1,024
    lines += [
        "",
        f"On paper: a row stores its logits and each pooled teacher layer, 4 bytes a value in float32: "
        f"4 x (2 + 4 x 64) = {formula:,} B for the tiny teacher, against {rail['float32']:,.0f} B measured ("
        f"plus 128 B of `.npy` header a file). A RoBERTa-large teacher (24 layers of 1,024) with RAIL-KD / CILDA+minILD "
        f"features: {large:,} B a row, so 10M sentences take {large * 10**7 / 1e9:,.0f} GB in float32 and "
        f"{large * 10**7 / 2e9:,.0f} GB in float16 on the shared disk (KD's logits alone: 80 MB), written as "
        f"{-(-(10**7) // 8192):,} shards, 1/8 of them by each of 8 GPUs, and never loaded whole by any process. "
        "Its time is the teacher's forward over 10M rows divided by 8: measure one GPU's rate with "
        "`python -m hf_kd.teacher_pass` on a slice (`--max_unlabeled_samples`; it prints the pass's seconds).",
    ]
    return "\n".join(lines)


def masked_lm_table(data: dict) -> str:
    """`hf_kd.masked_lm`'s check before and after fitting: how often a masked word of a text training never saw
    is among the masked LM's top candidates, the share augment's rewrites depend on."""
    before, after = data["before"], data["after"]
    return "\n".join(
        [
            "| masked LM | fitted on | steps | texts checked (never trained on) | masked word in its top "
            f"{data['top_k']}: before | after |",
            "|---|---:|---:|---:|---:|---:|",
            f"| {data['masked_lm']} | {data['texts_trained']:,} texts | {data['max_steps']:,} | {after['checked']:,} "
            f"| {before['found']:,} ({100 * before['found'] / before['checked']:.1f}%) "
            f"| {after['found']:,} ({100 * after['found'] / after['checked']:.1f}%) |",
        ]
    )


# name -> (report JSON, renderer); a block whose report is missing is left as it is and named by --check
RENDERERS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "headline-sst2": ("benchmarks/RESULTS_headline_sst2.json", headline_table),
    "headline-banking77": ("benchmarks/RESULTS_headline_banking77.json", headline_table),
    "recommend-sst2": ("benchmarks/RESULTS_headline_sst2.json", recommendations),
    "recommend-banking77": ("benchmarks/RESULTS_headline_banking77.json", recommendations),
    "export": ("benchmarks/RESULTS_export.json", export_table),
    "teacher_pass": ("benchmarks/RESULTS_teacher_pass.json", teacher_pass_table),
    "ladder-banking77": ("benchmarks/RESULTS_ladder_banking77.json", ladder_table),
    "ladder-banking77-share50": ("benchmarks/RESULTS_ladder_banking77_share50.json", ladder_table),
    "budgets-banking77": ("benchmarks/RESULTS_budgets_banking77.json", budget_curves_table),
    "ablations-banking77": ("benchmarks/RESULTS_budgets_banking77.json", ablations_table),
    "ladder-banking77-share50-steps3000": ("benchmarks/RESULTS_ladder_banking77_share50_steps3000.json", ladder_table),
    "ceiling-banking77": ("benchmarks/RESULTS_ceiling_banking77.json", budgets_and_rows_table),
    "masked-lm-banking77": ("benchmarks/RESULTS_masked_lm_banking77.json", masked_lm_table),
    "augment-banking77": ("benchmarks/RESULTS_augment_banking77.json", ablations_table),
    "levers-banking77": ("benchmarks/RESULTS_levers_banking77.json", ablations_table),
}


def render(name: str, root: Path = ROOT) -> str | None:
    """A block's body from its report, or None when the report is not there yet."""
    report, renderer = RENDERERS[name]
    path = root / report
    if not path.is_file():
        return None
    return renderer(json.loads(path.read_text())) + "\n"


def rewrite(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """`text` with every block regenerated, and the names of the blocks that changed or cannot be made."""
    changed: list[str] = []

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            changed.append(f"{name} (unknown block)")
            return match[0]
        body = render(name, root)
        if body is None:
            changed.append(f"{name} (its report {RENDERERS[name][0]} is missing)")
            return match[0]
        if body != match["body"]:
            changed.append(name)
        return f"<!-- claims:{name} -->\n{body}<!-- /claims:{name} -->"

    return BLOCK.sub(fill, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs")
    options = parser.parse_args(argv)
    stale = []
    for document in DOCUMENTS:
        text, changed = rewrite(document.read_text())
        stale += [f"{document.relative_to(ROOT)}: {name}" for name in changed]
        if not options.check and changed:
            document.write_text(text)
    if stale:
        print(("differs: " if options.check else "rewritten: ") + "; ".join(stale))
    return 1 if options.check and stale else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
