"""Run by tests/test_interruption.py: the main job, SIGKILLed by itself right after step N.

Usage: python tests/kill_job.py N <run_glue_kd.py arguments>
"""

import os
import signal
import sys

from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hf_kd.run


class KillAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    step, args = int(sys.argv[1]), sys.argv[2:]
    build = hf_kd.run.build_trainer

    def build_with_kill(*parsed):
        trainer, data = build(*parsed)
        trainer.add_callback(KillAtStep(step))
        return trainer, data

    hf_kd.run.build_trainer = build_with_kill
    hf_kd.run.main(args)


if __name__ == "__main__":
    main()
