"""Arguments: method names, weights by name, config files, and the original YAML form."""

import math

import pytest
import yaml

from hf_kd.config import parse_args
from hf_kd.errors import ArgumentError
from hf_kd.seed_config import translate_seed_config
from hf_kd.trainers import TRAINERS, trainer_class
from tests.conftest import ROOT

BASE = ["--output_dir", "out", "--report_to", "none"]


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("normal", "normal"),
        ("KD", "kd"),
        ("RAIL_c", "rail_kd"),
        ("MATE", "mate_kd"),
        ("CILDA", "cilda"),
        ("CILDA_minILD", "cilda_minild"),
        ("cilda-minild", "cilda_minild"),
        ("Rail_KD", "rail_kd"),
    ],
)
def test_method_names_canonical_seed_and_case_insensitive(name, method):
    assert trainer_class(name).method == method
    assert parse_args(["--method", name, *BASE])[2].method == method


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(
        ArgumentError, match=r"Unknown --method 'distill'.*normal, kd, rail_kd, mate_kd, cilda, cilda_minild"
    ):
        parse_args(["--method", "distill", *BASE])


def test_method_defaults_are_the_papers():
    assert TRAINERS["kd"].default_weights == {"ce": 0.5, "kd": 0.5}
    assert TRAINERS["cilda"].default_weights == {"ce": 0.333, "kd": 0.333, "ce_perturbed": 0.222, "kd_perturbed": 0.111}
    assert TRAINERS["cilda"].default_generator_weights == {"kd_perturbed": 0.5, "crd_perturbed": 0.5}
    minild = TRAINERS["cilda_minild"].default_weights
    expected = [2 / 9, 2 / 9, 2 / 9, 1 / 6, 1 / 12, 1 / 12]
    assert list(minild) == ["ce", "kd", "crd", "ce_perturbed", "kd_perturbed", "crd_perturbed"]
    assert all(math.isclose(a, b) for a, b in zip(minild.values(), expected, strict=True))
    assert TRAINERS["mate_kd"].default_generator_weights == {"kd_perturbed": 1 / 3}


def test_weights_override_defaults_by_name():
    args = parse_args(
        ["--method", "cilda", "--weight_ce_perturbed", "0", "--generator_weight_crd_perturbed", "0.25", *BASE]
    )[2]
    assert args.loss_weights == {"ce": 0.333, "kd": 0.333, "ce_perturbed": 0.0, "kd_perturbed": 0.111}
    assert args.generator_loss_weights == {"kd_perturbed": 0.5, "crd_perturbed": 0.25}


def test_yaml_and_json_files_with_command_line_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"method": "rail_kd", "learning_rate": 3e-5, "report_to": ["none"], "output_dir": "o"})
    )
    _, _, args = parse_args([str(tmp_path / "c.yaml"), "--learning_rate", "1e-4", "--weight_rail", "0.5"])
    assert args.method == "rail_kd" and args.learning_rate == 1e-4 and args.loss_weights["rail"] == 0.5
    (tmp_path / "c.json").write_text('{"method": "kd", "kd_temperature": 4, "output_dir": "o", "report_to": "none"}')
    assert parse_args([str(tmp_path / "c.json")])[2].kd_temperature == 4


def test_student_alias():
    model_args = parse_args(["--student_name_or_path", "some/student", *BASE])[0]
    assert model_args.model_name_or_path == "some/student"


def test_pinned_memory_only_where_an_accelerator_can_use_it(monkeypatch):
    """Pinning host memory helps only an accelerator; without one torch warns on every dataloader."""
    import torch

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    assert parse_args(BASE)[2].dataloader_pin_memory is False
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    assert parse_args(["--dataloader_pin_memory", "true", *BASE])[2].dataloader_pin_memory is True
    assert parse_args(["--use_cpu", "true", *BASE])[2].dataloader_pin_memory is False


SEED_YAML = """
method: CILDA_minILD
model_name: roberta
teacher: roberta-large
student: distilroberta-base
generator: roberta-large
tokenizer: roberta-large
rte: /ckpt/teacher_rte.bin
mrpc: /ckpt/teacher_mrpc.bin
tasks: [rte]
data_ratio: 0.5
lr_scheduler_type: constant
num_warmup_steps: 10
wd: 0.01
batch_size: 32
device_num: 1
num_accumulation_steps: 2
epochs: 20
num_of_ex: 1
seed: 7
start_num: 0
pad_to_max_length: true
max_length: 128
lr: [2.0e-5]
outdir: out/
save_check: true
lambda_nume: [2, 2, 2, 1, 1, 1]
lambda_deno: [9, 9, 9, 6, 12, 12]
alpha: [0.5, 0.5]
alpha2: true
n_generator_iter: 10
n_student_iter: 100
mlm_prob: 0.3
mask_fix: true
linear: 64
linear_method: training
sent_pool: false
use_neptune: false
"""


