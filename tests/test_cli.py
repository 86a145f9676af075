"""End-to-end runs of the main job on tiny models and real SST-2 sentences, offline."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

from hf_kd.errors import ArgumentError
from hf_kd.run import main
from hf_kd.trainers import TRAINERS
from tests.conftest import ROOT, cli_args, projected

STUDENT_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
RESULT_FILES = {"all_results.json", "train_results.json", "eval_results.json"}


def check_run(output_dir: Path, method: str, metric: str = "eval_accuracy") -> dict:
    files = set(os.listdir(output_dir))
    assert files >= STUDENT_FILES | RESULT_FILES
    results = json.loads((output_dir / "all_results.json").read_text())
    assert 0.0 <= results[metric] <= 1.0 and results["eval_samples"] == 48 and results["train_samples"] == 96
    assert results["train_loss"] > 0
    student = AutoModelForSequenceClassification.from_pretrained(output_dir)
    assert student.config.id2label == {0: "negative", 1: "positive"}
    extras = output_dir / "hf_kd_extras"
    if projected(method):
        assert load_file(extras / "projections.safetensors")
    if method in ("mate_kd", "cilda", "cilda_minild"):
        assert AutoModelForMaskedLM.from_pretrained(extras / "generator").config.vocab_size == student.config.vocab_size
    else:
        assert projected(method) or not extras.exists()
    return results


@pytest.mark.parametrize("family_name", ["bert", "roberta"])
@pytest.mark.parametrize("method", ["normal", "kd", "rail_kd"])
def test_non_adversarial_methods_end_to_end(families, sst2_files, tmp_path, family_name, method):
    results = main(cli_args(families[family_name], sst2_files, tmp_path / "run", method))
    check_run(tmp_path / "run", method)
    assert results["eval_accuracy"] == json.loads((tmp_path / "run" / "eval_results.json").read_text())["eval_accuracy"]


@pytest.mark.parametrize("family_name", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("method", ["mate_kd", "cilda", "cilda_minild"])
def test_adversarial_methods_end_to_end(families, sst2_files, tmp_path, family_name, method):
    main(cli_args(families[family_name], sst2_files, tmp_path / "run", method))
    check_run(tmp_path / "run", method)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(TRAINERS))
def test_every_method_on_bart(bart, sst2_files, tmp_path, method):
    main(cli_args(bart, sst2_files, tmp_path / "run", method))
    check_run(tmp_path / "run", method)
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert student.config.num_labels == 2  # BART's own default is 3 labels


def test_script_with_yaml_config_and_command_line_override(bert, sst2_files, tmp_path):
    args = cli_args(bert, sst2_files, tmp_path / "run", "kd")
    config = {key.lstrip("-"): value for key, value in zip(args[::2], args[1::2], strict=True)}
    config["learning_rate"] = 0.5  # overridden on the command line below
    (tmp_path / "kd.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable,
        str(ROOT / "scripts" / "run_glue_kd.py"),
        str(tmp_path / "kd.yaml"),
        "--learning_rate",
        "2e-4",
    ]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    check_run(tmp_path / "run", "kd")
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["log_history"][0]["learning_rate"] <= 2e-4


def test_csv_jsonl_pairs_and_regression(bert, tmp_path):
    """Sentence-pair classification from csv and regression (STS-B style) from jsonl."""
    rows = [("a man is playing a guitar", "a man plays guitar", 1), ("the cat sleeps", "stocks fell sharply", 0)] * 24
    header = "sentence1,sentence2,label\n"
    (tmp_path / "train.csv").write_text(header + "".join(f"{a},{b},{y}\n" for a, b, y in rows))
    (tmp_path / "dev.csv").write_text(header + "".join(f"{a},{b},{y}\n" for a, b, y in rows[:16]))
    args = cli_args(
        bert, {"train": str(tmp_path / "train.csv"), "dev": str(tmp_path / "dev.csv")}, tmp_path / "pairs", "kd"
    )
    args[args.index("sst2")] = "mrpc"
    results = main(args)
    assert {"eval_f1", "eval_accuracy"} <= set(results)

    scored = [{"sentence1": a, "sentence2": b, "label": 4.5 * y + 0.25} for a, b, y in rows]
    for name, part in (("train", scored), ("dev", scored[:16])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part))
    args = cli_args(
        bert, {"train": str(tmp_path / "train.jsonl"), "dev": str(tmp_path / "dev.jsonl")}, tmp_path / "sts", "rail_kd"
    )
    del args[args.index("--task_name") : args.index("--task_name") + 2]
    # the teacher must be a regressor too: fine-tune one with `normal` from the teacher's base model
    AutoModel.from_pretrained(bert.teacher).save_pretrained(tmp_path / "base")
    AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(tmp_path / "base")
    teacher_args = [*args[: args.index("--output_dir")], "--output_dir", str(tmp_path / "teacher")]
    teacher_args[teacher_args.index("rail_kd")] = "normal"
    teacher_args[teacher_args.index("--model_name_or_path") + 1] = str(tmp_path / "base")
    main(teacher_args)
    with pytest.raises(ArgumentError, match="another number of labels"):  # a 2-label student cannot regress
        main(args)
    AutoModel.from_pretrained(bert.student).save_pretrained(tmp_path / "student")
    AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(tmp_path / "student")
    args[args.index("--model_name_or_path") + 1] = str(tmp_path / "student")
    args[args.index("--teacher_name_or_path") + 1] = str(tmp_path / "teacher")
    results = main(args)
    assert {"eval_pearson", "eval_spearmanr"} <= set(results)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "sts").config.num_labels == 1


def test_banking77_as_it_ships_end_to_end(bert, tmp_path):
    """`text,category` files with 77 string intents: a teacher fine-tuned and a student distilled from them with
    --label_column_name (the text column found by its name), with unlabelled queries; id2label keeps the names."""
    folder = ROOT / "data" / "banking77"
    files = {"train": str(folder / "train.csv"), "dev": str(folder / "test.csv")}
    (tmp_path / "unlabelled.csv").write_text("text\n" + "where is my new card?\nhow do i top up by transfer?\n" * 8)
    for role in ("teacher", "student"):
        AutoModel.from_pretrained(getattr(bert, role)).save_pretrained(tmp_path / role)
        AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(tmp_path / role)
    columns = ["--label_column_name", "category", "--max_steps", "6", "--per_device_train_batch_size", "16"]

    def run(method: str, student: Path, output_dir: Path, *extra: str) -> dict:
        args = cli_args(bert, files, output_dir, method, *columns, *extra)
        del args[args.index("--task_name") : args.index("--task_name") + 2]
        args[args.index("--model_name_or_path") + 1] = str(student)
        args[args.index("--teacher_name_or_path") + 1] = str(tmp_path / "teacher_run")
        return main(args)

    run("normal", tmp_path / "teacher", tmp_path / "teacher_run")
    results = run("kd", tmp_path / "student", tmp_path / "run", "--unlabeled_file", str(tmp_path / "unlabelled.csv"))
    names = sorted({row.rsplit(",", 1)[1] for row in (folder / "train.csv").read_text().splitlines()[1:]})
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert student.config.id2label == dict(enumerate(names)) and len(names) == 77
    assert results["eval_samples"] == 308 and results["train_samples"] == 616 + 16
    assert 0.0 <= results["eval_accuracy"] <= 1.0


def test_finished_run_is_not_overwritten_without_flag(bert, sst2_files, tmp_path):
    main(cli_args(bert, sst2_files, tmp_path / "run", "normal"))
    before = (tmp_path / "run" / "all_results.json").read_text()
    with pytest.raises(ArgumentError, match="--overwrite_output_dir"):
        main(cli_args(bert, sst2_files, tmp_path / "run", "kd"))
    assert (tmp_path / "run" / "all_results.json").read_text() == before
    main(cli_args(bert, sst2_files, tmp_path / "run", "kd", "--overwrite_output_dir", "true"))


@pytest.mark.slow
@pytest.mark.parametrize(("method", "unlabelled"), [("rail_kd", False), ("cilda_minild", False), ("kd", True)])
def test_resume_from_mid_run_checkpoint_matches_uninterrupted_run(bert, sst2_files, tmp_path, method, unlabelled):
    """12 batches (G G S S | S G G S | S S G G); resuming at checkpoint-4 ends with identical weights."""
    extra = ("--save_strategy", "steps", "--save_steps", "4", "--num_train_epochs", "2")
    if unlabelled:  # 40 dev sentences as text-only training rows
        texts = [line.split("\t")[0] for line in Path(sst2_files["dev"]).read_text().splitlines()[1:41]]
        (tmp_path / "unlabelled.tsv").write_text("sentence\n" + "\n".join(texts) + "\n")
        extra += ("--unlabeled_file", str(tmp_path / "unlabelled.tsv"))
    main(cli_args(bert, sst2_files, tmp_path / "full", method, *extra))
    checkpoint = tmp_path / "resumed" / "checkpoint-12"
    shutil.copytree(tmp_path / "full" / "checkpoint-12", checkpoint)
    main(cli_args(bert, sst2_files, tmp_path / "resumed", method, *extra, "--resume_from_checkpoint", str(checkpoint)))
    full = load_file(tmp_path / "full" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert full.keys() == resumed.keys()
    assert all(torch.equal(full[key], resumed[key]) for key in full)
    for name in ("hf_kd_extras/projections.safetensors",) if method != "kd" else ():
        a, b = load_file(tmp_path / "full" / name), load_file(tmp_path / "resumed" / name)
        assert all(torch.equal(a[key], b[key]) for key in a)
    full_results = json.loads((tmp_path / "full" / "eval_results.json").read_text())
    resumed_results = json.loads((tmp_path / "resumed" / "eval_results.json").read_text())
    assert full_results["eval_loss"] == resumed_results["eval_loss"]


def test_teacher_from_base_model_plus_state_dict(bert, sst2_files, tmp_path):
    """The original's teachers: a base model plus a per-task state-dict file (keys may carry `module.`)."""
    teacher = AutoModelForSequenceClassification.from_pretrained(bert.teacher)
    torch.save({f"module.{k}": v for k, v in teacher.state_dict().items()}, tmp_path / "teacher_sst2.bin")
    AutoModel.from_pretrained(bert.teacher).save_pretrained(tmp_path / "base")
    args = cli_args(
        bert, sst2_files, tmp_path / "run", "kd", "--teacher_state_dict", str(tmp_path / "teacher_sst2.bin")
    )
    args[args.index("--teacher_name_or_path") + 1] = str(tmp_path / "base")
    reference = main(cli_args(bert, sst2_files, tmp_path / "reference", "kd"))
    assert main(args)["eval_loss"] == reference["eval_loss"]  # the same teacher, so the same student


