"""Run by tests/test_interruption.py and tests/test_faults.py: the main job, signalled by itself after step N.

Usage: python tests/kill_job.py N [KILL|TERM] <run_glue_kd.py arguments>   (KILL by default)
"""

import os
import signal
import sys

from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hf_kd.run


class SignalAtStep(TrainerCallback):
    def __init__(self, step: int, number: int) -> None:
        self.step, self.number = step, number

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.number)


def main() -> None:
    step, args = int(sys.argv[1]), sys.argv[2:]
    number = signal.SIGKILL
    if args and args[0] in ("KILL", "TERM"):
        number, args = getattr(signal, f"SIG{args[0]}"), args[1:]
    build = hf_kd.run.build_trainer

    def build_with_signal(*parsed):
        trainer, data = build(*parsed)
        trainer.add_callback(SignalAtStep(step, number))
        return trainer, data

    hf_kd.run.build_trainer = build_with_signal
    sys.argv = [sys.argv[0], *args]
    hf_kd.run.cli()


if __name__ == "__main__":
    main()
