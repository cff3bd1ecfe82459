"""The entry script's folder as part of a job's definition: a manifest of its files.

The folder the workers start in (``source_directory``, by default the script's own folder)
holds the code and data the script imports and reads, so it decides results as the script
does. The first plan of a job stores a manifest of the folder in the job's state: each file's
path, size and a hash of its content (a file over :data:`BIG_FILE` bytes by its size and
modification time). A later run of the same job compares only the files in that manifest: a
file made after the plan (a cache, a log the script writes) is no part of the job, while a
changed or deleted manifest file is a changed script. Left out: the output folder, the input
folders (their files are checked as inputs), and folders that are never code of the job
(``.git``, ``__pycache__``, virtual environments).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from typing import Any

from .errors import EntryScriptError
from .storage import STATE_DIR, OutputLocation

MANIFEST_FILE = f"{STATE_DIR}/source.json"
BIG_FILE = 4 << 20  # bigger files: by size and modification time, not read
READ_BUDGET = 64 << 20  # bytes read per manifest; files past it: by size and time as well
MAX_FILES = 10_000  # a bigger folder is no script's folder (a home, /tmp): refused
_SKIPPED_NAMES = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "node_modules",
                            ".mypy_cache", ".pytest_cache", ".ruff_cache"})

Manifest = dict[str, list[Any]]  # relative path -> [size, content hash or "t<mtime_ns>"]


def folder_manifest(folder: str, left_out: Iterable[str] = ()) -> Manifest:
    """Every file under ``folder`` but those under ``left_out`` (local paths, any spelling)."""
    root = os.path.realpath(folder)
    skipped = {os.path.realpath(os.path.expanduser(path)) for path in left_out}
    manifest: Manifest = {}
    budget = [READ_BUDGET]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not _skipped_folder(dirpath, d, skipped)]
        for name in filenames:
            path = os.path.join(dirpath, name)
            entry = None if path in skipped else _entry(path, budget)
            if entry is not None:
                manifest[os.path.relpath(path, root)] = entry
        if len(manifest) > MAX_FILES:
            raise EntryScriptError(
                f"source_directory {folder}: more than {MAX_FILES} files (the script's folder, "
                "by default the one it is in, is part of the job: resume and reuse check its "
                "files); set source_directory to a folder with only what the script needs")
    return manifest


def _skipped_folder(parent: str, name: str, skipped: set[str]) -> bool:
    path = os.path.join(parent, name)
    return (name in _SKIPPED_NAMES or path in skipped
            or os.path.exists(os.path.join(path, "pyvenv.cfg")))  # a virtual environment


def _entry(path: str, budget: list[int] | None = None) -> list[Any] | None:
    """[size, what tells a changed file apart]; None for what is not a readable file.
    ``budget``: bytes still to read (a one-item list, spent here); None: read what was read."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a socket, a pipe, a broken link
            return None
        if st.st_size > BIG_FILE or (budget is not None and st.st_size > budget[0]):
            return [st.st_size, f"t{st.st_mtime_ns}"]
        if budget is not None:
            budget[0] -= st.st_size
        with open(path, "rb") as handle:
            return [st.st_size, hashlib.sha256(handle.read()).hexdigest()[:32]]
    except OSError:  # gone while we looked, or not ours to read: no part of the job
        return None


def still_holds(manifest: Manifest, folder: str) -> bool:
    """Whether every file of ``manifest`` is in ``folder`` as it was."""
    root = os.path.realpath(folder)
    return all(_same(os.path.join(root, rel), entry) for rel, entry in manifest.items())


def _same(path: str, entry: list[Any]) -> bool:
    if str(entry[1]).startswith("t"):  # not read when listed: by size and time
        try:
            st = os.stat(path)
        except OSError:
            return False
        return [st.st_size, f"t{st.st_mtime_ns}"] == list(entry)
    return _entry(path) == list(entry)


def manifest_hash(manifest: Manifest) -> str:
    return hashlib.sha256(json.dumps(sorted(manifest.items())).encode()).hexdigest()


def job_manifest(location: OutputLocation, folder: str, left_out: Iterable[str],
                 offered: dict[str, Any] | None = None) -> Manifest:
    """The manifest of the job's folder: the one stored by the job's first plan while all its
    files are as they were; else ``offered`` (an earlier run's, as store_manifest wrote it)
    while it holds; else one of the folder as it is now."""
    for stored in (location.read_json(MANIFEST_FILE), offered):
        if isinstance(stored, dict) and stored.get("folder") == os.path.realpath(folder):
            files = stored.get("files")
            if isinstance(files, dict) and still_holds(files, folder):
                return files
    return folder_manifest(folder, left_out)


def manifest_record(folder: str, manifest: Manifest) -> dict[str, Any]:
    """What store_manifest writes: the folder and its manifest."""
    return {"folder": os.path.realpath(folder), "files": manifest}


def store_manifest(location: OutputLocation, folder: str, manifest: Manifest) -> None:
    location.write_json(MANIFEST_FILE, manifest_record(folder, manifest))
