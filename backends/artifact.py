"""Artifacts on disk: a directory with the graph as textual IR, its weights as .npz, and metadata.

Writes are atomic (a temporary sibling directory renamed into place), so an interrupted save
leaves either nothing or a complete artifact; loading never executes code (no pickle).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LpdcParseError
from ..ir import Graph, parse

GRAPH_FILE = "graph.lpir"
PARAMS_FILE = "params.npz"
META_FILE = "meta.json"
FORMAT = "lpdc-artifact-1"


def save_artifact(graph: Graph, path: str | os.PathLike[str], meta: dict[str, Any] | None = None,
                  extra_files: dict[str, bytes] | None = None) -> Path:
    """Write `graph` (and optional extra files) as an artifact directory at `path`, atomically."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        (tmp / GRAPH_FILE).write_text(str(graph))
        with open(tmp / PARAMS_FILE, "wb") as f:
            np.savez(f, **graph.params)
        for name, data in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        (tmp / META_FILE).write_text(json.dumps({"format": FORMAT, **(meta or {})}, indent=2, sort_keys=True))
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_artifact(path: str | os.PathLike[str]) -> tuple[Graph, dict[str, Any]]:
    """Read an artifact directory back into a graph and its metadata."""
    root = Path(path)
    try:
        meta = json.loads((root / META_FILE).read_text())
        text = (root / GRAPH_FILE).read_text()
        with np.load(root / PARAMS_FILE, allow_pickle=False) as npz:
            params = {k: npz[k] for k in npz.files}
    except FileNotFoundError as e:
        raise LpdcParseError(f"not an lpdc artifact: {Path(e.filename).name} is missing", where=str(root)) from None
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise LpdcParseError(f"corrupt artifact: {e}", where=str(root)) from None
    if meta.get("format") != FORMAT:
        raise LpdcParseError(f"unknown artifact format {meta.get('format')!r}", where=str(root))
    return parse(text, params, source=str(root / GRAPH_FILE)), meta
