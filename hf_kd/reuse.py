"""Reuse a finished run only when it was made from exactly the same inputs.

A run's key is every flag it was given and the content (SHA-256) of every data file and model it read; the
key is written beside the run's results, and a finished run whose stored key differs is re-run, saying what
changed. The quality benchmark and the demo reuse runs this way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

from hf_kd.outputs import RESULTS_FILE

RUN_KEY = "run_key.json"  # in each run folder: what the run was made from
_HASHES: dict[tuple[str, int, int], str] = {}


def content_hash(path: Path) -> str:
    """SHA-256 of a file's content (remembered per path, modification time and size: the teacher is read per job)."""
    if not path.is_file():
        return "missing"
    status = path.stat()
    stamp = (str(path), status.st_mtime_ns, status.st_size)
    if stamp not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[stamp] = digest.hexdigest()
    return _HASHES[stamp]


def run_key(args: list[str]) -> dict:
    """Everything a finished run is reused by: every flag, and the content of each data file and model it reads."""
    key: dict = {"args": args, "files": {}}
    for flag, value in itertools.pairwise(args):
        path = Path(value)
        if flag.endswith("_file") and path.is_file():
            key["files"][flag] = content_hash(path)
        elif flag.endswith("_name_or_path") and (path / "model.safetensors").is_file():
            key["files"][flag] = content_hash(path / "model.safetensors")
    return key


def is_finished(folder: Path, key: dict, name: str) -> bool:
    """Whether `folder` holds a finished run made from exactly `key`; says why one is not reused."""
    if not (folder / RESULTS_FILE).is_file():
        return False
    stored = json.loads((folder / RUN_KEY).read_text()) if (folder / RUN_KEY).is_file() else None
    if stored == key:
        return True
    if stored is None:
        reason = f"no {RUN_KEY} (made before runs were keyed)"
    else:
        changed = [k for k in ("args", "files") if stored.get(k) != key.get(k)]
        differing = sorted(set(stored.get("files", {}).items()) ^ set(key.get("files", {}).items()))
        reason = f"its {' and '.join(changed)} differ" + (
            f" ({', '.join(sorted({f for f, _ in differing}))})" if differing else ""
        )
    print(f"== re-running {name}: the finished run in {folder} is not reused: {reason}", flush=True)
    return False
