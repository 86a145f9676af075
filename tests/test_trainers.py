"""One step of every trainer changes exactly the parameters METHODS.md says; the alternation schedule."""

from __future__ import annotations

import os

import pytest
import torch

from hf_kd.build import build_trainer
from hf_kd.config import parse_args
from hf_kd.trainers import TRAINERS, AdversarialTrainer, NonFiniteLossError
from hf_kd.trainers.adversarial import AlternationSchedule
from tests.conftest import cli_args, generator_model

ADVERSARIAL = ["mate_kd", "cilda", "cilda_minild"]


def make_trainer(family, files, output_dir, method, *extra):
    model_args, data_args, training_args = parse_args(cli_args(family, files, output_dir, method, *extra))
    trainer, _ = build_trainer(model_args, data_args, training_args)
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    trainer.current_gradient_accumulation_steps = 1  # set by the Trainer's loop, which these tests bypass
    return trainer


def snapshot(module):
    return None if module is None else {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before, module) -> float:
    """Fraction of the module's parameter tensors that moved."""
    after = dict(module.named_parameters())
    return sum(not torch.equal(before[name], after[name]) for name in before) / len(before)


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


@pytest.mark.parametrize("family_name", ["bert", "roberta", "bart", "distilbert"])
@pytest.mark.parametrize("method", list(TRAINERS))
def test_student_step_changes_student_and_projections_only(families, sst2_files, tmp_path, family_name, method):
    trainer = make_trainer(families[family_name], sst2_files, tmp_path, method, "--n_generator_iter", "0")
    adversarial = isinstance(trainer, AdversarialTrainer)
    student, teacher, projections = (
        snapshot(trainer.model),
        snapshot(trainer.teacher and trainer.teacher.model),
        snapshot(trainer.projections),
    )
    generator = snapshot(trainer.generator.model) if adversarial else None
    trainer.training_step(trainer.model, first_batch(trainer))
    trainer.optimizer.step()
    assert changed(student, trainer.model) > 0.9
    if teacher is not None:
        assert changed(teacher, trainer.teacher.model) == 0
    if adversarial:
        assert changed(generator, trainer.generator.model) == 0
    if projections is not None:
        assert changed(projections, trainer.projections) == (1.0 if trainer.projections_in("student") else 0.0)
    expected_projections = method in ("rail_kd", "cilda", "cilda_minild", "tinybert")  # tinybert: W_h
    assert (trainer.projections is not None) == expected_projections


@pytest.mark.parametrize("family_name", ["bert", "roberta", "bart"])
@pytest.mark.parametrize("method", ADVERSARIAL)
def test_generator_step_changes_generator_and_projections_only(families, sst2_files, tmp_path, family_name, method):
    trainer = make_trainer(families[family_name], sst2_files, tmp_path, method)
    assert trainer.schedule.is_generator_step(0)
    student, teacher = snapshot(trainer.model), snapshot(trainer.teacher.model)
    generator, projections = snapshot(trainer.generator.model), snapshot(trainer.projections)
    calls = []
    for role, model in (("teacher", trainer.teacher.model), ("student", trainer.model)):
        model.register_forward_pre_hook(
            lambda module, args, kwargs, role=role: calls.append(
                (role, kwargs.get("input_ids"), torch.is_grad_enabled(), module.training)
            ),
            with_kwargs=True,
        )
    trainer.training_step(trainer.model, first_batch(trainer))
    assert changed(generator, trainer.generator.model) > 0.5
    assert changed(student, trainer.model) == 0
    assert changed(teacher, trainer.teacher.model) == 0
    assert all(p.grad is None for p in trainer.model.parameters())  # no weight gradients were even computed
    if projections is not None:
        assert changed(projections, trainer.projections) == 1.0  # CILDA family: W_t, W_s maximise too
    # one perturbed pass each, no clean pass (the original's discarded forward), graph kept for the generator,
    # teacher and student in eval mode (no dropout), as the original's g_train_mode
    assert calls == [("teacher", None, True, False), ("student", None, True, False)]
    assert trainer.lr_scheduler.scheduler.last_epoch == 0  # the student's scheduler did not move


