#!/usr/bin/env python
"""Time one training step of every method against the passes it cannot avoid.

    python benchmarks/bench_step.py [--batch_size 32] [--seq_len 128] [--repeats 5] [--json out.json]

Models are built here from configs (RoBERTa family, 50,265-token vocabulary as RoBERTa's): teacher
6 layers x 256, student 3 layers x 128, generator 2 layers x 128 (a masked LM). Each case runs in a
fresh process (peak memory is per case): CPU by default, CUDA when present. Rows:

- `teacher forward`, `student fwd+bwd`, `generator forward`, `generator fwd+bwd`: the passes alone.
- `normal`: a plain fine-tuning step of the student (forward, backward, AdamW).
- `<method>`: a student (min) step; `<method> [generator]`: a generator (max) step.
- `necessary` is the sum of the unavoidable passes of the row (formula in the `necessary` column;
  T teacher forward, S student fwd+bwd, N a plain student step = S + AdamW, Gf / G generator
  forward / fwd+bwd): KD and RAIL-KD T + N; min steps of the adversarial methods, whose clean and
  perturbed batches both pass teacher and student, 2T + N + S + Gf; generator steps G + T + S
  (teacher and student forward with backward to their inputs, counted as T + S).
- `cache epoch ratio`: a KD epoch with `--cache_teacher_outputs` over one without (cache built before).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

VOCAB = 50265
METHODS = ["kd", "rail_kd", "mate_kd", "cilda", "cilda_minild"]
ADVERSARIAL = ["mate_kd", "cilda", "cilda_minild"]


def build(folder: str):
    """Tokenizer (RoBERTa's special tokens, a 50,265-entry vocabulary) and the three models, saved."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, RobertaConfig, RobertaTokenizer

    vocab = {
        "<s>": 0,
        "<pad>": 1,
        "</s>": 2,
        "<unk>": 3,
        **{f"w{i}": i for i in range(4, VOCAB - 1)},
        "<mask>": VOCAB - 1,
    }
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    tokenizer = RobertaTokenizer(vocab=os.path.join(folder, "vocab.json"), merges=os.path.join(folder, "merges.txt"))
    torch.manual_seed(0)
    for name, layers, hidden, auto in (
        ("teacher", 6, 256, AutoModelForSequenceClassification),
        ("student", 3, 128, AutoModelForSequenceClassification),
        ("generator", 2, 128, AutoModelForMaskedLM),
    ):
        config = RobertaConfig(
            vocab_size=VOCAB,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=4 * hidden,
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            num_labels=2,
        )
        auto.from_config(config).save_pretrained(os.path.join(folder, name))
        tokenizer.save_pretrained(os.path.join(folder, name))


def dataset(size: int, seq_len: int):
    import torch
    from datasets import Dataset

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB - 1, (size, seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 2
    return Dataset.from_dict(
        {
            "input_ids": ids.tolist(),
            "attention_mask": [[1] * seq_len] * size,
            "label": torch.randint(0, 2, (size,), generator=generator).tolist(),
            "hf_kd_index": list(range(size)),
        }
    )


def make_trainer(folder: str, method: str, options: dict):
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    from hf_kd.arguments import DistillationTrainingArguments
    from hf_kd.data import DistillationCollator
    from hf_kd.trainers import TRAINERS

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "student"))
    student = AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, "student"))
    teacher = AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, "teacher"))
    args = DistillationTrainingArguments(
        output_dir=os.path.join(folder, "out", method),
        method=method,
        report_to="none",
        learning_rate=1e-4,
        per_device_train_batch_size=options["batch_size"],
        per_device_eval_batch_size=options["batch_size"],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=options["bf16"],
    )
    extra = {}
    if method in ADVERSARIAL:
        extra["generator"] = AutoModelForMaskedLM.from_pretrained(os.path.join(folder, "generator"))
    trainer = TRAINERS[method](
        model=student.to(args.device),
        teacher=teacher if method != "normal" else None,
        args=args,
        train_dataset=dataset(options["batch_size"] * options["epoch_batches"], options["seq_len"]),
        processing_class=tokenizer,
        data_collator=DistillationCollator(tokenizer),
        **extra,
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def timed(function, warmup: int, repeats: int) -> float:
    import torch

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(folder: str, case: str, options: dict, queue) -> None:
    """One measurement in this (fresh) process; puts {seconds, peak_mb} on the queue."""
    import torch

    from hf_kd.cache import TeacherCache
    from hf_kd.trainers.adversarial import AlternationSchedule

    torch.manual_seed(0)
    method = case.split()[0] if case.split()[0] in [*METHODS, "normal"] else "mate_kd"
    trainer = make_trainer(folder, method, options)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model, teacher = trainer.model, trainer.teacher
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
        trainer.generator.eval()  # as in the student step
        with torch.no_grad(), trainer.accelerator.autocast():
            trainer.generator(**inputs)

    def generator_fwd_bwd():
        trainer.generator.train()
        with trainer.accelerator.autocast():
            loss = trainer.generator(**inputs, labels=batch["input_ids"]).loss
        loss.backward()
        trainer.generator.zero_grad(set_to_none=True)

    passes = {
        "teacher forward": teacher_forward,
        "student fwd+bwd": student_fwd_bwd,
        "generator forward": generator_forward,
        "generator fwd+bwd": generator_fwd_bwd,
    }
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if case in passes:
        seconds = timed(passes[case], options["warmup"], options["repeats"])
    elif case == "cache epoch ratio":
        loader = list(trainer.get_train_dataloader())

        def epoch():
            for item in loader:
                trainer.training_step(model, trainer._prepare_inputs(item))
                trainer.optimizer.step()
                model.zero_grad(set_to_none=True)

        uncached = timed(epoch, 1, max(1, options["repeats"] // 2))
        trainer.teacher_cache = TeacherCache._compute(trainer, trainer.train_dataset)
        cached = timed(epoch, 1, max(1, options["repeats"] // 2))
        seconds = cached / uncached
    else:
        generator_step = case.endswith("[generator]")
        trainer.schedule = AlternationSchedule(1, 1) if generator_step else AlternationSchedule(0, 1)

        def step():
            trainer.batches_seen = 0
            student_step() if not generator_step else trainer.training_step(model, batch)

        seconds = timed(step, options["warmup"], options["repeats"])
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"seconds": seconds, "peak_mb": peak})


def necessary(case: str, t: dict) -> tuple[float | None, str]:
    """The unavoidable work of a step: T teacher forward, S student fwd+bwd, N a plain student step
    (S + AdamW), Gf / G the generator's forward / fwd+bwd."""
    teacher, student, plain = t["teacher forward"], t["student fwd+bwd"], t["normal"]
    if case == "normal":
        return student, "S"
    if case in ("kd", "rail_kd"):
        return teacher + plain, "T + N"
    if case in ADVERSARIAL:
        return 2 * teacher + plain + student + t["generator forward"], "2T + N + S + Gf"
    if case.endswith("[generator]"):
        return t["generator fwd+bwd"] + teacher + student, "G + T + S"
    return None, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epoch_batches", type=int, default=8, help="batches of the cache epoch comparison")
    parser.add_argument("--bf16", action="store_true", help="mixed precision (GPU)")
    parser.add_argument("--json", help="also write the results here")
    options = vars(parser.parse_args())
    cases = [
        "teacher forward",
        "student fwd+bwd",
        "generator forward",
        "generator fwd+bwd",
        "normal",
        *METHODS,
        *[f"{m} [generator]" for m in ADVERSARIAL],
        "cache epoch ratio",
    ]
    context = multiprocessing.get_context("spawn")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        build(folder)
        for case in cases:
            queue = context.Queue()
            process = context.Process(target=run_case, args=(folder, case, options, queue))
            process.start()
            results[case] = queue.get()
            process.join()
            print(f"  measured {case}: {results[case]['seconds']:.3f}", file=sys.stderr)
    times = {case: value["seconds"] for case, value in results.items()}
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"\nbatch {options['batch_size']} x {options['seq_len']}, vocabulary {VOCAB}, {device}, torch {torch.__version__}\n"
    )
    print("| step | time (s) | samples/s | peak memory (MB) | necessary (s) | ratio |")
    print("|---|---|---|---|---|---|")
    rows = []
    for case in cases[:-1]:
        need, formula = necessary(case, times)
        seconds = times[case]
        row = {
            "case": case,
            "seconds": seconds,
            "samples_per_second": options["batch_size"] / seconds,
            "peak_mb": results[case]["peak_mb"],
            "necessary_seconds": need,
            "necessary": formula,
            "ratio": None if need is None else seconds / need,
        }
        rows.append(row)
        ratio = "" if need is None else f"{row['ratio']:.2f}"
        necessary_text = "" if need is None else f"{need:.3f} ({formula})"
        print(
            f"| {case} | {seconds:.3f} | {row['samples_per_second']:.1f} | {row['peak_mb']:.0f} | {necessary_text} | {ratio} |"
        )
    print(
        f"\ncache epoch ratio (KD, cached / uncached, {options['epoch_batches']} batches): {times['cache epoch ratio']:.2f}"
    )
    if options["json"]:
        with open(options["json"], "w") as f:
            json.dump(
                {"options": options, "device": device, "rows": rows, "cache_epoch_ratio": times["cache epoch ratio"]},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
