"""hf_kd: knowledge distillation of transformer classifiers on the Hugging Face Trainer."""

from hf_kd.arguments import ArgumentError, DataTrainingArguments, DistillationTrainingArguments, ModelArguments
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
    "NormalTrainer",
    "RailKDTrainer",
    "__version__",
    "trainer_class",
]
