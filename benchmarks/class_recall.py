#!/usr/bin/env python
"""Per-class recall of a quality benchmark's finished students on SST-2 dev, and dev accuracy reweighted to
another class balance: how a remedy that pulls the student toward the minority class fares on test data that
keeps the training skew (issue 29).

    python benchmarks/class_recall.py --runs /tmp/bench/imbalanced/runs --class_weights 0.7 0.3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hf_kd.report import paired_differences  # noqa: E402


def predictions(folder: Path, texts: list[str]):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return torch.cat(
            [
                model(
                    **tokenizer(texts[i : i + 128], padding=True, truncation=True, max_length=64, return_tensors="pt")
                ).logits.argmax(-1)
                for i in range(0, len(texts), 128)
            ]
        )


def main(argv: list[str] | None = None) -> None:
    from sklearn.metrics import accuracy_score, recall_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", required=True, help="a benchmark's runs folder (<setting>[_ablation]/<method>/lr-*/seed-*)"
    )
    parser.add_argument("--dev_file", default=str(ROOT / "data" / "sst2" / "dev.tsv"))
    parser.add_argument("--class_weights", type=float, nargs=2, default=[0.7, 0.3], help="negative, positive")
    parser.add_argument("--baseline", default="few_labels/normal", help="the runs every other variant is paired with")
    options = parser.parse_args(argv)
    rows = [line.split("\t") for line in Path(options.dev_file).read_text(encoding="utf-8").splitlines()[1:]]
    texts, labels = [r[0] for r in rows], [int(r[1]) for r in rows]
    scores: dict[str, dict[int, dict[str, float]]] = {}
    for folder in sorted(Path(options.runs).glob("*/*/lr-*/seed-*")):
        if not (folder / "model.safetensors").is_file():
            continue
        predicted = predictions(folder, texts)
        recalls = recall_score(labels, predicted, labels=[0, 1], average=None).tolist()
        variant = f"{folder.parts[-4]}/{folder.parts[-3]}"
        scores.setdefault(variant, {})[int(folder.name.split("-")[1])] = {
            "accuracy": accuracy_score(labels, predicted),
            "recall_negative": recalls[0],
            "recall_positive": recalls[1],
            "reweighted_accuracy": sum(w * r for w, r in zip(options.class_weights, recalls, strict=True)),
        }
    (Path(options.runs) / "class_recall.json").write_text(json.dumps(scores, indent=1))
    weights = " / ".join(f"{100 * w:g}" for w in options.class_weights)
    print(
        f"| run | dev accuracy | recall negative | recall positive | reweighted {weights} | vs {options.baseline}, reweighted [95% CI] |"
    )
    print("|---|---|---|---|---|---|")
    baseline = {seed: 100 * s["reweighted_accuracy"] for seed, s in scores.get(options.baseline, {}).items()}
    for variant, by_seed in scores.items():
        mean = {key: 100 * sum(s[key] for s in by_seed.values()) / len(by_seed) for key in next(iter(by_seed.values()))}
        paired = ""
        if variant != options.baseline and baseline:
            p = paired_differences({seed: 100 * s["reweighted_accuracy"] for seed, s in by_seed.items()}, baseline)
            paired = f"{p['mean']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}] ({p['wins']}/{len(p['seeds'])})"
        print(
            f"| {variant} | {mean['accuracy']:.2f} | {mean['recall_negative']:.2f} | {mean['recall_positive']:.2f} "
            f"| {mean['reweighted_accuracy']:.2f} | {paired} |"
        )


if __name__ == "__main__":
    main()
