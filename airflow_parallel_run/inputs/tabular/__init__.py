"""TabularDataset: the rows of CSV, Parquet or JSON-lines files are the input items.

The planner cuts every file into pieces of about ``mini_batch_size`` bytes without reading
rows; only the worker that runs a piece reads its bytes::

    planner  files --(sizes, Parquet footers)--> TablePiece(path, start/end | row_groups)
    worker   TablePiece --(its byte range / row groups only)--> pyarrow --> pandas.DataFrame

CSV and JSON lines are cut by byte range at line ends, Parquet into runs of consecutive row
groups. No piece crosses a file boundary; a file no bigger than the target is one piece.

Bad input - a row with too many or too few fields, bytes that do not decode, a corrupt
Parquet file, columns that differ from the input's first file, an empty file, a file with a
header but no rows - makes :func:`read_piece` raise :class:`TableReadError`, naming the file
and the byte range or row groups. An empty or header-only file is one piece at plan time,
so that it shows up as a failed mini-batch rather than vanishing without a word.

The modules:

- :mod:`.dataset`: :class:`TabularDataset` and its ``from_`` constructors;
- :mod:`.pieces`: :class:`TablePiece` (the plan's descriptor) and :class:`TableReadError`;
- :mod:`.formats`: the interface of a format, :class:`~.formats.TableFormat`, and
  :mod:`.registry`, the formats by name;
- :mod:`.delimited` (CSV), :mod:`.jsonl` and :mod:`.parquet`: one format each, the first two
  on :mod:`.lines` (rows are lines) and :mod:`.byte_ranges` (the rows a byte range owns);
- :mod:`.partitions`: ``partition_keys``, a piece per combination of key values;
- :mod:`.reading`: :func:`read_piece` and :func:`count_rows_estimate`, what a worker calls.
"""

from .dataset import TabularDataset
from .delimited import SAMPLE_BYTES
from .formats import Note
from .partitions import PARTITION_SCAN_BYTES
from .pieces import TablePiece, TableReadError
from .reading import count_rows_estimate, read_piece
from .registry import FORMATS

__all__ = [
    "FORMATS",
    "PARTITION_SCAN_BYTES",
    "SAMPLE_BYTES",
    "Note",
    "TablePiece",
    "TableReadError",
    "TabularDataset",
    "count_rows_estimate",
    "read_piece",
]
