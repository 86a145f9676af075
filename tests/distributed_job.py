"""Run under torchrun by tests/test_distributed.py: train, then dump this rank's trained weights.

Usage: torchrun --nproc_per_node 2 tests/distributed_job.py DUMP_DIR [--float64] -- <run_glue_kd.py arguments>
"""

import json
import os
import sys

from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hf_kd.build import build_trainer
from hf_kd.cli import leave_process_group
from hf_kd.config import parse_args
from tests.conftest import generator_model


def main() -> None:
    separator = sys.argv.index("--")
    dump_dir, options, args = sys.argv[1], sys.argv[2:separator], sys.argv[separator + 1 :]
    model_args, data_args, training_args = parse_args(args)
    trainer, _ = build_trainer(model_args, data_args, training_args)
    if "--float64" in options:  # as tests/test_layouts.py: exact arithmetic, no rounding to hide a mistake
        for module in (
            trainer.model,
            trainer.teacher and trainer.teacher.model,
            generator_model(trainer),
            trainer.projections,
        ):
            if module is not None:
                module.double()
    evaluated = []
    compute_metrics = trainer.compute_metrics

    def counting_metrics(prediction):
        evaluated.append(len(prediction.label_ids))
        return compute_metrics(prediction)

    trainer.compute_metrics = counting_metrics
    trainer.train()
    metrics = trainer.evaluate()
    rank = trainer.args.process_index
    modules = {"student": trainer.model, **trainer.extra_state_modules()}
    for name, module in modules.items():
        state = {key: value.detach().cpu().contiguous().clone() for key, value in module.state_dict().items()}
        save_file(state, os.path.join(dump_dir, f"{name}-rank{rank}.safetensors"))
    with open(os.path.join(dump_dir, f"eval-rank{rank}.json"), "w") as f:
        json.dump(
            {
                "evaluated": evaluated,
                "metrics": metrics,
                "world_size": trainer.args.world_size,
                "log_history": trainer.state.log_history,
            },
            f,
        )
    leave_process_group()


if __name__ == "__main__":
    main()
