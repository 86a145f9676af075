"""Distillation across tokenizers and families: each model reads its own tokenization of the same sentences."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_kd.adapters import DecoderOnlyAdapter, adapter_for
from hf_kd.build import build_trainer
from hf_kd.config import parse_args
from hf_kd.data import INDEX_COLUMN
from hf_kd.run import main
from hf_kd.testing import build_classifier
from tests.conftest import cli_args, logits_used, student_terms
from tests.test_bad_input import replace
from tests.test_losses import hand_kl


@pytest.fixture(scope="module")
def qwen2_teacher(roberta, tmp_path_factory):
    """A decoder-only classifier (Qwen2) with the byte-level BPE tokenizer: a teacher of another family."""
    folder = str(tmp_path_factory.mktemp("qwen2-teacher"))
    return build_classifier("qwen2", folder, AutoTokenizer.from_pretrained(roberta.tokenizer), layers=3, hidden=48)


def sentences(path: str, rows: list[int]) -> list[str]:
    lines = Path(path).read_text().splitlines()[1:]
    return [lines[row].split("\t")[0] for row in rows]


@pytest.mark.parametrize("teacher_family", ["roberta", "qwen2"])
def test_kd_across_tokenizers_equals_each_model_on_its_own_tokens(
    bert, roberta, qwen2_teacher, sst2_files, tmp_path, teacher_family
):
    teacher_path = roberta.teacher if teacher_family == "roberta" else qwen2_teacher
    args = replace(cli_args(bert, sst2_files, tmp_path, "kd"), "--teacher_name_or_path", teacher_path)
    trainer, data = build_trainer(*parse_args(args))
    assert {"teacher_input_ids", "teacher_attention_mask"} <= set(data.train.column_names)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert not torch.equal(batch["input_ids"][:, :5], batch["teacher_input_ids"][:, :5])  # two tokenizations
    trainer.model.eval()  # no dropout, so the hand computation sees the same logits
    texts = sentences(sst2_files["train"], batch[INDEX_COLUMN].tolist())

    def own_logits(path: str, model) -> torch.Tensor:
        """The model on its own tokenization of the batch's sentences."""
        encoded = AutoTokenizer.from_pretrained(path)(
            texts, padding=True, truncation=True, max_length=32, return_tensors="pt"
        )
        with torch.no_grad():
            return model(**encoded).logits.double().flatten().tolist()

    # the tiny random teacher is nearly uniform: scale its head so its logits spread with std 1 whatever the random
    # initialisation, and KD is far from zero (without saturating the teacher, which would hide its tokenization)
    labels = trainer.teacher.model.config.num_labels
    head = [m for m in trainer.teacher.model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == labels][
        -1
    ]
    with torch.no_grad():
        scale = 1.0 / torch.tensor(own_logits(teacher_path, trainer.teacher.model)).std()
        for parameter in head.parameters():  # weight and bias alike: the logits scale exactly
            parameter.mul_(scale)
    with logits_used(trainer) as used:
        terms = student_terms(trainer, batch)
    # each model read its own tokens: its logits are those of its own tokenizer on the sentences (up to the float
    # noise of another padding), and the KD term is the KL of exactly the logits the models returned
    for role, path, model in (
        ("student", bert.student, trainer.model),
        ("teacher", teacher_path, trainer.teacher.model),
    ):
        assert [value for row in used[role] for value in row] == pytest.approx(own_logits(path, model), abs=1e-5), role
    assert terms["kd"].item() == pytest.approx(hand_kl(used["teacher"], used["student"]), rel=1e-6)
    assert terms["kd"].item() > 1e-3


@pytest.mark.parametrize("side", ["right", "left"])
def test_decoder_only_sentence_position_is_what_its_head_reads(qwen2_teacher, side):
    tokenizer = AutoTokenizer.from_pretrained(qwen2_teacher)
    tokenizer.padding_side = side
    model = AutoModelForSequenceClassification.from_pretrained(qwen2_teacher).eval()
    adapter = adapter_for(model)
    assert isinstance(adapter, DecoderOnlyAdapter)
    batch = tokenizer(
        ["a short one", "a much longer sentence than the first one here"], padding=True, return_tensors="pt"
    )
    positions = adapter.sentence_positions(batch)
    lengths = batch["attention_mask"].sum(dim=1)
    width = batch["input_ids"].size(1)
    expected = lengths - 1 if side == "right" else torch.full_like(lengths, width - 1)
    assert torch.equal(positions, expected)
    with torch.no_grad():
        result = adapter.forward(model, batch, output_hidden_states=True)
        reference = model(**batch).logits
        final = model.model(**batch).last_hidden_state  # the normed last layer its `score` head reads
    assert torch.allclose(result.logits, reference)
    rows = torch.arange(len(positions))
    assert torch.allclose(model.score(final)[rows, positions], reference, atol=1e-6)


