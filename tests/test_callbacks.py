"""Neptune logging with the real client in offline mode: what the run recorded, read back from disk."""

from __future__ import annotations

import glob
import json

import pytest

from hf_kd.errors import ArgumentError
from hf_kd.run import main
from tests.conftest import cli_args


def recorded(folder) -> list[dict]:
    """Operations of the offline Neptune run under `folder` (the client's own JSON-lines queue)."""
    (run_dir,) = glob.glob(str(folder / ".neptune" / "offline" / "run__*"))
    operations = []
    for log in sorted(glob.glob(f"{run_dir}/data-*.log")):
        with open(log) as f:
            operations += [json.loads(line)["obj"] for line in f if line.strip()]
    return operations


def test_neptune_offline_records_parameters_terms_metrics_and_tags(bert, sst2_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("NEPTUNE_PROJECT", "NEPTUNE_API_TOKEN", "NEPTUNE_MODE"):
        monkeypatch.delenv(name, raising=False)
    args = cli_args(bert, sst2_files, tmp_path / "run", "cilda_minild", "--logging_steps", "2")
    args[args.index("--report_to") + 1] = "neptune"
    main(
        [
            *args,
            "--neptune_mode",
            "offline",
            "--neptune_tags",
            "sst2",
            "ablation",
            "--neptune_method_label",
            "CILDA_minILD",
        ]
    )
    operations = recorded(tmp_path)
    assigned = {"/".join(op["path"]): op["value"] for op in operations if op["type"].startswith("Assign")}
    assert assigned["parameters/method"] == "cilda_minild" and assigned["parameters/nep_method"] == "CILDA_minILD"
    assert assigned["parameters/task"] == "sst2" and assigned["parameters/seed"] == 42
    assert assigned["parameters/effective_batch_size"] == 8 and assigned["parameters/learning_rate"] == 1e-3
    assert assigned["parameters/teacher"] == bert.teacher and assigned["parameters/generator"] == bert.generator
    record = json.loads((tmp_path / "run" / "hf_kd_run.json").read_text())
    assert assigned["parameters/teacher_accuracy"] == record["teacher_check"]["score"]  # the teacher check, up front
    series = {}
    for op in operations:
        if op["type"] == "LogFloats":
            series.setdefault("/".join(op["path"]), []).extend(v["value"] for v in op["values"])
    for term in (
        "loss_ce",
        "loss_kd",
        "loss_crd",
        "loss_ce_perturbed",
        "loss_kd_perturbed",
        "loss_crd_perturbed",
        "generator_loss_kd_perturbed",
        "generator_loss_crd_perturbed",
        "learning_rate",
        "loss",
    ):
        assert series.get(f"train/{term}"), f"train/{term} was not logged"
    history = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    assert series["train/loss_crd"] == [entry["loss_crd"] for entry in history if "loss_crd" in entry]
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert series["eval/accuracy"][-1] == results["eval_accuracy"]
    tags = [value for op in operations if op["type"] == "AddStrings" for value in op["values"]]
    assert set(tags) == {"sst2", "ablation"}


def test_neptune_without_project_or_token_is_refused_before_training(bert, sst2_files, tmp_path, monkeypatch):
    for name in ("NEPTUNE_PROJECT", "NEPTUNE_API_TOKEN", "NEPTUNE_MODE"):
        monkeypatch.delenv(name, raising=False)
    args = cli_args(bert, sst2_files, tmp_path / "run", "kd")
    args[args.index("--report_to") + 1] = "neptune"
    with pytest.raises(ArgumentError, match="needs --neptune_project and --neptune_api_token"):
        main(args)
    monkeypatch.setenv("NEPTUNE_PROJECT", "me/kd")
    with pytest.raises(ArgumentError, match="needs --neptune_api_token"):
        main(args)
    assert not (tmp_path / "run").exists()