@pytest.mark.parametrize(
    "extra",
    [
        ("--static_mask", "true", "--mask_mode", "fixed_count"),
        ("--gradient_accumulation_steps", "2", "--scale_crd_by_log_batch", "true"),
        ("--bf16", "true", "--use_cpu", "true", "--teacher_dtype", "bfloat16"),
        ("--teacher_dtype", "bfloat16"),
    ],
    ids=["static-fixed-count-mask", "accumulation-alpha2", "bf16", "bf16-teacher-only"],
)
def test_cilda_minild_options_end_to_end(bert, sst2_files, tmp_path, extra):
    main(cli_args(bert, sst2_files, tmp_path / "run", "cilda_minild", *extra))
    results = check_run(tmp_path / "run", "cilda_minild")
    history = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss_crd" in entry]
    assert logged and all(math.isfinite(entry["loss_crd"]) for entry in logged) and math.isfinite(results["eval_loss"])


def test_torch_compile_kd_end_to_end(bert, sst2_files, tmp_path):
    """--torch_compile: the student runs compiled inside the KD step and saves without the wrapper's prefix."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    results = main(cli_args(bert, sst2_files, tmp_path / "out", "kd", "--torch_compile", "true", "--max_steps", "4"))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # something was really compiled
    assert results["train_samples"] == 96 and 0 <= results["eval_accuracy"] <= 1
    saved = load_file(tmp_path / "out" / "model.safetensors")
    assert not any(key.startswith("_orig_mod.") for key in saved)
    reference = load_file(Path(bert.student) / "model.safetensors")
    assert set(saved) == set(reference)


FAULT_PROBE = """
import resource, sys
import torch
if sys.argv[1] == "keep":
    from hf_kd.cli import keep_freed_memory
    assert keep_freed_memory()
for _ in range(2):
    torch.ones(4 * 2**20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(4 * 2**20).sum()  # 16 MB, freed at once: a training step's activations in small
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc allocator setting")
def test_keep_freed_memory_stops_refaulting_freed_blocks():
    def faults(mode: str) -> int:
        return int(
            subprocess.run([sys.executable, "-c", FAULT_PROBE, mode], capture_output=True, text=True, check=True).stdout
        )

    # by default glibc hands freed blocks (or the heap's top) back, and each new block faults its 4,096 pages in
    assert faults("default") >= 4096
    assert faults("keep") < 100
