#!/usr/bin/env python
"""Time one training step of every method against the passes it cannot avoid and an original-shaped loop.

    python benchmarks/bench_step.py --geometry tiny --threads 1 --json benchmarks/results_cpu.json
    python benchmarks/bench_step.py --device cuda --geometry large --precision fp32 bf16 bf16-teacher

Models are built here from configs (RoBERTa family, RoBERTa's special tokens):

- `tiny`: teacher 4 x 128, student 2 x 128, generator 4 x 128, vocabulary 1,000;
- `small`: teacher 6 x 256, student 3 x 128, generator 2 x 128, vocabulary 50,265;
- `large`: RoBERTa-large teacher and generator (24 x 1024), DistilRoBERTa student (6 x 768),
  vocabulary 50,265 (a GPU geometry).

Each case runs in a fresh process (peak memory is per case), all cases `--rounds` times in turn,
and the fastest round counts (the least disturbed on a shared machine). Rows:

- the passes alone: `teacher forward`, `student fwd+bwd`, `generator forward`, `generator fwd+bwd`,
  and `normal`, a plain fine-tuning step of the student (forward, backward, AdamW);
- `reference kd` / `reference rail_kd`: the original code's step in plain PyTorch (teacher's no-grad
  forward, student forward, CE + KL summed and divided by the batch size, RAIL on the pooled layers,
  backward, AdamW), on the same models;
- `<method>`: hf_kd's student (min) step; `kd cached`: the KD step with `--cache_teacher_outputs` in
  its steady state (no teacher pass); `<method> [generator]`: the generator (max) step;
  `kd cross-tokenizer`: the KD step with a teacher of another tokenizer (its own tokenization in the
  batch, padded apart; here of the same lengths, so the row measures what reading two tokenizations
  costs; `/ same tokenizer` compares it with the `kd` row).

`necessary` sums the unavoidable passes of a row (T teacher forward, S student fwd+bwd, N a plain
student step = S + AdamW, Gf / G generator forward / fwd+bwd): KD and RAIL-KD T + N; the adversarial
min steps, whose clean and perturbed batches both pass teacher and student, 2T + N + S + Gf; generator
steps G + Ti + Si (Ti / Si: teacher / student forward and backward to the input embeddings, weights
frozen, as the generator step needs them).
On CPU, `faults` is the minor page faults per step (fresh memory the allocator had to map).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

METHODS = ["kd", "rail_kd", "mate_kd", "cilda", "cilda_minild"]
ADVERSARIAL = ["mate_kd", "cilda", "cilda_minild"]
PASSES = [
    "teacher forward",
    "student fwd+bwd",
    "generator forward",
    "generator fwd+bwd",
    "teacher fwd+bwd to inputs",
    "student fwd+bwd to inputs",
    "normal",
]
# (layers, hidden, heads) of teacher, student and generator, and the vocabulary size
GEOMETRIES = {
    "tiny": {"teacher": (4, 128, 2), "student": (2, 128, 2), "generator": (4, 128, 2), "vocab": 1000},
    "small": {"teacher": (6, 256, 4), "student": (3, 128, 4), "generator": (2, 128, 4), "vocab": 50265},
    "large": {"teacher": (24, 1024, 16), "student": (6, 768, 12), "generator": (24, 1024, 16), "vocab": 50265},
}
PRECISIONS = {"fp32": (False, None), "bf16": (True, None), "bf16-teacher": (True, "bfloat16")}


def cases(selected: list[str] | None = None) -> list[str]:
    every = [
        *PASSES,
        "reference kd",
        "reference rail_kd",
        *METHODS,
        "kd cached",
        "kd cross-tokenizer",
        *[f"{m} [generator]" for m in ADVERSARIAL],
    ]
    if not selected:
        return every
    wanted = {*selected, *PASSES}
    if "kd cross-tokenizer" in selected:
        wanted.add("kd")
    wanted |= {reference_of(case) for case in list(wanted)}  # what their ratios need
    return [case for case in every if case in wanted]


def build(folder: str, geometry: str) -> None:
    """Tokenizer (RoBERTa's special tokens) and the three models, saved."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, RobertaConfig, RobertaTokenizer

    sizes = GEOMETRIES[geometry]
    vocab_size = sizes["vocab"]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, vocab_size - 1)}}
    vocab["<mask>"] = vocab_size - 1
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    tokenizer = RobertaTokenizer(vocab=os.path.join(folder, "vocab.json"), merges=os.path.join(folder, "merges.txt"))
    torch.manual_seed(0)
    for role, auto in (
        ("teacher", AutoModelForSequenceClassification),
        ("student", AutoModelForSequenceClassification),
        ("generator", AutoModelForMaskedLM),
    ):
        layers, hidden, heads = sizes[role]
        config = RobertaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            num_labels=2,
        )
        auto.from_config(config).save_pretrained(os.path.join(folder, role))
        tokenizer.save_pretrained(os.path.join(folder, role))


