"""Model card and Hub upload of a distilled student (student and tokenizer only, never the extras)."""

from __future__ import annotations

import os
import shutil
import tempfile

import yaml

from hf_kd.data import GLUE_LABELS
from hf_kd.diagnostics import TeacherWorth

METHOD_NAMES = {
    "normal": "fine-tuning without distillation",
    "kd": "vanilla knowledge distillation",
    "rail_kd": "RAIL-KD (random intermediate layer distillation)",
    "mate_kd": "MATE-KD (masked adversarial text distillation)",
    "cilda": "CILDA (contrastive intermediate-layer adversarial distillation)",
    "cilda_minild": "CILDA+minILD (adversarial distillation with contrastive intermediate-layer losses)",
    "tinybert": "TinyBERT-style layer-wise distillation (hidden states and attention)",
    "minilm": "MiniLM-style self-attention relation distillation",
}
CITATIONS = {
    "kd": "Hinton, Vinyals and Dean. Distilling the Knowledge in a Neural Network. NIPS Deep Learning Workshop, 2015.",
    "rail_kd": "Haidar, Anchuri, Rezagholizadeh, Ghaddar, Langlais and Poupart. RAIL-KD: RAndom Intermediate Layer "
    "Mapping for Knowledge Distillation. Findings of NAACL, 2022.",
    "mate_kd": "Rashid, Lioutas and Rezagholizadeh. MATE-KD: Masked Adversarial TExt, a Companion to Knowledge "
    "Distillation. ACL, 2021.",
    "cilda": "Haidar, Rezagholizadeh, Ghaddar, Bibi, Langlais and Poupart. CILDA: Contrastive Data Augmentation using "
    "Intermediate Layer Knowledge Distillation. COLING, 2022.",
    "cilda_minild": "Introducing intermediate-layer distillation and contrastive learning into adversarial knowledge "
    "distillation. NLP2023.",
    "tinybert": "Jiao, Yin, Shang, Jiang, Chen, Li, Wang and Liu. TinyBERT: Distilling BERT for Natural Language "
    "Understanding. Findings of EMNLP, 2020.",
    "minilm": "Wang, Bao, Huang, Dong and Wei. MiniLMv2: Multi-Head Self-Attention Relation Distillation for "
    "Compressing Pretrained Transformers. Findings of ACL, 2021.",
}
# which papers a method builds on
LINEAGE = {
    "normal": [],
    "kd": ["kd"],
    "rail_kd": ["kd", "rail_kd"],
    "mate_kd": ["kd", "mate_kd"],
    "cilda": ["kd", "mate_kd", "cilda"],
    "cilda_minild": ["kd", "mate_kd", "cilda", "cilda_minild"],
    "tinybert": ["kd", "tinybert"],
    "minilm": ["kd", "minilm"],
}
STUDENT_FILES = ("config.json", "model.safetensors", "generation_config.json")
PRETTY_METRICS = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "matthews_correlation": "Matthews Correlation",
    "pearson": "Pearson",
    "spearmanr": "Spearman",
}


def model_card(
    model_id: str,
    model_args,
    data_args,
    training_args,
    results: dict,
    sizes: dict[str, dict] | None = None,
    findings: dict | None = None,
) -> str:
    """README.md with Hub metadata (model-index results) and a description of the distillation; `sizes`
    (role -> parameters, size_on_disk_mb) adds what the student and teacher cost to ship, `findings` what the
    run measured about the teacher's worth, a collapse and the no-KD twin (`hf_kd.run`)."""
    findings = findings or {}
    method = training_args.method
    task = data_args.task_name
    dataset = (
        {"name": f"GLUE {task.upper()}", "type": "nyu-mll/glue", "config": task, "split": "validation"}
        if task in GLUE_LABELS
        else {"name": os.path.basename(str(data_args.train_file)), "type": "custom"}
    )
    metrics = [
        {"type": name, "value": round(float(results[f"eval_{name}"]), 4), "name": PRETTY_METRICS[name]}
        for name in PRETTY_METRICS
        if f"eval_{name}" in results
    ]
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["text-classification", "knowledge-distillation", "hf_kd", method],
        "base_model": model_args.model_name_or_path,
        "model-index": [
            {
                "name": model_id.split("/")[-1],
                "results": [
                    {
                        "task": {"type": "text-classification", "name": "Text Classification"},
                        "dataset": dataset,
                        "metrics": metrics,
                    }
                ],
            }
        ],
    }
    if task in GLUE_LABELS:
        metadata["datasets"] = ["nyu-mll/glue"]
    hyper = {
        "method": method,
        "learning rate": training_args.learning_rate,
        "batch size per device": training_args.per_device_train_batch_size,
        "gradient accumulation": training_args.gradient_accumulation_steps,
        "epochs": training_args.num_train_epochs,
        "scheduler": training_args.lr_scheduler_type,
        "seed": training_args.seed,
        "max sequence length": data_args.max_seq_length,
        "loss weights (student step)": training_args.loss_weights,
    }
    if training_args.generator_loss_weights:
        hyper.update(
            {
                "loss weights (generator step)": training_args.generator_loss_weights,
                "generator learning rate": training_args.generator_learning_rate,
                "generator / student steps per cycle": f"{training_args.n_generator_iter} / {training_args.n_student_iter}",
                "masking probability": training_args.mlm_probability,
            }
        )
    if method != "normal":
        hyper["KD temperature"] = training_args.kd_temperature
        if training_args.kd_row_weighting != "none":
            hyper["KD row weighting"] = training_args.kd_row_weighting
        if training_args.kd_min_confidence > 0:
            hyper["KD rows kept: teacher top probability at least"] = training_args.kd_min_confidence
    if data_args.labelled_share is not None:
        hyper["labelled share of training rows (at least)"] = data_args.labelled_share
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).strip(),
        "---",
        "",
        f"# {model_id.split('/')[-1]}",
        "",
        (
            "A student fine-tuned on its labels alone, without distillation, by [hf_kd](https://pypi.org/project/hf_kd/)."
            if method == "normal"
            else f"A student distilled with {METHOD_NAMES[method]} by [hf_kd](https://pypi.org/project/hf_kd/)."
        ),
        "",
        f"- Student initialised from: `{model_args.model_name_or_path}`",
    ]
    if model_args.teacher_name_or_path:
        worth = findings.get("teacher_check")
        scored = f": {TeacherWorth(**worth).card_text()}" if worth else ""
        lines.append(f"- Teacher: `{model_args.teacher_name_or_path}`{scored}")
        if findings.get("teacher_labels"):
            lines.append(f"- The teacher's labels: {findings['teacher_labels']['text']}")
    if model_args.generator_name_or_path:
        lines.append(f"- Generator (masked LM): `{model_args.generator_name_or_path}`")
    lines.append(f"- Data: {dataset['name']}")
    if "train_labelled_samples" in results:
        lines.append(
            f"- Training examples: {results['train_labelled_samples']:,} labelled, "
            f"{results['train_unlabelled_samples']:,} unlabelled (teacher terms only)"
        )
    lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
    lines += [f"| {m['name']} | {m['value']} |" for m in metrics]
    lines += findings_lines(findings, method)
    if sizes:
        lines += ["", "## Size", "", "| model | parameters | size on disk |", "|---|---|---|"]
        for role, size in sizes.items():
            on_disk = "" if size.get("size_on_disk_mb") is None else f"{size['size_on_disk_mb']:.1f} MB"
            lines.append(f"| {role} | {size['parameters'] / 1e6:.1f} M | {on_disk} |")
    lines += ["", "## Training hyper-parameters", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in hyper.items()]
    cited = [CITATIONS[key] for key in LINEAGE[method]]
    if task in GLUE_LABELS:
        cited.append(
            "Wang, Singh, Michael, Hill, Levy and Bowman. GLUE: A Multi-Task Benchmark and Analysis Platform for "
            "Natural Language Understanding. ICLR, 2019."
        )
    if cited:
        lines += ["", "## Citation", "", *[f"- {text}" for text in cited]]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("text-classification", model="{model_id}")',
        "```",
        "",
    ]
    return "\n".join(lines)


