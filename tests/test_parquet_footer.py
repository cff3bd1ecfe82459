"""The planner reads Parquet footers without pyarrow: what it decodes must be what pyarrow
reads, for every shape of file; what it cannot decode goes to pyarrow."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_parallel_run.inputs.files import InputItem
from airflow_parallel_run.inputs.tabular import parquet_footer
from airflow_parallel_run.inputs.tabular.parquet import FORMAT, _footer
from airflow_parallel_run.inputs.tabular.parquet_footer import read_footer

N = 20_000
WIDE = pa.table({
    "id": np.arange(N), "x": np.random.default_rng(1).random(N),
    "text": [f"row {i}" for i in range(N)], "flag": [i % 3 == 0 for i in range(N)],
    "maybe": [None if i % 5 else i for i in range(N)],
    "items": [[i, i + 1] for i in range(N)],
    "nested": [{"a": i, "b": str(i)} for i in range(N)],
    "tags": pa.array([[("k", i)] for i in range(N)], pa.map_(pa.string(), pa.int64())),
})


def written(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def by_pyarrow(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    return meta.num_rows, [(g.num_rows, sum(g.column(c).total_compressed_size
                                            for c in range(g.num_columns))) for g in groups]


@pytest.mark.parametrize("table, options", [
    (WIDE, {"row_group_size": 1500}),
    (WIDE, {"row_group_size": 7000, "compression": "zstd"}),
    (WIDE, {"row_group_size": 5000, "write_statistics": False, "version": "1.0"}),
    (WIDE, {"row_group_size": 999, "data_page_version": "2.0", "write_page_index": True}),
    (WIDE.slice(0, 0), {}),
    (pa.Table.from_pandas(WIDE.select(["id", "text"]).to_pandas().set_index("text")),
     {"row_group_size": 3000}),
], ids=["plain", "zstd", "no-statistics-v1", "page-index", "no-rows", "pandas-index"])
def test_the_footer_decoded_without_pyarrow_is_what_pyarrow_reads(table, options):
    data = written(table, **options)
    footer = read_footer(io.BytesIO(data), len(data))
    assert footer is not None
    assert (footer.num_rows, [(g.num_rows, g.compressed_size) for g in footer.row_groups]) == \
        by_pyarrow(data)


@pytest.mark.parametrize("data", [
    b"", b"PAR1", b"not a parquet file at all, just text",
    b"PAR1" + b"\x00" * 20 + (10**6).to_bytes(4, "little") + b"PAR1",  # a length past the start
    b"PAR1" + b"\x15\x00\x15" + (3).to_bytes(4, "little") + b"PAR1",  # a footer cut short
    b"PAR1" + b"\x00" * 20 + (8).to_bytes(4, "little") + b"PARE",  # an encrypted footer
], ids=["empty", "magic-only", "text", "length-too-long", "cut-short", "encrypted"])
def test_a_footer_it_cannot_decode_is_left_to_pyarrow(data):
    assert read_footer(io.BytesIO(data), len(data)) is None


def test_once_decoding_took_as_long_as_importing_pyarrow_pyarrow_reads_the_rest(tmp_path,
                                                                               monkeypatch):
    path = tmp_path / "t.parquet"
    path.write_bytes(written(WIDE, row_group_size=1500))
    item = InputItem(str(path), path.stat().st_size, 0.0)
    decoded = _footer(item, {})
    monkeypatch.setattr(parquet_footer, "_spent", [parquet_footer.PYTHON_SECONDS + 1])
    with open(path, "rb") as handle:
        assert read_footer(handle, item.size) is None
    assert _footer(item, {}) == decoded  # the same numbers, from pyarrow


def test_a_parquet_file_is_planned_in_runs_of_row_groups_from_the_decoded_footer(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(written(WIDE, row_group_size=2000))
    item = InputItem(str(path), path.stat().st_size, 0.0)
    pieces = list(FORMAT.split(item, item.size // 4, {}, {}, lambda note: None))
    assert 3 <= len(pieces) <= 5
    assert sum(p.rows for p in pieces) == N
    assert [g for p in pieces for g in p.row_groups] == list(range(10))
