"""Catalogue of bad input: each is refused before training with a message naming the argument and the fix."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Qwen2Config

from hf_kd.errors import ArgumentError
from hf_kd.run import main
from hf_kd.testing import build_family
from tests.conftest import cli_args


def replace(args: list[str], flag: str, value: str | None) -> list[str]:
    """Set (or, with None, remove) one flag of an argument list."""
    args = list(args)
    if flag in args:
        i = args.index(flag)
        del args[i : i + 2]
    return args if value is None else [*args, flag, value]


@pytest.fixture()
def write(tmp_path):
    def _write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return _write


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory, sst2_texts):
    """A BERT family whose tokenizer has another vocabulary size."""
    from hf_kd.testing import train_tokenizer

    folder = tmp_path_factory.mktemp("other-vocab")
    family = build_family("bert", str(folder), sst2_texts[:500])
    train_tokenizer("bert", sst2_texts[:300], family.teacher, vocab_size=300)
    model = AutoModelForSequenceClassification.from_pretrained(family.teacher)
    model.resize_token_embeddings(300)
    model.save_pretrained(family.teacher)
    return family


def cases(bert, roberta, bart, sst2_files, write, other_vocab, tmp_path):
    """(arguments, pattern the message must match) for every bad input."""

    def write_bytes(name: str, data: bytes) -> str:
        (tmp_path / name).write_bytes(data)
        return str(tmp_path / name)

    base = lambda method="kd": cli_args(bert, sst2_files, tmp_path / "out", method)  # noqa: E731
    no_rows = write("empty.tsv", "sentence\tlabel\n")
    three_labels = str(tmp_path / "three")
    AutoModelForSequenceClassification.from_pretrained(
        bert.teacher, num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, ignore_mismatched_sizes=True
    ).save_pretrained(three_labels)
    AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(three_labels)
    no_mask = str(tmp_path / "no-mask")
    shutil.copytree(bert.student, no_mask)
    config_path = os.path.join(no_mask, "tokenizer_config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["mask_token"] = None
    with open(config_path, "w") as f:
        json.dump(config, f)
    other_names = str(tmp_path / "other-names")
    AutoModelForSequenceClassification.from_pretrained(
        bert.teacher, id2label={0: "bad", 1: "good"}, label2id={"bad": 0, "good": 1}
    ).save_pretrained(other_names)
    AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(other_names)
    no_pad_decoder = str(tmp_path / "no-pad-decoder")
    tokenizer = AutoTokenizer.from_pretrained(bert.tokenizer)
    decoder_config = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    decoder = AutoModelForSequenceClassification.from_config(
        Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=72, num_labels=2, **decoder_config)
    )
    decoder.config.pad_token_id = None
    decoder.save_pretrained(no_pad_decoder)
    tokenizer.save_pretrained(no_pad_decoder)
    no_eos_bart = str(tmp_path / "no-eos-bart")  # a config whose end-of-sequence id the tokenizer never writes
    shutil.copytree(bart.student, no_eos_bart)
    with open(os.path.join(no_eos_bart, "config.json")) as f:
        bart_config = json.load(f)
    with open(os.path.join(no_eos_bart, "config.json"), "w") as f:
        json.dump({**bart_config, "eos_token_id": 599}, f)
    no_tokenizer = str(tmp_path / "no-tokenizer")
    AutoModelForSequenceClassification.from_pretrained(bert.student).save_pretrained(no_tokenizer)
    return {
        "unknown method": (replace(base(), "--method", "distil"), r"--method 'distil'.*Known methods: normal, kd"),
        "negative weight": (
            [*base(), "--weight_kd", "-1"],
            r"--weight_kd must be in \[0, 1000\] \(0 switches the term off\), got -1.0",
        ),
        "weight of another method": (
            [*base(), "--weight_rail", "0.3"],
            r"--weight_rail is not a loss term of method 'kd'",
        ),
        "generator weight of kd": (
            [*base(), "--generator_weight_kd_perturbed", "0.3"],
            r"--generator_weight_kd_perturbed is not",
        ),
        "data_ratio zero": ([*base(), "--data_ratio", "0"], r"--data_ratio must be in \(0, 1\]"),
        "data_ratio above one": ([*base(), "--data_ratio", "1.5"], r"--data_ratio must be in \(0, 1\]"),
        "mlm_probability above one": (
            [*base("cilda"), "--mlm_probability", "1.5"],
            r"--mlm_probability must be in \[0, 1\]",
        ),
        "non-GLUE task without files": (
            replace(replace(replace(base(), "--train_file", None), "--validation_file", None), "--task_name", "imdb"),
            r"--task_name 'imdb' is not a GLUE task.*--train_file",
        ),
        "missing train file": (
            replace(base(), "--train_file", str(tmp_path / "nope.tsv")),
            r"nope.tsv does not exist.*--train_file",
        ),
        "empty train file": (replace(base(), "--train_file", no_rows), r"empty.tsv has no rows"),
        "unsupported extension": (
            replace(base(), "--train_file", write("train.txt", "x")),
            r"use a .csv, .tsv, .json or .jsonl",
        ),
        "columns of another task": (
            replace(base(), "--task_name", "mrpc"),
            r"lacks the column\(s\) \['sentence1', 'sentence2'\] of task 'mrpc'",
        ),
        "no text column": (
            replace(replace(base(), "--task_name", None), "--train_file", write("t.csv", "body,label\nhi,1\n")),
            r"no text column with a GLUE name",
        ),
        "no label column": (
            replace(replace(base(), "--task_name", None), "--train_file", write("u.csv", "sentence,gold\nhi,1\n")),
            r"has no 'label' column",
        ),
        "label outside the set": (
            replace(base(), "--train_file", write("bad.tsv", "sentence\tlabel\ngood\t1\nbad\t7\n")),
            r"labels \['7'\] outside the label set",
        ),
        "empty split after data_ratio": (
            [*base(), "--data_ratio", "0.0001"],
            r"train split .* is empty after --data_ratio / --max_train_samples",
        ),
        "teacher with other label count": (
            replace(base(), "--teacher_name_or_path", three_labels),
            r"teacher predicts 3 labels but the data has 2",
        ),
        "teacher missing": (
            replace(base(), "--teacher_name_or_path", None),
            r"needs a teacher: pass --teacher_name_or_path",
        ),
        "generator missing": (
            replace(base("mate_kd"), "--generator_name_or_path", None),
            r"needs a masked-LM generator: pass --generator_name_or_path",
        ),
        "generator not a masked LM": (
            replace(base("cilda"), "--generator_name_or_path", bert.teacher),
            r"is a BertForSequenceClassification, not a masked language model",
        ),
        "tokenizer without mask token": (
            replace(base("cilda"), "--model_name_or_path", no_mask),
            r"tokenizer has no mask token: use --tokenizer_name",
        ),
        "student without tokenizer": (
            replace(base(), "--model_name_or_path", no_tokenizer),
            r"holds no tokenizer: pass --tokenizer_name",
        ),
        "teacher tokenizer larger than its embeddings": (
            replace(
                replace(base(), "--teacher_name_or_path", other_vocab.teacher),
                "--teacher_tokenizer_name_or_path",
                bert.tokenizer,
            ),
            r"The teacher .* has 300 token embeddings but its tokenizer \d+ tokens: use the teacher's own tokenizer "
            r"\(--teacher_tokenizer_name_or_path\)",
        ),
        "teacher tokenizer that does not load": (
            replace(base(), "--teacher_tokenizer_name_or_path", str(tmp_path / "no-such-tokenizer")),
            r"--teacher_tokenizer_name_or_path .*no-such-tokenizer.*: no tokenizer loads from it",
        ),
        "teacher max length beyond its positions": (
            replace(base(), "--teacher_max_seq_length", "100"),
            r"--teacher_max_seq_length 100 is longer than the teacher's position embeddings allow \(72 tokens\)",
        ),
        "teacher labels of other names": (
            replace(base(), "--teacher_name_or_path", other_names),
            r"The teacher's labels \['bad', 'good'\] are not the data's \(the student's\) \['negative', 'positive'\]",
        ),
        "decoder-only teacher without a padding token": (
            replace(base(), "--teacher_name_or_path", no_pad_decoder),
            r"The teacher .* is a decoder-only classifier without a padding token.*set `pad_token_id`",
        ),
        "family that cannot find its sentence position": (
            replace(replace(base(), "--model_name_or_path", no_eos_bart), "--teacher_name_or_path", bart.teacher),
            r"A bart model reads each example at its last end-of-sequence token \(id 599\), but an example has none",
        ),
        "BART teacher, BERT student for RAIL": (
            replace(base("rail_kd"), "--teacher_name_or_path", bart.teacher),
            r"RAIL-KD and the contrastive terms pair the teacher's layer stacks \['decoder', 'encoder'\] with the "
            r"student's \['encoder'\]",
        ),
        "RoBERTa generator for BERT models": (
            replace(base("mate_kd"), "--generator_name_or_path", roberta.generator),
            r"generator .* uses another vocabulary than the student's tokenizer .*must share the student's tokenizer",
        ),
        "student deeper than teacher for RAIL": (
            replace(
                replace(base("rail_kd"), "--model_name_or_path", bert.teacher), "--teacher_name_or_path", bert.student
            ),
            r"RAIL-KD pairs each of the student's 4 encoder layers.*use a shallower student",
        ),
        "missing teacher state dict": (
            [*base(), "--teacher_state_dict", str(tmp_path / "t.bin")],
            r"--teacher_state_dict .*t.bin does not exist",
        ),
        "unknown argument": ([*base(), "--lamdas", "0.5"], r"Unknown arguments: --lamdas"),
        "missing config file": ([str(tmp_path / "nope.yaml")], r"Config file .*nope.yaml does not exist"),
        "config that is a list": ([write("list.yaml", "- 1\n- 2\n")], r"must hold a mapping"),
        "seed lambdas of wrong length": (
            [write("s1.yaml", yaml.safe_dump({"method": "KD", "lambdas": [0.2, 0.3, 0.5], "outdir": "o"}))],
            r"lambdas has 3 weights but method 'kd' has 2 terms \(ce, kd\)",
        ),
        "seed key without equivalent": (
            [write("s2.yaml", yaml.safe_dump({"method": "KD", "lr": [1e-5], "gpu_ids": [0]}))],
            r"seed keys \['gpu_ids'\] have no hf_kd equivalent",
        ),
        "seed sweep of learning rates": (
            [write("s3.yaml", yaml.safe_dump({"method": "KD", "lr": [1e-5, 2e-5]}))],
            r"--sweep_learning_rates describe a sweep: run `python -m hf_kd.sweep`",
        ),
        "max_seq_length beyond the position embeddings": (
            replace(cli_args(roberta, sst2_files, tmp_path / "out", "kd"), "--max_seq_length", "71"),
            r"--max_seq_length 71 is longer than the student's position embeddings allow \(70 tokens",
        ),
        "negative KD temperature": ([*base(), "--kd_temperature", "-2"], r"--kd_temperature must be in \[0.01, 100\]"),
        "zero CRD temperature": ([*base("cilda"), "--crd_temperature", "0"], r"--crd_temperature must be in"),
        "NaN learning rate": ([*base(), "--learning_rate", "nan"], r"--learning_rate must be in \(0, 1\], got nan"),
        "zero batch size": ([*base(), "--per_device_train_batch_size", "0"], r"--per_device_train_batch_size must be"),
        "seed beyond 32 bits": ([*base(), "--seed", str(2**32)], r"--seed must be in \[0, 4294967295\]"),
        "label smoothing": ([*base(), "--label_smoothing_factor", "0.1"], r"hf_kd's CE has no label smoothing"),
        "conflicting Trainer options": (
            [*base(), "--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "epoch"],
            r"The training arguments conflict: .*strategy",
        ),
        "output_dir is a file": (
            replace(base(), "--output_dir", write("taken", "keep me")),
            r"--output_dir .*taken is an existing file, not a folder",
        ),
        "flag with a typo": ([*base(), "--learnig_rate", "1e-4"], r"did you mean --learning_rate\?"),
        "malformed YAML": (
            [write("bad.yaml", "method: kd\nlearning_rate: [1e-4\nseed: 3\n")],
            r"bad.yaml, line 3, column",
        ),
        "malformed JSON": ([write("bad.json", '{"method": "kd",}')], r"bad.json, line 1, column 17"),
        "unknown config key": (
            [write("typo.yaml", "method: kd\nlearning_rte: 0.0001\n")],
            r"unknown key\(s\) 'learning_rte' \(did you mean --learning_rate\?\)",
        ),
        "state dict that is not one": (
            [*base(), "--teacher_state_dict", write("garbage.bin", "not a state dict")],
            r"--teacher_state_dict .*garbage.bin is not a readable state dict \(UnpicklingError: [^\n]*\)\.$",
        ),
        "generator path that does not exist": (
            replace(base("mate_kd"), "--generator_name_or_path", str(tmp_path / "no-generator")),
            r"--generator_name_or_path .*no-generator' is not a model directory",
        ),
        "data file that is not UTF-8": (
            replace(
                base(), "--train_file", write_bytes("latin.tsv", "sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
            ),
            r"latin.tsv, line 2: not UTF-8 text \(invalid continuation byte at byte 3\); re-encode the file as UTF-8",
        ),
        "malformed JSON lines": (
            replace(
                replace(base(), "--task_name", None),
                "--train_file",
                write("rows.jsonl", '{"sentence": "a", "label": 1}\n{oops\n'),
            ),
            r"rows.jsonl, line 2: not valid JSON \(Expecting property name enclosed in double quotes\); write one JSON "
            r"object per line",
        ),
        "tracker that is not installed": (
            replace(base(), "--report_to", "wandb"),
            r"The Trainer refused the arguments: RuntimeError: WandbCallback requires wandb",
        ),
        "optimizer from a package that is not installed": (
            [*base(), "--optim", "adamw_bnb_8bit"],
            r"The Trainer refused the arguments: ImportError: You need to install `bitsandbytes`",
        ),
        "seed nume without deno": (
            [write("s4.yaml", yaml.safe_dump({"method": "KD", "lambda_nume": [1, 1], "outdir": "o"}))],
            r"lambda_nume and lambda_deno come together",
        ),
    }


CASE_NAMES = [
    "unknown method",
    "negative weight",
    "weight of another method",
    "generator weight of kd",
    "data_ratio zero",
    "data_ratio above one",
    "mlm_probability above one",
    "non-GLUE task without files",
    "missing train file",
    "empty train file",
    "unsupported extension",
    "columns of another task",
    "no text column",
    "no label column",
    "label outside the set",
    "empty split after data_ratio",
    "teacher with other label count",
    "teacher missing",
    "generator missing",
    "generator not a masked LM",
    "tokenizer without mask token",
    "student without tokenizer",
    "teacher tokenizer larger than its embeddings",
    "teacher tokenizer that does not load",
    "teacher max length beyond its positions",
    "teacher labels of other names",
    "decoder-only teacher without a padding token",
    "family that cannot find its sentence position",
    "BART teacher, BERT student for RAIL",
    "RoBERTa generator for BERT models",
    "student deeper than teacher for RAIL",
    "missing teacher state dict",
    "unknown argument",
    "missing config file",
    "config that is a list",
    "seed lambdas of wrong length",
    "seed key without equivalent",
    "seed sweep of learning rates",
    "seed nume without deno",
    "max_seq_length beyond the position embeddings",
    "negative KD temperature",
    "zero CRD temperature",
    "NaN learning rate",
    "zero batch size",
    "seed beyond 32 bits",
    "label smoothing",
    "conflicting Trainer options",
    "output_dir is a file",
    "flag with a typo",
    "malformed YAML",
    "malformed JSON",
    "unknown config key",
    "state dict that is not one",
    "generator path that does not exist",
    "data file that is not UTF-8",
    "malformed JSON lines",
    "tracker that is not installed",
    "optimizer from a package that is not installed",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_refused_before_training(case, bert, roberta, bart, sst2_files, write, other_vocab, tmp_path):
    args, pattern = cases(bert, roberta, bart, sst2_files, write, other_vocab, tmp_path)[case]
    with pytest.raises(ArgumentError, match=pattern) as error:
        main(args)
    assert "\n" not in str(error.value)  # one line on the command line
    assert not (tmp_path / "out").exists()  # nothing written: the error came before any training


def test_catalogue_is_complete(bert, roberta, bart, sst2_files, write, other_vocab, tmp_path):
    assert set(cases(bert, roberta, bart, sst2_files, write, other_vocab, tmp_path)) == set(CASE_NAMES)


def test_cli_prints_a_clean_error(bert, sst2_files, tmp_path, capsys):
    import sys

    from hf_kd.run import cli

    sys_argv = sys.argv
    sys.argv = ["run_glue_kd.py", *replace(cli_args(bert, sst2_files, tmp_path / "out", "kd"), "--method", "nope")]
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli()
    finally:
        sys.argv = sys_argv
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("hf_kd: error: Unknown --method 'nope'")
