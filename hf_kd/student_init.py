"""Initialise a shallower student from a teacher's layers (the DistilBERT way).

`python -m hf_kd.student_init TEACHER --layers 2 5 --output_dir student/` keeps the embeddings,
the chosen transformer layers (renumbered 0..k-1) and every other weight of the teacher. It works for
every family whose config counts its layers in `num_hidden_layers` or `n_layers` (BERT, RoBERTa,
DistilBERT, ELECTRA, ...).
"""

from __future__ import annotations

import argparse
import re

from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel

LAYER_KEY = re.compile(r"(\.layers?\.)(\d+)(\.)")


def evenly_spaced_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Layers spread over the teacher's depth, the last one included: 6 -> 2 gives [2, 5]."""
    return [round((i + 1) * num_teacher_layers / num_student_layers) - 1 for i in range(num_student_layers)]


def shrink(
    teacher_path: str, layers: list[int], output_dir: str | None = None, auto_class=AutoModel
) -> PreTrainedModel:
    """A copy of the teacher with only `layers` (teacher indices, ascending), saved to `output_dir` if given."""
    config = AutoConfig.from_pretrained(teacher_path)
    attribute = "num_hidden_layers" if hasattr(config, "num_hidden_layers") else "n_layers"
    total = getattr(config, attribute)
    if sorted(set(layers)) != list(layers) or not layers or layers[-1] >= total or layers[0] < 0:
        raise ValueError(
            f"--layers must be distinct ascending indices below the teacher's {total} layers, got {layers}."
        )
    teacher = auto_class.from_pretrained(teacher_path)
    setattr(config, attribute, len(layers))
    student = auto_class.from_config(config)
    source = teacher.state_dict()

    def teacher_key(key: str) -> str:
        return LAYER_KEY.sub(lambda m: f"{m.group(1)}{layers[int(m.group(2))]}{m.group(3)}", key, count=1)

    student.load_state_dict({key: source[teacher_key(key)] for key in student.state_dict()})
    if output_dir:
        student.save_pretrained(output_dir)
        AutoTokenizer.from_pretrained(teacher_path).save_pretrained(output_dir)
    return student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", help="model directory or Hub name")
    parser.add_argument("--layers", type=int, nargs="+", help="teacher layers to keep (default: 2, evenly spaced)")
    parser.add_argument("--num_layers", type=int, default=2, help="how many layers, when --layers is not given")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    config = AutoConfig.from_pretrained(args.teacher)
    total = getattr(config, "num_hidden_layers", None) or config.n_layers
    shrink(args.teacher, args.layers or evenly_spaced_layers(total, args.num_layers), args.output_dir)


if __name__ == "__main__":
    main()
