"""Data: GLUE tasks from the Hub, or local csv / tsv / json / jsonl files with GLUE's column names (or the
columns named by --text_column_names and --label_column_name).

The official GLUE TSV files (e.g. `SST-2/train.tsv`, MRPC's `#1 String`, QQP's `is_duplicate`,
MNLI's `gold_label`, CoLA's header-less layout) are read as they are.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset, DatasetDict, Value, concatenate_datasets, load_dataset
from torch.nn.utils.rnn import pad_sequence
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from hf_kd.arguments import DataTrainingArguments
from hf_kd.errors import ArgumentError, brief
from hf_kd.generator import draw_mask, maskable_positions
from hf_kd.losses import IGNORE_LABEL, labelled_rows
from hf_kd.memory import MappedPages

logger = logging.getLogger(__name__)

TASK_TO_KEYS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "mnli": ("premise", "hypothesis"),
    "mrpc": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "qqp": ("question1", "question2"),
    "rte": ("sentence1", "sentence2"),
    "sst2": ("sentence", None),
    "stsb": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
# label order of the Hub's GLUE data sets, so that ids agree with fine-tuned Hub teachers
GLUE_LABELS: dict[str, list[str] | None] = {
    "cola": ["unacceptable", "acceptable"],
    "mnli": ["entailment", "neutral", "contradiction"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qnli": ["entailment", "not_entailment"],
    "qqp": ["not_duplicate", "duplicate"],
    "rte": ["entailment", "not_entailment"],
    "sst2": ["negative", "positive"],
    "stsb": None,
    "wnli": ["not_entailment", "entailment"],
}
# column names of the official GLUE TSV files -> the Hub's names
GLUE_TSV_COLUMNS = {
    "#1 String": "sentence1",
    "#2 String": "sentence2",
    "Quality": "label",
    "is_duplicate": "label",
    "gold_label": "label",
    "score": "label",
}
COLA_TSV_COLUMNS = ["source", "label", "original_label", "sentence"]
TEXT_PAIRS = [
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("sentence", None),
    ("text", None),
]
STATIC_MASK_COLUMN = "static_mlm_mask"
TRUNCATED_COLUMN = "hf_kd_truncated"
TEACHER_TRUNCATED_COLUMN = "hf_kd_teacher_truncated"
TEACHER_PREFIX = "teacher_"  # the teacher's own tokenization, when its tokenizer is not the student's
TEACHER_COLUMNS = tuple(TEACHER_PREFIX + name for name in ("input_ids", "attention_mask", "token_type_ids"))
INDEX_COLUMN = "hf_kd_index"  # row of a training example, to find its cached teacher outputs
ID_COLUMNS = ("idx", "id", "index", "guid")


@dataclass
class TaskData:
    train: Dataset | None
    validation: Dataset | None
    label_list: list[str] | None  # None for regression
    task_name: str | None
    unlabelled: int = 0  # training rows without a label (--unlabeled_file, empty labels in --train_file)
    labelled_repeats: int = 1  # each labelled row's copies in `train` (--labelled_share)

    @property
    def labelled(self) -> int:
        """Distinct labelled training rows."""
        return 0 if self.train is None else (len(self.train) - self.unlabelled) // self.labelled_repeats

    @property
    def is_regression(self) -> bool:
        return self.label_list is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_list is None else len(self.label_list)


def normalise_task_name(task_name: str | None) -> str | None:
    if task_name is None:
        return None
    key = task_name.lower().replace("-", "")
    key = {"sst": "sst2", "sts": "stsb"}.get(key, key)
    if key not in TASK_TO_KEYS:
        return task_name  # a custom name for local files
    return key


def load_raw(data_args: DataTrainingArguments, cache_dir: str | None = None) -> DatasetDict:
    """Local files when given, else the GLUE task from the Hub."""
    task = normalise_task_name(data_args.task_name)
    files = {"train": data_args.train_file, "validation": data_args.validation_file}
    files = {split: path for split, path in files.items() if path}
    if not files:
        if task not in TASK_TO_KEYS:
            raise ArgumentError(
                f"--task_name {data_args.task_name!r} is not a GLUE task ({', '.join(TASK_TO_KEYS)}); "
                "for other data pass --train_file and --validation_file."
            )
        try:
            raw = load_dataset("nyu-mll/glue", task, cache_dir=cache_dir)
        except Exception as error:  # offline, no access, a broken cache: datasets raises many types
            raise ArgumentError(
                f"--task_name {task}: GLUE could not be loaded from the Hub ({brief(error)}). "
                "Pass --train_file and --validation_file with local copies."
            ) from None
        if task == "mnli":
            raw["validation"] = raw["validation_matched"]
        return DatasetDict({split: raw[split] for split in ("train", "validation")})
    raw = DatasetDict()
    for split, path in files.items():
        raw[split] = with_label_column(_load_file(path, task, cache_dir), data_args.label_column_name, path)
    return raw


def with_label_column(dataset: Dataset, name: str | None, source: str, required: bool = True) -> Dataset:
    """The `--label_column_name` column renamed to 'label' (a column already named 'label' gives way to it)."""
    if name is None or name == "label":
        return dataset
    if name not in dataset.column_names:
        if not required:
            return dataset
        raise ArgumentError(
            f"{source} has no column {name!r} (--label_column_name); its columns: {dataset.column_names}."
        )
    if "label" in dataset.column_names:
        dataset = dataset.remove_columns("label")
    return dataset.rename_column(name, "label")


def _load_file(
    path: str, task: str | None, cache_dir: str | None, option: str = "--train_file / --validation_file"
) -> Dataset:
    if not os.path.isfile(path):
        raise ArgumentError(f"Data file {path} does not exist: check {option}.")
    extension = path.rsplit(".", 1)[-1].lower()
    if extension not in ("csv", "tsv", "json", "jsonl"):
        raise ArgumentError(f"Data file {path}: use a .csv, .tsv, .json or .jsonl file.")
    try:
        header_lines = 1 if extension in ("csv", "tsv") and not is_headerless_cola(path, extension, task) else 0
        with open(path, encoding="utf-8") as f:
            first_lines = list(itertools.islice((line for line in f if line.strip()), header_lines + 1))
    except UnicodeDecodeError as error:
        where = first_bad_line(path, extension, 1) or f"not UTF-8 text ({brief(error)})"
        raise ArgumentError(f"Data file {path}, {where}.") from None
    if len(first_lines) <= header_lines:
        raise ArgumentError(f"Data file {path} has no rows.")
    try:
        dataset = _read_table(path, extension, task, cache_dir)
    except ArgumentError:
        raise
    except Exception as error:  # datasets / pyarrow raise many types for a malformed file
        where = first_bad_line(path, extension, header_lines)
        if where is None:
            where = (
                f"could not be read as {extension.upper()} ({brief(error)}); check its format: a header row, one "
                "example per line, the same columns in every row"
            )
        raise ArgumentError(f"Data file {path}, {where}.") from None
    renames = {
        old: new
        for old, new in GLUE_TSV_COLUMNS.items()
        if old in dataset.column_names and new not in dataset.column_names
    }
    if task == "mnli":
        renames.update(
            {k: v for k, v in {"sentence1": "premise", "sentence2": "hypothesis"}.items() if k in dataset.column_names}
        )
    return dataset.rename_columns(renames) if renames else dataset


def first_bad_line(path: str, extension: str, header_lines: int) -> str | None:
    """Where a data file that does not read first goes wrong, as "line N: what; fix", or None if not found.

    The readers (pyarrow, pandas) fail with messages that name no line; this reads the file again line by
    line: text that is not UTF-8, a JSON line that is not an object, a row whose field count differs
    from the header's.
    """
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r"))
        except UnicodeDecodeError as error:
            return f"line {number}: not UTF-8 text ({error.reason} at byte {error.start}); re-encode the file as UTF-8"
    if extension in ("json", "jsonl"):
        if lines and lines[0].lstrip().startswith("["):  # one JSON array, not JSON lines
            return "line 1: a JSON array; write one JSON object per line (JSON lines)"
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as error:
                return f"line {number}: not valid JSON ({error.msg}); write one JSON object per line"
            if not isinstance(value, dict):
                return f"line {number}: a JSON {type(value).__name__}, not an object with the columns as keys"
        return None
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if extension == "tsv" else {}
    rows = csv.reader(lines, **options)
    width = None
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        if "\x00" in "".join(row):
            return f"line {number}: a NUL byte; remove it"
        if width is None:
            width = len(row)
        elif len(row) != width:
            first = "the header" if header_lines else "line 1"
            return f"line {number}: {len(row)} fields where {first} has {width}; give every row the same columns"
    return None


def header_fields(path: str, extension: str) -> list[str]:
    """The first non-empty line of a CSV / TSV file as fields: without its line end, BOM or quoting."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        line = next((line for line in f if line.strip()), "")
    options = {"delimiter": "\t"} if extension == "tsv" else {}
    return [name.strip() for name in next(csv.reader([line.rstrip("\r\n")], **options), [])]