def dataset(size: int, seq_len: int, vocab_size: int, teacher_columns: bool = False):
    """Random token rows with about a quarter of padding, so masked pooling and masking matter; with
    `teacher_columns`, the same rows as the teacher's own tokenization (another tokenizer, same lengths)."""
    import torch
    from datasets import Dataset

    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (size,), generator=generator)
    ids = torch.randint(4, vocab_size - 1, (size, seq_len), generator=generator)
    rows = []
    for row, length in zip(ids.tolist(), lengths.tolist(), strict=True):
        rows.append([0, *row[1 : length - 1], 2])
    columns = {
        "input_ids": rows,
        "attention_mask": [[1] * len(row) for row in rows],
        "label": torch.randint(0, 2, (size,), generator=generator).tolist(),
        "hf_kd_index": list(range(size)),
    }
    if teacher_columns:
        columns |= {"teacher_input_ids": rows, "teacher_attention_mask": columns["attention_mask"]}
    return Dataset.from_dict(columns)


def make_trainer(folder: str, method: str, options: dict, cross_tokenizer: bool = False):
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    from hf_kd.arguments import DistillationTrainingArguments
    from hf_kd.data import DistillationCollator
    from hf_kd.trainers import TRAINERS

    bf16, teacher_dtype = PRECISIONS[options["precision"]]
    device = options["device"]
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "student"))
    student = AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, "student"))
    teacher = AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, "teacher"))
    if teacher_dtype:
        teacher.to(getattr(torch, teacher_dtype))
    args = DistillationTrainingArguments(
        output_dir=os.path.join(folder, "out", method),
        method=method,
        report_to="none",
        learning_rate=1e-4,
        per_device_train_batch_size=options["batch_size"],
        per_device_eval_batch_size=options["batch_size"],
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=bf16,
    )
    extra = {}
    if method in ADVERSARIAL:
        extra["generator"] = AutoModelForMaskedLM.from_pretrained(os.path.join(folder, "generator"))
    vocab_size = GEOMETRIES[options["geometry"]]["vocab"]
    teacher_tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "teacher")) if cross_tokenizer else None
    if cross_tokenizer:
        extra["teacher_tokenizer"] = teacher_tokenizer
    trainer = TRAINERS[method](
        model=student.to(args.device),
        teacher=teacher if method != "normal" else None,
        args=args,
        train_dataset=dataset(options["batch_size"] * 2, options["seq_len"], vocab_size, cross_tokenizer),
        processing_class=tokenizer,
        data_collator=DistillationCollator(tokenizer, teacher_tokenizer=teacher_tokenizer),
        **extra,
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def reference_step(trainer, batch: dict, kind: str):
    """The original code's KD / RAIL-KD step in plain PyTorch on the trainer's models (METHODS.md):
    teacher first under no_grad, plain mean pooling, every term divided by the configured batch size."""
    import torch
    import torch.nn.functional as F

    teacher, student = trainer.teacher.model, trainer.model
    rail = kind == "rail_kd"
    projections = trainer.projections
    parameters = list(student.parameters()) + (list(projections.parameters()) if rail else [])
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    pairs = torch.randperm(teacher.config.num_hidden_layers)[: student.config.num_hidden_layers]
    layers = sorted(pairs.tolist())
    size = len(batch["input_ids"])

    def step() -> None:
        student.train()
        with torch.no_grad(), trainer.accelerator.autocast():
            teacher_out = teacher(**inputs, output_hidden_states=rail)
        with trainer.accelerator.autocast():
            student_out = student(**inputs, labels=batch["labels"], output_hidden_states=rail)
        kd = F.kl_div(
            F.log_softmax(student_out.logits.float(), -1), F.softmax(teacher_out.logits.float(), -1), reduction="sum"
        )
        loss = 0.5 * student_out.loss + 0.5 * kd / size
        if rail:
            teacher_pooled = torch.cat([teacher_out.hidden_states[1:][i].float().mean(1) for i in layers], -1)
            student_pooled = torch.cat([h.float().mean(1) for h in student_out.hidden_states[1:]], -1)
            distance = F.normalize(projections.teacher["encoder"](teacher_pooled), dim=-1) - F.normalize(
                projections.student["encoder"](student_pooled), dim=-1
            )
            loss = loss + 0.333 * distance.norm(dim=-1).sum() / size
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(function, warmup: int, repeats: int, cuda: bool) -> tuple[float, float]:
    """Median seconds of `repeats` calls after `warmup`, and minor page faults per call."""
    import torch

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        function()
    times = []
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / repeats
    return statistics.median(times), faults


def run_case(folder: str, case: str, options: dict, queue) -> None:
    """One measurement in this (fresh) process; puts {seconds, peak_mb, faults} on the queue."""
    import torch

    from hf_kd.cache import TeacherCache
    from hf_kd.trainers.adversarial import AlternationSchedule

    torch.set_num_threads(options["threads"])
    torch.manual_seed(0)
    if options["keep_freed_memory"] and not case.startswith("reference"):  # the original as it ran
        from hf_kd.cli import keep_freed_memory

        keep_freed_memory()
    cuda = options["device"] == "cuda"
    name = case.removeprefix("reference ").split()[0]
    method = name if name in [*METHODS, "normal"] else "mate_kd"
    trainer = make_trainer(folder, method, options, cross_tokenizer=case == "kd cross-tokenizer")
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model, teacher = trainer.model, trainer.teacher and trainer.teacher.model
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}

    def student_step():
        trainer.training_step(model, batch)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad(set_to_none=True)

    def teacher_forward():
        with torch.no_grad(), trainer.accelerator.autocast():
            teacher(**inputs)

    def student_fwd_bwd():
        model.train()  # dropout on, as in a training step
        with trainer.accelerator.autocast():
            loss = model(**inputs, labels=batch["labels"]).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    def generator_forward():
        trainer.generator.model.eval()  # as in the student step
        with torch.no_grad(), trainer.accelerator.autocast():
            trainer.generator.model(**inputs)

    def generator_fwd_bwd():
        trainer.generator.model.train()
        with trainer.accelerator.autocast():
            loss = trainer.generator.model(**inputs, labels=batch["input_ids"]).loss
        loss.backward()
        trainer.generator.model.zero_grad(set_to_none=True)

    def to_inputs(network):
        """Forward and backward to the input embeddings only, weights frozen, in eval mode: the generator
        step's pass through teacher and student."""
        network.eval().requires_grad_(False)
        embeds = network.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)

        def run():
            with trainer.accelerator.autocast():
                logits = network(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
            torch.autograd.grad(logits.float().sum(), embeds)

        return run

    passes = {
        "teacher forward": teacher_forward,
        "teacher fwd+bwd to inputs": lambda: to_inputs(teacher),
        "student fwd+bwd to inputs": lambda: to_inputs(model),
        "student fwd+bwd": student_fwd_bwd,
        "generator forward": generator_forward,
        "generator fwd+bwd": generator_fwd_bwd,
        "normal": student_step,
    }
    if case in ("teacher fwd+bwd to inputs", "student fwd+bwd to inputs"):
        function = passes[case]()
    elif case in passes:
        function = passes[case]
    elif case.startswith("reference"):
        function = reference_step(trainer, batch, name)
    elif case == "kd cached":
        trainer.teacher.cache = TeacherCache.build_or_load(
            trainer, trainer.train_dataset, os.path.join(folder, "cache")
        )
        function = student_step
    elif case == "kd cross-tokenizer":
        assert "teacher_input_ids" in batch  # the teacher reads its own tokenization
        function = student_step
    else:
        generator_step = case.endswith("[generator]")
        trainer.schedule = AlternationSchedule(1, 1) if generator_step else AlternationSchedule(0, 1)

        def function():
            trainer.batches_seen = 0
            student_step() if not generator_step else trainer.training_step(model, batch)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds, faults = timed(function, options["warmup"], options["repeats"], cuda)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if case in (options.get("profile") or []):
        profile(function, case, options)
    queue.put({"seconds": seconds, "peak_mb": peak, "faults": faults})


def profile(function, case: str, options: dict) -> None:
    """The operators of 3 steps by device time (CPU time on CPU), with their shapes and input dtypes,
    to `--profile_dir`/profile_<case>_<precision>.txt: what a ratio above 1 is made of."""
    import torch
    from torch.profiler import ProfilerActivity

    cuda = options["device"] == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with torch.profiler.profile(activities=activities, record_shapes=True) as profiler:
        for _ in range(3):
            function()
        if cuda:
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    averages = profiler.key_averages()
    name = f"profile_{re.sub(r'[^A-Za-z0-9+-]+', '_', case).strip('_')}_{options['precision']}.txt"
    os.makedirs(options["profile_dir"], exist_ok=True)
    with open(os.path.join(options["profile_dir"], name), "w") as f:
        f.write(f"{case}, {options['precision']}, 3 steps; {len(averages)} distinct operators\n\n")
        f.write(averages.table(sort_by=sort, row_limit=40))
        f.write("\n\nBy input shapes:\n\n")
        f.write(profiler.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=40))


