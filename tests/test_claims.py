"""The numbers of README.md and docs/RECIPES.md come from the reports: every claims block is what
benchmarks/claims.py writes from its report, and the rule's words follow the intervals."""

from __future__ import annotations

import json

from benchmarks import claims
from hf_kd.report import paired_differences
from tests.conftest import ROOT


def test_every_claims_block_in_the_docs_is_what_the_reports_give():
    for document in claims.DOCUMENTS:
        _, changed = claims.rewrite(document.read_text())
        assert changed == [], f"{document.name}: {changed} (run python benchmarks/claims.py)"


def report_data() -> dict:
    no_kd = {42: 0.78, 43: 0.80, 44: 0.77}
    kd = {42: 0.82, 43: 0.84, 44: 0.82}  # +4, +4, +5: beats
    mate = {42: 0.79, 43: 0.82, 44: 0.78}  # +1, +2, +1: leans above (the interval crosses 0)
    row = lambda dev, steps: {  # noqa: E731
        "steps": steps,
        "seeds": list(dev),
        "heldout": 0.8,
        "dev": sum(dev.values()) / 3,
        "dev_std": 0.01,
    }
    return {
        "task": "SST-2",
        "teacher": {"heldout": 0.88, "dev": 0.883},
        "rows": {
            "few_labels/normal": row(no_kd, 1000),
            "unlabelled/kd": row(kd, 4000) | {"paired_difference": paired_differences(kd, no_kd)},
            "unlabelled/mate_kd": row(mate, 2000) | {"paired_difference": paired_differences(mate, no_kd)},
        },
    }


def test_blocks_are_rendered_from_a_report_with_the_rules_words(tmp_path):
    report = tmp_path / "benchmarks" / "RESULTS_headline_sst2.json"
    report.parent.mkdir()
    report.write_text(json.dumps(report_data()))
    text = "a\n<!-- claims:headline-sst2 -->\nold\n<!-- /claims:headline-sst2 -->\n<!-- claims:recommend-sst2 -->\n"
    text += "<!-- /claims:recommend-sst2 -->\nb\n"
    rewritten, changed = claims.rewrite(text, tmp_path)
    assert changed == ["headline-sst2", "recommend-sst2"]
    assert "| unlabelled | kd | 4,000 | 3 | 80.00 | 82.67 ± 1.00 | +4.33 [+2.90, +5.77], 3/3 | beats |" in rewritten
    assert (
        "| unlabelled | mate_kd | 2,000 | 3 | 80.00 | 79.67 ± 1.00 | +1.33 [" in rewritten
        and "| leans above |" in rewritten
    )
    assert "- `unlabelled/kd` at 4,000 steps: +4.33 [+2.90, +5.77], 3/3 over no KD (beats)" in rewritten
    assert "not recommended (the rule did not select them): `unlabelled/mate_kd`" in rewritten
    assert claims.rewrite(rewritten, tmp_path) == (rewritten, [])  # regenerated: nothing changes
    missing, changed = claims.rewrite(text.replace("sst2", "banking77"), tmp_path)
    assert missing == text.replace("sst2", "banking77") and "is missing" in changed[0]


def test_the_check_command_fails_on_a_stale_block(tmp_path, monkeypatch, capsys):
    document = tmp_path / "DOC.md"
    document.write_text("<!-- claims:nope -->\nx\n<!-- /claims:nope -->\n")
    monkeypatch.setattr(claims, "DOCUMENTS", (document,))
    monkeypatch.setattr(claims, "ROOT", tmp_path)
    assert claims.main(["--check"]) == 1 and "nope (unknown block)" in capsys.readouterr().out
    assert ROOT.is_dir()


def test_the_export_table_gives_each_models_checks_and_speed_ratios():
    columns = ("1 thread, batch 1", "1 thread, batch 32", "2 threads, batch 1", "2 threads, batch 32")
    times = {"pytorch teacher": (8.0, 4.0, 6.0, 2.4), "pytorch student": (2.0, 1.0, 1.5, 0.6)}
    times |= {"onnx fp32": (1.0, 0.8, 0.8, 0.5), "onnx int8": (0.5, 0.4, 0.4, 0.3)}
    student = {
        "agreement": {
            "metric": "accuracy",
            "rows": 872,
            "pytorch": {"accuracy": 0.7959},
            "onnx fp32": {"accuracy": 0.7959, "agreement": 1.0, "max_logit_difference": 2e-6},
            "onnx int8": {"accuracy": 0.7936, "agreement": 0.9908, "max_logit_difference": 0.12},
        },
        "latency_ms_per_sentence": {model: dict(zip(columns, row, strict=True)) for model, row in times.items()},
        "size_on_disk_mb": {"pytorch teacher": 86.7, "pytorch student": 59.6, "onnx fp32": 59.7, "onnx int8": 15.1},
    }
    table = claims.export_table({"machine": "x86_64, 2 cores", "students": {"SST-2 demo": student}})
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| SST-2 demo")}
    assert rows["onnx int8"] == (
        "| SST-2 demo (872 rows) | onnx int8 | accuracy 79.36 | 99.08% | 0.1 | 15.1 MB | 0.50 | 0.30 | 4.0x | 16.0x / 8.0x |"
    )
    assert rows["pytorch teacher"].endswith("| 86.7 MB | 8.00 | 2.40 | 0.2x | 1.0x / 1.0x |")
    assert rows["onnx fp32"].split(" | ")[2:5] == ["accuracy 79.59", "100.00%", "2e-06"]


