"""GLUE metrics computed offline with scikit-learn and scipy (no `evaluate.load` download)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction

# the metric a run is judged by (best checkpoint, sweep tables)
MAIN_METRIC = {"cola": "matthews_correlation", "stsb": "pearson", "mrpc": "f1", "qqp": "f1"}


def glue_metrics(
    task_name: str | None, predictions: np.ndarray, references: np.ndarray, is_regression: bool = False
) -> dict[str, float]:
    """The official GLUE metrics of `task_name`; accuracy (or Pearson/Spearman for regression) otherwise."""
    if task_name == "stsb" or is_regression:
        return {
            "pearson": float(pearsonr(predictions, references)[0]),
            "spearmanr": float(spearmanr(predictions, references)[0]),
        }
    if task_name == "cola":
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
    if task_name in ("mrpc", "qqp"):
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "f1": float(f1_score(references, predictions)),
        }
    return {"accuracy": float(accuracy_score(references, predictions))}


def main_metric(task_name: str | None, is_regression: bool) -> str:
    if is_regression:
        return "pearson"
    return MAIN_METRIC.get(task_name or "", "accuracy")


def build_compute_metrics(task_name: str | None, is_regression: bool) -> Callable[[EvalPrediction], dict[str, float]]:
    """A Trainer `compute_metrics` for the task."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        predictions = np.squeeze(logits, axis=-1) if is_regression else np.argmax(logits, axis=-1)
        return glue_metrics(task_name, predictions, prediction.label_ids, is_regression)

    return compute_metrics
