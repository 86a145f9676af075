"""One trainer per method; `trainer_class` resolves a method name (case-insensitive, seed names too)."""

from __future__ import annotations

from hf_kd.errors import ArgumentError, NonFiniteLossError
from hf_kd.terms import TERMS, terms_table
from hf_kd.trainers.adversarial import AdversarialTrainer, CildaMinILDTrainer, CildaTrainer, MateKDTrainer
from hf_kd.trainers.base import DistillationTrainer
from hf_kd.trainers.simple import KDTrainer, MiniLMTrainer, NormalTrainer, RailKDTrainer, TinyBertTrainer

TRAINERS: dict[str, type[DistillationTrainer]] = {
    cls.method: cls
    for cls in (
        NormalTrainer,
        KDTrainer,
        RailKDTrainer,
        MateKDTrainer,
        CildaTrainer,
        CildaMinILDTrainer,
        TinyBertTrainer,
        MiniLMTrainer,
    )
}


def trainer_class(method: str) -> type[DistillationTrainer]:
    """The trainer of `method` (`normal`, `kd`, `rail_kd`, `mate_kd`, `cilda`, `cilda_minild`, or a seed name)."""
    key = method.strip().lower().replace("-", "_")
    for cls in TRAINERS.values():
        if key == cls.method or key in cls.aliases:
            return cls
    raise ArgumentError(
        f"Unknown --method '{method}'. Known methods: {', '.join(TRAINERS)} "
        "(seed names normal, KD, RAIL_c, MATE, CILDA, CILDA_minILD are accepted too)."
    )


def configure_method(args) -> type[DistillationTrainer]:
    """Settle `args` (a `DistillationTrainingArguments`) on its method: canonical name and loss weights. The one
    place a method is resolved: `parse_args` calls it, and later calls on the same arguments find it settled."""
    cls = trainer_class(args.method)
    if args.loss_weights is None or args.method != cls.method:
        args.apply_method(cls.method, cls.default_weights, cls.default_generator_weights)
    return cls


def weights_table() -> str:
    """METHODS.md's table of each method's default weights per term (student step; generator step in brackets)."""
    header = "| method | " + " | ".join(TERMS) + " |"
    lines = [header, "|---" * (len(TERMS) + 1) + "|"]
    for cls in TRAINERS.values():
        cells = []
        for name in TERMS:
            student = cls.default_weights.get(name)
            generator = cls.default_generator_weights.get(name)
            cell = "" if student is None else f"{student:.4g}"
            cell += "" if generator is None else f" ({generator:.4g})"
            cells.append(cell.strip())
        lines.append(f"| {cls.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def methods_block() -> str:
    """The generated block of docs/METHODS.md: the terms as `hf_kd.terms` declares them, and each method's
    default weights (`python -m hf_kd.trainers` prints it)."""
    return f"{terms_table()}\n\nDefault weights (max step in brackets; empty: the method has no such term):\n\n{weights_table()}"


__all__ = [
    "TRAINERS",
    "AdversarialTrainer",
    "CildaMinILDTrainer",
    "CildaTrainer",
    "DistillationTrainer",
    "KDTrainer",
    "MateKDTrainer",
    "MiniLMTrainer",
    "NonFiniteLossError",
    "NormalTrainer",
    "RailKDTrainer",
    "TinyBertTrainer",
    "configure_method",
    "methods_block",
    "trainer_class",
]
