"""The ladder of student sizes (benchmarks/ladder.py): what it reads from the benchmark's results, the step-up
comparisons by the selection rule, the table's gap shares and speed ratios against hand computations."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from benchmarks.claims import ladder_table
from benchmarks.ladder import chart, ladder


def run(method: str, setting: str, seed: int, heldout: float, dev: float, variant: str = "") -> dict:
    flags = "--labelled_share 0.5" if variant else ""
    return dict(setting=setting, variant=variant, method=method, flags=flags, learning_rate=1e-4, seed=seed,
                heldout=heldout, dev=dev, wall_seconds=1.0)  # fmt: skip


@pytest.fixture
def benchmark_folder(tmp_path):
    """What quality_sst2.py leaves for two sizes: KD in `unlabelled`, no KD (its few_labels runs) at size 2 only,
    and an ablation that must not be read."""
    two = [run("kd", "unlabelled", seed, h, d) for seed, h, d in ((42, 0.70, 0.72), (43, 0.71, 0.74), (44, 0.69, 0.73))]
    two += [run("normal", "few_labels", seed, 0.60, d) for seed, d in ((42, 0.62), (43, 0.63), (44, 0.64))]
    two += [run("kd", "unlabelled", seed, 0.99, 0.98, variant="share50") for seed in (42, 43)]
    three = [run("kd", "unlabelled", seed, 0.75, 0.80) for seed in (42, 43, 44)]
    teacher = {"heldout": 0.90, "dev": 0.91, "wall_seconds": 1.0}
    (tmp_path / "results.json").write_text(json.dumps({"teacher": teacher, "runs": two}))
    (tmp_path / "results_minilm3.json").write_text(json.dumps({"teacher": teacher, "runs": three}))
    return tmp_path


def test_the_ladder_reads_each_size_and_pairs_each_step_up_on_held_out(benchmark_folder):
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False)
    assert list(data["students"]) == ["2", "3"] and data["reported"] == "test"
    two, three = data["students"]["2"], data["students"]["3"]
    assert two["reported"] == {42: 0.72, 43: 0.74, 44: 0.73}  # the ablation's 0.99 is not a default run
    # no KD (its few_labels runs) pairs with size 2 on the reported set; size 3 has none
    assert two["versus_no_kd"]["paired"]["differences"] == pytest.approx([0.10, 0.11, 0.09])
    assert two["versus_no_kd"]["gap_closed"] == pytest.approx(0.10 / 0.28) and "versus_no_kd" not in three
    step = three["over_smaller"]
    assert step["size"] == "2" and step["paired"]["differences"] == pytest.approx([0.05, 0.04, 0.06])
    half_width = 4.302653 * 0.01 / 3**0.5  # t(0.975, 2 df) x the differences' std / sqrt(3)
    assert step["paired"]["low"] == pytest.approx(0.05 - half_width) and step["verdict"] == "beats"


def test_the_table_gives_the_gap_share_and_the_speed_against_the_teacher(benchmark_folder, tmp_path):
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False)
    data = json.loads(json.dumps(data))  # as claims.py reads it back: seeds become strings
    data["students"]["2"] |= {
        "size_on_disk_mb": {"pytorch student": 60.0, "onnx int8": 15.2},
        "latency_ms_per_sentence": {
            "pytorch teacher": {"1 thread, batch 1": 8.0},
            "pytorch student": {"1 thread, batch 1": 2.0},
            "onnx int8": {"1 thread, batch 1": 0.5},
        },
        "agreement": {"onnx int8": {"agreement": 0.991}},
    }
    table = ladder_table(data)
    row_two, row_three = (line for line in table.splitlines() if line.startswith(("| 2 ", "| 3 ")))
    kd, no_kd = statistics.fmean([0.72, 0.74, 0.73]), statistics.fmean([0.62, 0.63, 0.64])
    share = 100 * (kd - no_kd) / (0.91 - no_kd)  # 10 of 28 points: 36%
    assert f"| {share:.0f}% |" in row_two and "+10.00 [" in row_two and "beats" in row_two
    assert "| 16.0x |" in row_two and "| 2.00 / 0.50 |" in row_two and "| 60.0 / 15.2 MB |" in row_two
    assert "99.10%" in row_two and "73.00 ± 1.00" in row_two
    assert "beats 2 layers" in row_three and "| 80.00 ± 0.00 |" in row_three
    chart(data, tmp_path / "ladder.png")  # draws the sizes that were timed
    assert (tmp_path / "ladder.png").stat().st_size > 0


def test_a_folder_without_runs_is_refused_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="no teacher or no finished kd runs"):
        ladder(tmp_path, "sst2", "unlabelled", "kd", export=False)


def test_an_ablation_is_read_by_its_name_with_its_flags(benchmark_folder):
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", "share50", export=False)
    assert list(data["students"]) == ["2"] and data["students"]["2"]["reported"] == {42: 0.98, 43: 0.98}
    assert data["flags"] == "--labelled_share 0.5" and "with `--labelled_share 0.5`" in ladder_table(data)


def test_runs_at_several_learning_rates_are_refused(benchmark_folder):
    data = json.loads((benchmark_folder / "results.json").read_text())
    data["runs"].append(run("kd", "unlabelled", 45, 0.7, 0.7) | {"learning_rate": 2e-4})
    (benchmark_folder / "results.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="several learning rates"):
        ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False)


def test_a_variant_with_its_own_budget_is_paired_with_no_kd_at_that_budget(benchmark_folder):
    """`--max_steps 3000` in an ablation's flags: no KD of the same 3,000 steps (its `steps3000` budget runs) is the
    baseline, never the default-budget no KD; without such runs there is no comparison at all."""
    path = benchmark_folder / "results.json"
    results = json.loads(path.read_text())
    longer = [
        run("kd", "unlabelled", seed, h, d, variant="long")
        for seed, h, d in ((42, 0.80, 0.85), (43, 0.81, 0.86), (44, 0.79, 0.84))
    ]
    for entry in longer:
        entry["flags"] = "--labelled_share 0.5 --max_steps=1000 --max_steps 3000"  # the last one wins, as in argparse
    results["runs"] += longer
    path.write_text(json.dumps(results))
    alone = ladder(benchmark_folder, "banking77", "unlabelled", "kd", "long", export=False)
    assert "versus_no_kd" not in alone["students"]["2"]  # the 1,000-step no KD is not its baseline
    no_kd = [
        run("normal", "few_labels", seed, 0.7, d, variant="steps3000")
        for seed, d in ((42, 0.80), (43, 0.82), (44, 0.81))
    ]
    results["runs"] += no_kd
    path.write_text(json.dumps(results))
    versus = ladder(benchmark_folder, "banking77", "unlabelled", "kd", "long", export=False)["students"]["2"][
        "versus_no_kd"
    ]
    assert versus["paired"]["differences"] == pytest.approx([0.05, 0.04, 0.03]) and versus["steps"] == 3000
    assert versus["gap_closed"] == pytest.approx(0.04 / (0.91 - 0.81))


def test_a_variant_with_more_steps_is_paired_on_held_out_with_its_flags_at_the_benchmarks_budget(benchmark_folder):
    """`share50` longer: `--labelled_share 0.5 --max_steps 3000` against `share50` (the same flags, the
    benchmark's steps), per seed on held-out; the table says it in one generated line."""
    path = benchmark_folder / "results.json"
    results = json.loads(path.read_text())
    longer = [run("kd", "unlabelled", seed, h, 0.9, variant="share50-long") for seed, h in ((42, 0.995), (43, 0.97))]
    for entry in longer:
        entry["flags"] = "--max_steps 3000 --labelled_share 0.5"
    results["runs"] += longer
    path.write_text(json.dumps(results))
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", "share50-long", export=False)
    shorter = data["students"]["2"]["over_benchmark_budget"]
    assert shorter["variant"] == "share50" and shorter["paired"]["differences"] == pytest.approx([0.005, -0.02])
    assert shorter["verdict"] == "ties"
    line = ladder_table(json.loads(json.dumps(data))).splitlines()[-1]
    assert line.startswith("2 layers, these steps against the same flags at the benchmark's budget (`share50`)")
    assert line.endswith(f"{100 * shorter['paired']['mean']:+.2f} [{100 * shorter['paired']['low']:+.2f}, "
                         f"{100 * shorter['paired']['high']:+.2f}], 1/2, ties.")  # fmt: skip
    # the defaults at the benchmark's budget have no flags: a variant of only --max_steps pairs with them
    only_steps = [
        run("kd", "unlabelled", s, 0.75, 0.8, variant="long") | {"flags": "--max_steps=3000"} for s in (42, 43, 44)
    ]
    results["runs"] += only_steps
    path.write_text(json.dumps(results))
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", "long", export=False)
    assert data["students"]["2"]["over_benchmark_budget"]["paired"]["differences"] == pytest.approx([0.05, 0.04, 0.06])


def test_a_size_without_runs_here_keeps_its_earlier_point_and_is_paired_again(benchmark_folder):
    """A machine lost size 4's runs: the JSON written before keeps its point (marked, said under the table), its
    step up is paired again against today's size 3; another recipe or teacher keeps nothing."""
    earlier = json.loads(json.dumps(ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False)))
    earlier["students"]["4"] = {
        "layers": [1, 2, 3, 5],
        "flags": "",
        "heldout": {"42": 0.78, "43": 0.76},
        "reported": {"42": 0.81, "43": 0.82},
        "over_smaller": {"size": "2"},  # paired against the ladder of that day: replaced
    }
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False, previous=earlier)
    four = data["students"]["4"]
    assert four["carried"] and four["reported"] == {42: 0.81, 43: 0.82} and "carried" not in data["students"]["3"]
    assert four["over_smaller"]["size"] == "3"
    assert four["over_smaller"]["paired"]["differences"] == pytest.approx([0.03, 0.01])  # 0.78-0.75, 0.76-0.75
    line = ladder_table(json.loads(json.dumps(data))).splitlines()[-1]
    assert line.startswith("4 layers: as an earlier run of `ladder.py` measured them") and "that call's" in line
    other_teacher = earlier | {"teacher": {"heldout": 0.5, "dev": 0.5, "wall_seconds": 1.0}}
    assert (
        "4"
        not in ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False, previous=other_teacher)[
            "students"
        ]
    )
    other_recipe = earlier | {"variant": "share50"}
    assert (
        "4"
        not in ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False, previous=other_recipe)[
            "students"
        ]
    )


