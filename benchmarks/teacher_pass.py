#!/usr/bin/env python
"""Issue 50's measurement: the sharded teacher pass, read in place, on synthetic transfer text (CPU, gloo).

    python benchmarks/teacher_pass.py --rows 100000 1000000 --json benchmarks/RESULTS_teacher_pass.json

A tiny BERT teacher (4 layers x 64) and student (2 x 32) built from configs, a WordPiece tokenizer trained on the
synthetic text, 1,000 labelled rows and N unlabelled ones (random sentences of 4-16 words from 3,000 made-up
words). For each N:

- `pass`: `python -m hf_kd.teacher_pass` (RAIL-KD: logits and every teacher layer pooled) with 1 process and with 2
  (torchrun, gloo), one thread each; the seconds of the pass itself (the command's own report), the tokenisation
  done once before (datasets' on-disk cache);
- `rss`: a RAIL-KD training run of 100 steps reading that cache: peak resident memory (VmRSS, sampled every
  0.2 s), of it anonymous memory (what the process holds), pages mapped from the cache's files, and pages
  mapped from datasets' memory-mapped Arrow files of the tokenised text (which the run lets go of between steps,
  `hf_kd.memory`);
- `bytes per row`: logits only (KD) and with RAIL features, float32 and float16, from the shards on disk.

And once, with the largest N: the RAIL-KD step reading the cache from its shards against the same step reading
an in-memory copy of it (today's cache before this issue), alternated over `--rounds` rounds of 40 steps, the
loss of those batches with the cache stored in float16 against float32 (the same dropout masks), and what letting
go of the Arrow pages costs a batch of the DataLoader when done after every batch.

`--again rss step` re-measures those rows alone on what a full run left in `--work_dir`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 7))) for _ in range(3000)]
    return [" ".join(rng.choices(words, k=rng.randint(4, 16))) for _ in range(count)]


def write_files(folder: Path, rows: list[int]) -> dict[str, Path]:
    """The labelled train / dev files and one unlabelled file per size (the first N of the largest)."""
    files = {"train": folder / "train.tsv", "dev": folder / "dev.tsv"}
    labelled = sentences(1200, seed=1)
    for name, part in (("train", labelled[:1000]), ("dev", labelled[1000:])):
        files[name].write_text("sentence\tlabel\n" + "".join(f"{text}\t{i % 2}\n" for i, text in enumerate(part)))
    text = sentences(max(rows), seed=2)
    for count in rows:
        files[count] = folder / f"unlabelled_{count}.tsv"
        with open(files[count], "w") as f:
            f.write("sentence\n")
            f.writelines(line + "\n" for line in text[:count])
    return files


def build_models(folder: Path) -> dict[str, str]:
    from hf_kd.testing import build_family

    family = build_family("bert", str(folder), sentences(5000, seed=1), teacher_layers=4, teacher_hidden=64)
    return {"teacher": family.teacher, "student": family.student}


def run_args(models: dict, files: dict, count: int, method: str, cache: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--method", method, "--model_name_or_path", models["student"], "--teacher_name_or_path", models["teacher"],
        "--task_name", "sst2", "--train_file", str(files["train"]), "--validation_file", str(files["dev"]),
        "--unlabeled_file", str(files[count]), "--max_seq_length", "64", "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "256", "--teacher_cache_dir", str(cache), "--output_dir", str(output),
        "--overwrite_output_dir", "true", "--report_to", "none", "--save_strategy", "no", "--check_teacher", "false",
        "--use_cpu", "true", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def teacher_pass(args: list[str], processes: int) -> float:
    """Seconds of the pass, as the command reports them."""
    if processes == 1:
        command = [sys.executable, "-m", "hf_kd.teacher_pass", *args]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        command = [*launcher, "--master_port", str(29600 + os.getpid() % 200), "-m", "hf_kd.teacher_pass", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT)
    if result.returncode:
        sys.exit(f"teacher pass failed:\n{result.stderr[-3000:]}")
    return float(re.search(r"pass ([0-9.]+) s\)", result.stdout).group(1))


def resident(pid: int) -> dict[str, float]:
    """The process's resident memory in MB: in all (VmRSS), anonymous (RssAnon), and the pages mapped from the
    teacher-output cache's files and from datasets' Arrow files (/proc/PID/smaps)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = {
        name: int(re.search(rf"^{name}:\s+(\d+) kB", status, re.M).group(1)) / 1024 for name in ("VmRSS", "RssAnon")
    }
    found |= {"cache files": 0.0, "Arrow files": 0.0}
    kind = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and "-" in fields[0] and ":" in fields[3]:
            path = fields[5] if len(fields) > 5 else ""
            kind = "cache files" if "/teacher-" in path else "Arrow files" if path.endswith(".arrow") else None
        elif kind and fields and fields[0] == "Rss:":
            found[kind] += int(fields[1]) / 1024
    return found


