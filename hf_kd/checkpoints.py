"""Which checkpoint a run resumes from: `--resume_from_checkpoint PATH`, or `last` for the newest complete one."""

from __future__ import annotations

import json
import logging
import os

from safetensors import safe_open

from hf_kd.errors import ArgumentError

logger = logging.getLogger("hf_kd")


def checkpoint_problem(folder: str) -> str | None:
    """Why `folder` is not a complete checkpoint, or None when it is.

    The Trainer writes `trainer_state.json` after the weights, optimizer, scheduler and hf_kd's extras,
    so a save cut short (a killed process, a full disk) leaves none; the weights' headers are read too.
    """
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            json.load(f)
    except (OSError, ValueError):
        return "no readable trainer_state.json"
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".safetensors"):
                try:
                    with safe_open(os.path.join(root, name), framework="pt"):
                        pass
                except Exception:  # safetensors' own error for a file cut short
                    return f"{os.path.relpath(os.path.join(root, name), folder)} does not read back"
    return None


def resolve_checkpoint(value: str | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint` as a path, or `last` / `true`: the newest complete checkpoint in --output_dir,
    naming each newer one it skips (`checkpoint_problem`)."""
    if value is None:
        return None
    if value.lower() in ("last", "latest", "true"):
        folders = (
            [os.path.join(output_dir, d) for d in os.listdir(output_dir) if d.startswith("checkpoint-")]
            if os.path.isdir(output_dir)
            else []
        )
        for folder in sorted(folders, key=lambda f: int(f.rsplit("-", 1)[-1]), reverse=True):
            problem = checkpoint_problem(folder)
            if problem is None:
                return folder
            logger.warning("Skipping %s, an incomplete checkpoint (%s).", folder, problem)
        raise ArgumentError(f"--resume_from_checkpoint {value}: {output_dir} holds no complete checkpoint-* folder.")
    problem = checkpoint_problem(value)
    if problem is not None:
        raise ArgumentError(
            f"--resume_from_checkpoint {value} is not a complete checkpoint ({problem}): "
            "pass an earlier checkpoint, or `last` for the newest complete one."
        )
    return value