@pytest.mark.parametrize("method", ADVERSARIAL)
def test_student_step_runs_teacher_and_generator_without_graph(families, sst2_files, tmp_path, method):
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, method, "--n_generator_iter", "0")
    grad_modes = []
    for model in (trainer.teacher.model, trainer.generator.model, trainer.model):
        model.register_forward_pre_hook(
            lambda module, args: grad_modes.append((type(module).__name__, torch.is_grad_enabled(), module.training))
        )
    trainer.training_step(trainer.model, first_batch(trainer))
    # generator once (sampling), teacher once (clean + perturbed together) before the student; only the
    # student in train mode
    assert [(grad, training) for _, grad, training in grad_modes] == [(False, False), (False, False), (True, True)]
    assert all(p.grad is None for p in trainer.generator.model.parameters())


def test_student_dropout_in_generator_step_is_an_option(families, sst2_files, tmp_path):
    trainer = make_trainer(
        families["bert"], sst2_files, tmp_path, "mate_kd", "--student_dropout_in_generator_step", "true"
    )
    modes = []
    trainer.model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    trainer.training_step(trainer.model, first_batch(trainer))
    assert modes == [True]


def test_alternation_schedule_counts_batches_across_cycles():
    schedule = AlternationSchedule(10, 100)
    kinds = [schedule.is_generator_step(i) for i in range(330)]
    assert kinds[:10] == [True] * 10 and kinds[10:110] == [False] * 100 and kinds[110:120] == [True] * 10
    assert sum(kinds) == 30
    assert AlternationSchedule(2, 3).student_updates(12) == 6
    assert AlternationSchedule(2, 3).student_updates(5) == 3  # effective batches G G S S S


def test_training_alternates_and_student_scheduler_only_advances_on_min_steps(families, sst2_files, tmp_path):
    """96 examples / batch 8 = 12 batches: G G S S S G G S S S G G -> 6 generator and 6 student steps."""
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, "cilda", "--lr_scheduler_type", "linear")
    trainer.lr_scheduler = trainer.generator_scheduler = None
    counts = {"generator": 0}
    original = trainer.generator_step

    def counting_generator_step(*args):
        counts["generator"] += 1
        return original(*args)

    trainer.generator_step = counting_generator_step
    trainer.train()
    assert trainer.batches_seen == 12 and counts["generator"] == 6
    assert trainer.lr_scheduler.scheduler.last_epoch == 6  # the linear decay spans the 6 student updates
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(0.0)
    assert trainer.generator_scheduler.last_epoch == 6


def test_zero_weight_skips_the_term_and_its_forward_pass(families, sst2_files, tmp_path):
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, "rail_kd", "--weight_kd", "0")
    calls = []
    trainer.teacher.model.register_forward_pre_hook(lambda *args: calls.append(1))
    trainer.training_step(trainer.model, first_batch(trainer))
    assert len(calls) == 1 and set(trainer.term_log.sums) == {"loss_ce", "loss_rail", "loss"}
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, "kd", "--weight_kd", "0")
    assert trainer.teacher is None  # nothing needs it: it is not even loaded
    trainer.training_step(trainer.model, first_batch(trainer))
    assert set(trainer.term_log.sums) == {"loss_ce", "loss"}


def test_terms_are_logged_as_window_means(families, sst2_files, tmp_path):
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, "cilda_minild", "--n_generator_iter", "1")
    batch = first_batch(trainer)
    for _ in range(3):
        trainer.training_step(trainer.model, batch)
    logged = {}
    trainer.callback_handler.on_log = lambda args, state, control, logs: logged.update(logs)
    trainer.log({"loss": 0.0})
    expected_keys = {
        "loss_ce",
        "loss_kd",
        "loss_crd",
        "loss_ce_perturbed",
        "loss_kd_perturbed",
        "loss_crd_perturbed",
        "generator_loss_kd_perturbed",
        "generator_loss_crd_perturbed",
        "generator_loss",
        "loss",
    }
    assert expected_keys <= set(logged)
    weights = trainer.weights
    total = sum(weights[term] * logged[f"loss_{term}"] for term in weights)
    assert logged["loss"] == pytest.approx(total, rel=1e-5)  # student loss of the 2 min steps, not diluted


def _poison_teacher(trainer):
    with torch.no_grad():
        trainer.teacher.model.get_input_embeddings().weight.fill_(float("nan"))