def is_headerless_cola(path: str, extension: str, task: str | None) -> bool:
    """CoLA's official TSV has no header row (source, label, original label, sentence): a CoLA file whose first
    line does not name a `sentence` column."""
    return task == "cola" and extension in ("csv", "tsv") and "sentence" not in header_fields(path, extension)


def _read_table(path: str, extension: str, task: str | None, cache_dir: str | None) -> Dataset:
    if extension in ("json", "jsonl"):
        return load_dataset("json", data_files=path, split="train", cache_dir=cache_dir)
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if extension == "tsv" else {}
    if is_headerless_cola(path, extension, task):
        options["column_names"] = COLA_TSV_COLUMNS
    return load_dataset("csv", data_files=path, split="train", cache_dir=cache_dir, keep_default_na=False, **options)


def text_columns(
    dataset: Dataset, task: str | None, source: str, chosen: tuple[str, ...] = ()
) -> tuple[str, str | None]:
    """The text column(s): those `chosen` (--text_column_names), the task's, or the first GLUE-named pair present."""
    if chosen:
        missing = [name for name in chosen if name not in dataset.column_names]
        if missing:
            raise ArgumentError(
                f"{source} has no column(s) {missing} (--text_column_names); its columns: {dataset.column_names}."
            )
        return chosen[0], chosen[1] if len(chosen) > 1 else None
    if task in TASK_TO_KEYS:
        keys = TASK_TO_KEYS[task]
        missing = [key for key in keys if key is not None and key not in dataset.column_names]
        if missing:
            raise ArgumentError(
                f"{source} lacks the column(s) {missing} of task {task!r} (it has {dataset.column_names}): "
                "rename the columns to GLUE's names, or pick them with --text_column_names."
            )
        return keys
    for first, second in TEXT_PAIRS:
        if first in dataset.column_names and (second is None or second in dataset.column_names):
            return first, second
    raise ArgumentError(
        f"{source} has no text column with a GLUE name (sentence, sentence1/sentence2, question/sentence, "
        f"premise/hypothesis, question1/question2, text): it has {dataset.column_names}. "
        "Pick them with --text_column_names (e.g. --text_column_names question,passage)."
    )