def test_teacher_labels_are_read_in_the_students_order(bert, sst2_files, tmp_path):
    swapped = str(tmp_path / "swapped")
    teacher = AutoModelForSequenceClassification.from_pretrained(bert.teacher)
    teacher.config.id2label, teacher.config.label2id = {0: "positive", 1: "negative"}, {"positive": 0, "negative": 1}
    teacher.save_pretrained(swapped)
    shutil.copy(os.path.join(bert.tokenizer, "vocab.txt"), swapped)
    AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(swapped)
    args = replace(cli_args(bert, sst2_files, tmp_path / "run", "kd"), "--teacher_name_or_path", swapped)
    trainer, _ = build_trainer(*parse_args(args))
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with torch.no_grad():
        raw = trainer.teacher.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        read = trainer.teacher.forward(batch).logits
    assert torch.equal(read, raw[:, [1, 0]])  # the data's (student's) order: negative, positive


def test_the_cache_is_keyed_by_the_teachers_tokenization(bert, roberta, sst2_files, tmp_path):
    cache = ("--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "cache"))
    base = replace(cli_args(bert, sst2_files, tmp_path / "a", "kd", *cache), "--teacher_name_or_path", roberta.teacher)
    main(base)
    main([*replace(base, "--output_dir", str(tmp_path / "b")), "--teacher_max_seq_length", "16"])
    assert len(list((tmp_path / "cache").glob("teacher-*"))) == 2  # another teacher tokenization, another cache


@pytest.mark.parametrize(
    ("pair", "method"),
    [
        ("WordPiece teacher -> BPE student", "kd"),
        ("WordPiece teacher -> BPE student", "rail_kd"),
        ("BPE teacher -> WordPiece student", "kd"),
        ("decoder-only teacher -> encoder student", "kd"),
        ("decoder-only teacher -> encoder student", "rail_kd"),
    ],
)
def test_cross_pairs_run_end_to_end(bert, roberta, qwen2_teacher, sst2_files, tmp_path, pair, method):
    student, teacher = {
        "WordPiece teacher -> BPE student": (roberta, bert.teacher),
        "BPE teacher -> WordPiece student": (bert, roberta.teacher),
        "decoder-only teacher -> encoder student": (bert, qwen2_teacher),
    }[pair]
    args = replace(cli_args(student, sst2_files, tmp_path / "run", method), "--teacher_name_or_path", teacher)
    results = main(args)
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["train_loss"] > 0


def test_perturbed_text_is_retokenised_as_the_teacher_reads_text(bert, roberta, sst2_files, tmp_path):
    """Byte-level BPE decodes losslessly and the uncased WordPiece teacher lowercases anyway: the student's
    clean ids, decoded and tokenised again, are exactly the teacher's own tokenization of the sentence."""
    args = replace(cli_args(roberta, sst2_files, tmp_path, "mate_kd"), "--teacher_name_or_path", bert.teacher)
    trainer, _ = build_trainer(*parse_args([*args, "--max_seq_length", "64"]))
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    view = trainer.teacher.retokenise(batch["input_ids"], batch)
    whole = batch["attention_mask"].sum(dim=1) < 64  # rows the student's truncation left whole
    assert whole.sum() >= 4
    for row in whole.nonzero().flatten().tolist():
        ours = view["input_ids"][row][view["attention_mask"][row].bool()]
        own = batch["teacher_input_ids"][row][batch["teacher_attention_mask"][row].bool()]
        assert torch.equal(ours, own)


def test_generator_step_across_tokenizers_learns_through_the_student_alone(bert, roberta, sst2_files, tmp_path):
    args = replace(cli_args(bert, sst2_files, tmp_path, "cilda_minild"), "--teacher_name_or_path", roberta.teacher)
    trainer, _ = build_trainer(*parse_args(args))
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    assert trainer.schedule.is_generator_step(0)
    generator = {name: p.detach().clone() for name, p in trainer.generator.model.named_parameters()}
    calls = []
    trainer.teacher.model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((kwargs.get("input_ids") is not None, torch.is_grad_enabled())),
        with_kwargs=True,
    )
    trainer.training_step(trainer.model, next(iter(trainer.get_train_dataloader())))
    assert calls == [(True, False)]  # the teacher read token ids (its own tokenization), without a graph
    moved = [not torch.equal(generator[name], p) for name, p in trainer.generator.model.named_parameters()]
    assert sum(moved) / len(moved) > 0.5


