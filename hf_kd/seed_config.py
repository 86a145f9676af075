"""Translate the original code's YAML experiment files into hf_kd arguments (METHODS.md, last table)."""

from __future__ import annotations

SEED_ONLY_KEYS = {
    "lambdas",
    "lambda_nume",
    "lambda_deno",
    "alpha",
    "alpha2",
    "outdir",
    "model_name",
    "mlm_prob",
    "num_of_ex",
    "tasks",
}


def is_seed_config(values: dict) -> bool:
    return bool(SEED_ONLY_KEYS & set(values))


def translate_seed_config(values: dict, source: str = "config") -> dict:
    raise NotImplementedError