def necessary(case: str, t: dict) -> tuple[float | None, str]:
    """The unavoidable work of a step (see the module docstring)."""
    teacher, student, plain = t["teacher forward"], t["student fwd+bwd"], t["normal"]
    if case == "normal":
        return student, "S"
    if case in ("kd", "rail_kd", "reference kd", "reference rail_kd", "kd cross-tokenizer"):
        return teacher + plain, "T + N"
    if case == "kd cached":
        return plain, "N"
    if case in ADVERSARIAL:
        return 2 * teacher + plain + student + t["generator forward"], "2T + N + S + Gf"
    if case.endswith("[generator]"):
        passes = t["generator fwd+bwd"] + t["teacher fwd+bwd to inputs"] + t["student fwd+bwd to inputs"]
        return passes, "G + Ti + Si"
    return None, ""


def reference_of(case: str) -> str | None:
    return {"kd": "reference kd", "rail_kd": "reference rail_kd", "kd cached": "reference kd"}.get(case)


def measure(folder: str, options: dict) -> dict[str, dict]:
    """Every case `rounds` times, each in a fresh process (or, with `in_process`, one after the other in
    this one); the fastest round of each."""
    context = multiprocessing.get_context("spawn")
    results: dict[str, dict] = {}
    for round_index in range(options["rounds"]):
        for case in cases(options["cases"]):
            if options["in_process"]:
                result = run_case_here(folder, case, options)
            else:
                queue = context.Queue()
                process = context.Process(target=run_case, args=(folder, case, options, queue))
                process.start()
                result = queue.get()
                process.join()
            print(f"  round {round_index + 1}: {case}: {result['seconds']:.4f} s", file=sys.stderr)
            if case not in results or result["seconds"] < results[case]["seconds"]:
                results[case] = result
    return results


