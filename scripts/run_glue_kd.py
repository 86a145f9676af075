#!/usr/bin/env python
"""Distil a GLUE-style sequence classifier: `torchrun scripts/run_glue_kd.py --method cilda ...`.

Arguments follow `run_glue.py` plus the distillation options (`--help`); a YAML/JSON file may stand
in for them: `run_glue_kd.py configs/kd.yaml --learning_rate 3e-5`.
"""

from hf_kd.run import cli

if __name__ == "__main__":
    cli()
