"""Tabular inputs: pieces of about the target size, every row read exactly once, bad input
named by file and byte range or row group."""

from __future__ import annotations

import csv
import gzip
import json
import pickle
import tempfile
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_parallel_run.errors import InputError
from airflow_parallel_run.inputs.tabular import (
    SAMPLE_BYTES,
    TablePiece,
    TableReadError,
    TabularDataset,
    count_rows_estimate,
    read_piece,
)

HEADER = ("id", "x", "s")


def write_csv(path: Path, rows: list, *, header: tuple | None = HEADER, sep: str = ",",
              encoding: str = "utf-8", lineterminator: str = "\n") -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, delimiter=sep, lineterminator=lineterminator)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def make_rows(count: int, start: int = 0) -> list[list]:
    """Rows whose text has separators and quotes inside quoted fields."""
    return [[i, f"{i / 8:.3f}", f'name {i}, "q{i % 7}"; end'] for i in range(start, start + count)]


def read_all(dataset: TabularDataset, target: int,
             notes: list[str] | None = None) -> tuple[list[TablePiece], pd.DataFrame]:
    pieces = list(dataset.iter_pieces(target, note=None if notes is None else notes.append))
    frames = [read_piece(p, dataset.options, dataset.storage_options) for p in pieces]
    # A piece smaller than a row may own no row: its empty frame has no types to keep.
    return pieces, pd.concat([f for f in frames if len(f)], ignore_index=True)


def read_each(dataset: TabularDataset, pieces: list[TablePiece]) -> list:
    """Each piece's DataFrame, or the TableReadError it raised."""
    results: list[pd.DataFrame | TableReadError] = []
    for piece in pieces:
        try:
            results.append(read_piece(piece, dataset.options, dataset.storage_options))
        except TableReadError as exc:
            results.append(exc)
    return results


# -- splitting ---------------------------------------------------------------------------------


def test_pieces_are_at_most_the_target_and_never_cross_a_file(tmp_path: Path) -> None:
    big = write_csv(tmp_path / "a.csv", make_rows(400))
    small = write_csv(tmp_path / "b.csv", make_rows(3))
    dataset = TabularDataset.from_delimited_files(str(tmp_path))

    pieces = list(dataset.iter_pieces(2000))

    big_pieces = [p for p in pieces if p.path == str(big)]
    assert pieces[:len(big_pieces)] == big_pieces  # input order: a.csv, then b.csv
    assert big_pieces[0].start == 0 and big_pieces[-1].end == big.stat().st_size
    for before, after in zip(big_pieces, big_pieces[1:], strict=False):
        assert before.end == after.start
    assert all(p.end is not None and 1500 < p.end - p.start <= 2000 for p in big_pieces)
    assert pieces[len(big_pieces):] == [TablePiece(str(small), "csv", columns_from=str(big))]


row = st.tuples(
    st.integers(-10**9, 10**9),
    st.integers(-10**6, 10**6).map(lambda v: f"{v / 1000:.3f}"),
    st.text(alphabet='ab ,;"\'xyz', max_size=12).map(lambda text: "t" + text),
)


@settings(max_examples=150, deadline=None)
@given(files=st.lists(st.lists(row, min_size=1, max_size=40), min_size=1, max_size=3),
       target=st.integers(8, 3000), lineterminator=st.sampled_from(["\n", "\r\n"]))
