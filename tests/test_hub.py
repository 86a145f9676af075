"""Model card and Hub push: the student and tokenizer only, with metadata the Hub reads; only the network is faked."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml
from huggingface_hub import HfApi
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_kd.errors import ArgumentError
from hf_kd.run import main
from tests.conftest import cli_args


class FakeHub:
    """Stands in for the two network calls; keeps what would have been uploaded."""

    def __init__(self, folder):
        self.folder, self.calls = folder, []

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, private))

        class Repo:
            pass

        repo = Repo()
        repo.repo_id = repo_id
        return repo

    def upload_folder(self, repo_id, folder_path, **kwargs):
        self.calls.append(("upload_folder", repo_id))
        shutil.copytree(folder_path, self.folder)


def test_push_uploads_student_tokenizer_and_card_only(bert, sst2_files, tmp_path, monkeypatch):
    hub = FakeHub(tmp_path / "uploaded")
    monkeypatch.setattr(HfApi, "create_repo", hub.create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", hub.upload_folder)
    args = cli_args(bert, sst2_files, tmp_path / "run", "cilda", "--save_strategy", "epoch")
    results = main([*args, "--push_to_hub", "true", "--hub_model_id", "me/tiny-cilda", "--hub_private_repo", "true"])
    assert hub.calls == [("create_repo", "me/tiny-cilda", True), ("upload_folder", "me/tiny-cilda")]
    uploaded = set(os.listdir(tmp_path / "uploaded"))
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "all_results.json",
    } <= uploaded
    assert not any(name.startswith(("checkpoint", "hf_kd_", "training_args", "trainer_state")) for name in uploaded)
    assert os.path.isdir(tmp_path / "run" / "hf_kd_extras") and os.path.isdir(tmp_path / "run" / "checkpoint-12")
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "uploaded").config.num_labels == 2
    AutoTokenizer.from_pretrained(tmp_path / "uploaded")

    card = (tmp_path / "uploaded" / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["base_model"] == bert.student and "cilda" in metadata["tags"]
    (result,) = metadata["model-index"][0]["results"]
    assert result["dataset"] == {"name": "GLUE SST2", "type": "nyu-mll/glue", "config": "sst2", "split": "validation"}
    assert result["metrics"] == [{"type": "accuracy", "value": round(results["eval_accuracy"], 4), "name": "Accuracy"}]
    for text in (
        bert.teacher,
        bert.generator,
        "CILDA",
        "MATE-KD",
        "Hinton",
        "GLUE",
        "| generator learning rate | 0.001 |",
    ):
        assert text in card, text
    assert (tmp_path / "run" / "README.md").read_text() == card  # the card is also written beside the student
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    weights = os.path.getsize(tmp_path / "run" / "model.safetensors") / 2**20
    parameters = sum(p.numel() for p in student.parameters())
    assert f"| student | {parameters / 1e6:.1f} M | {weights:.1f} MB |" in card
    assert "| teacher | " in card


def test_push_without_model_id_is_refused_before_training(bert, sst2_files, tmp_path):
    with pytest.raises(ArgumentError, match="--push_to_hub needs --hub_model_id"):
        main([*cli_args(bert, sst2_files, tmp_path / "run", "kd"), "--push_to_hub", "true"])
    assert not (tmp_path / "run").exists()