def test_a_pairing_whose_shorter_runs_are_gone_is_kept_only_for_the_same_runs(benchmark_folder):
    """Size 2's runs are here but the benchmark-budget runs they were paired with are not: the earlier ladder's
    pairing stays when its held-out results are these runs' own, and goes when the runs differ."""
    earlier = json.loads(json.dumps(ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False)))
    pairing = {"variant": "share50", "paired": {"seeds": [42, 43, 44]}, "verdict": "beats"}
    earlier["students"]["2"]["over_benchmark_budget"] = pairing
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False, previous=earlier)
    assert data["students"]["2"]["over_benchmark_budget"] == pairing and "carried" not in data["students"]["2"]
    earlier["students"]["2"]["heldout"]["44"] = 0.5  # another run of seed 44 made that pairing
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False, previous=earlier)
    assert "over_benchmark_budget" not in data["students"]["2"]


def restored_run_folder(folder, size: int, seed: int):
    """Where quality_sst2.py keeps a default KD run of `size` in `unlabelled`; restored: results and no model."""
    from benchmarks.quality.runner import run_folder, runs_root

    run = run_folder(runs_root(folder, f"minilm{size}"), "unlabelled", "kd", 1e-4, seed, "")
    run.mkdir(parents=True)
    (run / "restored.txt").write_text("results only\n")
    return run


