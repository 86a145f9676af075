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
