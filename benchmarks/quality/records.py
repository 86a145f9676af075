"""Run records: a benchmark's evidence kept in the repository, so that losing an output folder loses no result.

A benchmark's output folder (models, caches, logs: gigabytes) lives on one machine; a fresh machine starts
without it. `save` copies the small files every report is built from into `benchmarks/records/NAME/`, laid
out as the output folder is: each run's held-out and dev results, wall time and run key (its exact flags and
the hashes of its files), what the ladder measured of a student it exported, each ablation's flags and the
ledger of looks at the reported set. `restore` copies them back into an output folder, never over a file that
is there. A restored run has no model: a report reads it (`--report_only`), and a benchmark that asks for it
trains it again, so add a seed with `--seeds 44` and report with `--seeds 42 43 44 --report_only`.

    python benchmarks/quality_sst2.py ... --output_dir $RUNS --records banking77   # restore, then save each run
    python benchmarks/records.py save --output_dir $RUNS --name banking77           # by hand
    python benchmarks/records.py restore --name banking77 --output_dir $RUNS
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks.quality import ROOT
from hf_kd.outputs import RESULTS_FILE
from hf_kd.reuse import RUN_KEY

RECORDS = ROOT / "benchmarks" / "records"
ABLATION_FLAGS = "ablation_flags.txt"  # in each <setting>_<ablation> folder: the flags that ablation adds
LEDGER_FILE = "ledger.jsonl"  # every evaluation on the reported set (dev / test), appended as it happens
RESTORED = "restored.txt"  # beside results restored from the records: they have no model to reuse
EXPORT_FINDINGS = "export_findings.json"  # beside a run `benchmarks/ladder.py` exported: size, timings, agreement
RECORD_FILES = {RESULTS_FILE, "wall_time.json", RUN_KEY, ABLATION_FLAGS, LEDGER_FILE, EXPORT_FINDINGS}
SKIPPED_FOLDERS = {"teacher_cache", "data"}  # caches, and the split (carved again from the shared data)


def record_files(output_dir: Path) -> list[Path]:
    """The files of `output_dir` that the records keep, relative to it."""
    found = []
    for path in sorted(output_dir.rglob("*")):
        relative = path.relative_to(output_dir)
        if path.is_file() and path.name in RECORD_FILES and not SKIPPED_FOLDERS & set(relative.parts[:-1]):
            found.append(relative)
    return found


def merged_ledger(kept: Path, new: Path) -> str:
    """The kept ledger's entries, then the new one's that it lacks: a ledger only grows, whichever folder
    (restored or fresh) the new entries were written in."""
    lines = kept.read_text().splitlines() if kept.is_file() else []
    lines += new.read_text().splitlines()
    return "".join(f"{line}\n" for line in dict.fromkeys(lines))  # in order, each entry once


def save(output_dir: Path, records: Path) -> list[Path]:
    """Copy the record files of `output_dir` into `records` (updating those there, merging ledgers); files in
    `records` whose runs are gone from `output_dir` stay. Returns the files written."""
    written = []
    for relative in record_files(output_dir):
        source, target = output_dir / relative, records / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if relative.name == LEDGER_FILE:
            target.write_text(merged_ledger(target, source))
        else:
            shutil.copyfile(source, target)
        written.append(relative)
    return written


def restore(records: Path, output_dir: Path) -> list[Path]:
    """Copy the records into `output_dir`, never over a file there, without run keys (a restored run is never
    reused for training), marking each restored result with `RESTORED`. Returns the files written."""
    written = []
    for relative in record_files(records):
        target = output_dir / relative
        if relative.name == RUN_KEY or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(records / relative, target)
        if relative.name == RESULTS_FILE:
            (target.parent / RESTORED).write_text(f"restored from {records}: results only, no model\n")
        written.append(relative)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("--output_dir", required=True, help="the benchmark's output folder")
    parser.add_argument("--name", required=True, help="the records' folder under --records (e.g. banking77)")
    parser.add_argument("--records", default=str(RECORDS), help="where records live (default: benchmarks/records)")
    options = parser.parse_args(argv)
    output_dir, records = Path(options.output_dir), Path(options.records) / options.name
    source = output_dir if options.action == "save" else records
    if not source.is_dir():
        parser.error(f"{options.action}: {source} is not a folder")
    written = save(output_dir, records) if options.action == "save" else restore(records, output_dir)
    target = records if options.action == "save" else output_dir
    print(f"{options.action}: {len(written)} files into {target}")


if __name__ == "__main__":
    main()