def test_the_budget_curves_give_passes_each_step_by_the_rule_and_the_chosen_budget():
    """A curve 275 -> 1,000 -> 3,000 steps over 8,800 labelled rows: passes are steps x 32 / 8,800, each budget is
    worded against the one before, and the chosen budget is the curve's."""
    before, longer, longest = (
        {42: 0.40, 43: 0.42, 44: 0.41},
        {42: 0.80, 43: 0.83, 44: 0.815},
        {42: 0.81, 43: 0.82, 44: 0.815},
    )
    up, flat = paired_differences(longer, before), paired_differences(longest, longer)
    data = report_data()
    data["rows"] = {"full/normal": data["rows"]["few_labels/normal"] | {"steps": 1000}}
    data["counts"] = {"full": 8800, "labelled": 770, "unlabelled": 8000}
    data["budgets"] = {
        "full/normal": {
            "points": [
                {"steps": 275, "heldout": 0.41, "verdict": ""},
                {"steps": 1000, "heldout": 0.815, "verdict": "beats", "paired": up},
                {"steps": 3000, "heldout": 0.815, "verdict": "ties", "paired": flat},
            ],
            "chosen_steps": 1000,
        }
    }
    data["budgets"]["full/kd"] = {"points": [{"steps": 275, "heldout": 0.5, "verdict": ""}]}  # one budget: no curve
    data["budgets"] = {"few_labels/normal": data["budgets"]["full/normal"]} | data["budgets"]
    data["rows"]["few_labels/normal"] = data["rows"]["full/normal"]
    data["budgets"]["unlabelled/normal"] = data["budgets"]["few_labels/normal"]  # no KD's shared runs: shown once
    assert (
        sum(line.startswith("| few_labels | normal |") for line in claims.budget_curves_table(data).splitlines()) == 1
    )
    assert "| unlabelled |" not in claims.budget_curves_table(data)
    rising = claims.budget_curves_table(data).splitlines()[2]  # few_labels: its curve ends on "ties" here
    assert rising.endswith("| 1,000 |")
    data["budgets"]["few_labels/normal"] = {
        "points": data["budgets"]["full/normal"]["points"][:2],
        "chosen_steps": 1000,
    }
    assert claims.budget_curves_table(data).splitlines()[2].endswith("| 1,000 (the largest run, still rising) |")
    row = claims.budgets_and_rows_table(data).splitlines()[-1]
    # by hand: t(0.975, 2 df) = 4.3027; differences (0.40, 0.41, 0.405): 40.5 +- 4.3027 x 0.5 / sqrt 3 = 1.24 points;
    # (+0.01, -0.01, 0): 0 +- 4.3027 x 1.0 / sqrt 3 = 2.48 points
    assert row == (
        "| full | normal | 275 (1.0): 41.00; 1,000 (3.6): 81.50 (+40.50 [+39.26, +41.74], 3/3, beats); "
        "3,000 (10.9): 81.50 (+0.00 [-2.48, +2.48], 1/3, ties) | 1,000 |"
    )
    # the words come from the rule as it is, not from the report: two seeds lean, they never beat
    two_seeds = paired_differences({42: 0.80, 43: 0.83}, {42: 0.40, 43: 0.42})
    data["budgets"]["full/normal"]["points"][1] |= {"verdict": "beats", "paired": two_seeds}
    assert "(+40.50 [+34.15, +46.85], 2/2, leans above)" in claims.budgets_and_rows_table(data)


def test_the_masked_lm_table_gives_the_check_before_and_after_fitting():
    data = {
        "masked_lm": "MiniLM",
        "texts_trained": 8303,
        "max_steps": 300,
        "top_k": 8,
        "before": {"found": 0, "checked": 429},
        "after": {"found": 305, "checked": 429},
    }
    header, _, row = claims.masked_lm_table(data).splitlines()
    assert header.endswith("| masked word in its top 8: before | after |")
    assert row == "| MiniLM | 8,303 texts | 300 | 429 | 0 (0.0%) | 305 (71.1%) |"
