"""Augmented transfer text: TinyBERT's recipe with any masked LM, written as an unlabelled file a run reads.

    python -m hf_kd.augment train.tsv --masked_lm generator/ --variants 20 --probability 0.4 \\
        --exclude heldout.tsv dev.tsv --output augmented.tsv

Each text is rewritten `--variants` times: every word of letters (a run of the tokenizer's pieces between
spaces, so `playing` as `play ##ing` is one word; punctuation and `'s` stay) is replaced with probability
`--probability` by one of the masked LM's `--top_k` candidates at its position, the word's pieces masked as
one mask token (whole-word: a candidate is a whole-word token of letters, never a continuation piece, a
special token, the word itself, or a one-letter token the input never uses as a word: `t` and `s`, cut off
`don't` and `it's`, are no words); the rest of the text, case and spacing included, stays as it was.
The variants of a text are drawn in one masked-LM pass. Variants that repeat a text already written, and
any that share a phrase with the `--exclude` files (held-out, validation: `hf_kd.overlap`, by containment),
are dropped. The same seed gives the same file. The output (`.tsv` or `.csv`, written as its suffix says) has
the input's text columns and no label: pass it as `--unlabeled_file`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
from collections.abc import Collection, Iterable
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerBase

from hf_kd.errors import ArgumentError, brief
from hf_kd.overlap import OverlapIndex, normalise

RECOVERY_TEXTS = 200  # the first rows whose masked words tell how well the masked LM knows the text


def word_spans(tokenizer: PreTrainedTokenizerBase, text: str) -> list[tuple[int, int]]:
    """Each word's span of characters: a word starts at the first token and wherever a space precedes a token
    (`play ##ing` and `film.` are one word each, so a word's pieces are masked and replaced together)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans: list[tuple[int, int]] = []
    for index, (start, end) in enumerate(offsets):
        if index == 0 or start > offsets[index - 1][1]:
            spans.append((start, end))
        else:
            spans[-1] = (spans[-1][0], end)
    return spans


def one_letter_words(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> set[str]:
    """The one-letter words the texts use on their own (`a`, `I`), case-folded. A WordPiece vocabulary holds `t`
    and `s` as whole-word tokens because it cuts `don't` and `it's` there; as candidates they wrote "I t my card"
    into 16% of BANKING77's rewrites."""
    words = set()
    for text in texts:
        words |= {text[s:e].casefold() for s, e in word_spans(tokenizer, text) if e - s == 1 and text[s:e].isalpha()}
    return words


def candidate_masks(
    tokenizer: PreTrainedTokenizerBase, size: int, one_letter: Collection[str] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """The vocabulary ids a replaced word may become, as the sentence's first word and as a later one: whole-word
    tokens of letters (no continuation piece, special token or mark; of one letter only if `one_letter`, the
    words the text uses, has it). A byte-level BPE vocabulary marks a word after a space in the token itself
    (`Ġgood`), so a later word takes only such tokens and the first only the others; WordPiece's words take the
    same tokens anywhere (decoding puts the spaces)."""
    first, later = torch.zeros(size, dtype=torch.bool), torch.zeros(size, dtype=torch.bool)
    spaced = torch.zeros(size, dtype=torch.bool)
    for token, index in tokenizer.get_vocab().items():
        if index >= size or index in tokenizer.all_special_ids or token.startswith("##"):
            continue
        text = tokenizer.convert_tokens_to_string([token])
        if len(text.strip()) == 1 and text.strip().casefold() not in one_letter:
            continue
        if text.strip().isalpha():
            first[index] = later[index] = True
            spaced[index] = text.startswith(" ")
    if spaced.any():  # byte-level BPE
        return first & ~spaced, later & spaced
    return first, later


@torch.no_grad()
def augment_text(
    text: str,
    model,
    tokenizer: PreTrainedTokenizerBase,
    allowed: tuple[torch.Tensor, torch.Tensor],
    variants: int,
    probability: float,
    top_k: int,
    rng: random.Random,
    device: torch.device,
) -> list[str]:
    """`variants` rewrites of `text` (fewer when a draw replaces no word), all from one masked-LM pass: each
    chosen word becomes one mask token, and the rewrite puts a candidate in its characters' place (the rest
    of the text, case and spacing included, stays as it was)."""
    spans = word_spans(tokenizer, text)
    words = [span for span in spans if text[span[0] : span[1]].isalpha()]  # punctuation and `'s` stay as they are
    drafts = [
        chosen for chosen in ([s for s in words if rng.random() < probability] for _ in range(variants)) if chosen
    ]
    if not drafts:
        return []

    def masked(chosen: list[tuple[int, int]]) -> str:
        pieces, last = [], 0
        for start, end in chosen:
            pieces += [text[last:start], tokenizer.mask_token]
            last = end
        return "".join([*pieces, text[last:]])

    batch = tokenizer([masked(chosen) for chosen in drafts], padding=True, truncation=True, return_tensors="pt")
    logits = model(**{name: value.to(device) for name, value in batch.items() if name != "token_type_ids"}).logits
    logits = logits.float().cpu()
    rewrites = []
    for row, chosen in enumerate(drafts):
        positions = (batch["input_ids"][row] == tokenizer.mask_token_id).nonzero().flatten().tolist()
        if len(positions) != len(chosen):  # a word merged with its mask, or cut off a long text: leave it out
            continue
        pieces, last = [], 0
        for position, (start, end) in zip(positions, chosen, strict=True):
            column = logits[row, position].masked_fill(~allowed[spans.index((start, end)) > 0], float("-inf"))
            original = tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
            column[original] = float("-inf")  # never the word itself
            candidate = rng.choice(column.topk(top_k).indices.tolist())
            pieces += [
                text[last:start],
                tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(candidate)]).strip(),
            ]
            last = end
        rewrites.append("".join([*pieces, text[last:]]))
    return rewrites


@torch.no_grad()
def word_recovery(
    texts: list[str], model, tokenizer: PreTrainedTokenizerBase, top_k: int, rng: random.Random, device: torch.device
) -> tuple[int, int]:
    """How well the masked LM knows the text: one word of letters (a single token) masked in each text, and how
    often the word is among its `top_k` candidates there; (found, checked). A masked LM that rarely finds the word
    draws its rewrites from frequent words ("my my card"), not from what the text says."""
    found = checked = 0
    for text in texts:
        words = [(start, end) for start, end in word_spans(tokenizer, text) if text[start:end].isalpha()]
        if not words:
            continue
        start, end = rng.choice(words)
        original = tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
        if len(original) != 1:  # a word of several pieces is masked as one token: nothing single to compare
            continue
        batch = tokenizer(text[:start] + tokenizer.mask_token + text[end:], truncation=True, return_tensors="pt")
        position = (batch["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten()
        if len(position) != 1:  # the word lies past the longest input the tokenizer keeps
            continue
        inputs = {name: value.to(device) for name, value in batch.items() if name != "token_type_ids"}
        logits = model(**inputs).logits[0, position[0]].float().cpu()
        checked += 1
        found += original[0] in logits.topk(top_k).indices.tolist()
    return found, checked


def read_rows(path: str) -> tuple[list[str], list[dict]]:
    """A data file's text columns (GLUE's names, or `text`) and rows, through hf_kd's own reader."""
    from hf_kd.data import _load_file, text_columns

    dataset = _load_file(path, None, None, option="INPUT")
    first, second = text_columns(dataset, None, path)
    columns = [first] + ([second] if second else [])
    return columns, [{column: str(row[column] or "") for column in columns} for row in dataset]


def augment_file(
    path: str,
    masked_lm: str,
    output: str,
    variants: int = 20,
    probability: float = 0.4,
    top_k: int = 8,
    exclude: list[str] | None = None,
    seed: int = 0,
    max_rows: int | None = None,
    progress: bool = True,
) -> dict:
    """Write the augmented rows of `path` to `output` (its text columns, as a TSV or a CSV by its suffix); what
    was written and dropped."""
    delimiter = output_delimiter(output)  # before the masked LM's pass, which may take an hour
    columns, rows = read_rows(path)
    rows = rows[:max_rows] if max_rows else rows
    try:
        tokenizer = AutoTokenizer.from_pretrained(masked_lm)
        model = AutoModelForMaskedLM.from_pretrained(masked_lm)
    except (OSError, ValueError) as error:
        raise ArgumentError(f"--masked_lm {masked_lm!r}: no masked LM loads from it ({brief(error)}).") from None
    if tokenizer.mask_token_id is None or not tokenizer.is_fast:
        raise ArgumentError(
            f"--masked_lm {masked_lm!r}: its tokenizer needs a mask token and word offsets (a fast one)."
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    one_letter = one_letter_words(tokenizer, (row[c] for row in rows for c in columns))
    allowed = candidate_masks(tokenizer, model.get_output_embeddings().weight.size(0), one_letter)
    texts = [row[c] for row in rows[:RECOVERY_TEXTS] for c in columns]
    recovery = word_recovery(texts, model, tokenizer, top_k, random.Random(seed), device)
    excluded = OverlapIndex()
    for name in exclude or []:
        for row in read_rows(name)[1]:
            for text in row.values():
                excluded.add(text)
    seen = {tuple(normalise(row[c]) for c in columns) for row in rows}  # the originals are not written again
    written, dropped = [], {"duplicate": 0, "excluded": 0}
    for row in tqdm(rows, desc="Augmenting", disable=not progress):
        rewrites = {
            c: augment_text(row[c], model, tokenizer, allowed, variants, probability, top_k, rng, device)
            for c in columns
        }
        for i in range(max(len(texts) for texts in rewrites.values())):
            new = {c: rewrites[c][i] if i < len(rewrites[c]) else row[c] for c in columns}
            key = tuple(normalise(new[c]) for c in columns)
            if key in seen:
                dropped["duplicate"] += 1
            elif any(excluded.overlaps(new[c]) for c in columns):
                dropped["excluded"] += 1
            else:
                seen.add(key)
                written.append(new)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8", newline="") as f:
        if delimiter == "\t":  # GLUE's TSV has no quoting: a text's own quotes stay, its tabs and line breaks
            f.write("\t".join(columns) + "\n")  # would split it, so they become spaces
            f.writelines("\t".join(re.sub(r"[\t\r\n]", " ", new[c]) for c in columns) + "\n" for new in written)
        else:  # a CSV quotes the texts with commas, quotes or line breaks in them
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([[new[c] for c in columns] for new in written])
    found, checked = recovery
    return {
        "rows": len(rows),
        "written": len(written),
        "dropped": dropped,
        "output": output,
        "recovery": {"top_k": top_k, "found": found, "checked": checked},
    }


def output_delimiter(output: str) -> str:
    """The delimiter the file's suffix tells a run to read it with: a TSV named `.csv` would be split at its commas."""
    suffix = Path(output).suffix.lower()
    if suffix not in (".tsv", ".csv"):
        raise ArgumentError(f"--output {output}: name it .tsv or .csv (a run reads the file by its suffix).")
    return "\t" if suffix == ".tsv" else ","


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hf_kd.augment", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="a data file (.tsv / .csv / .json / .jsonl) with GLUE's text columns")
    parser.add_argument("--masked_lm", required=True, help="a masked LM (the generator hf_kd loads will do)")
    parser.add_argument(
        "--output", required=True, help="the augmented text with the input's text columns: a .tsv or a .csv"
    )
    parser.add_argument("--variants", type=int, default=20, help="rewrites per text (TinyBERT: 20)")
    parser.add_argument("--probability", type=float, default=0.4, help="chance each word is replaced (TinyBERT: 0.4)")
    parser.add_argument("--top_k", type=int, default=8, help="candidates a replaced word is drawn from")
    parser.add_argument(
        "--exclude", nargs="*", default=[], help="held-out / validation files: no variant shares a phrase"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_rows", type=int, help="augment the first N rows only")
    args = parser.parse_args(argv)
    if args.variants < 1 or not 0 < args.probability <= 1 or args.top_k < 1:
        raise ArgumentError("--variants and --top_k must be >= 1 and --probability in (0, 1].")
    output_delimiter(args.output)
    if Path(args.output).exists():
        raise ArgumentError(f"--output {args.output} exists: pick another file (nothing is overwritten).")
    summary = augment_file(
        args.input,
        args.masked_lm,
        args.output,
        args.variants,
        args.probability,
        args.top_k,
        args.exclude,
        args.seed,
        args.max_rows,
    )
    print(
        f"{summary['written']:,} rows from {summary['rows']:,} in {summary['output']} (dropped: "
        f"{summary['dropped']['duplicate']:,} duplicates, {summary['dropped']['excluded']:,} sharing a phrase with --exclude)"
    )
    recovery = summary["recovery"]
    if recovery["checked"]:
        print(
            f"The masked LM had the masked word among its top {recovery['top_k']} in {recovery['found']:,} of "
            f"{recovery['checked']:,} checks ({100 * recovery['found'] / recovery['checked']:.0f}%; one word of a text "
            "masked, first rows): the rewrites are only as apt as this. A low share means rewrites from frequent "
            "words; fit the masked LM to your text first (python -m hf_kd.masked_lm)."
        )
    fitted = Path(args.masked_lm) / "masked_lm.json"
    if fitted.is_file():  # the check above reads texts the fitted masked LM may have trained on; its own did not
        after = json.loads(fitted.read_text())["after"]
        print(
            f"hf_kd.masked_lm's check on texts its training never saw: {after['found']:,} of {after['checked']:,} "
            f"({100 * after['found'] / max(after['checked'], 1):.0f}%), in {fitted}."
        )


if __name__ == "__main__":
    from hf_kd.cli import exit_on_argument_error

    exit_on_argument_error(main, "hf_kd.augment")