def test_nonfinite_term_stops_training_naming_term_and_step(families, sst2_files, tmp_path):
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, "kd")
    _poison_teacher(trainer)
    with pytest.raises(NonFiniteLossError, match=r"loss_kd became non-finite at step 0.*--nonfinite_loss skip"):
        trainer.training_step(trainer.model, first_batch(trainer))


def test_rail_pools_only_the_paired_teacher_layers(families, sst2_files, tmp_path):
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, "rail_kd")
    trainer.draw_layers(epoch=0)
    batch = trainer._prepare_inputs(first_batch(trainer))
    with torch.no_grad():
        result = trainer.teacher.forward(batch, output_hidden_states=True)
    every = trainer.features(result, batch, trainer.teacher.adapter)
    paired = trainer.features(result, batch, trainer.teacher.adapter, rail_layers_only=True)
    layers = trainer.rail_layers("encoder")
    assert every.pooled["encoder"].shape[1] == 4 and paired.pooled["encoder"].shape[1] == len(layers) == 2
    assert torch.equal(paired.pooled["encoder"], every.pooled["encoder"][:, layers])


def test_deferred_nonfinite_check_names_the_first_term_and_step(families, sst2_files, tmp_path):
    """On accelerators the check reads a device-side record at logging steps: same term, same step."""
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, "kd")
    trainer.check_nonfinite_every_step = False
    batch = first_batch(trainer)
    trainer.training_step(trainer.model, batch)
    trainer.term_log.raise_if_nonfinite()  # a finite step passes
    trainer.state.global_step = 1
    _poison_teacher(trainer)
    trainer.training_step(trainer.model, batch)  # no stop inside the step: that would need a host sync
    trainer.state.global_step = 2
    trainer.training_step(trainer.model, batch)
    with pytest.raises(NonFiniteLossError, match=r"loss_kd became non-finite at step 1:.*--nonfinite_loss skip"):
        trainer.term_log.raise_if_nonfinite()


def test_deferred_nonfinite_check_stops_training_before_a_checkpoint(families, sst2_files, tmp_path):
    trainer = make_trainer(
        families["bert"],
        sst2_files,
        tmp_path,
        "kd",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--logging_steps",
        "100",
    )
    trainer.check_nonfinite_every_step = False
    _poison_teacher(trainer)
    with pytest.raises(NonFiniteLossError, match=r"loss_kd became non-finite at step 0"):
        trainer.train()
    assert not any(name.startswith("checkpoint-") for name in os.listdir(tmp_path))


@pytest.mark.parametrize("method", ["kd", "cilda_minild"])
def test_nonfinite_batch_can_be_skipped_and_counted(families, sst2_files, tmp_path, method):
    trainer = make_trainer(families["bert"], sst2_files, tmp_path, method, "--nonfinite_loss", "skip")
    _poison_teacher(trainer)
    student, generator = snapshot(trainer.model), snapshot(generator_model(trainer))
    batch = first_batch(trainer)
    loss = trainer.training_step(trainer.model, batch)  # cilda_minild: a generator step first
    if method == "cilda_minild":
        assert changed(generator, trainer.generator.model) == 0
        loss = trainer.training_step(trainer.model, batch)
    trainer.optimizer.step()
    assert loss.item() == 0.0 and trainer.skipped_batches == (2 if method == "cilda_minild" else 1)
    assert changed(student, trainer.model) == 0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in trainer.model.parameters())


@pytest.mark.parametrize("family_name", ["bert", "roberta", "bart", "distilbert"])
def test_generator_logits_at_masked_positions_equal_the_full_forward(families, sst2_files, tmp_path, family_name):
    trainer = make_trainer(families[family_name], sst2_files, tmp_path, "mate_kd")
    trainer.generator.model.eval()
    batch = trainer._prepare_inputs(first_batch(trainer))
    mask = trainer.draw_mask(batch)
    with torch.no_grad():
        selected = trainer.generator.masked_logits(batch, mask)
        masked_ids = batch["input_ids"].masked_fill(mask, trainer.generator.mask_token_id)
        full = trainer.generator.model(input_ids=masked_ids, attention_mask=batch["attention_mask"]).logits
    assert selected.shape == (int(mask.sum()), trainer.generator.model.config.vocab_size)
    assert torch.allclose(selected, full[mask], atol=1e-5)
