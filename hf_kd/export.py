"""Ship the student: ONNX and a dynamically quantised int8 copy, with proof that they answer as the student does.

    python -m hf_kd.export OUTPUT_DIR            # a finished run's student; its validation data from the record
    python scripts/run_glue_kd.py ... --export_onnx true   # the same at the end of a run

Writes OUTPUT_DIR/onnx/: `model.onnx` (fp32, dynamic batch and sequence axes; `torch.onnx.export`),
`model_quantized.onnx` (int8 weights, `onnxruntime.quantization.quantize_dynamic`), the tokenizer and
`config.json` with the label names: ready for `onnxruntime.InferenceSession`, or optimum's
`ORTModelForSequenceClassification.from_pretrained(OUTPUT_DIR / "onnx", file_name=...)`. Then, on the run's
validation data: each export's agreement with the PyTorch student (share of rows with the same predicted label),
its metric and the largest logit difference; and latency per sentence at batch 1 and 32, one thread and all,
beside the PyTorch student (and the teacher, where the run had one), with each file's size on disk. All of it
goes into `hf_kd_run.json` (`export`) and the model card. A family the exporter cannot trace is refused in one
line naming why. The packages are an extra: `pip install -e .[export]`.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shutil
import warnings

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hf_kd.errors import ArgumentError, brief
from hf_kd.footprint import ms_per_sentence, size_on_disk

logger = logging.getLogger("hf_kd")
EXPORT_DIR = "onnx"
FP32_FILE, INT8_FILE = "model.onnx", "model_quantized.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# int8 moving the metric by more than this (in points) is warned about: dynamic int8 usually costs well under a
# point on BERT-style classifiers, and on validation sets of ~1,000 rows or more one point is 10+ examples,
# beyond the few rows at the decision boundary that rounding flips
INT8_WARNING_POINTS = 1.0


def onnx_modules():
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise ArgumentError("Exporting needs onnx and onnxruntime: pip install -e .[export]") from None
    return onnxruntime, quantize_dynamic, QuantType


class Logits(torch.nn.Module):
    """The classifier as a function of its named inputs to its logits (what the ONNX graph computes)."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).logits


def input_names(model, tokenizer) -> tuple[str, ...]:
    """The inputs the tokenizer gives and the model's forward takes."""
    accepted = set(inspect.signature(model.forward).parameters)
    given = set(tokenizer("a b", return_tensors="pt"))
    return tuple(name for name in INPUT_NAMES if name in accepted and name in given)


def export_onnx(model_dir: str, folder: str, opset: int = 17) -> tuple[str, tuple[str, ...]]:
    """`model_dir`'s classifier as `folder/model.onnx` with the tokenizer and config beside it; its input names."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    names = input_names(model, tokenizer)
    sample = tokenizer(["a short example", "a somewhat longer second example text"], padding=True, return_tensors="pt")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, FP32_FILE)
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    try:
        # the tracer's warnings are about Python branches fixed at trace time: the agreement check is the proof
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Logits(model, names),
                tuple(sample[name] for name in names),
                path,
                input_names=list(names),
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
    except Exception as error:  # the exporter's own errors for a model it cannot trace
        raise ArgumentError(
            f"{model.config.model_type} does not export to ONNX here ({brief(error)}): ship the PyTorch student, or "
            "distil into a family that exports (BERT, RoBERTa, DistilBERT, ELECTRA, ...)."
        ) from None
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return path, names


def quantize(fp32_path: str, int8_path: str) -> None:
    _, quantize_dynamic, quant_type = onnx_modules()
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to pre-process goes to the root logger
    try:
        quantize_dynamic(fp32_path, int8_path, weight_type=quant_type.QInt8)
    finally:
        root.setLevel(level)


def session(path: str, threads: int | None = None):
    onnxruntime, _, _ = onnx_modules()
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # idle ORT threads spin by default, taking the cores from whatever is timed next (PyTorch, another session)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def batches(dataset, tokenizer, names: tuple[str, ...], size: int = 32):
    """The validation rows, `size` at a time, padded as the run's collator pads: (PyTorch inputs, labels)."""
    from transformers import DataCollatorWithPadding

    from hf_kd.data import collated_batches

    rows = dataset.select_columns([name for name in (*names, "label") if name in dataset.column_names])
    for batch in collated_batches(rows, DataCollatorWithPadding(tokenizer), size, torch.device("cpu")):
        yield {name: batch[name] for name in names if name in batch}, batch["labels"].numpy()