def arrow_column(dataset: Dataset, name: str) -> pa.ChunkedArray:
    """A column as Arrow reads it from the data set's memory-mapped files (its selection applied): counted and
    tested without a Python object per row, so that millions of rows of transfer text never become a list."""
    return dataset.with_format("arrow")[name]


def count_blank(column: pa.ChunkedArray) -> int:
    """Null cells, and in a string column cells of nothing but white space (trimmed chunk by chunk: no copy of
    the whole column)."""
    blank = column.null_count
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        for chunk in column.chunks:
            blank += pc.sum(pc.equal(pc.utf8_trim_whitespace(chunk.fill_null("x")), "")).as_py() or 0
    return blank


def count_missing_labels(dataset: Dataset) -> int:
    """Rows whose 'label' is an empty cell (or JSON null), as `is_missing_label` reads one."""
    return count_blank(arrow_column(dataset, "label"))


def is_missing_label(value) -> bool:
    """An empty cell (or JSON null) in the label column: the row is unlabelled."""
    return value is None or (isinstance(value, str) and not value.strip())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def label_list_for(task: str | None, train: Dataset, source: str) -> list[str] | None:
    """GLUE's label names for GLUE tasks; otherwise the sorted labels of the training data (None: regression).

    Empty labels (unlabelled rows) are not labels; float labels, also read as text beside empty cells,
    make a regression task.
    """
    if "label" not in train.column_names:
        columns = train.column_names
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in (",", "\t", ";")):
            hint = " (one column whose name holds a separator: is the file's extension right for its delimiter?)"
        raise ArgumentError(
            f"{source} has no 'label' column (its columns: {columns}){hint}: pick the gold-label column with "
            "--label_column_name (e.g. --label_column_name category), or name it 'label'."
        )
    if task in GLUE_LABELS:
        return GLUE_LABELS[task]
    feature = train.features["label"]
    if hasattr(feature, "names"):
        return list(feature.names)
    if feature.dtype.startswith("float"):
        return None
    labels = {str(label) for label in train["label"] if not is_missing_label(label)}
    if not labels:
        raise ArgumentError(
            f"{source} has no labelled row: give some rows a label, or a GLUE --task_name that fixes the label set."
        )
    if all(_is_number(label) for label in labels) and any("." in label or "e" in label.lower() for label in labels):
        return None
    if all(label.lstrip("-").isdigit() for label in labels):  # integers in number order: 2 before 10
        return sorted(labels, key=int)
    return sorted(labels)


