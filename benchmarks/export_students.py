#!/usr/bin/env python
"""Issue 49's measurement: finished students shipped as ONNX fp32 and int8, checked and timed in one run.

    python benchmarks/export_students.py \\
        --student "SST-2 demo=demo_output/labelled-500-4000_seed-42_steps-250-400/student_kd" \\
        --student "BANKING77=RUNS/banking77/runs/unlabelled/kd_lr0.0001_seed42" \\
        --json benchmarks/RESULTS_export.json

Each student is exported afresh (`hf_kd.export.export_student`: its validation data from its record), so every
latency of the table comes from this one process on this machine: ratios compare like with like. Writes the
JSON (what `benchmarks/claims.py` renders into benchmarks/README.md and README.md) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_student(text: str) -> tuple[str, str]:
    name, separator, folder = text.partition("=")
    if not separator or not name or not os.path.isfile(os.path.join(folder, "hf_kd_run.json")):
        raise argparse.ArgumentTypeError(f"--student {text!r}: give NAME=FOLDER, FOLDER a finished run's output_dir.")
    return name, folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=parse_student, action="append", required=True, help="NAME=FOLDER")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "RESULTS_export.json")
    options = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.claims import export_table
    from hf_kd.export import export_student

    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "students": {},
    }
    for name, folder in options.student:
        findings = export_student(folder)
        record = json.loads(Path(folder, "hf_kd_run.json").read_text())
        results["students"][name] = {"folder": folder, "method": record.get("method"), **findings}
    options.json.write_text(json.dumps(results, indent=1) + "\n")
    print(export_table(results))


if __name__ == "__main__":
    main()
