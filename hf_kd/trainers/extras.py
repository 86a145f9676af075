"""Trained modules besides the student (projections, the generator) in checkpoints and beside the student.

A mixin of `DistillationTrainer`: the Trainer saves and restores the student, its optimizer and scheduler;
this adds the other trained modules and their state to every checkpoint (so that a resume continues
exactly) and saves them in `hf_kd_extras/` beside the final student. A checkpoint cut short by a full disk
is removed, so the previous one stays the newest complete one.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from hf_kd.guards import disk_guard

PROJECTIONS_FILE = "hf_kd_projections.safetensors"
EXTRAS_DIR = "hf_kd_extras"


class CheckpointExtras:
    projections: nn.Module | None

    def extra_state_modules(self) -> dict[str, nn.Module]:
        """Trained modules besides the student, saved in every checkpoint and beside the final student."""
        return {} if self.projections is None else {"projections": self.projections}

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint; a full disk ends the run in one line and removes the partial folder."""
        self.term_log.raise_if_nonfinite()  # never save a checkpoint with non-finite weights
        folder = os.path.join(self._get_output_dir(trial), f"checkpoint-{self.state.global_step}")
        modules = [self.accelerator.unwrap_model(model), *self.extra_state_modules().values()]
        # weights and two optimizer moments
        needed = 3 * sum(p.numel() * p.element_size() for module in modules for p in module.parameters())
        with disk_guard(folder, needed, "a checkpoint", remove_on_failure=folder):
            return super()._save_checkpoint(model, trial)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            self.save_training_extras(output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.load_training_extras(checkpoint)

    def save_training_extras(self, output_dir: str) -> None:
        """Projections (and, in subclasses, generator state) of a checkpoint."""
        if self.projections is not None:
            save_file(contiguous(self.projections.state_dict()), os.path.join(output_dir, PROJECTIONS_FILE))

    def load_training_extras(self, checkpoint: str) -> None:
        path = os.path.join(checkpoint, PROJECTIONS_FILE)
        if self.projections is not None and os.path.isfile(path):
            self.projections.load_state_dict(load_file(path, device=str(self.args.device)))

    def save_extras(self, output_dir: str | None = None) -> str | None:
        """Save the generator and projections beside the final student, in `hf_kd_extras/`."""
        modules = self.extra_state_modules()
        if not modules or not self.args.should_save:
            return None
        folder = os.path.join(output_dir or self.args.output_dir, EXTRAS_DIR)
        os.makedirs(folder, exist_ok=True)
        for name, module in modules.items():
            if isinstance(module, PreTrainedModel):
                module.save_pretrained(os.path.join(folder, name))
            else:
                save_file(contiguous(module.state_dict()), os.path.join(folder, f"{name}.safetensors"))
        with open(os.path.join(folder, "README.json"), "w") as f:
            json.dump({"method": self.method, "saved": sorted(modules)}, f, indent=2)
        return folder


def contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().contiguous().cpu() for key, value in state.items()}