def _label_ids(
    dataset: Dataset, label_list: list[str] | None, source: str, allow_unlabelled: bool = False
) -> tuple[Dataset, int]:
    """Map label names or numbers to ids 0..K-1, refuse any label outside the set, and count empty labels.

    With `allow_unlabelled` (training data) an empty label marks an unlabelled row: `IGNORE_LABEL` for
    classification, NaN for regression. Elsewhere (validation) it is refused.
    """
    values = dataset["label"]
    missing = sum(1 for value in values if is_missing_label(value))
    if missing and not allow_unlabelled:
        raise ArgumentError(
            f"{source} has {missing} row(s) without a label: evaluation needs every label. Fill them in or drop them."
        )
    if label_list is None:
        numbers = [float("nan") if is_missing_label(value) else value for value in values]
        try:
            numbers = [float(value) for value in numbers]
        except (TypeError, ValueError) as error:
            raise ArgumentError(f"{source}: a regression label is not a number ({brief(error)}).") from None
        return dataset.remove_columns("label").add_column("label", numbers).cast_column(
            "label", Value("float32")
        ), missing
    index = {name: i for i, name in enumerate(label_list)}
    ids, bad = [], set()
    for value in values:
        key = str(value)
        if is_missing_label(value):
            ids.append(IGNORE_LABEL)
        elif key in index:
            ids.append(index[key])
        elif isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            number = int(value)
            ids.append(number)
            if not 0 <= number < len(label_list):
                bad.add(key)
        else:
            bad.add(key)
    if bad:
        raise ArgumentError(
            f"{source} has labels {sorted(bad)[:10]} outside the label set {label_list}: fix the data or the --task_name."
        )
    return dataset.remove_columns("label").add_column("label", ids), missing


def load_unlabelled(
    data_args: DataTrainingArguments,
    task: str | None,
    columns: tuple[str, str | None],
    regression: bool,
    cache_dir: str | None,
) -> Dataset:
    """`--unlabeled_file`: text-only rows with the training data's text columns, each marked unlabelled."""
    path, limit = data_args.unlabeled_file, data_args.max_unlabeled_samples
    dataset = _load_file(path, task, cache_dir, option="--unlabeled_file")  # refuses a file without rows
    dataset = with_label_column(dataset, data_args.label_column_name, path, required=False)
    wanted = [column for column in columns if column is not None]
    missing = [column for column in wanted if column not in dataset.column_names]
    if missing:
        raise ArgumentError(
            f"--unlabeled_file {path} lacks the text column(s) {missing} of the training data "
            f"(it has {dataset.column_names}): use the same column names as --train_file."
        )
    if "label" in dataset.column_names and count_missing_labels(dataset) < len(dataset):
        logger.warning("--unlabeled_file %s: its 'label' column is ignored (the rows count as unlabelled).", path)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    _report_empty_texts(dataset, columns, path)
    dataset = _as_text(dataset.select_columns(wanted), wanted)
    marker = float("nan") if regression else IGNORE_LABEL
    return dataset.add_column("label", np.full(len(dataset), marker))


def has_labels(dataset: Dataset) -> bool:
    """Whether a split has a 'label' column with at least one label in it."""
    return "label" in dataset.column_names and count_missing_labels(dataset) < len(dataset)


def _as_unlabelled(dataset: Dataset) -> Dataset:
    """Every row without a label (`IGNORE_LABEL`, NaN for regression): text the teacher check reads."""
    if "label" in dataset.column_names:
        dataset = dataset.remove_columns("label")
    return dataset.add_column("label", [None] * len(dataset))


