"""Shared fixtures: the bundled SST-2 sample and tiny models of each family, built offline."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

from hf_kd.testing import build_family, without_dropout

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT / "data" / "sst2"


@pytest.fixture(scope="session")
def sst2_texts() -> list[str]:
    lines = (SST2 / "train.tsv").read_text().splitlines()[1:]
    return [line.split("\t")[0] for line in lines]


@pytest.fixture(scope="session")
def sst2_files(tmp_path_factory) -> dict[str, str]:
    """Small real SST-2 files: 96 training and 48 validation sentences in GLUE's TSV layout."""
    folder = tmp_path_factory.mktemp("sst2")
    files = {}
    for name, rows in (("train", 96), ("dev", 48)):
        lines = (SST2 / f"{name}.tsv").read_text().splitlines()[: rows + 1]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")
        files[name] = str(folder / f"{name}.tsv")
    return files


@pytest.fixture
def half_labelled(sst2_files, tmp_path) -> dict[str, str]:
    """The 96 training sentences with every second label emptied, and a text-only file of 40 dev sentences."""
    lines = Path(sst2_files["train"]).read_text().splitlines()
    rows = [line if i % 2 == 0 else line.split("\t")[0] + "\t" for i, line in enumerate(lines[1:])]
    (tmp_path / "train.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    dev = Path(sst2_files["dev"]).read_text().splitlines()[1:41]
    (tmp_path / "unlabelled.tsv").write_text("sentence\n" + "\n".join(line.split("\t")[0] for line in dev) + "\n")
    return {
        "train": str(tmp_path / "train.tsv"),
        "dev": sst2_files["dev"],
        "unlabelled": str(tmp_path / "unlabelled.tsv"),
    }


def _family(tmp_path_factory, texts, kind, student_kind=None):
    return build_family(kind, str(tmp_path_factory.mktemp(f"tiny-{kind}-{student_kind or kind}")), texts, student_kind)


@pytest.fixture(scope="session")
def bert(tmp_path_factory, sst2_texts):
    return _family(tmp_path_factory, sst2_texts, "bert")


@pytest.fixture(scope="session")
def roberta(tmp_path_factory, sst2_texts):
    return _family(tmp_path_factory, sst2_texts, "roberta")


@pytest.fixture(scope="session")
def bart(tmp_path_factory, sst2_texts):
    return _family(tmp_path_factory, sst2_texts, "bart")


@pytest.fixture(scope="session")
def bert_to_distilbert(tmp_path_factory, sst2_texts):
    return _family(tmp_path_factory, sst2_texts, "bert", "distilbert")


@pytest.fixture(scope="session")
def deterministic_bert(bert, tmp_path_factory):
    """The tiny BERT family with dropout off (tests/test_layouts.py, tests/test_distributed.py)."""
    return without_dropout(bert, str(tmp_path_factory.mktemp("bert-no-dropout")))


@pytest.fixture(scope="session")
def families(bert, roberta, bart, bert_to_distilbert):
    return {"bert": bert, "roberta": roberta, "bart": bart, "distilbert": bert_to_distilbert}


def cli_args(family, files: dict[str, str], output_dir, method: str, *extra: str) -> list[str]:
    """Arguments of a short offline run of `method` on the tiny family."""
    return [
        "--method",
        method,
        "--model_name_or_path",
        family.student,
        "--teacher_name_or_path",
        family.teacher,
        "--generator_name_or_path",
        family.generator,
        "--task_name",
        "sst2",
        "--train_file",
        files["train"],
        "--validation_file",
        files["dev"],
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "16",
        "--num_train_epochs",
        "1",
        "--learning_rate",
        "1e-3",
        "--generator_learning_rate",
        "1e-3",
        "--n_generator_iter",
        "2",
        "--n_student_iter",
        "3",
        "--logging_steps",
        "4",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--output_dir",
        str(output_dir),
        *extra,
    ]


def generator_model(trainer):
    """The adversarial methods' generator model, or None."""
    generator = getattr(trainer, "generator", None)
    return None if generator is None else generator.model


@contextmanager
def logits_used(trainer):
    """The logits the student and the teacher returned in the block (each one's first call), as rows of floats by
    role: exactly what the terms were computed from, for a hand computation to start from."""
    used: dict[str, list[list[float]]] = {}

    def keep(role: str):
        def hook(module, args, output) -> None:
            logits = output.logits if hasattr(output, "logits") else output[0]  # a sequence without return_dict
            used.setdefault(role, logits.detach().double().tolist())

        return hook

    hooks = [
        trainer.model.register_forward_hook(keep("student")),
        trainer.teacher.model.register_forward_hook(keep("teacher")),
    ]
    try:
        yield used
    finally:
        for hook in hooks:
            hook.remove()


def student_terms(trainer, batch: dict) -> dict:
    """Every weighted min-step term on `batch` as one micro-batch of its own (its own means)."""
    features = trainer.student_features(trainer.model, batch)
    return trainer.compute_terms(trainer.weights, batch, features, (None, None))


def projected(method: str) -> bool:
    """Whether the method trains the W_t / W_s projections (its default terms read layer features)."""
    from hf_kd.terms import layer_kind
    from hf_kd.trainers import TRAINERS

    cls = TRAINERS[method]
    return layer_kind(cls.default_weights, cls.default_generator_weights) is not None