def agreement(model_dir: str, paths: dict[str, str], dataset, task: str | None, regression: bool) -> dict:
    """Per export: the share of rows whose predicted label is the PyTorch student's, its metric and the
    largest logit difference, on `dataset` (the run's validation data)."""
    from hf_kd.metrics import glue_metrics, main_metric

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    names = input_names(model, tokenizer)
    sessions = {kind: session(path) for kind, path in paths.items()}
    logits: dict[str, list[np.ndarray]] = {"pytorch": [], **{kind: [] for kind in paths}}
    labels = []
    with torch.no_grad():
        for inputs, label in batches(dataset, tokenizer, names):
            logits["pytorch"].append(model(**inputs).logits.float().numpy())
            for kind, runner in sessions.items():
                logits[kind].append(runner.run(None, graph_inputs(runner, inputs))[0])
            labels.append(label)
    references = np.concatenate(labels)
    joined = {kind: np.concatenate(parts) for kind, parts in logits.items()}
    metric = main_metric(task, regression)

    def predictions(values: np.ndarray) -> np.ndarray:
        return values[:, 0] if regression else values.argmax(-1)

    results = {}
    for kind, values in joined.items():
        result = {metric: glue_metrics(task, predictions(values), references, regression)[metric]}
        if kind != "pytorch":
            same = predictions(values) == predictions(joined["pytorch"])
            result["agreement"] = float(np.mean(same)) if not regression else None
            result["max_logit_difference"] = float(np.abs(values - joined["pytorch"]).max())
        results[kind] = result
    results["metric"], results["rows"] = metric, len(references)
    return results


def graph_inputs(runner, inputs: dict) -> dict[str, np.ndarray]:
    """The inputs the ONNX graph kept (the exporter drops unused ones, e.g. DeBERTa-v2's token types), as numpy."""
    kept = {node.name for node in runner.get_inputs()}
    return {name: np.asarray(value) for name, value in inputs.items() if name in kept}


def int8_warning(checks: dict) -> str | None:
    """One line when the int8 export moves the validation metric by more than INT8_WARNING_POINTS."""
    metric = checks["metric"]
    moved = 100 * (checks["onnx int8"][metric] - checks["pytorch"][metric])
    if abs(moved) <= INT8_WARNING_POINTS:
        return None
    return (
        f"The int8 export moves {metric} by {moved:+.2f} points (more than {INT8_WARNING_POINTS:g}) on "
        f"{checks['rows']:,} validation rows: check it before shipping it, or ship the fp32 export."
    )


def latencies(
    models: dict[str, tuple[str, str]], paths: dict[str, str], texts: list[str], num_labels: int, max_length: int = 128
) -> dict:
    """ms per sentence at batch 1 and 32, one thread and all, of each PyTorch model (`models`: name -> (model
    folder or id, tokenizer)) and each ONNX file (`paths`, tokenizer beside it), on the same `texts`.
    `num_labels` is given because transformers 5 leaves unnamed label maps out of configs (BART then reads 3)."""
    runners = {}  # name -> (tokenizer, tensor type, the call, a function of the threads making it)
    for name, (source, tokenizer_source) in models.items():
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels).eval()
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        kept = input_names(model, tokenizer)
        runners[name] = (tokenizer, "pt", lambda threads, m=model, k=kept: lambda e: m(**{n: e[n] for n in k}))
    onnx_tokenizer = AutoTokenizer.from_pretrained(os.path.dirname(next(iter(paths.values()))))
    for name, path in paths.items():

        def onnx_call(threads: int, path: str = path):
            runner = session(path, threads)
            return lambda e: runner.run(None, graph_inputs(runner, e))

        runners[name] = (onnx_tokenizer, "np", onnx_call)
    table: dict[str, dict[str, float]] = {}
    all_threads = torch.get_num_threads()
    try:
        for threads in sorted({1, all_threads}):  # one column of each on a one-thread machine
            torch.set_num_threads(threads)
            timed_models = {}
            for name, (tokenizer, tensors, make_call) in runners.items():

                def encode(batch: list[str], tokenizer=tokenizer, tensors=tensors) -> dict:
                    return tokenizer(
                        batch, padding=True, truncation=True, max_length=max_length, return_tensors=tensors
                    )

                timed_models[name] = (make_call(threads), encode)
            with torch.inference_mode():
                times = ms_per_sentence(timed_models, texts)  # in turn, round after round: the ratios hold
            label = f"{threads} thread{'s' if threads > 1 else ''}"
            for name, row in times.items():
                table.setdefault(name, {}).update({f"{label}, {batch}": ms for batch, ms in row.items()})
    finally:
        torch.set_num_threads(all_threads)
    return table