def _append_unlabelled(labelled: Dataset, unlabelled: Dataset, columns: tuple[str, str | None]) -> Dataset:
    """The labelled rows (text columns and label only) followed by the unlabelled ones."""
    texts = [column for column in columns if column is not None]
    labelled = _as_text(labelled.select_columns([*texts, "label"]), texts)
    return concatenate_datasets([labelled, unlabelled.cast(labelled.features)])


def _as_text(dataset: Dataset, columns: list[str]) -> Dataset:
    """Text columns typed as strings, so that files whose cells read as numbers still concatenate."""
    for column in columns:
        if dataset.features[column] != Value("string"):
            dataset = dataset.cast_column(column, Value("string"))
    return dataset


def prepare_data(
    data_args: DataTrainingArguments,
    tokenizer: PreTrainedTokenizerBase,
    seed: int = 42,
    static_mask_probability: float | None = None,
    fixed_count_mask: bool = False,
    cache_dir: str | None = None,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
    teacher_max_seq_length: int | None = None,
    validation_labels_required: bool = True,
) -> TaskData:
    """Load, subsample, label and tokenise the training and validation splits.

    With a `teacher_tokenizer` (a teacher whose vocabulary is not the student's), every example is also
    tokenised with it, into `teacher_input_ids`, `teacher_attention_mask` (and `teacher_token_type_ids`).
    Without `validation_labels_required` (no evaluation), a validation file without labels is kept as text
    (its labels `IGNORE_LABEL`): the teacher check reads the teacher's confidence on it.
    """
    task = normalise_task_name(data_args.task_name)
    raw = load_raw(data_args, cache_dir)
    if "train" not in raw:
        raise ArgumentError("No training data: pass --train_file (or a GLUE --task_name).")
    source = {
        "train": data_args.train_file or f"GLUE {task} train",
        "validation": data_args.validation_file or f"GLUE {task} validation",
    }
    label_list = label_list_for(task, raw["train"], source["train"])
    first, second = text_columns(raw["train"], task, source["train"], data_args.text_columns)
    padding = "max_length" if data_args.pad_to_max_length else False
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    teacher_length = teacher_max_seq_length or data_args.max_seq_length
    check_room(tokenizer, data_args.max_seq_length, second is not None, "--max_seq_length", "student's")
    if teacher_tokenizer is not None:
        flag = "--teacher_max_seq_length" if teacher_max_seq_length else "--max_seq_length"
        check_room(teacher_tokenizer, teacher_length, second is not None, flag, "teacher's")

    def tokenize(batch: dict) -> dict:
        texts = (batch[first],) if second is None else (batch[first], batch[second])
        texts = tuple([text if text is not None else "" for text in column] for column in texts)
        encoded = tokenizer(*texts, padding=padding, max_length=data_args.max_seq_length, truncation=True)
        full_lengths = tokenizer(*texts, truncation=False, return_length=True, verbose=False)["length"]
        encoded[TRUNCATED_COLUMN] = [length > data_args.max_seq_length for length in full_lengths]
        if teacher_tokenizer is not None:
            own = teacher_tokenizer(*texts, padding=padding, max_length=teacher_length, truncation=True)
            for name in ("input_ids", "attention_mask", "token_type_ids"):
                if name in own:
                    encoded[TEACHER_PREFIX + name] = own[name]
            full_lengths = teacher_tokenizer(*texts, truncation=False, return_length=True, verbose=False)["length"]
            encoded[TEACHER_TRUNCATED_COLUMN] = [length > teacher_length for length in full_lengths]
        return encoded

    unlabelled = None
    if data_args.unlabeled_file:
        unlabelled = load_unlabelled(data_args, task, (first, second), label_list is None, cache_dir)
    splits: dict[str, Dataset] = {}
    unlabelled_rows, repeats = 0, 1
    for split, dataset in raw.items():
        keep = int(len(dataset) * data_args.data_ratio)
        if limits[split] is not None:
            keep = min(keep, limits[split])
        if keep == 0:
            raise ArgumentError(
                f"The {split} split ({source[split]}) is empty after --data_ratio / --max_{'train' if split == 'train' else 'eval'}_samples."
            )
        dataset = dataset.select(range(keep))
        text_columns(dataset, task, source[split], data_args.text_columns)
        _report_empty_texts(dataset, (first, second), source[split])
        _report_duplicate_ids(dataset, source[split])
        if split == "validation" and not has_labels(dataset):
            if validation_labels_required:
                raise ArgumentError(
                    f"{source[split]} has no labels (its columns: {dataset.column_names}): evaluation needs them. "
                    "Add the gold labels (or name their column with --label_column_name), or pass --do_eval false "
                    "to read it for the teacher check's confidence statistics only."
                )
            dataset = _as_unlabelled(dataset)
        dataset, missing = _label_ids(
            dataset, label_list, source[split], allow_unlabelled=split != "validation" or not validation_labels_required
        )
        if split == "train" and unlabelled is not None:
            dataset = _append_unlabelled(dataset, unlabelled, (first, second))
            missing += len(unlabelled)
        if split == "train":
            unlabelled_rows = missing
            if missing:
                logger.info("Training on %d labelled and %d unlabelled examples.", len(dataset) - missing, missing)
        dataset = dataset.map(
            tokenize,
            batched=True,
            num_proc=data_args.preprocessing_num_workers,
            desc=f"Tokenising {split}",
            remove_columns=[c for c in dataset.column_names if c != "label"],
        )
        truncated = pc.sum(arrow_column(dataset, TRUNCATED_COLUMN)).as_py() or 0
        if truncated:
            logger.warning(
                "%s: %d of %d examples are longer than --max_seq_length %d and were truncated.",
                source[split],
                truncated,
                len(dataset),
                data_args.max_seq_length,
            )
        dataset = dataset.remove_columns(TRUNCATED_COLUMN)
        if teacher_tokenizer is not None:
            truncated = pc.sum(arrow_column(dataset, TEACHER_TRUNCATED_COLUMN)).as_py() or 0
            if truncated:
                logger.warning(
                    "%s: %d of %d examples are longer than the teacher's %d tokens (its own tokenizer; "
                    "--teacher_max_seq_length) and were truncated for it.",
                    source[split],
                    truncated,
                    len(dataset),
                    teacher_length,
                )
            dataset = dataset.remove_columns(TEACHER_TRUNCATED_COLUMN)
        if split == "train":
            dataset = dataset.add_column(INDEX_COLUMN, np.arange(len(dataset)))
        if split == "train" and static_mask_probability is not None:
            dataset = add_static_mask(dataset, tokenizer, static_mask_probability, fixed_count_mask, seed)
        if split == "train":
            dataset, repeats = oversample_labelled(dataset, unlabelled_rows, data_args.labelled_share)
        splits[split] = dataset
    return TaskData(splits.get("train"), splits.get("validation"), label_list, task, unlabelled_rows, repeats)