def test_a_restored_run_keeps_the_export_measured_of_it_or_is_refused(benchmark_folder):
    """A fresh machine restored size 3's results from the records but has no model to export: the findings the
    records kept beside the run stand, else the earlier JSON's when it exported the same seed's same run (seeds
    added since do not matter); otherwise one line names the seed to train. The table says they are another
    call's timings."""
    folder = restored_run_folder(benchmark_folder, 3, 42)
    earlier = json.loads(json.dumps(ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False)))
    one = {"1 thread, batch 1": 1.0}
    latency = {"pytorch teacher": one, "pytorch student": one, "onnx int8": one}
    export = {"size_on_disk_mb": {"pytorch student": 66.5, "onnx int8": 16.8}, "latency_ms_per_sentence": latency}
    export["agreement"] = None
    two = restored_run_folder(benchmark_folder, 2, 42) / "export_findings.json"  # size 2: the records kept its export
    two.write_text(
        json.dumps({"exported_seed": 42, **export, "size_on_disk_mb": {"pytorch student": 59.7, "onnx int8": 15.0}})
    )
    earlier["students"]["3"] |= {"exported_seed": 42, **export, "reported": {"42": 0.80}}  # before 43 and 44 ran
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", previous=earlier)
    three = data["students"]["3"]
    assert three["timed_earlier"] and three["size_on_disk_mb"]["onnx int8"] == 16.8 and "carried" not in three
    two_point = data["students"]["2"]
    assert two_point["timed_earlier"] and two_point["size_on_disk_mb"]["pytorch student"] == 59.7
    assert three["reported"] == {42: 0.80, 43: 0.80, 44: 0.80} and "model_missing" not in three
    assert three["over_smaller"]["paired"]["differences"] == pytest.approx([0.05, 0.04, 0.06])  # today's runs
    assert "2 and 3 layers: exported and timed by an earlier run" in ladder_table(json.loads(json.dumps(data)))
    earlier["students"]["3"]["reported"]["42"] = 0.5  # another run of seed 42 was exported
    with pytest.raises(SystemExit, match=r"3 layers: .*seed-42 holds no model .*--seeds 42\) to export it"):
        ladder(benchmark_folder, "banking77", "unlabelled", "kd", previous=earlier)
    (folder / "export_findings.json").write_text(json.dumps({"exported_seed": 42, **export}))  # the records' copy
    assert ladder(benchmark_folder, "banking77", "unlabelled", "kd")["students"]["3"]["timed_earlier"]