def run_case_here(folder: str, case: str, options: dict) -> dict:
    """`run_case` in this process, its models and optimizer states freed afterwards (on a GPU the peak
    is reset per case, so it stays per case; on CPU the peak RSS is the process's)."""
    import gc
    import queue

    import torch

    results: queue.SimpleQueue = queue.SimpleQueue()
    run_case(folder, case, options, results)
    gc.collect()  # the trainer's reference cycles hold the models
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results.get()


def table(results: dict[str, dict], options: dict) -> list[dict]:
    times = {case: value["seconds"] for case, value in results.items()}
    rows = []
    for case in cases(options["cases"]):
        need, formula = necessary(case, times)
        reference = reference_of(case)
        rows.append(
            {
                "case": case,
                "precision": options["precision"],
                "seconds": times[case],
                "steps_per_second": 1 / times[case],
                "samples_per_second": options["batch_size"] / times[case],
                "peak_mb": results[case]["peak_mb"],
                "faults_per_step": results[case]["faults"],
                "necessary_seconds": need,
                "necessary": formula,
                "ratio_to_necessary": None if need is None else times[case] / need,
                "ratio_to_reference": None if reference is None else times[case] / times[reference],
                "ratio_to_same_tokenizer": times[case] / times["kd"] if case == "kd cross-tokenizer" else None,
            }
        )
    return rows