def peak_memory(command: list[str]) -> dict[str, float]:
    """Run `command`; the peak of each of `resident`'s figures, sampled every 0.2 s."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    peaks: dict[str, float] = {}

    def sample() -> None:
        while process.poll() is None:
            try:
                for name, value in resident(process.pid).items():
                    peaks[name] = max(peaks.get(name, 0.0), value)
            except (OSError, AttributeError):
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = process.communicate()
    sampler.join()
    if process.returncode:
        sys.exit(f"training run failed:\n{stderr[-3000:]}")
    return peaks


def bytes_per_row(cache: Path) -> float:
    (folder,) = cache.glob("teacher-*")
    rows = json.loads((folder / "key.json").read_text())["rows"]
    return sum(path.stat().st_size for path in folder.glob("shard-*/*.npy")) / rows


class InMemory:
    """A shard's tensor held in memory, read as `hf_kd.cache.StoredArray` is: the cache as it was before issue 50."""

    def __init__(self, array) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype

    def take(self, rows):
        return self.array[rows]

    def read(self):
        return self.array


def release_cost(trainer, train_data, rounds: int, batches: int = 100) -> dict[str, float]:
    """Seconds a batch of the training DataLoader takes (reading and collating rows from datasets' mapped Arrow
    file) with the file's pages let go of after every batch (`hf_kd.memory`, the worst case: a run does it at most
    every 0.25 s) and without, alternated over `rounds` rounds."""
    from hf_kd.memory import MappedPages

    pages = MappedPages.of(train_data)
    loader = trainer.get_train_dataloader()

    def run(release: bool) -> float:
        batch_iterator = iter(loader)
        start = time.perf_counter()
        for _ in range(batches):
            next(batch_iterator)
            if release:
                pages.release()
        return (time.perf_counter() - start) / batches

    run(True), run(False)  # warm-up
    times = {True: [], False: []}
    for _ in range(rounds):
        for release in (True, False):
            times[release].append(run(release))
    return {"released every batch": statistics.median(times[True]), "kept": statistics.median(times[False])}


def step_ratio(trainer, rounds: int, steps: int = 40) -> dict[str, float]:
    """Median seconds of `steps` RAIL-KD steps reading the cache from its shards and an in-memory copy of it."""
    import torch

    from hf_kd.cache import to_storage

    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    trainer.teacher.prepare(trainer)
    mapped = trainer.teacher.cache
    in_memory, half = copy.copy(mapped), copy.copy(mapped)
    in_memory.shards = [{name: InMemory(stored.read()) for name, stored in shard.items()} for shard in mapped.shards]
    half.layout = dataclasses.replace(mapped.layout, dtype="float16")
    half.shards = [
        {name: InMemory(to_storage(torch.from_numpy(held.array), "float16")) for name, held in shard.items()}
        for shard in in_memory.shards
    ]
    loader = iter(trainer.get_train_dataloader())
    batches = [trainer._prepare_inputs(next(loader)) for _ in range(steps)]
    model = trainer.model

    def run(cache) -> float:
        trainer.teacher.cache = cache
        start = time.perf_counter()
        for batch in batches:
            trainer.training_step(model, batch)
            trainer.optimizer.step()
            model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def losses(cache) -> list[float]:
        """The step's loss on each batch, the same dropout masks for both caches (seeded)."""
        trainer.teacher.cache = cache
        model.train()  # the training step's loss (in eval mode compute_loss is the student's CE alone)
        values = []
        with torch.no_grad():
            for number, batch in enumerate(batches):
                torch.manual_seed(number)
                values.append(trainer.compute_loss(model, batch).item())
        return values

    full, halved = losses(in_memory), losses(half)
    difference = max(abs(a - b) / abs(a) for a, b in zip(full, halved, strict=True))
    run(mapped), run(in_memory)  # warm-up: the pages of these batches' rows, the allocator
    times = {"from the shards": [], "in memory": []}
    for _ in range(rounds):
        times["from the shards"].append(run(mapped))
        times["in memory"].append(run(in_memory))
    seconds = {name: statistics.median(values) / steps for name, values in times.items()}
    return {**seconds, "float16_loss_difference": difference}


