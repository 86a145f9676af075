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
