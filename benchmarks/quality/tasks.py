"""The benchmark's tasks, declared as data: how each reads its files, carves held-out and the other splits,
its teacher's budget, its settings' names and where it is reported. A third task is a `Task` entry and
its `files` function (a few dozen lines); runs, selection and the report are shared (`runner.py`,
`report.py`).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.heldout import OverlapIndex, draw_heldout
from benchmarks.quality import ROOT

SETTINGS = {
    "few_labels": "{labelled:,} labelled sentences",
    "unlabelled": "{labelled:,} labelled + {unlabelled:,} unlabelled sentences",
    "full": "all SST-2 training sentences but the held-out ones, labelled ({full:,})",
}

HELD_OUT_ROWS = 1000

SPLIT_VERSION = "random-dev-profile"  # held-out drawn like dev, the rest carved around it (benchmarks/heldout.py)

BANKING77_PER_INTENT = 10  # labelled queries per intent of the students (770)

SHARED_DATA = ROOT.parent / "shared" / "data"

SAMPLE_ROWS = 4000  # the bundled data/sst2/train.tsv: the first 4,000 rows of GLUE's train.tsv shuffled by Random(0)


def is_sentence(text: str) -> bool:
    """A complete sentence, as every dev row is, rather than one of the phrases most training rows are."""
    return text.rstrip().endswith((".", "!", "?"))


def split_sst2(glue_train: Path, folder: Path, n_unlabelled: int, phrases: bool = False) -> dict[str, Path]:
    """Held-out, labelled, unlabelled and teacher files from GLUE's SST-2 train.tsv, none sharing a phrase with
    held-out.

    GLUE's rows shuffled by `Random(0)`: the first 4,000 are the bundled sample (the students' labels). The dev
    set holds complete sentences (97% end in . ! ?) while 81% of the training rows are phrases, so held-out and
    unlabelled text are complete sentences too. Held-out: 1,000 complete sentences of the rest drawn at random
    with dev's length profile (`benchmarks/heldout.py`). Every other split is carved around it: the students'
    labels are the sample's rows that overlap no held-out sentence, the unlabelled text the bundled
    `data/sst2/unlabelled.tsv` and the following sentences that overlap none (with `phrases`, then every other
    row of the teacher's data: phrases, once each, none of them a labelled row), the teacher's data every row
    that overlaps none.
    """
    paths = {name: folder / f"{name}.tsv" for name in ("heldout", "labelled", "unlabelled", "full")}
    count = folder / "unlabelled.count"
    key = f"{n_unlabelled}{' with phrases' if phrases else ''} {SPLIT_VERSION}"
    if all(path.is_file() for path in paths.values()) and count.is_file() and count.read_text() == key:
        return paths
    lines = glue_train.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    random.Random(0).shuffle(rows)
    sample = (ROOT / "data" / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    if rows[:SAMPLE_ROWS] != sample:
        sys.exit(f"{glue_train} is not GLUE's SST-2 train.tsv: its shuffle does not give data/sst2/train.tsv")
    bundled = (ROOT / "data" / "sst2" / "unlabelled.tsv").read_text(encoding="utf-8").splitlines()[1:]
    seen = {*(row.split("\t")[0] for row in sample), *bundled}
    sentences = []
    for row in rows[SAMPLE_ROWS:]:
        text = row.split("\t")[0]
        if is_sentence(text) and text not in seen:
            seen.add(text)
            sentences.append(text)
    dev = [row.split("\t")[0] for row in (ROOT / "data" / "sst2" / "dev.tsv").read_text().splitlines()[1:]]
    heldout_texts = draw_heldout(sentences, dev, HELD_OUT_ROWS)  # dev's lengths only: no text, no label
    labels = dict(row.split("\t") for row in rows)
    heldout = [f"{text}\t{labels[text]}" for text in heldout_texts]
    index = OverlapIndex(heldout_texts)
    labelled = [row for row in sample if not index.overlaps(row.split("\t")[0])]
    unlabelled = [text for text in bundled + sentences if not index.overlaps(text)]
    full = [row for row in rows if not index.overlaps(row.split("\t")[0])]
    if phrases:  # dict.fromkeys: each text once, in the shuffled order
        taken = {*unlabelled, *(row.split("\t")[0] for row in sample)}
        unlabelled += [text for text in dict.fromkeys(row.split("\t")[0] for row in full) if text not in taken]
    if len(unlabelled) < n_unlabelled:
        kind = "rows of text" if phrases else "complete sentences (--unlabelled_phrases adds the phrase rows)"
        sys.exit(f"--unlabelled {n_unlabelled}: SST-2 has only {len(unlabelled):,} {kind} apart from held-out.")
    folder.mkdir(parents=True, exist_ok=True)
    paths["heldout"].write_text("\n".join([header, *heldout]) + "\n", encoding="utf-8")
    paths["labelled"].write_text("\n".join([header, *labelled]) + "\n", encoding="utf-8")
    paths["unlabelled"].write_text("\n".join(["sentence", *unlabelled[:n_unlabelled]]) + "\n", encoding="utf-8")
    paths["full"].write_text("\n".join([header, *full]) + "\n", encoding="utf-8")
    count.write_text(key)
    return paths


def split_banking77(train_csv: Path, folder: Path, test_csv: Path | None = None) -> dict[str, Path]:
    """Held-out, labelled, unlabelled and teacher files from BANKING77's train.csv (`text,category`).

    Rows shuffled by `Random(0)`; held-out: 1,000 queries drawn at random with the test set's length profile
    (`benchmarks/heldout.py`; the test set's lengths only); every other split keeps the queries that overlap
    no held-out one: the students' labels are the first 10 per intent, their unlabelled text the rest (text
    only), and the teacher learns from all of them.
    """
    import csv
    import io

    paths = {name: folder / f"{name}.csv" for name in ("heldout", "labelled", "unlabelled", "full")}
    stamp = folder / "split.version"
    if all(path.is_file() for path in paths.values()) and stamp.is_file() and stamp.read_text() == SPLIT_VERSION:
        return paths
    with open(train_csv, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(rows[0]) != {"text", "category"}:
        sys.exit(f"{train_csv} is not BANKING77's train.csv (columns text,category)")
    test_csv = test_csv or train_csv.with_name("test.csv")
    with open(test_csv, encoding="utf-8", newline="") as f:
        reference = [row["text"] for row in csv.DictReader(f)]
    random.Random(0).shuffle(rows)
    heldout_texts = set(draw_heldout([row["text"] for row in rows], reference, HELD_OUT_ROWS))
    heldout = list({row["text"]: row for row in rows if row["text"] in heldout_texts}.values())  # once each
    index = OverlapIndex(heldout_texts)
    rest = [row for row in rows if row["text"] not in heldout_texts and not index.overlaps(row["text"])]
    taken: dict[str, int] = {}
    labelled, unlabelled = [], []
    for row in rest:
        if taken.get(row["category"], 0) < BANKING77_PER_INTENT:
            taken[row["category"]] = taken.get(row["category"], 0) + 1
            labelled.append(row)
        else:
            unlabelled.append({"text": row["text"]})

    def write(path: Path, part: list[dict], columns: list[str]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(part)
        path.write_text(buffer.getvalue(), encoding="utf-8")

    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("heldout", heldout), ("labelled", labelled), ("full", rest)):
        write(paths[name], part, ["text", "category"])
    write(paths["unlabelled"], unlabelled, ["text"])
    stamp.write_text(SPLIT_VERSION)
    return paths


def per_class_subset(source: Path, per_class: int, folder: Path) -> Path:
    """The first `per_class` rows of each class of a task file (SST-2's TSV or BANKING77's CSV, label last), in
    file order: a weak teacher's data. The files' rows are already shuffled, so the first rows are a random draw."""
    import csv
    import io

    delimiter = "\t" if source.suffix == ".tsv" else ","
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open(source, encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f, delimiter=delimiter, quoting=quoting))
    taken: dict[str, int] = {}
    kept = []
    for row in rows:
        if taken.get(row[-1], 0) < per_class:
            taken[row[-1]] = taken.get(row[-1], 0) + 1
            kept.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator="\n", escapechar="\\")
    writer.writerows([header, *kept])
    path = folder / f"teacher_{per_class}_per_class{source.suffix}"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def skewed(source: Path, label_of: dict[str, str], minority_share: float, folder: Path) -> Path:
    """An SST-2 file (labelled TSV, or unlabelled text whose labels `label_of` knows) with every negative row and
    the first positives only, so that positives are `minority_share` of it: an imbalanced task (issue 29)."""
    header, *rows = source.read_text(encoding="utf-8").splitlines()
    labels = [label_of[row.split("\t")[0]] for row in rows]
    negatives = labels.count("0")
    room = round(negatives * minority_share / (1 - minority_share))
    kept, taken = [], 0
    for row, label in zip(rows, labels, strict=True):
        if label == "0" or taken < room:
            taken += label != "0"
            kept.append(row)
    path = folder / f"{source.stem}_minority{minority_share:g}{source.suffix}"
    path.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    return path


def sst2_files(options, folder: Path) -> dict[str, Path]:
    """SST-2: held-out, labelled, unlabelled and teacher files carved from GLUE's train.tsv (`--glue_train_file`);
    dev is the bundled GLUE dev set."""
    glue_train = Path(options.glue_train_file)
    if not glue_train.is_file():
        sys.exit(f"--glue_train_file {glue_train} not found: pass GLUE's SST-2 train.tsv")
    files = split_sst2(glue_train, folder, options.unlabelled, options.unlabelled_phrases)
    return {**files, "dev": ROOT / "data" / "sst2" / "dev.tsv"}


def banking77_files(options, folder: Path) -> dict[str, Path]:
    """BANKING77: every split carved from train.csv (`--banking77_dir`); dev is the official test.csv."""
    source = Path(options.banking77_dir)
    if not (source / "train.csv").is_file() or not (source / "test.csv").is_file():
        sys.exit(f"--banking77_dir {source}: needs BANKING77's train.csv and test.csv")
    return {**split_banking77(source / "train.csv", folder, source / "test.csv"), "dev": source / "test.csv"}


@dataclass(frozen=True)
class Task:
    """What differs between the benchmark's tasks; everything else (runs, selection, report) is shared."""

    title: str
    data_flags: tuple[str, ...]  # how run_glue_kd.py reads the task's files
    teacher_flags: tuple[str, ...]  # the teacher's budget and learning rate
    settings: dict[str, str]
    held_out: str
    reported_on: str
    files: Callable[[argparse.Namespace, Path], dict[str, Path]]  # the carved files: heldout, full, labelled, dev, ...
    reported: str = "dev"  # what the report's columns call the reported set


TASKS = {
    "sst2": Task(
        "SST-2",
        ("--task_name", "sst2"),
        ("--num_train_epochs", "1", "--learning_rate", "5e-5"),
        SETTINGS,
        "held-out SST-2 training sentences",
        "the full GLUE SST-2 dev set (872 sentences)",
        sst2_files,
    ),
    "banking77": Task(
        "BANKING77",
        ("--label_column_name", "category"),
        ("--num_train_epochs", "5", "--learning_rate", "1e-4"),
        {
            "few_labels": "{labelled:,} labelled queries (10 per intent)",
            "unlabelled": "{labelled:,} labelled + {unlabelled:,} unlabelled queries (the rest of train)",
            "full": "every training query but the held-out ones, labelled ({full:,})",
        },
        "held-out BANKING77 training queries",
        "the official BANKING77 test set (3,080 queries)",
        banking77_files,
        "test",
    ),
}
