"""How a teacher's labels are read as the data's: by name, by position for integer labels, or by --teacher_label_map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from hf_kd.arguments import ModelArguments
from hf_kd.data import TaskData, label_list_for
from hf_kd.errors import ArgumentError
from hf_kd.models import match_teacher_labels
from hf_kd.run import main
from tests.conftest import cli_args


def config(*names: str) -> BertConfig:
    return BertConfig(
        num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
    )


def data(*labels: str) -> TaskData:
    return TaskData(None, None, list(labels), None)


def pairs(text: str | None) -> dict[str, str]:
    return ModelArguments(teacher_label_map=text).teacher_label_pairs


def test_integer_labels_read_a_named_teacher_by_position():
    reading = match_teacher_labels(config("NEGATIVE", "POSITIVE"), data("0", "1"))
    assert reading.how == "by position" and reading.order is None
    assert reading.names == ["NEGATIVE", "POSITIVE"]  # the student takes the teacher's names
    assert reading.text() == "read by position: 0 -> NEGATIVE, 1 -> POSITIVE"


def test_named_labels_match_by_name_case_insensitive_and_reordered():
    reading = match_teacher_labels(config("POSITIVE", "negative"), data("negative", "positive"))
    assert reading.how == "by name" and reading.order == [1, 0] and reading.names == ["negative", "positive"]
    assert reading.pairs == {"negative": "negative", "positive": "POSITIVE"}
    assert match_teacher_labels(config("Negative", "Positive"), data("negative", "positive")).order is None


def test_an_unnamed_teacher_is_read_by_position_with_the_datas_names():
    reading = match_teacher_labels(config("LABEL_0", "LABEL_1"), data("bad", "good"))
    assert reading.how == "unnamed teacher" and reading.order is None and reading.names == ["bad", "good"]


def test_other_names_are_refused_in_one_line_naming_the_map_option():
    with pytest.raises(ArgumentError) as error:
        match_teacher_labels(config("LABEL_NEG", "LABEL_POS", "MIXED"), data("negative", "positive", "mixed"))
    message = str(error.value)
    assert "\n" not in message and "--teacher_label_map" in message and "['negative', 'positive', 'mixed']" in message
    # integers that are not 0..n-1 are names, not positions
    with pytest.raises(ArgumentError, match="--teacher_label_map"):
        match_teacher_labels(config("NEGATIVE", "POSITIVE"), data("1", "2"))


def test_the_label_map_pairs_other_spellings_and_reorders():
    mapping = pairs('{"LABEL_POS": "positive", "LABEL_NEG": "negative", "MIXED": "mixed"}')
    reading = match_teacher_labels(
        config("LABEL_POS", "MIXED", "LABEL_NEG"), data("mixed", "negative", "positive"), mapping
    )
    assert reading.how == "by --teacher_label_map" and reading.order == [1, 2, 0]
    assert reading.pairs == {"mixed": "MIXED", "negative": "LABEL_NEG", "positive": "LABEL_POS"}


@pytest.mark.parametrize(
    ("value", "pattern"),
    [("{bad", "is not JSON"), ('["a"]', "must be a JSON object"), ('{"a": [1]}', "must be a JSON object")],
)
def test_a_malformed_label_map_is_refused_when_parsed(value, pattern):
    with pytest.raises(ArgumentError, match=f"--teacher_label_map .*{pattern}"):
        pairs(value)


def test_a_label_map_naming_labels_the_teacher_lacks_is_refused():
    with pytest.raises(ArgumentError, match=r"--teacher_label_map names \['NEG'\], which are not the teacher's"):
        match_teacher_labels(config("NEGATIVE", "POSITIVE"), data("negative", "positive"), {"NEG": "negative"})


def test_integer_labels_are_ordered_as_numbers():
    from datasets import Dataset

    train = Dataset.from_dict({"label": [str(i) for i in (10, 2, 0, 1, 11, 3, 4, 5, 6, 7, 8, 9)]})
    assert label_list_for(None, train, "train.csv") == [str(i) for i in range(12)]


def test_a_run_with_integer_labels_and_a_named_teacher_saves_the_teachers_names(bert, sst2_files, tmp_path, caplog):
    """SST-2's own TSV labels (0 / 1, no --task_name) with a teacher naming NEGATIVE / POSITIVE: the run reads
    it by position, says so in the log, the run record and the card, and the student prints words."""
    named = str(tmp_path / "named-teacher")
    teacher = AutoModelForSequenceClassification.from_pretrained(bert.teacher)
    teacher.config.id2label, teacher.config.label2id = {0: "NEGATIVE", 1: "POSITIVE"}, {"NEGATIVE": 0, "POSITIVE": 1}
    teacher.save_pretrained(named)
    AutoTokenizer.from_pretrained(bert.tokenizer).save_pretrained(named)
    arguments = cli_args(
        bert,
        sst2_files,
        tmp_path / "run",
        "kd",
        "--max_steps",
        "2",
        "--max_eval_samples",
        "8",
        "--log_level",
        "warning",
    )
    arguments[arguments.index("--task_name") : arguments.index("--task_name") + 2] = []
    arguments[arguments.index("--teacher_name_or_path") + 1] = named
    with caplog.at_level("WARNING", logger="hf_kd"):
        main(arguments)
    assert "The teacher's labels are read by position: 0 -> NEGATIVE, 1 -> POSITIVE." in caplog.text
    record = json.loads((tmp_path / "run" / "hf_kd_run.json").read_text())
    assert record["teacher_labels"]["read"] == "by position"
    assert record["teacher_labels"]["pairs"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert "- The teacher's labels: read by position: 0 -> NEGATIVE, 1 -> POSITIVE" in (
        Path(tmp_path / "run" / "README.md").read_text()
    )
    assert AutoConfig.from_pretrained(tmp_path / "run").id2label == {0: "NEGATIVE", 1: "POSITIVE"}