def test_every_row_of_a_multi_file_csv_is_read_exactly_once(files: list, target: int,
                                                           lineterminator: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        paths = [write_csv(Path(folder) / f"part{i}.csv", rows, lineterminator=lineterminator)
                 for i, rows in enumerate(files)]
        dataset = TabularDataset.from_delimited_files(folder)

        pieces, got = read_all(dataset, target)

        expected = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
        pd.testing.assert_frame_equal(got, expected)
        assert all(p.end is None or p.end - p.start <= target for p in pieces)


def test_a_file_no_bigger_than_the_target_is_one_piece(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", make_rows(10))
    dataset = TabularDataset.from_delimited_files(str(path))

    assert list(dataset.iter_pieces(path.stat().st_size)) == [TablePiece(str(path), "csv")]


@pytest.mark.parametrize(
    ("separator", "header", "encoding"),
    [(";", True, "utf-8"), ("\t", True, "utf-8"), (",", False, "utf-8"), (";", True, "latin-1")],
)
def test_separator_header_and_encoding_options(tmp_path: Path, separator: str, header: bool,
                                               encoding: str) -> None:
    rows = [[i, f"{i / 4:.2f}", f"caf\u00e9 {i}; \"ol\u00e9\"\tx"] for i in range(300)]
    path = write_csv(tmp_path / "a.csv", rows, header=HEADER if header else None,
                     sep=separator, encoding=encoding)
    dataset = TabularDataset.from_delimited_files(str(path), separator=separator, header=header,
                                                  encoding=encoding)

    pieces, got = read_all(dataset, 1000)

    assert len(pieces) > 5
    expected = pd.read_csv(path, sep=separator, header=0 if header else None, encoding=encoding)
    pd.testing.assert_frame_equal(got, expected)


# -- quoted line breaks ------------------------------------------------------------------------


def multiline_rows(count: int, start: int = 0) -> list[list]:
    return [[i, f"{i}.5", f"first line {i}\nsecond, line\r\nthird"] for i in range(start, start + count)]


def test_a_csv_with_quoted_line_breaks_is_found_out_and_read_whole(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", make_rows(50) + multiline_rows(200))
    dataset = TabularDataset.from_delimited_files(str(path))
    notes: list[str] = []

    pieces, got = read_all(dataset, 1000, notes)

    assert pieces == [TablePiece(str(path), "csv")]
    assert notes == [f"{path} has quoted line breaks: not split"]
    pd.testing.assert_frame_equal(got, pd.read_csv(path))


def test_multiline_true_splits_no_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", make_rows(500))
    dataset = TabularDataset.from_delimited_files(str(path), multiline=True)

    pieces, got = read_all(dataset, 1000)

    assert pieces == [TablePiece(str(path), "csv")]
    pd.testing.assert_frame_equal(got, pd.read_csv(path))


def test_multiline_false_splits_without_looking_and_a_cut_quoted_field_fails_clearly(
        tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", multiline_rows(300))
    dataset = TabularDataset.from_delimited_files(str(path), multiline=False)
    notes: list[str] = []

    pieces = list(dataset.iter_pieces(1000, note=notes.append))
    errors = [r for r in read_each(dataset, pieces) if isinstance(r, TableReadError)]

    assert len(pieces) > 10 and notes == []
    assert errors
    for error in errors:
        assert str(error).startswith(f"{path} (bytes ")
        assert "multiline=True" in str(error) and not error.retryable


def test_quoted_line_breaks_past_the_sample_fail_the_cut_pieces_not_the_others(
        tmp_path: Path) -> None:
    plain = make_rows(SAMPLE_BYTES // 30)  # more than the planner's sample
    path = write_csv(tmp_path / "a.csv", plain + multiline_rows(3000, start=len(plain)))
    dataset = TabularDataset.from_delimited_files(str(path))
    notes: list[str] = []

    pieces = list(dataset.iter_pieces(20_000, note=notes.append))
    results = read_each(dataset, pieces)

    assert notes == []
    errors = [r for r in results if isinstance(r, TableReadError)]
    assert errors and all("multiline=True" in str(e) for e in errors)
    # The pieces before the first quoted line break hold exactly their rows.
    first_bad = next(i for i, r in enumerate(results) if isinstance(r, TableReadError))
    good = pd.concat(results[:first_bad], ignore_index=True)
    expected = pd.read_csv(path, nrows=len(good))
    pd.testing.assert_frame_equal(good, expected)
    assert good["id"].iloc[-1] < len(plain) + 1


# -- JSON lines and Parquet --------------------------------------------------------------------


def test_json_lines_are_split_at_line_ends_and_read_once(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    records = [{"id": i, "x": i / 4, "s": f"text {i}, \"quoted\"\\n"} for i in range(500)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = TabularDataset.from_json_lines_files(str(path))

    pieces, got = read_all(dataset, 2000)

    assert len(pieces) > 10
    pd.testing.assert_frame_equal(got, pd.DataFrame(records))


def make_parquet(path: Path, rows: int = 1200, row_group_size: int = 100) -> pd.DataFrame:
    frame = pd.DataFrame({"id": range(rows), "x": [i / 3 for i in range(rows)],
                          "s": [f"row {i}" for i in range(rows)]})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=row_group_size)
    return frame


def group_sizes(path: Path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [sum(meta.row_group(g).column(c).total_compressed_size for c in range(meta.num_columns))
            for g in range(meta.num_row_groups)]


def test_parquet_is_split_into_runs_of_row_groups_and_read_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    frame = make_parquet(path)
    sizes = group_sizes(path)
    target = 3 * max(sizes) + 1  # three row groups, never four
    dataset = TabularDataset.from_parquet_files(str(path))

    pieces, got = read_all(dataset, target)

    runs = [p.row_groups for p in pieces if p.row_groups is not None]
    assert len(runs) == len(pieces)
    assert [g for run in runs for g in run] == list(range(12))
    assert all(run == list(range(run[0], run[-1] + 1)) for run in runs)
    assert all(sum(sizes[g] for g in run) <= target for run in runs)
    assert len(pieces) == 4 and [p.rows for p in pieces] == [300] * 4
    pd.testing.assert_frame_equal(got, frame)


# -- partition keys ----------------------------------------------------------------------------


def partition_rows(count: int, start: int = 0) -> list[list]:
    regions = ["north", "south", "east"]
    return [[regions[i % 3], 2020 + (i // 3) % 2, i] for i in range(start, start + count)]


def check_partition_pieces(dataset: TabularDataset, pieces: list[TablePiece],
                           expected: pd.DataFrame) -> None:
    keys = ["region", "year"]
    frames = [read_piece(p, dataset.options, dataset.storage_options) for p in pieces]
    values = [p.partition_key_value or {} for p in pieces]
    combos = [(v["region"], v["year"]) for v in values]
    assert combos == list(dict.fromkeys(zip(expected.region, expected.year, strict=True)))
    for piece, frame in zip(pieces, frames, strict=True):
        assert (frame[keys] == pd.Series(piece.partition_key_value)).all(axis=None)
        assert piece.rows == len(frame)
    got = pd.concat(frames, ignore_index=True).sort_values("value", ignore_index=True)
    pd.testing.assert_frame_equal(got, expected.sort_values("value", ignore_index=True))


def test_partition_pieces_hold_the_rows_of_each_key_combination(tmp_path: Path) -> None:
    header = ("region", "year", "value")
    first = write_csv(tmp_path / "a.csv", partition_rows(300), header=header)
    second = write_csv(tmp_path / "b.csv", partition_rows(200, start=300), header=header)
    dataset = TabularDataset.from_delimited_files(str(tmp_path))

    pieces = list(dataset.iter_partition_pieces(("region", "year"), scan_bytes=1000))

    assert len(pieces) == 6
    assert all(len(p.parts or []) > 2 for p in pieces)  # parts of both files
    expected = pd.concat([pd.read_csv(first), pd.read_csv(second)], ignore_index=True)
    check_partition_pieces(dataset, pieces, expected)


def test_partition_pieces_over_parquet_list_only_the_row_groups_that_hold_their_keys(
        tmp_path: Path) -> None:
    frame = pd.DataFrame(partition_rows(600), columns=["region", "year", "value"])
    frame = frame.sort_values(["region", "year"], kind="stable", ignore_index=True)
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=50)
    dataset = TabularDataset.from_parquet_files(str(path))

    pieces = list(dataset.iter_partition_pieces(["region", "year"]))

    assert [len(p.parts or []) for p in pieces] == [2] * 6  # 100 rows each: two row groups
    check_partition_pieces(dataset, pieces, frame)


def test_the_partition_planner_reads_only_the_key_columns(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    header = ("region", "year", "value")
    write_csv(tmp_path / "a.csv", partition_rows(300), header=header)
    make_parquet(tmp_path / "b.parquet")
    seen: list = []
    read_csv = pyarrow.csv.read_csv
    read_row_groups = pq.ParquetFile.read_row_groups

    def spy_read_csv(source, *args, convert_options=None, **kwargs):
        seen.append(list(convert_options.include_columns))
        return read_csv(source, *args, convert_options=convert_options, **kwargs)

    def spy_read_row_groups(self, row_groups, columns=None, **kwargs):
        seen.append(columns)
        return read_row_groups(self, row_groups, columns=columns, **kwargs)

    monkeypatch.setattr(pyarrow.csv, "read_csv", spy_read_csv)
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy_read_row_groups)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("read all columns"))

    list(TabularDataset.from_delimited_files(str(tmp_path / "a.csv"))
         .iter_partition_pieces(["region", "year"], scan_bytes=1000))
    list(TabularDataset.from_parquet_files(str(tmp_path / "b.parquet"))
         .iter_partition_pieces(["s"]))

    assert seen and all(columns in (["region", "year"], ["s"]) for columns in seen)


def test_a_partition_key_that_is_not_a_column_is_a_clear_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", make_rows(5))
    dataset = TabularDataset.from_delimited_files(str(path))

    with pytest.raises(InputError, match=r"partition_keys: \['region'\] not among the columns"):
        list(dataset.iter_partition_pieces(["id", "region"]))


# -- bad input ---------------------------------------------------------------------------------


def bad_csv(tmp_path: Path, bad_line: bytes) -> tuple[Path, int]:
    """A CSV file of many pieces with one bad line in the middle, and that line's offset."""
    good = write_csv(tmp_path / "good.csv", make_rows(200)).read_bytes()
    head, tail = good[:len(good) // 2], good[len(good) // 2:]
    head = head[:head.rindex(b"\n") + 1]
    path = tmp_path / "bad.csv"
    path.write_bytes(head + bad_line + b"\n" + tail[tail.index(b"\n") + 1:])
    return path, len(head)


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [(b"1,2.5,too,many", "Expected 3 columns, got 4"),
     (b"1,2.5", "Expected 3 columns, got 2"),
     (b"1,2.5,caf\xe9", "bytes that do not decode as utf-8 at byte")],
    ids=["too-many-fields", "too-few-fields", "undecodable-bytes"],
)
def test_a_bad_row_fails_its_piece_naming_the_file_and_byte_range(
        tmp_path: Path, bad_line: bytes, problem: str) -> None:
    path, offset = bad_csv(tmp_path, bad_line)
    dataset = TabularDataset.from_delimited_files(str(path))
    pieces = list(dataset.iter_pieces(1000))

    results = read_each(dataset, pieces)

    [(piece, error)] = [(p, r) for p, r in zip(pieces, results, strict=True)
                        if isinstance(r, TableReadError)]
    assert piece.end is not None and piece.start <= offset < piece.end
    assert str(error).startswith(f"{path} (bytes {piece.start}-{piece.end}): ")
    assert problem in str(error) and not error.retryable
    if "decode" in problem:
        assert f"at byte {offset + len(bad_line) - 1} " in str(error)


def test_the_rows_of_a_piece_that_fails_can_still_be_counted(tmp_path: Path) -> None:
    path, _ = bad_csv(tmp_path, b"1,2.5,too,many")
    dataset = TabularDataset.from_delimited_files(str(path))
    pieces = list(dataset.iter_pieces(1000))

    counts = [count_rows_estimate(p, dataset.options) for p in pieces]

    assert sum(counts) == path.read_bytes().count(b"\n") - 1  # every line but the header
    for count, result in zip(counts, read_each(dataset, pieces), strict=True):
        assert isinstance(result, TableReadError) or count == len(result)


def test_an_empty_file_and_a_header_only_file_are_one_failing_piece_each(
        tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", make_rows(5))
    empty = tmp_path / "b.csv"
    empty.write_bytes(b"")
    header_only = write_csv(tmp_path / "c.csv", [])
    dataset = TabularDataset.from_delimited_files(str(tmp_path))
    pieces = list(dataset.iter_pieces(1000))

    results = read_each(dataset, pieces)

    assert [p.path for p in pieces] == [str(tmp_path / n) for n in ("a.csv", "b.csv", "c.csv")]
    assert len(results[0]) == 5
    assert str(results[1]) == f"{empty} (bytes 0-end, the whole file): the file is empty: " \
                              "no header, no rows"
    assert str(results[2]) == f"{header_only} (bytes 0-end, the whole file): the file has a " \
                              "header but no rows"
    assert not results[1].retryable and not results[2].retryable


def test_a_file_whose_columns_differ_fails_naming_both_files(tmp_path: Path) -> None:
    first = write_csv(tmp_path / "a.csv", make_rows(5))
    other = write_csv(tmp_path / "b.csv", make_rows(100), header=("id", "y", "s"))
    dataset = TabularDataset.from_delimited_files(str(tmp_path))
    pieces = list(dataset.iter_pieces(1000))

    results = read_each(dataset, pieces)

    assert len(results[0]) == 5 and len(results) > 2
    for error in results[1:]:  # every piece of b.csv, the first one and those after it
        assert isinstance(error, TableReadError) and not error.retryable
        assert str(error).startswith(f"{other} (bytes ")
        assert f"differ from those of {first}: ['id', 'x', 's']" in str(error)


def test_a_parquet_file_whose_columns_differ_fails_naming_both_files(tmp_path: Path) -> None:
    first = tmp_path / "a.parquet"
    make_parquet(first, rows=10)
    other = tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": [1, 2]}), other)
    dataset = TabularDataset.from_parquet_files(str(tmp_path))

    results = read_each(dataset, list(dataset.iter_pieces(10**6)))

    assert len(results[0]) == 10
    assert str(results[1]) == (f"{other} (all row groups): its columns ['id'] differ from "
                               f"those of {first}: ['id', 'x', 's']")


def test_a_corrupt_parquet_file_fails_its_piece_and_says_so_at_planning(tmp_path: Path) -> None:
    make_parquet(tmp_path / "a.parquet", rows=10)
    corrupt = tmp_path / "b.parquet"
    corrupt.write_bytes(b"PAR1 this is not a parquet file PAR1")
    dataset = TabularDataset.from_parquet_files(str(tmp_path))
    notes: list[str] = []

    pieces = list(dataset.iter_pieces(10**6, note=notes.append))
    results = read_each(dataset, pieces)

    assert pieces[1] == TablePiece(str(corrupt), "parquet", columns_from=str(tmp_path / "a.parquet"))
    assert len(notes) == 1 and notes[0].startswith(f"{corrupt}: cannot read its Parquet footer")
    assert str(results[1]).startswith(f"{corrupt} (all row groups): ")
    assert not results[1].retryable


def test_a_corrupt_row_group_fails_only_the_piece_that_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    make_parquet(path)
    column = pq.ParquetFile(path).metadata.row_group(5).column(0)
    data = bytearray(path.read_bytes())
    data[column.data_page_offset:column.data_page_offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    dataset = TabularDataset.from_parquet_files(str(path))

    pieces = list(dataset.iter_pieces(2 * max(group_sizes(path)) + 1))
    results = read_each(dataset, pieces)

    errors = [r for r in results if isinstance(r, TableReadError)]
    assert [str(e).split(":")[0] for e in errors] == [f"{path} (row groups 4-5)"]
    assert not errors[0].retryable
    assert sum(len(r) for r in results if not isinstance(r, TableReadError)) == 1000


def test_a_bad_json_line_and_an_empty_json_file_fail_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "a.jsonl"
    bad.write_text('{"id": 1}\n{"id": 2,\n')
    empty = tmp_path / "b.jsonl"
    empty.write_text("\n")
    dataset = TabularDataset.from_json_lines_files(str(tmp_path))

    results = read_each(dataset, list(dataset.iter_pieces(1000)))

    assert str(results[0]).startswith(f"{bad} (bytes 0-end, the whole file): JSON parse error")
    assert str(results[1]) == f"{empty} (bytes 0-end, the whole file): the file is empty: no rows"


def test_a_file_gone_after_planning_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", make_rows(5))
    dataset = TabularDataset.from_delimited_files(str(path))
    [piece] = dataset.iter_pieces(1000)
    path.unlink()

    with pytest.raises(TableReadError, match=f"^{path} ") as info:
        read_piece(piece, dataset.options)
    assert not info.value.retryable


def test_a_read_error_survives_crossing_a_process_boundary() -> None:
    error = TableReadError("/data/a.csv", "bytes 0-10", "bad row", retryable=True)

    copy = pickle.loads(pickle.dumps(error))

    assert str(copy) == "/data/a.csv (bytes 0-10): bad row"
    assert (copy.path, copy.where, copy.retryable) == ("/data/a.csv", "bytes 0-10", True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"separator": ",,"}, "separator = ',,'"), ({"quotechar": ","}, "quotechar = ','"),
     ({"encoding": "no-such-codec"}, "encoding = 'no-such-codec'"),
     ({"multiline": "yes"}, "multiline = 'yes'")],
)
def test_bad_reading_options_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        TabularDataset.from_delimited_files("/data/a.csv", **kwargs)


def test_an_unknown_format_is_a_clear_error_naming_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"format = 'xml': must be one of \('csv', 'parquet', "
                                         r"'jsonl'\)"):
        TabularDataset(paths=["/data/a.xml"], format="xml")
    with pytest.raises(InputError, match="format = 'xml'"):
        TabularDataset.from_format("xml", "/data/a.xml")


@pytest.mark.parametrize(("fmt", "constructor"), [
    ("csv", TabularDataset.from_delimited_files), ("parquet", TabularDataset.from_parquet_files),
    ("jsonl", TabularDataset.from_json_lines_files)])
def test_a_format_name_makes_the_dataset_of_its_constructor_with_default_options(
        fmt: str, constructor) -> None:
    assert TabularDataset.from_format(fmt, "/data/t", name="t") == constructor("/data/t",
                                                                               name="t")


# -- stores, compression, descriptors ----------------------------------------------------------


@pytest.fixture
def memory_folder():
    fs = fsspec.filesystem("memory")
    folder = f"/tabular-{uuid.uuid4().hex[:8]}"
    yield fs, folder
    fs.rm(folder, recursive=True)


def test_inputs_on_a_store_are_read_by_range_and_row_group(memory_folder, tmp_path: Path) -> None:
    fs, folder = memory_folder
    local = tmp_path
    csv_bytes = write_csv(local / "a.csv", make_rows(300)).read_bytes()
    frame = make_parquet(local / "b.parquet")
    fs.pipe(f"{folder}/csv/a.csv", csv_bytes)
    fs.pipe(f"{folder}/pq/b.parquet", (local / "b.parquet").read_bytes())
    fs.pipe(f"{folder}/json/c.jsonl", b'{"id": 1}\n{"id": 2}\n' * 100)

    csv_pieces, csv_got = read_all(
        TabularDataset.from_delimited_files(f"memory://{folder}/csv"), 1000)
    pq_pieces, pq_got = read_all(
        TabularDataset.from_parquet_files(f"memory://{folder}/pq/*.parquet"), 2000)
    json_pieces, json_got = read_all(
        TabularDataset.from_json_lines_files(f"memory://{folder}/json/c.jsonl"), 500)

    assert len(csv_pieces) > 5 and len(pq_pieces) > 2 and len(json_pieces) > 2
    assert csv_pieces[0].path == f"memory://{folder}/csv/a.csv"
    pd.testing.assert_frame_equal(csv_got, pd.read_csv(local / "a.csv"))
    pd.testing.assert_frame_equal(pq_got, frame)
    assert json_got["id"].tolist() == [1, 2] * 100


def test_a_compressed_csv_is_read_whole(tmp_path: Path) -> None:
    plain = write_csv(tmp_path / "plain.csv", make_rows(300))
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    dataset = TabularDataset.from_delimited_files(str(path))
    notes: list[str] = []

    pieces, got = read_all(dataset, 500, notes)

    assert pieces == [TablePiece(str(path), "csv")]
    assert notes == [f"{path} is compressed: read whole, not split"]
    pd.testing.assert_frame_equal(got, pd.read_csv(path))


def test_descriptors_round_trip_through_json(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", partition_rows(300), header=("region", "year", "value"))
    write_csv(tmp_path / "b.csv", partition_rows(30), header=("region", "year", "value"))
    dataset = TabularDataset.from_delimited_files(str(tmp_path), separator=",",
                                                  storage_options={"key": "secret"})
    pieces = list(dataset.iter_pieces(1000)) + list(
        dataset.iter_partition_pieces(["region", "year"], scan_bytes=1000))

    copies = [TablePiece.from_dict(json.loads(json.dumps(p.to_dict()))) for p in pieces]
    described = json.loads(json.dumps(dataset.to_dict()))

    assert copies == pieces
    assert "secret" not in json.dumps(described)
    assert TabularDataset.from_dict(described, {"key": "secret"}) == dataset


@pytest.mark.parametrize("cut", [7, 64, 1000])
def test_counted_rows_of_the_pieces_of_a_file_with_quoted_line_breaks_sum_to_its_rows(
        tmp_path: Path, cut: int) -> None:
    path = tmp_path / "t.csv"
    rows = [f'{i},"a\nb ""{i}""\r\n\n",x' if i % 3 else f"{i},plain,y" for i in range(300)]
    path.write_text("id,text,z\n" + "\n".join(rows) + "\n\n")
    dataset = TabularDataset.from_delimited_files(str(path))
    size = path.stat().st_size
    pieces = [TablePiece(str(path), "csv", start, min(start + cut, size))
              for start in range(0, size, cut)]

    counts = [count_rows_estimate(p, dataset.options) for p in pieces]

    assert len(pd.read_csv(path)) == 300
    assert sum(counts) == 300
