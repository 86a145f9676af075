"""No host-device synchronisation of hf_kd's own in a training step (recorded on CPU by operator)."""

from __future__ import annotations

import pytest

from hf_kd.testing import HostSyncRecorder
from tests.test_trainers import first_batch, make_trainer

# transformers' SDPA attention reads the padding mask on the host in every forward (masking_utils)
TRANSFORMERS_MASK_CHECK = ("aten._local_scalar_dense", "masking_utils.py:_ignore_bidirectional_mask_sdpa")
# the generator's vocabulary projection on masked positions only: a selection whose size is data-dependent
MASKED_SELECTION = {
    ("aten.index (boolean mask)", "roles.py:select_masked"),
    ("aten.index_put (boolean mask)", "adversarial.py:generator_step"),  # its backward
}


def recorded_step(trainer) -> set[tuple[str, str]]:
    batch = trainer._prepare_inputs(first_batch(trainer))
    recorder = HostSyncRecorder()
    if hasattr(trainer, "generator_optimizer"):
        recorder.ignore_optimizer(trainer.generator_optimizer)  # AdamW's step counter lives on the host
    with recorder:
        trainer.training_step(trainer.model, batch)
    return set(recorder.calls) - {TRANSFORMERS_MASK_CHECK}


@pytest.mark.parametrize(
    ("method", "generator_steps"),
    [
        ("normal", "0"),
        ("kd", "0"),
        ("rail_kd", "0"),
        ("mate_kd", "0"),
        ("mate_kd", "1"),
        ("cilda_minild", "0"),
        ("cilda_minild", "1"),
    ],
)
def test_training_step_has_no_host_sync_of_its_own(bert, sst2_files, tmp_path, method, generator_steps):
    trainer = make_trainer(bert, sst2_files, tmp_path, method, "--n_generator_iter", generator_steps)
    trainer.check_nonfinite_every_step = False  # as on a GPU
    calls = recorded_step(trainer)
    if method in ("normal", "kd", "rail_kd"):
        assert calls == set()
    else:
        assert calls <= MASKED_SELECTION and ("aten.index (boolean mask)", "roles.py:select_masked") in calls


def test_recorder_sees_the_per_step_nonfinite_check(bert, sst2_files, tmp_path):
    trainer = make_trainer(bert, sst2_files, tmp_path, "kd")
    assert trainer.check_nonfinite_every_step  # on CPU a per-step check is free, so it is made
    assert ("aten._local_scalar_dense", "base.py:weighted_sum") in recorded_step(trainer)
