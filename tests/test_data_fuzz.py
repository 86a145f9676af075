"""Generated damaged data files: every case ends in a finished run or one line naming the file (and line).

Real SST-2 rows written as TSV, CSV and JSON lines, then damaged the ways files get damaged: cut short
at random offsets, random bytes, another delimiter, ragged rows, a BOM and CRLF line ends, a Latin-1
row in UTF-8 text, a JSON line that is not an object, a 1 MB row, NUL bytes, nothing but a header.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest

from hf_kd.errors import ArgumentError
from hf_kd.run import main
from tests.conftest import SST2, cli_args

ROWS = [line.split("\t") for line in (SST2 / "train.tsv").read_text().splitlines()[1:41]]


def write(rows: list[list[str]], form: str) -> str:
    if form == "jsonl":
        return "".join(json.dumps({"sentence": text, "label": int(label)}) + "\n" for text, label in rows)
    if form == "tsv":
        return "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([["sentence", "label"], *rows])
    return out.getvalue()


def damaged_files() -> list[tuple[str, str, bytes]]:
    """(case id, extension, content) for every damage and format."""
    cases = []
    for form in ("tsv", "csv", "jsonl"):
        text = write(ROWS, form)
        rng = random.Random(form)
        row_at = rng.randrange(5, 35)
        lines = text.splitlines(keepends=True)
        separator = "\t" if form == "tsv" else ","
        other = {"tsv": ",", "csv": "\t", "jsonl": ","}[form]
        latin = '{"sentence": "caf\xe9", "label": 1}\n' if form == "jsonl" else f"caf\xe9{separator}1\n"
        ragged = '{"sentence": "x", "label": 1, "extra": [1]}\n' if form == "jsonl" else f"x{separator}1{separator}2\n"
        damages = {
            **{f"cut at {at}": text.encode()[:at] for at in sorted(rng.sample(range(1, len(text.encode())), 4))},
            "random bytes": bytes(rng.randrange(256) for _ in range(2000)),
            "other delimiter": text.replace(separator, other).encode(),
            "ragged row": "".join([*lines[:row_at], ragged, *lines[row_at:]]).encode(),
            "BOM and CRLF": ("\ufeff" + text.replace("\n", "\r\n")).encode(),
            "Latin-1 row": "".join(lines[:row_at]).encode()
            + latin.encode("latin-1")
            + "".join(lines[row_at:]).encode(),
            "1 MB row": (
                text + write([["word " * 200_000, "1"]], form).split("\n", 1 if form != "jsonl" else 0)[-1]
            ).encode(),
            "NUL bytes": text.replace("the", "t\x00he", 2).encode(),
            "header only": lines[0].encode() if form != "jsonl" else b"",
        }
        if form == "jsonl":
            damages["not an object"] = "".join([*lines[:row_at], "[1, 2]\n", *lines[row_at:]]).encode()
            damages["a JSON array"] = json.dumps([json.loads(line) for line in lines]).encode()
        cases += [(f"{form}: {name}", form, content) for name, content in damages.items()]
    return cases


CASES = damaged_files()


@pytest.mark.parametrize(("case", "extension", "content"), CASES, ids=[case for case, _, _ in CASES])
def test_damaged_file_finishes_or_is_one_line_naming_it(bert, sst2_files, tmp_path, case, extension, content):
    path = tmp_path / f"train.{extension}"
    path.write_bytes(content)
    files = {"train": str(path), "dev": sst2_files["dev"]}
    arguments = cli_args(bert, files, tmp_path / "run", "kd", "--max_steps", "2", "--max_eval_samples", "8")
    try:
        results = main(arguments)
    except ArgumentError as error:
        message = str(error)
        assert "\n" not in message and str(path) in message, message
        if message.startswith(f"Data file {path}, line"):  # where the reader failed, the line is named
            assert message.split(", line ", 1)[1].split(":")[0].isdigit()
        return
    assert results["train_samples"] > 0 and (Path(tmp_path / "run") / "all_results.json").exists()


def test_the_cases_reach_both_outcomes_and_name_lines(bert, sst2_files, tmp_path):
    """The generator is not vacuous: some damaged files still train, and read errors name their line."""
    outcomes = {}
    for case in ("tsv: ragged row", "jsonl: not an object", "csv: Latin-1 row", "tsv: BOM and CRLF", "csv: 1 MB row"):
        _, extension, content = next(c for c in CASES if c[0] == case)
        path = tmp_path / f"{len(outcomes)}.{extension}"
        path.write_bytes(content)
        files = {"train": str(path), "dev": sst2_files["dev"]}
        try:
            main(
                cli_args(bert, files, tmp_path / f"run{len(outcomes)}", "kd", "--max_steps", "1", "--do_eval", "false")
            )
            outcomes[case] = "finished"
        except ArgumentError as error:
            outcomes[case] = str(error).split(": ", 1)[0]
    assert outcomes["tsv: BOM and CRLF"] == outcomes["csv: 1 MB row"] == "finished"
    for case in ("tsv: ragged row", "jsonl: not an object", "csv: Latin-1 row"):
        assert outcomes[case].split(", line ", 1)[1].isdigit(), outcomes[case]


# --- layouts: every way a text file is laid out either reads the texts it holds or is refused in one line ---

PAIRS = [(text, ROWS[(i + 7) % len(ROWS)][0]) for i, (text, _) in enumerate(ROWS[:12])]
LABELS = [label for _, label in ROWS[:12]]
LINE_ENDS = {"LF": "\n", "CRLF": "\r\n", "BOM+CRLF": "\r\n"}


def layout(extension: str, line_end: str, header: bool, pair: bool, label: str) -> tuple[str, list]:
    """A file of 12 real SST-2 texts (or text pairs) and what it holds: (content, [(text, text2 or None), ...]).
    `label`: "present", "absent" or "empty" (the column there, every cell empty)."""
    names = ["sentence1", "sentence2"] if pair else ["sentence"]
    texts = [pair_ if pair else (pair_[0],) for pair_ in PAIRS]
    rows = []
    for values, gold in zip(texts, LABELS, strict=True):
        cells = list(values) + ({"present": [gold], "empty": [""], "absent": []}[label])
        rows.append(cells)
    header_row = names + ([] if label == "absent" else ["label"])
    out = io.StringIO()
    if extension == "csv":
        csv.writer(out, lineterminator=LINE_ENDS[line_end]).writerows(([header_row] if header else []) + rows)
    else:
        out.write("".join("\t".join(row) + LINE_ENDS[line_end] for row in ([header_row] if header else []) + rows))
    content = ("\ufeff" if line_end.startswith("BOM") else "") + out.getvalue()
    return content, [(values[0], values[1] if pair else None) for values in texts]


LAYOUTS = [
    (extension, line_end, header, pair, label, task)
    for extension in ("tsv", "csv")
    for line_end in LINE_ENDS
    for header in (True, False)
    for pair in (False, True)
    for label in ("present", "absent", "empty")
    for task in (None, "sst2", "cola")
]


def read_or_refused(tokenizer, tmp_path, arguments: dict, path: str) -> tuple[str, object]:
    from hf_kd.arguments import DataTrainingArguments
    from hf_kd.data import prepare_data

    try:
        data = prepare_data(DataTrainingArguments(max_seq_length=64, **arguments), tokenizer, cache_dir=str(tmp_path))
    except ArgumentError as error:
        message = str(error)
        assert "\n" not in message and path in message, message
        return "refused", message
    return "read", data


@pytest.fixture(scope="module")
def tokenizer(bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bert.tokenizer)


@pytest.mark.parametrize("role", ["train", "unlabelled"])
def test_every_layout_reads_its_texts_or_is_refused_in_one_line(tokenizer, sst2_files, tmp_path, role):
    """Line ends x header or not x one or two text columns x label column x --task_name, as a training file and as
    --unlabeled_file: whatever is read reaches the tokenizer as the texts the file holds, row for row."""
    outcomes = {}
    for number, (extension, line_end, header, pair, label, task) in enumerate(LAYOUTS):
        content, held = layout(extension, line_end, header, pair, label)
        path = str(tmp_path / f"{number}.{extension}")
        Path(path).write_bytes(content.encode())
        if role == "train":
            arguments = {"train_file": path, "validation_file": None}
        elif pair and task is not None:
            continue  # the labelled file beside it would be refused: the task reads one column
        else:
            good = tmp_path / f"{number}-labelled.{extension}"
            good_content, _ = layout(extension, "LF", True, pair, "present")
            good.write_text(good_content)
            arguments = {"train_file": str(good), "unlabeled_file": path}
        outcome, data = read_or_refused(tokenizer, tmp_path, {"task_name": task, **arguments}, path)
        outcomes[(extension, line_end, header, pair, label, task)] = outcome
        if outcome == "refused":
            continue
        rows = data.train.select(range(len(data.train) - len(held), len(data.train)))
        assert len(data.train) == len(held) * (1 if role == "train" else 2), (number, len(data.train))
        first, second = zip(*held, strict=True)
        expected = tokenizer(list(first), None if second[0] is None else list(second), max_length=64, truncation=True)
        assert rows["input_ids"] == expected["input_ids"], (extension, line_end, header, pair, label, task)
    # not vacuous: every file with a header and the task's columns is read, whatever its line ends
    for (extension, line_end, header, pair, label, task), outcome in outcomes.items():
        fits_task = task is None or not pair
        labelled_enough = role == "unlabelled" or label == "present" or (label == "empty" and task is not None)
        if header and fits_task and labelled_enough:
            assert outcome == "read", (role, extension, line_end, pair, label, task)
    assert set(outcomes.values()) == {"read", "refused"}


def test_headerless_cola_file_reads_its_sentence_column(tokenizer, tmp_path):
    """CoLA's official layout (no header: source, label, original label, sentence) still reads as CoLA."""
    rows = [("gj04", "1", "", text) for text, _ in ROWS[:6]]
    path = tmp_path / "in_domain_train.tsv"
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    outcome, data = read_or_refused(tokenizer, tmp_path, {"task_name": "cola", "train_file": str(path)}, str(path))
    assert outcome == "read" and len(data.train) == 6
    assert data.train["input_ids"] == tokenizer([row[3] for row in rows], max_length=64, truncation=True)["input_ids"]


