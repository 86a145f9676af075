"""hf_kd: knowledge distillation of transformer classifiers on the Hugging Face Trainer."""

from hf_kd.arguments import DataTrainingArguments, DistillationTrainingArguments, ModelArguments
from hf_kd.config import parse_args
from hf_kd.errors import ArgumentError, NonFiniteLossError
from hf_kd.trainers import (
    TRAINERS,
    AdversarialTrainer,
    CildaMinILDTrainer,
    CildaTrainer,
    DistillationTrainer,
    KDTrainer,
    MateKDTrainer,
    NormalTrainer,
    RailKDTrainer,
    configure_method,
    trainer_class,
)

__version__ = "0.1.0"
__all__ = [
    "TRAINERS",
    "AdversarialTrainer",
    "ArgumentError",
    "CildaMinILDTrainer",
    "CildaTrainer",
    "DataTrainingArguments",
    "DistillationTrainer",
    "DistillationTrainingArguments",
    "KDTrainer",
    "MateKDTrainer",
    "ModelArguments",
    "NonFiniteLossError",
    "NormalTrainer",
    "RailKDTrainer",
    "__version__",
    "configure_method",
    "parse_args",
    "trainer_class",
]
