"""Run records: a benchmark's results kept in the repository (`benchmarks/quality/records.py`, which says more).

python benchmarks/records.py save --output_dir $RUNS --name banking77
python benchmarks/records.py restore --name banking77 --output_dir $RUNS
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.quality.records import main

if __name__ == "__main__":
    main()