def test_one_column_unlabelled_file_with_cola_is_read_not_emptied(tokenizer, half_labelled, tmp_path):
    """The README's one-column `sentence` file as --unlabeled_file of a CoLA run: 40 sentences, none empty
    (its header was taken for a row of CoLA's columns and every text read as empty)."""
    labelled = tmp_path / "labelled.tsv"
    labelled.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in ROWS[:8]))
    path = half_labelled["unlabelled"]
    arguments = {"task_name": "cola", "train_file": str(labelled), "unlabeled_file": path}
    outcome, data = read_or_refused(tokenizer, tmp_path, arguments, path)
    assert outcome == "read" and data.unlabelled == 40
    sentences = Path(path).read_text().splitlines()[1:]
    unlabelled_ids = data.train.select(range(8, 48))["input_ids"]
    assert unlabelled_ids == tokenizer(sentences, max_length=64, truncation=True)["input_ids"]


def test_mostly_empty_texts_are_refused_naming_file_column_and_count(tokenizer, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("sentence,label\n" + "".join(f",{label}\n" for _, label in ROWS[:9]) + "a real one,1\n")
    outcome, message = read_or_refused(tokenizer, tmp_path, {"train_file": str(path)}, str(path))
    assert outcome == "refused" and "9 of 10 rows have an empty 'sentence'" in message