def findings_lines(findings: dict, method: str) -> list[str]:
    """The card's account of the no-KD twin and of every warning the run raised; `method` is the described
    model's (`normal`: the twin, kept by --load_best_of_twins)."""
    lines = []
    twin = findings.get("twin")
    if twin:
        metric, difference = twin["metric"].removeprefix("eval_"), twin["difference"]
        ours, theirs = twin["distilled"], twin["no_kd_twin"]
        if method == "normal":
            lines += ["", "## Against the distilled student", ""]
            lines.append(
                f"This model is the no-KD twin of a {findings['method']} run: the same student trained with the same "
                f"data, seed and number of steps on the labels alone. It scored {metric} {theirs:.4f} against the "
                f"distilled student's {ours:.4f} (one seed), so `--load_best_of_twins` kept it; the distilled "
                "student, with its own results and card, is in `distilled/`."
            )
            return lines
        verdict = (
            f"**{100 * difference:+.2f} points over its no-KD twin**"
            if difference >= 0
            else f"**{100 * difference:+.2f} points: the teacher did not help**"
        )
        lines += ["", "## Against its no-KD twin", ""]
        lines.append(
            f"The same student trained with the same data, seed and number of steps on the labels alone: "
            f"{verdict} ({metric} {ours:.4f} against {theirs:.4f}, one seed)."
        )
        if twin["saved_student"] == "no_kd_twin":
            lines.append(
                "The twin scored higher and is the model saved in the folder above (`--load_best_of_twins`); this is "
                "the distilled student."
            )
        else:
            lines.append(f"The twin is saved in `{os.path.basename(twin['folder'])}/`.")
    warnings = list((findings.get("teacher_check") or {}).get("warnings", []))
    if findings.get("collapse"):
        collapse = findings["collapse"]
        warnings.append(
            f"At step {collapse['step']} the student predicted one class for {max(collapse['shares']):.0%} of the "
            "checked validation rows, while their labels do not: it collapsed onto one class."
        )
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {warning}" for warning in warnings]]
    return lines


def is_student_file(name: str) -> bool:
    """A file of the student model itself: config, weights (sharded too) or tokenizer."""
    weights = name.startswith("model") and name.endswith((".safetensors", ".safetensors.index.json"))
    tokenizer = name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "spiece", "sentencepiece"))
    return name in STUDENT_FILES or weights or tokenizer


def student_folder(output_dir: str, card: str, destination: str) -> str:
    """Copy the student, its tokenizer and results beside a model card into `destination`."""
    os.makedirs(destination, exist_ok=True)
    results = {"all_results.json", "eval_results.json", "train_results.json"}
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if os.path.isfile(path) and (is_student_file(name) or name in results):
            shutil.copy2(path, os.path.join(destination, name))
    with open(os.path.join(destination, "README.md"), "w") as f:
        f.write(card)
    return destination


def push_student(
    output_dir: str, model_id: str, card: str, token: str | None = None, private: bool | None = None
) -> str:
    """Upload the student folder (not checkpoints, generator or projections) to `model_id` on the Hub."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as staging:
        student_folder(output_dir, card, staging)
        repo = api.create_repo(model_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo.repo_id, folder_path=staging, commit_message="Upload distilled student (hf_kd)")
    return repo.repo_id
