"""Run by tests/test_interruption.py and tests/test_faults.py: the main job, signalled by itself after step N.

Usage: python tests/kill_job.py N [KILL|TERM|RAISE] <run_glue_kd.py arguments>
KILL by default; RAISE raises a NonFiniteLossError instead; KILL_JOB_METHOD=normal signals the no-KD twin only.
"""

import os
import signal
import sys

from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hf_kd.run
import hf_kd.twin
from hf_kd.errors import NonFiniteLossError


class SignalAtStep(TrainerCallback):
    def __init__(self, step: int, number: int) -> None:
        self.step, self.number = step, number

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            if self.number is None:  # a stop from inside training, as a diverged loss makes
                raise NonFiniteLossError(f"loss_kd became non-finite at step {self.step} (raised by kill_job.py).")
            os.kill(os.getpid(), self.number)


def main() -> None:
    step, args = int(sys.argv[1]), sys.argv[2:]
    number = signal.SIGKILL
    if args and args[0] in ("KILL", "TERM", "RAISE"):
        number, args = getattr(signal, f"SIG{args[0]}", None), args[1:]
    build = hf_kd.run.build_trainer

    only = os.environ.get("KILL_JOB_METHOD")  # signal only the trainer of this method (normal: the no-KD twin)

    def build_with_signal(*parsed, **options):
        trainer, data = build(*parsed, **options)
        if only is None or trainer.args.method == only:
            trainer.add_callback(SignalAtStep(step, number))
        return trainer, data

    hf_kd.run.build_trainer = hf_kd.twin.build_trainer = build_with_signal  # the run's trainer and the twin's
    sys.argv = [sys.argv[0], *args]
    hf_kd.run.cli()


if __name__ == "__main__":
    main()