def check_room(tokenizer: PreTrainedTokenizerBase, length: int, pair: bool, flag: str, whose: str) -> None:
    """A maximum length with room for text beside the special tokens: one token of each text at least (a pair
    the tokenizer cannot truncate to it stays longer than asked, and overruns the position embeddings)."""
    special = tokenizer.num_special_tokens_to_add(pair=pair)
    least = special + (2 if pair else 1)
    if length < least:
        what = "a sentence pair" if pair else "a sentence"
        raise ArgumentError(
            f"{flag} {length} leaves no room for the text: the {whose} tokenizer adds {special} special tokens to "
            f"{what}. Pass {flag} {least} or more."
        )


def oversample_labelled(dataset: Dataset, unlabelled: int, share: float | None) -> tuple[Dataset, int]:
    """--labelled_share: the labelled rows repeated (whole copies, appended) until they make at least `share`
    of the rows, so that a few labels among much unlabelled text still anchor most batches. Copies keep their
    row index: they read the same cached teacher outputs. Returns the rows and each labelled row's copies."""
    labelled = len(dataset) - unlabelled
    if share is None:
        return dataset, 1
    if unlabelled == 0 or labelled == 0:
        logger.info(
            "--labelled_share %g changes nothing: the training rows are all %s.",
            share,
            "labelled" if unlabelled == 0 else "unlabelled",
        )
        return dataset, 1
    repeats = max(1, math.ceil(share * unlabelled / ((1 - share) * labelled) - 1e-9))
    if repeats == 1:
        return dataset, 1
    copies = dataset.select(np.tile(labelled_row_indices(dataset), repeats - 1))
    logger.info(
        "--labelled_share %g: each of the %d labelled rows appears %d times (%d of %d training rows).",
        share,
        labelled,
        repeats,
        labelled * repeats,
        labelled * repeats + unlabelled,
    )
    return concatenate_datasets([dataset, copies]), repeats


