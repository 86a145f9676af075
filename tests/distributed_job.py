"""Run under torchrun by tests/test_distributed.py: train, then dump this rank's trained weights.

Usage: torchrun --nproc_per_node 2 tests/distributed_job.py DUMP_DIR -- <run_glue_kd.py arguments>
"""

import json
import os
import sys

from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hf_kd.config import parse_args
from hf_kd.run import build_trainer, leave_process_group


def main() -> None:
    dump_dir, args = sys.argv[1], sys.argv[3:]
    model_args, data_args, training_args = parse_args(args)
    trainer, _ = build_trainer(model_args, data_args, training_args)
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
        json.dump({"evaluated": evaluated, "metrics": metrics, "world_size": trainer.args.world_size}, f)
    leave_process_group()


if __name__ == "__main__":
    main()
