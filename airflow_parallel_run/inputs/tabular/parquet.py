"""Parquet files: pieces are runs of consecutive row groups, planned from the footer alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .byte_ranges import TrackedFile, open_file
from .formats import Note, TableFormat
from .parquet_footer import Footer, RowGroup, read_footer
from .pieces import TablePiece, TableReadError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

    from ..files import InputItem


class ParquetFormat(TableFormat):
    """Parquet; a piece reads only its row groups (and only the columns asked for)."""

    name = "parquet"

    def split(self, item: InputItem, target: int, options: dict[str, Any],
              storage_options: dict[str, Any], note: Note) -> Iterator[TablePiece]:
        try:
            meta = _footer(item, storage_options)
        except Exception as exc:  # noqa: BLE001 - the worker's read gives the error its place
            note(f"{item.path}: cannot read its Parquet footer ({first_line(exc)}): one "
                 "mini-batch, which will fail")
            yield TablePiece(item.path, self.name)
            return
        if item.size <= target or meta.num_row_groups <= 1:
            yield TablePiece(item.path, self.name, rows=meta.num_rows)
            return
        # Runs of consecutive row groups, by their size in the file (as CSV goes by bytes in
        # the file); a row group bigger than the target is a piece of its own.
        run: list[int] = []
        run_bytes = run_rows = 0
        for index, group in enumerate(meta.row_groups):
            if run and run_bytes + group.compressed_size > target:
                yield TablePiece(item.path, self.name, row_groups=run, rows=run_rows)
                run, run_bytes, run_rows = [], 0, 0
            run.append(index)
            run_bytes += group.compressed_size
            run_rows += group.num_rows
        yield TablePiece(item.path, self.name, row_groups=run, rows=run_rows)

    def is_whole(self, piece: TablePiece) -> bool:
        return piece.row_groups is None

    def where(self, piece: TablePiece) -> str:
        if piece.row_groups is None:
            return "all row groups"
        return _describe_row_groups(piece.row_groups)

    def read(self, piece: TablePiece, handle: TrackedFile, options: dict[str, Any],
             columns: list[str] | None) -> pa.Table:
        import pyarrow.parquet as pq

        with pq.ParquetFile(handle) as parquet:
            if piece.row_groups is None:
                if parquet.metadata.num_rows == 0:
                    raise TableReadError(piece.path, piece.where, "the file has no rows")
                return parquet.read(columns=columns)
            return parquet.read_row_groups(piece.row_groups, columns=columns)

    def count_rows(self, piece: TablePiece, options: dict[str, Any],
                   storage_options: dict[str, Any]) -> int:
        """From the footer."""
        with _parquet_file(piece.path, storage_options) as parquet:
            meta = parquet.metadata
        groups = piece.row_groups if piece.row_groups is not None else range(meta.num_row_groups)
        return sum(meta.row_group(g).num_rows for g in groups)

    def column_names(self, path: str, options: dict[str, Any],
                     storage_options: dict[str, Any]) -> list[str] | None:
        with _parquet_file(path, storage_options) as parquet:
            return parquet.schema_arrow.names

    def partition_part_bytes(self, scan_bytes: int) -> int:
        # Single row groups, so a worker reads only those that hold its keys.
        return 1


def _footer(item: InputItem, storage_options: dict[str, Any]) -> Footer:
    """The footer's row counts and sizes: decoded here when it is small, else by pyarrow."""
    with open_file(item.path, storage_options) as handle:
        footer = read_footer(handle, item.size) if item.size else None
        if footer is not None:
            return footer
        import pyarrow.parquet as pq

        with pq.ParquetFile(handle) as parquet:
            meta = parquet.metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    return Footer(meta.num_rows, [
        RowGroup(g.num_rows, sum(g.column(c).total_compressed_size for c in range(g.num_columns)))
        for g in groups])


@contextmanager
def _parquet_file(path: str, storage_options: dict[str, Any]) -> Iterator[Any]:
    import pyarrow.parquet as pq

    with open_file(path, storage_options) as handle, pq.ParquetFile(handle) as parquet:
        yield parquet


def _describe_row_groups(groups: list[int]) -> str:
    runs: list[list[int]] = []
    for group in groups:
        if runs and group == runs[-1][1] + 1:
            runs[-1][1] = group
        else:
            runs.append([group, group])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"row group{'s' if len(groups) != 1 else ''} {text}"


FORMAT = ParquetFormat()
