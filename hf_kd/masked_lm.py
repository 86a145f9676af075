"""Fit a masked LM to the text it will rewrite, before `python -m hf_kd.augment`.

    python -m hf_kd.masked_lm train.csv --masked_lm bert-base-uncased --output_dir generator/ --max_steps 1000

TinyBERT's augmentation asks a masked LM which words fit a sentence. One that has not read the task's text, or
whose masked-LM head is missing (a sentence encoder's checkpoint: the head starts random), proposes frequent
words instead ("my my card"). This trains the masked LM on the file's own text (`transformers.Trainer`, 15% of
the words masked whole, every parameter trained) and measures what `hf_kd.augment` relies on, before and after:
how often a masked word is among the model's `--top_k` candidates, on `--check_share` of the texts that training
never sees (nor any text sharing a phrase with them, `hf_kd.overlap`). The model, its tokenizer and
`masked_lm.json` (the two checks, the rows each part had) are written to `--output_dir`; pass it as `--masked_lm`
to `hf_kd.augment`, or as the MATE-KD / CILDA generator.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
    set_seed,
)

from hf_kd.augment import read_rows, word_recovery
from hf_kd.errors import ArgumentError, brief
from hf_kd.overlap import OverlapIndex

CHECKED_AT_MOST = 1000  # texts the recovery check reads (one masked-LM pass each)


@dataclass
class Recovery:
    """How often the masked word was among the top candidates, over the texts checked."""

    found: int
    checked: int

    @property
    def share(self) -> float:
        return self.found / self.checked if self.checked else 0.0


class WholeWordCollator(DataCollatorForLanguageModeling):
    """Masks whole words (transformers' collator reads the words from the offsets), with the offsets padded to
    the batch's longest row first: `tokenizer.pad` pads the ids but leaves the offsets ragged."""

    def torch_call(self, examples: list[dict]) -> dict:
        longest = max(len(example["input_ids"]) for example in examples)
        padded = []
        for example in examples:
            filler = [(0, 0)] * (longest - len(example["offset_mapping"]))  # as a special token's offsets
            offsets = list(example["offset_mapping"])
            offsets = filler + offsets if self.tokenizer.padding_side == "left" else offsets + filler
            padded.append({**example, "offset_mapping": offsets})
        return super().torch_call(padded)


def split_for_check(texts: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, check): a random `share` of the distinct texts for the check, and every other text that shares no
    phrase with one of them for training, so the check reads sentences the masked LM never saw in any form."""
    distinct = sorted(set(texts))
    random.Random(seed).shuffle(distinct)
    check = distinct[: max(1, round(share * len(distinct)))]
    held = OverlapIndex(check)
    return [text for text in texts if not held.overlaps(text)], check


def fit_masked_lm(
    inputs: list[str],
    masked_lm: str,
    output_dir: str,
    max_steps: int = 1000,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    max_length: int = 64,
    check_share: float = 0.05,
    top_k: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train `masked_lm` on the text columns of `inputs` and save it to `output_dir`; the summary it writes."""
    texts = [text for path in inputs for row in read_rows(path)[1] for text in row.values() if text.strip()]
    if len(set(texts)) < 2:
        raise ArgumentError(f"INPUT {' '.join(inputs)}: fewer than 2 distinct texts to train and check on.")
    set_seed(seed)  # a checkpoint without a masked-LM head gets a random one: the same seed, the same head
    try:
        tokenizer = AutoTokenizer.from_pretrained(masked_lm)
        model, loading = AutoModelForMaskedLM.from_pretrained(masked_lm, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise ArgumentError(f"--masked_lm {masked_lm!r}: no masked LM loads from it ({brief(error)}).") from None
    if tokenizer.mask_token_id is None or not tokenizer.is_fast:
        raise ArgumentError(
            f"--masked_lm {masked_lm!r}: its tokenizer needs a mask token and word offsets (a fast one)."
        )
    train, check = split_for_check(texts, check_share, seed)
    if not train:
        raise ArgumentError(f"--check_share {check_share}: every text shares a phrase with the checked ones; lower it.")
    check = check[:CHECKED_AT_MOST]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def recovery() -> Recovery:
        model.to(device).eval()
        with torch.no_grad():
            return Recovery(*word_recovery(check, model, tokenizer, top_k, random.Random(seed), device))

    before = recovery()
    encoded = tokenizer(train, truncation=True, max_length=max_length, return_offsets_mapping=True)
    features = [dict(zip(encoded.keys(), values, strict=True)) for values in zip(*encoded.values(), strict=True)]
    arguments = TrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=max_steps // 10,
        logging_steps=max(1, max_steps // 10),
        save_strategy="no",
        report_to="none",
        seed=seed,
        remove_unused_columns=False,  # the collator reads the offsets to mask whole words
        disable_tqdm=not progress,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    collator = WholeWordCollator(  # every chosen word becomes mask tokens: random replacement needs pieces
        tokenizer, whole_word_mask=True, mlm_probability=0.15, mask_replace_prob=1.0, random_replace_prob=0.0, seed=seed
    )
    Trainer(model=model, args=arguments, train_dataset=features, data_collator=collator).train()
    after = recovery()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    summary = {
        "masked_lm": masked_lm,
        "newly_initialised": sorted(loading["missing_keys"]),  # a sentence encoder's checkpoint: the whole head
        "texts_trained": len(train),
        "texts_checked": len(check),
        "max_steps": max_steps,
        "top_k": top_k,
        "before": asdict(before),
        "after": asdict(after),
    }
    (Path(output_dir) / "masked_lm.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hf_kd.masked_lm", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="data files (.tsv / .csv / .json / .jsonl) whose text it learns")
    parser.add_argument("--masked_lm", required=True, help="the masked LM to start from (a hub name or a folder)")
    parser.add_argument("--output_dir", required=True, help="where the fitted masked LM goes (a new folder)")
    parser.add_argument("--max_steps", type=int, default=1000)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=64, help="tokens a text is cut to")
    parser.add_argument("--check_share", type=float, default=0.05, help="texts kept out to check word recovery")
    parser.add_argument("--top_k", type=int, default=8, help="candidates the check looks in (augment's --top_k)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.max_steps < 1 or args.batch_size < 1 or args.max_length < 8 or args.top_k < 1:
        raise ArgumentError("--max_steps, --batch_size and --top_k must be >= 1, --max_length >= 8.")
    if not 0 < args.check_share < 1:
        raise ArgumentError(f"--check_share {args.check_share}: a share in (0, 1), e.g. 0.05.")
    if Path(args.output_dir).exists() and any(Path(args.output_dir).iterdir()):
        raise ArgumentError(f"--output_dir {args.output_dir} is not empty: pick a new folder (nothing is overwritten).")
    summary = fit_masked_lm(**vars(args))  # the flags are the function's parameters, name for name
    before, after = Recovery(**summary["before"]), Recovery(**summary["after"])
    print(
        f"Masked word among the top {args.top_k} on {after.checked:,} texts training never saw: "
        f"{100 * before.share:.1f}% before, {100 * after.share:.1f}% after {args.max_steps:,} steps on "
        f"{summary['texts_trained']:,} texts. Saved to {args.output_dir}: pass it as --masked_lm to hf_kd.augment."
    )


if __name__ == "__main__":
    from hf_kd.cli import exit_on_argument_error

    exit_on_argument_error(main, "hf_kd.masked_lm")
