"""TabularDataset: what a user writes to have the rows of table files as input items.

The dataset is a description (paths, format, reading options); planning it reads no rows,
and each format (:mod:`.registry`) decides how its files are cut into pieces.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ...errors import InputError
from ..files import FileDataset, InputItem, is_one_path, is_remote, path_text
from .delimited import delimited_options
from .formats import Note, codec_name
from .partitions import PARTITION_SCAN_BYTES, partition_pieces
from .pieces import TablePiece
from .registry import FORMATS, table_format

# Notes keep the name they always had: one logger for the whole package.
_log = logging.getLogger(__package__)

PathSpec = str | os.PathLike | list[str | os.PathLike]


@dataclass
class TabularDataset:
    """Rows of CSV, Parquet or JSON-lines files. Build it with one of the ``from_`` methods.

    ``paths`` are files, folders or globs (fsspec URLs welcome): a folder or glob is taken in
    sorted path order, a list in its own order. ``options`` are the format's reading options.
    """

    paths: list[str]
    format: str
    name: str = "input"
    options: dict[str, Any] = field(default_factory=dict)
    storage_options: dict[str, Any] = field(default_factory=dict)
    conn_id: str | None = None

    kind = "tabular"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"TabularDataset format = {self.format!r}: must be one of {FORMATS}")

    @classmethod
    def from_delimited_files(
        cls,
        path: PathSpec,
        *,
        separator: str = ",",
        header: bool = True,
        encoding: str = "utf-8",
        quotechar: str | None = '"',
        multiline: bool | None = None,
        name: str | None = None,
        storage_options: dict[str, Any] | None = None,
        conn_id: str | None = None,
    ) -> TabularDataset:
        """CSV (or other delimited) files.

        :param separator: one character, such as ``","``, ``";"`` or ``"\\t"``.
        :param header: whether the first line of every file names the columns; without one,
            columns are numbered 0, 1, ... as pandas does.
        :param encoding: any Python codec; UTF-16 and UTF-32 files are read whole, not split.
        :param quotechar: the quote character, or None when fields are never quoted.
        :param multiline: whether quoted fields may hold line breaks. None (the default):
            the planner looks at the first 256 KB of each file it would split and keeps a
            file with quoted line breaks whole. True: no file is split. False: files are
            split without looking; a piece cut inside a quoted field then fails with an error.
        """
        what = "TabularDataset.from_delimited_files"
        options = delimited_options(separator=separator, header=header, encoding=encoding,
                                    quotechar=quotechar, multiline=multiline, what=what)
        return cls(paths=_path_list(path, what), format="csv", name=name or "input",
                   options=options, storage_options=dict(storage_options or {}), conn_id=conn_id)

    @classmethod
    def from_parquet_files(
        cls,
        path: PathSpec,
        *,
        name: str | None = None,
        storage_options: dict[str, Any] | None = None,
        conn_id: str | None = None,
    ) -> TabularDataset:
        """Parquet files; large ones are split into runs of row groups."""
        return cls(paths=_path_list(path, "TabularDataset.from_parquet_files"),
                   format="parquet", name=name or "input",
                   storage_options=dict(storage_options or {}), conn_id=conn_id)

    @classmethod
    def from_json_lines_files(
        cls,
        path: PathSpec,
        *,
        encoding: str = "utf-8",
        name: str | None = None,
        storage_options: dict[str, Any] | None = None,
        conn_id: str | None = None,
    ) -> TabularDataset:
        """JSON-lines files: one JSON object per line, its fields are the columns."""
        what = "TabularDataset.from_json_lines_files"
        return cls(paths=_path_list(path, what), format="jsonl", name=name or "input",
                   options={"encoding": codec_name(encoding, what)},
                   storage_options=dict(storage_options or {}), conn_id=conn_id)

    @classmethod
    def from_format(cls, fmt: str, path: PathSpec, *, name: str | None = None,
                    **options: Any) -> TabularDataset:
        """Files of the format called ``fmt`` (one of :data:`FORMATS`), read with ``options``
        (that format's constructor's) or its defaults: what a command line's input type names."""
        constructors = {"csv": cls.from_delimited_files, "parquet": cls.from_parquet_files,
                        "jsonl": cls.from_json_lines_files}
        if fmt not in constructors:
            raise InputError(f"TabularDataset format = {fmt!r}: must be one of {FORMATS}")
        return constructors[fmt](path, name=name, **options)

    @classmethod
    def from_dict(cls, data: dict[str, Any],
                  storage_options: dict[str, Any] | None = None) -> TabularDataset:
        return cls(paths=list(data["paths"]), format=data["format"],
                   name=data.get("name", "input"), options=dict(data.get("options") or {}),
                   storage_options=dict(storage_options or {}), conn_id=data.get("conn_id"))

    def to_dict(self) -> dict[str, Any]:
        # storage_options may hold secrets: they are not part of a descriptor.
        return {"kind": self.kind, "format": self.format, "paths": list(self.paths),
                "name": self.name, "options": dict(self.options), "conn_id": self.conn_id}

    @property
    def remote(self) -> bool:
        return any(is_remote(p) for p in self.paths)

    def iter_items(self, note: Note | None = None) -> Iterator[InputItem]:
        """Every file, in input order, streamed (as :meth:`FileDataset.iter_items`: what is
        not a regular file is skipped, told to ``note``)."""
        files = FileDataset(self.paths, storage_options=self.storage_options)
        return files.iter_items(note=note) if note else files.iter_items()

    def iter_pieces(self, target_bytes: int, *, note: Note | None = None) -> Iterator[TablePiece]:
        """Pieces of about ``target_bytes`` bytes each, in input order.

        Reads no rows: file sizes and Parquet footers only, plus the first 256 KB of each
        CSV file it would split, to look for quoted line breaks. What a user should know
        ("file X has quoted line breaks: not split") goes to ``note`` (default: this
        module's logger, INFO).
        """
        if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 1:
            raise ValueError(f"target_bytes = {target_bytes!r}: must be an int >= 1")
        note = note or _log.info
        fmt = table_format(self.format)
        reference = None
        for item in self.iter_items(note):
            if reference is None and item.size > 0:
                reference = item.path
            for piece in fmt.split(item, target_bytes, self.options, self.storage_options, note):
                if fmt.checks_columns and reference != item.path:
                    piece.columns_from = reference
                yield piece

    def iter_partition_pieces(self, keys: tuple[str, ...] | list[str], *,
                              scan_bytes: int = PARTITION_SCAN_BYTES,
                              note: Note | None = None) -> Iterator[TablePiece]:
        """One piece per distinct combination of the ``keys`` columns over all files.

        Pieces come in the order their combination first appears. The planner reads only the
        key columns: Parquet row group by row group, CSV and JSON lines in parts of
        ``scan_bytes`` (their bytes must be scanned, but only key columns are kept). Each
        piece lists the parts that hold its combination, and ``rows`` is its row count.
        A part that cannot be read (bad data) becomes a piece of its own, without key values,
        which fails in its worker with the error: its rows are not lost without a word.
        """
        return partition_pieces(self, keys, scan_bytes=scan_bytes, note=note)


def _path_list(path: Any, what: str) -> list[str]:
    specs = [path] if is_one_path(path) else list(path or [])
    paths = [path_text(p) for p in specs]
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise InputError(f"{what}: {path!r}: give a path, folder or glob, or a list of them")
    return paths
