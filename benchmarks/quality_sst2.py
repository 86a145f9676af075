#!/usr/bin/env python
"""The quality benchmark on real data (SST-2, BANKING77): `benchmarks/quality/` (its docstring says how to run
it and what it measures). This file keeps the commands in README.md, RESULTS.md and gpu_session.sh working."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.quality.runner import main

if __name__ == "__main__":
    main()