def export_run(output_dir: str, dataset=None, task: str | None = None, regression: bool = False, texts=None) -> dict:
    """Export the student in `output_dir`, check the exports against it on `dataset`, time everything, and write
    the findings into the run record and the card; returns them."""
    from hf_kd.outputs import RUN_INFO_FILE, read_json, write_json_atomic

    folder = os.path.join(output_dir, EXPORT_DIR)
    shutil.rmtree(folder, ignore_errors=True)
    fp32, _ = export_onnx(output_dir, folder)
    int8 = os.path.join(folder, INT8_FILE)
    quantize(fp32, int8)
    paths = {"onnx fp32": fp32, "onnx int8": int8}
    record_path = os.path.join(output_dir, RUN_INFO_FILE)
    record = read_json(record_path) if os.path.isfile(record_path) else {}
    findings: dict = {"folder": folder, "files": {kind: os.path.basename(path) for kind, path in paths.items()}}
    findings["size_on_disk_mb"] = {
        "pytorch student": size_on_disk(output_dir) / 2**20,
        **{kind: os.path.getsize(path) / 2**20 for kind, path in paths.items()},
    }
    if dataset is not None and len(dataset):
        checks = agreement(output_dir, paths, dataset, task, regression)
        findings["agreement"] = checks
        findings["int8_metric_change_points"] = 100 * (
            checks["onnx int8"][checks["metric"]] - checks["pytorch"][checks["metric"]]
        )
        warning = int8_warning(checks)
        if warning:
            findings["warning"] = warning
            logger.warning(warning)
    models = {"pytorch student": (output_dir, output_dir)}
    teacher = teacher_to_time(record, output_dir)
    if teacher:
        models = {"pytorch teacher": teacher, **models}
        if os.path.isdir(teacher[0]):
            findings["size_on_disk_mb"]["pytorch teacher"] = size_on_disk(teacher[0]) / 2**20
    max_length = (record.get("data_args") or {}).get("max_seq_length", 128)
    if not texts and dataset is not None and len(dataset):  # time on the validation sentences
        tokenizer = AutoTokenizer.from_pretrained(output_dir)
        texts = tokenizer.batch_decode(dataset[:32]["input_ids"], skip_special_tokens=True)
    texts = texts or ["a sentence to time the models on ."]
    num_labels = AutoConfig.from_pretrained(output_dir).num_labels
    findings["latency_ms_per_sentence"] = latencies(models, paths, texts, num_labels, max_length)
    findings["threads"] = torch.get_num_threads()
    if record:
        write_json_atomic(record_path, {**record, "export": findings})
    card = os.path.join(output_dir, "README.md")
    if os.path.isfile(card):
        with open(card) as f:
            text = f.read().split("\n## Deployment (ONNX)")[0].rstrip("\n")
        with open(card, "w") as f:
            f.write(text + "\n" + "\n".join(card_lines(findings)) + "\n")
    return findings