def print_table(rows: list[dict], cuda: bool) -> None:
    memory = "peak GPU MB" if cuda else "peak RSS MB"
    print(
        f"| step | time (s) | steps/s | samples/s | {memory} | faults | necessary (s) | / necessary | / original-shaped |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        need = "" if row["necessary_seconds"] is None else f"{row['necessary_seconds']:.4f} ({row['necessary']})"
        to_need = "" if row["ratio_to_necessary"] is None else f"{row['ratio_to_necessary']:.2f}"
        to_reference = "" if row["ratio_to_reference"] is None else f"**{row['ratio_to_reference']:.2f}**"
        faults = "" if cuda else f"{row['faults_per_step']:.0f}"
        print(
            f"| {row['case']} | {row['seconds']:.4f} | {row['steps_per_second']:.1f} | "
            f"{row['samples_per_second']:.0f} | {row['peak_mb']:.0f} | {faults} | {need} | {to_need} | {to_reference} |"
        )
    for row in rows:
        if row.get("ratio_to_same_tokenizer") is not None:
            print(f"\n{row['case']} / same tokenizer (kd): **{row['ratio_to_same_tokenizer']:.3f}**")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometry", choices=list(GEOMETRIES), default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=["fp32"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per case")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="times every case is measured; the fastest counts")
    parser.add_argument(
        "--keep_freed_memory",
        action="store_true",
        help="hf_kd's rows and the passes with the allocator setting run_glue_kd.py applies on CPU "
        "(hf_kd.cli.keep_freed_memory); the original-shaped rows keep the default, as the original ran",
    )
    parser.add_argument(
        "--in_process",
        action="store_true",
        help="run the cases one after the other in this process (saves a start-up per case: for a short GPU "
        "session; the CPU's peak RSS is then the process's, not the case's)",
    )
    parser.add_argument("--cases", nargs="+", help="measure only these rows (those their ratios need too)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--profile", nargs="+", help="also profile these rows (operators by time, per precision)")
    parser.add_argument("--profile_dir", default=".", help="where --profile writes profile_<case>_<precision>.txt")
    options = vars(parser.parse_args())
    import torch

    if options["device"] == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here.")
    if options["device"] == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as the original ran
        device = torch.cuda.get_device_name()
    else:
        device = f"CPU ({options['threads']} thread{'s' if options['threads'] > 1 else ''})"
    all_rows = []
    with tempfile.TemporaryDirectory() as folder:
        build(folder, options["geometry"])
        for precision in options["precision"]:
            run_options = {**options, "precision": precision}
            rows = table(measure(folder, run_options), run_options)
            all_rows += rows
            print(
                f"\n{options['geometry']} geometry, batch {options['batch_size']} x {options['seq_len']}, {precision}, "
                f"{device}, torch {torch.__version__}, fastest of {options['rounds']} rounds (median of "
                f"{options['repeats']} steps each)\n",
                flush=True,
            )
            print_table(rows, options["device"] == "cuda")
            if options["json"]:  # after every precision, so a run stopped early keeps what it measured
                with open(options["json"], "w") as f:
                    json.dump({"options": options, "device": device, "rows": all_rows}, f, indent=2)


if __name__ == "__main__":
    main()