def test_the_records_keep_the_export_findings_and_give_them_back(tmp_path):
    from benchmarks.quality.records import restore, save

    run = tmp_path / "out" / "runs" / "unlabelled" / "kd" / "seed-42"
    run.mkdir(parents=True)
    (run / "export_findings.json").write_text('{"exported_seed": 42}')
    (run / "model.safetensors").write_text("weights")  # not a record
    assert save(tmp_path / "out", tmp_path / "records") == [Path("runs/unlabelled/kd/seed-42/export_findings.json")]
    restore(tmp_path / "records", tmp_path / "fresh")
    assert (tmp_path / "fresh" / "runs" / "unlabelled" / "kd" / "seed-42" / "export_findings.json").is_file()


def test_the_teacher_comes_from_any_sizes_results_and_must_be_one(benchmark_folder):
    (benchmark_folder / "results.json").unlink()  # size 2 never ran here: size 3's results name the teacher
    data = ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False)
    assert list(data["students"]) == ["3"] and data["teacher"]["dev"] == 0.91
    other = {"teacher": {"heldout": 0.5, "dev": 0.6, "wall_seconds": 1.0}, "runs": []}
    (benchmark_folder / "results_minilm4.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match=r"different teachers .*3 layers 0\.9100, 4 layers 0\.6000"):
        ladder(benchmark_folder, "banking77", "unlabelled", "kd", export=False)


def test_a_seed_whose_model_is_here_is_exported_before_an_earlier_measurement(benchmark_folder, monkeypatch):
    """Seed 42 of size 3 was restored (its export measured before, in the records) and seed 43 trained here: 43
    is exported and timed now, and the table names it; once 43's model is gone too, the next ladder keeps 43's
    export, the one the last ladder made."""
    import hf_kd.export

    one = {"1 thread, batch 1": 2.0}
    findings = {
        "size_on_disk_mb": {"pytorch student": 66.5, "onnx int8": 16.8},
        "latency_ms_per_sentence": {"pytorch teacher": one, "pytorch student": one, "onnx int8": one},
        "agreement": None,
    }
    exported = []
    monkeypatch.setattr(hf_kd.export, "export_student", lambda folder: exported.append(folder) or findings)
    for size in (2, 3):
        restored = restored_run_folder(benchmark_folder, size, 42)
        (restored / "export_findings.json").write_text(json.dumps({"exported_seed": 42, **findings}))
    trained = restored_run_folder(benchmark_folder, 3, 43)
    (trained / "config.json").write_text("{}")
    three = ladder(benchmark_folder, "banking77", "unlabelled", "kd")["students"]["3"]
    assert exported == [str(trained)] and three["exported_seed"] == 43 and "timed_earlier" not in three
    assert json.loads((trained / "export_findings.json").read_text())["exported_seed"] == 43
    data = json.loads(json.dumps(ladder(benchmark_folder, "banking77", "unlabelled", "kd")))
    assert "3 layers: seed 43's student exported and timed, the first seed's model not being" in ladder_table(data)
    (trained / "config.json").unlink()  # no model here at all: the export the last ladder made stands, its seed's
    three = ladder(benchmark_folder, "banking77", "unlabelled", "kd", previous=data)["students"]["3"]
    assert three["exported_seed"] == 43 and three["timed_earlier"] and len(exported) == 2
    three = ladder(benchmark_folder, "banking77", "unlabelled", "kd")["students"]["3"]  # no earlier ladder: the first
    assert three["exported_seed"] == 42 and three["timed_earlier"] and len(exported) == 2