@pytest.mark.parametrize("method", ["mate_kd", "cilda", "cilda_minild"])
def test_adversarial_methods_run_across_tokenizers(bert, roberta, sst2_files, tmp_path, method):
    args = replace(cli_args(bert, sst2_files, tmp_path / "run", method), "--teacher_name_or_path", roberta.teacher)
    results = main(args)
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["train_loss"] > 0


@pytest.mark.parametrize("config_like", ["bert", "roberta", "a teacher's folder"])
def test_a_student_of_your_own_from_scratch_distils_across_tokenizers(bert, sst2_files, tmp_path, config_like):
    from hf_kd.student_init import main as student_init

    like = bert.teacher if config_like == "a teacher's folder" else config_like
    student = tmp_path / "student"
    size = ["--num_layers", "2", "--hidden_size", "64", "--vocab_size", "300"]
    student_init(
        [
            "--from_scratch",
            "--config_like",
            like,
            *size,
            "--train_tokenizer_on",
            sst2_files["train"],
            "--output_dir",
            str(student),
        ]
    )
    tokenizer = AutoTokenizer.from_pretrained(student)
    assert 100 < len(tokenizer) <= 300 and tokenizer.mask_token is not None and tokenizer.pad_token is not None
    encoded = tokenizer("a gorgeous , witty , seductive movie .")["input_ids"]
    assert encoded[0] == tokenizer.cls_token_id and encoded[-1] == tokenizer.sep_token_id
    model = AutoModelForSequenceClassification.from_pretrained(student, num_labels=2)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    args = replace(cli_args(bert, sst2_files, tmp_path / "run", "kd"), "--model_name_or_path", str(student))
    results = main(args)  # a teacher of another tokenizer: each reads its own tokenization
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["train_loss"] > 0


def test_a_length_without_room_for_a_pair_is_refused_and_teacher_truncation_counted(bert, roberta, tmp_path, caplog):
    """--teacher_max_seq_length 2 with sentence pairs left the pair untruncatable (a crash in the teacher check);
    the teacher's own truncations are reported as the student's are."""
    from hf_kd.arguments import DataTrainingArguments
    from hf_kd.data import prepare_data
    from hf_kd.errors import ArgumentError

    rows = [
        line.split("\t")
        for line in (Path(__file__).parent.parent / "data/sst2/train.tsv").read_text().splitlines()[1:21]
    ]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence1\tsentence2\tlabel\n" + "".join(f"{a}\t{a} again\t{y}\n" for a, y in rows))
    student, teacher = AutoTokenizer.from_pretrained(bert.tokenizer), AutoTokenizer.from_pretrained(roberta.tokenizer)

    def prepare(length: int, teacher_length: int | None):
        arguments = DataTrainingArguments(train_file=str(pairs), max_seq_length=length)
        return prepare_data(arguments, student, teacher_tokenizer=teacher, teacher_max_seq_length=teacher_length)

    with pytest.raises(
        ArgumentError,
        match=r"^--teacher_max_seq_length 2 leaves no room for the text: the teacher's "
        r"tokenizer adds 4 special tokens to a sentence pair\. Pass --teacher_max_seq_length 6 or more\.$",
    ):
        prepare(32, 2)
    with pytest.raises(
        ArgumentError, match=r"^--max_seq_length 4 leaves no room .* student's tokenizer adds 3 .* 5 or more"
    ):
        prepare(4, None)
    with caplog.at_level("WARNING", logger="hf_kd.data"):
        data = prepare(32, 8)
    assert "20 of 20 examples are longer than the teacher's 8 tokens" in caplog.text
    assert max(len(ids) for ids in data.train["teacher_input_ids"]) == 8
