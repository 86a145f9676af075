"""One trainer per method; `trainer_class` resolves a method name (case-insensitive, seed names too)."""

from __future__ import annotations

from hf_kd.errors import ArgumentError, NonFiniteLossError
from hf_kd.trainers.adversarial import AdversarialTrainer, CildaMinILDTrainer, CildaTrainer, MateKDTrainer
from hf_kd.trainers.base import DistillationTrainer
from hf_kd.trainers.simple import KDTrainer, NormalTrainer, RailKDTrainer

TRAINERS: dict[str, type[DistillationTrainer]] = {
    cls.method: cls
    for cls in (NormalTrainer, KDTrainer, RailKDTrainer, MateKDTrainer, CildaTrainer, CildaMinILDTrainer)
}


def trainer_class(method: str) -> type[DistillationTrainer]:
    """The trainer of `method` (`normal`, `kd`, `rail_kd`, `mate_kd`, `cilda`, `cilda_minild`, or a seed name)."""
    key = method.strip().lower().replace("-", "_")
    for cls in TRAINERS.values():
        if key == cls.method or key in cls.aliases:
            return cls
    raise ArgumentError(
        f"Unknown --method '{method}'. Known methods: {', '.join(TRAINERS)} "
        "(seed names normal, KD, RAIL_c, MATE, CILDA, CILDA_minILD are accepted too)."
    )


def configure_method(args) -> type[DistillationTrainer]:
    """Settle `args` (a `DistillationTrainingArguments`) on its method: canonical name and loss weights."""
    cls = trainer_class(args.method)
    args.apply_method(cls.method, cls.default_weights, cls.default_generator_weights)
    return cls


__all__ = [
    "TRAINERS",
    "AdversarialTrainer",
    "CildaMinILDTrainer",
    "CildaTrainer",
    "DistillationTrainer",
    "KDTrainer",
    "MateKDTrainer",
    "NonFiniteLossError",
    "NormalTrainer",
    "RailKDTrainer",
    "configure_method",
    "trainer_class",
]