def training_rss(models: dict, files: dict, count: int, work: Path) -> dict[str, float]:
    train = run_args(models, files, count, "rail_kd", work / f"cache_{count}_2", work / "train")
    train += ["--cache_teacher_outputs", "true", "--max_steps", "100", "--do_eval", "false"]
    rss = peak_memory([sys.executable, "scripts/run_glue_kd.py", *train])
    print(f"{count:,} rows: training peak {rss}", flush=True)
    return rss


def step_rows(models: dict, files: dict, largest: int, rounds: int, work: Path) -> dict[str, float]:
    """The step's cost (`step_ratio`) and the data pages' release cost (`release_cost`) at the largest size."""
    import torch

    from hf_kd.build import build_trainer
    from hf_kd.config import parse_args

    torch.set_num_threads(1)
    step_args = run_args(models, files, largest, "rail_kd", work / f"cache_{largest}_2", work / "train")
    trainer, data = build_trainer(*parse_args([*step_args, "--cache_teacher_outputs", "true"]))
    return {"rows": largest, **step_ratio(trainer, rounds), "release": release_cost(trainer, data.train, rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work_dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "RESULTS_teacher_pass.json")
    parser.add_argument(
        "--again",
        nargs="+",
        choices=("rss", "step"),
        help="re-measure only these rows (training memory; the step and release costs) on the models, files and "
        "caches a full run left in --work_dir, into the same --json",
    )
    options = parser.parse_args()
    if options.again:
        results = json.loads(options.json.read_text())
        counts = sorted(int(count) for count in results["sizes"])
        work = options.work_dir
        models = {role: str(work / "models" / role) for role in ("teacher", "student")}
        files = {"train": work / "train.tsv", "dev": work / "dev.tsv"}
        files |= {count: work / f"unlabelled_{count}.tsv" for count in counts}
        for count in counts if "rss" in options.again else []:
            results["sizes"][str(count)]["rss"] = training_rss(models, files, count, work)
        if "step" in options.again:
            results["step"] = step_rows(models, files, counts[-1], options.rounds, work)
    else:
        results = full_run(options)
    options.json.write_text(json.dumps(results, indent=1) + "\n")
    from benchmarks.claims import teacher_pass_table

    print(teacher_pass_table(results))


def full_run(options) -> dict:
    work = options.work_dir or Path(tempfile.mkdtemp(prefix="hf_kd_teacher_pass_"))
    work.mkdir(parents=True, exist_ok=True)
    models = build_models(work / "models")
    files = write_files(work, options.rows)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "sizes": {},
        "bytes_per_row": {},
    }
    for count in options.rows:
        entry = {}
        for processes in (1, 2):
            cache = work / f"cache_{count}_{processes}"
            args = run_args(models, files, count, "rail_kd", cache, work / "pass")
            entry[f"pass_{processes}"] = teacher_pass(args, processes)
            print(f"{count:,} rows, {processes} process(es): pass {entry[f'pass_{processes}']:.1f} s", flush=True)
        cache_files = (work / f"cache_{count}_2").glob("teacher-*/shard-*/*.npy")
        entry["cache_mb"] = sum(path.stat().st_size for path in cache_files) / 2**20
        entry["rss"] = training_rss(models, files, count, work)
        results["sizes"][str(count)] = entry
    smallest = min(options.rows)
    for method, what in (("kd", "logits only (KD)"), ("rail_kd", "logits and RAIL features (RAIL-KD, 4 layers x 64)")):
        results["bytes_per_row"][what] = {}
        for dtype in ("float32", "float16"):
            cache = work / f"bytes_{method}_{dtype}"
            args = run_args(models, files, smallest, method, cache, work / "pass", "--teacher_cache_dtype", dtype)
            teacher_pass(args, 1)
            results["bytes_per_row"][what][dtype] = bytes_per_row(cache)
    results["step"] = step_rows(models, files, max(options.rows), options.rounds, work)
    return results


if __name__ == "__main__":
    main()