def teacher_to_time(record: dict, output_dir: str) -> tuple[str, str] | None:
    """The run's teacher and its tokenizer (its own, else the student's), or None when it does not load here."""
    from hf_kd.models import has_tokenizer

    teacher = record.get("teacher")
    if not teacher:
        return None
    tokenizer = record.get("teacher_tokenizer") or (teacher if has_tokenizer(teacher) else output_dir)
    try:
        AutoConfig.from_pretrained(teacher)
    except OSError as error:
        logger.warning("The teacher is not timed: %s does not load here (%s).", teacher, brief(error))
        return None
    return teacher, tokenizer


def card_lines(findings: dict) -> list[str]:
    """The card's section on what to ship: files, agreement and metric per export, latency and size."""
    lines = [
        "",
        "## Deployment (ONNX)",
        "",
        f"`{EXPORT_DIR}/{FP32_FILE}` (fp32) and `{EXPORT_DIR}/{INT8_FILE}` "
        "(int8 dynamic quantisation), with the tokenizer and config beside them.",
    ]
    checks = findings.get("agreement")
    if checks:
        metric = checks["metric"]
        lines += [
            "",
            f"On {checks['rows']:,} validation rows:",
            "",
            f"| model | {metric} | agreement with PyTorch | largest logit difference |",
            "|---|---|---|---|",
        ]
        for kind in ("pytorch", "onnx fp32", "onnx int8"):
            row = checks[kind]
            agreement_text = "" if row.get("agreement") is None else f"{100 * row['agreement']:.2f}%"
            difference = "" if "max_logit_difference" not in row else f"{row['max_logit_difference']:.2g}"
            lines.append(f"| {kind} | {row[metric]:.4f} | {agreement_text} | {difference} |")
        if findings.get("warning"):
            lines += ["", f"Warning: {findings['warning']}"]
    table = findings["latency_ms_per_sentence"]
    columns = list(next(iter(table.values())))
    lines += [
        "",
        "CPU milliseconds per sentence on the machine that exported it:",
        "",
        "| model | " + " | ".join(columns) + " | size on disk |",
    ]
    lines.append("|---" * (len(columns) + 2) + "|")
    sizes = findings["size_on_disk_mb"]
    for name, row in table.items():
        size = sizes.get(name)
        lines.append(
            f"| {name} | "
            + " | ".join(f"{row[c]:.2f}" for c in columns)
            + f" | {'' if size is None else f'{size:.1f} MB'} |"
        )
    return lines


def validation_of(output_dir: str, data_args: dict | None = None):
    """The run's validation data, read again as the run read it (from `data_args`, by default the record's):
    (dataset, task name, regression), or Nones when the record names no validation data."""
    from hf_kd.arguments import DataTrainingArguments
    from hf_kd.data import prepare_data
    from hf_kd.outputs import RUN_INFO_FILE, read_json

    record_path = os.path.join(output_dir, RUN_INFO_FILE)
    data_args = data_args or (read_json(record_path) if os.path.isfile(record_path) else {}).get("data_args")
    if not data_args or (not data_args.get("validation_file") and not data_args.get("task_name")):
        logger.warning(
            "%s records no validation data (a run of an older hf_kd, or none given): the exports are not checked "
            "against the student, only timed.",
            output_dir,
        )
        return None, None, False
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    data = prepare_data(DataTrainingArguments(**data_args), tokenizer)
    return data.validation, data.task_name, data.is_regression


def export_student(output_dir: str, data_args: dict | None = None) -> dict:
    """`export_run` on a finished run's folder, its validation data read again as `data_args` (the
    DataTrainingArguments fields; by default those in its record) say."""
    if not os.path.isfile(os.path.join(output_dir, "config.json")):
        raise ArgumentError(f"{output_dir} holds no student (config.json): give a finished run's folder.")
    onnx_modules()
    dataset, task, regression = validation_of(output_dir, data_args)
    return export_run(output_dir, dataset, task, regression)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hf_kd.export", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="a finished run's folder (the student and hf_kd_run.json)")
    options = parser.parse_args(argv)
    print("\n".join(card_lines(export_student(options.output_dir))))


if __name__ == "__main__":
    from hf_kd.cli import exit_on_argument_error

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    exit_on_argument_error(main, "hf_kd.export")