def test_every_seed_key_is_translated(tmp_path, capsys):
    (tmp_path / "seed.yaml").write_text(SEED_YAML)
    model_args, data_args, args = parse_args([str(tmp_path / "seed.yaml")])
    assert "equivalent arguments" in capsys.readouterr().out
    assert (model_args.teacher_name_or_path, model_args.model_name_or_path) == ("roberta-large", "distilroberta-base")
    assert (model_args.generator_name_or_path, model_args.tokenizer_name) == ("roberta-large", "roberta-large")
    assert model_args.teacher_state_dict == "/ckpt/teacher_rte.bin"
    assert (data_args.task_name, data_args.data_ratio, data_args.max_seq_length, data_args.pad_to_max_length) == (
        "rte",
        0.5,
        128,
        True,
    )
    assert args.method == "cilda_minild" and args.learning_rate == 2e-5 and args.seed == 7
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.num_train_epochs) == (32, 2, 20)
    assert (args.weight_decay, args.warmup_steps, args.lr_scheduler_type) == (0.01, 10, "constant")
    assert args.output_dir == "out/" and args.load_best_model_at_end and args.metric_for_best_model == "accuracy"
    assert args.loss_weights["crd"] == pytest.approx(2 / 9) and args.loss_weights["kd_perturbed"] == pytest.approx(
        1 / 12
    )
    assert args.generator_loss_weights == {"kd_perturbed": 0.5, "crd_perturbed": 0.5}
    assert args.scale_crd_by_log_batch and args.mask_mode == "fixed_count" and args.rail_pooling == "mean"
    assert (args.n_generator_iter, args.n_student_iter, args.mlm_probability, args.projection_dim) == (10, 100, 0.3, 64)


def test_seed_lambdas_follow_the_method_term_order():
    out = translate_seed_config({"method": "MATE", "lambdas": [0.2, 0.3, 0.5], "alpha": [0.7]}, announce=False)
    assert (out["weight_ce"], out["weight_kd"], out["weight_kd_perturbed"]) == (0.2, 0.3, 0.5)
    assert out["generator_weight_kd_perturbed"] == 0.5  # the original MATE maximises with lambdas[2], not alpha
    assert translate_seed_config({"method": "Bart_CILDA", "lr": 1e-5}, announce=False)["method"] == "cilda"
    sweep = translate_seed_config(
        {"method": "KD", "lr": [1e-5, 2e-5], "num_of_ex": 5, "tasks": ["rte", "mrpc"]}, announce=False
    )
    assert (sweep["sweep_learning_rates"], sweep["sweep_repetitions"], sweep["sweep_tasks"]) == (
        [1e-5, 2e-5],
        5,
        ["rte", "mrpc"],
    )
    assert (
        translate_seed_config({"method": "normal", "model": "bert-base-uncased", "lr": 1e-5}, announce=False)[
            "model_name_or_path"
        ]
        == "bert-base-uncased"
    )


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(config):
    """A config in configs/ that the parser refuses would fail the user at the first step."""
    _, _, args = parse_args([str(config), "--report_to", "none"])
    assert args.method == yaml.safe_load(config.read_text())["method"]


def test_reweighted_cilda_minild_config_carries_the_recommended_weights():
    """docs/RECIPES.md section 3 points at this file for the two measured weights."""
    _, _, args = parse_args([str(ROOT / "configs" / "cilda_minild_reweighted.yaml"), "--report_to", "none"])
    assert args.loss_weights["ce_perturbed"] == 0 and args.loss_weights["kd_perturbed"] == pytest.approx(1 / 3)
    assert args.loss_weights["crd"] == pytest.approx(2 / 9)  # the other terms keep CILDA+minILD's defaults


def test_help_lists_every_option_of_the_three_dataclasses(capsys):
    """`--help`, which the README sends users to, prints every option (a help text with a bare `%` broke it)."""
    from hf_kd.config import option_names

    with pytest.raises(SystemExit) as stop:
        parse_args(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    missing = [name for name in option_names() if f"--{name}" not in text]
    assert not missing and "over 95% of them" in text, missing


def test_every_help_text_is_safe_for_argparse_formatting():
    from hf_kd.config import build_parser

    parser = build_parser()
    for action in parser._actions:
        if action.help:
            parser._get_formatter()._expand_help(action)  # raises on a stray `%`