def labelled_row_indices(dataset: Dataset) -> np.ndarray:
    """Positions of the rows that carry a gold label (not `IGNORE_LABEL`, not NaN)."""
    return labelled_rows(torch.tensor(arrow_column(dataset, "label").to_numpy())).nonzero().flatten().numpy()


def collated_batches(dataset: Dataset, collator, size: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """`dataset` in order, `size` rows at a time, collated and on `device`: a pass over data that draws no random
    number (a DataLoader's iterator draws a seed, which would change the run's random stream). The rows read
    leave this process's resident memory as it goes (`hf_kd.memory`)."""
    pages = MappedPages.of(dataset)
    for start in range(0, len(dataset), size):
        pages.maybe_release()
        columns = dataset[start : start + size]
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        yield {name: value.to(device) for name, value in collator(rows).items()}
    pages.release()


def _report_duplicate_ids(dataset: Dataset, source: str) -> None:
    for column in ID_COLUMNS:
        if column in dataset.column_names:
            duplicates = len(dataset) - len(set(dataset[column]))
            if duplicates:
                logger.warning("%s: %d rows repeat an id of column '%s'.", source, duplicates, column)


MOSTLY_EMPTY = 0.5  # a split with more empty texts than this share is refused, not trained on


def _report_empty_texts(dataset: Dataset, columns: tuple[str, str | None], source: str) -> None:
    """Warn of a few empty texts; refuse a split whose texts are mostly empty (a file read with the wrong
    columns or delimiter): a user's text never reaches the models as empty strings without a stop."""
    for column in columns:
        if column is None:
            continue
        empty = count_blank(arrow_column(dataset, column))
        if empty > MOSTLY_EMPTY * len(dataset):
            raise ArgumentError(
                f"{source}: {empty} of {len(dataset)} rows have an empty '{column}' (its columns: "
                f"{dataset.column_names}): check the file's header and delimiter, or pick the text with "
                "--text_column_names."
            )
        if empty:
            logger.warning("%s: %d of %d rows have an empty '%s'.", source, empty, len(dataset), column)


def add_static_mask(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, probability: float, fixed_count: bool, seed: int
) -> Dataset:
    """The original's once-per-example mask, drawn while preprocessing (reproducible from the seed)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def mask_row(example: dict, index: int) -> dict:
        ids = torch.tensor([example["input_ids"]])
        attention = torch.tensor([example["attention_mask"]]) if "attention_mask" in example else None
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        mask = draw_mask(maskable_positions(ids, attention, special), probability, fixed_count, generator)
        return {STATIC_MASK_COLUMN: mask[0].to(torch.int8).tolist()}

    return dataset.map(mask_row, with_indices=True, desc="Drawing static masks")


@dataclass
class DistillationCollator(DataCollatorWithPadding):
    """Dynamic padding that also pads the static mask column (with 0: never masked) and, with a
    `teacher_tokenizer`, the teacher's own tokenization with that tokenizer's padding."""

    teacher_tokenizer: PreTrainedTokenizerBase | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        static = (
            [feature.pop(STATIC_MASK_COLUMN) for feature in features] if STATIC_MASK_COLUMN in features[0] else None
        )
        teacher = None
        if TEACHER_COLUMNS[0] in features[0]:
            teacher = [
                {name.removeprefix(TEACHER_PREFIX): feature.pop(name) for name in TEACHER_COLUMNS if name in feature}
                for feature in features
            ]
        batch = super().__call__(features)
        if teacher is not None:
            own = DataCollatorWithPadding(
                self.teacher_tokenizer or self.tokenizer,
                padding=self.padding,
                max_length=self.max_length,
                pad_to_multiple_of=self.pad_to_multiple_of,
            )(teacher)
            batch.update({TEACHER_PREFIX + name: value for name, value in own.items()})
        if static is not None:
            left = self.tokenizer.padding_side == "left"
            rows = [torch.as_tensor(values, dtype=torch.bool) for values in static]
            padded = pad_sequence(rows, batch_first=True, padding_side="left" if left else "right")
            width = batch["input_ids"].size(1)  # pad_to_multiple_of / max_length padding may be wider
            extra = torch.zeros(len(rows), width - padded.size(1), dtype=torch.bool)
            batch[STATIC_MASK_COLUMN] = torch.cat([extra, padded] if left else [padded, extra], dim=1)
        return batch
