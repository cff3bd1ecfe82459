"""Tabular inputs through the whole engine: DataFrame mini-batches, results, bad rows."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from support import CLI, output_lines

from airflow_parallel_run import TabularDataset
from airflow_parallel_run.errors import ConfigError
from airflow_parallel_run.results import read_record
from airflow_parallel_run.storage import LocalLocation

SCORE = """
import os
def run(mini_batch, context):
    with open(os.path.join(MARKS, f"batch-{context.minibatch_index}"), "w") as f:
        f.write(str(len(mini_batch)))
    out = mini_batch[["id"]].copy()
    out["double"] = mini_batch["value"] * 2
    return out
"""


def write_csvs(folder, files=3, rows=400):
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for f in range(files):
        frame = pd.DataFrame({
            "id": range(f * rows, (f + 1) * rows),
            "value": [i % 97 for i in range(rows)],
            "text": [f'row "{i}", with, commas' for i in range(rows)],
        })
        frame.to_csv(folder / f"part{f}.csv", index=False)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("size", ["1KB", "4KB", "1MB"])
def test_every_csv_row_once_in_input_order_with_a_dataframe_result(runner, size):
    whole = write_csvs(runner.inputs)
    result = runner.run(runner.script(SCORE),
                        inputs=[TabularDataset.from_delimited_files(str(runner.inputs))],
                        mini_batch_size=size, process_count_per_node=2,
                        append_row_dataframe_header=True, append_row_separator=",")
    assert result.success, result.reason
    lines = output_lines(runner.output)
    assert lines[0] == "id,double"
    assert lines[1:] == [f"{i},{v * 2}" for i, v in zip(whole["id"], whole["value"], strict=True)]
    assert result.totals.succeeded_items == len(whole)
    batches = len(runner.marks_named("batch-"))
    assert batches == result.mini_batch_count
    if size == "1MB":
        assert batches == 3  # a file smaller than the size is one mini-batch


def test_parquet_row_groups_and_json_lines(runner, tmp_path):
    frame = pd.DataFrame({"id": range(1000), "value": range(1000)})
    parquet = tmp_path / "t.parquet"
    frame.to_parquet(parquet, row_group_size=100)
    result = runner.run(runner.script(SCORE),
                        inputs=[TabularDataset.from_parquet_files(str(parquet))],
                        mini_batch_size=1024, process_count_per_node=2)
    assert result.success and result.mini_batch_count > 1
    assert output_lines(runner.output) == [f"{i} {i * 2}" for i in range(1000)]

    jsonl = tmp_path / "t.jsonl"
    frame.to_json(jsonl, orient="records", lines=True)
    runner.output = tmp_path / "out-jsonl"
    result = runner.run(runner.script(SCORE),
                        inputs=[TabularDataset.from_json_lines_files(str(jsonl))],
                        mini_batch_size="4KB")
    assert result.success and result.mini_batch_count > 1
    assert output_lines(runner.output) == [f"{i} {i * 2}" for i in range(1000)]


def test_partition_keys_give_one_mini_batch_per_key_combination(runner, tmp_path):
    frame = pd.DataFrame({"store": ["a", "b", "a", "c", "b", "a"], "day": [1, 1, 1, 2, 1, 2],
                          "value": range(6)})
    frame.to_csv(tmp_path / "sales.csv", index=False)
    script = runner.script("""
    def run(mini_batch, context):
        key = context.partition_key_value
        assert set(mini_batch["store"]) == {key["store"]} and set(mini_batch["day"]) == {key["day"]}
        return [f"{key['store']}-{key['day']} rows={len(mini_batch)} sum={mini_batch['value'].sum()}"]
    """)
    result = runner.run(script, inputs=[TabularDataset.from_delimited_files(str(tmp_path / "sales.csv"))],
                        partition_keys=["store", "day"])
    assert result.mini_batch_count == 4
    assert output_lines(runner.output) == ["a-1 rows=2 sum=2", "b-1 rows=2 sum=5",
                                           "c-2 rows=1 sum=3", "a-2 rows=1 sum=5"]
    # one result per partition of several rows: the rest count as failed items
    assert result.totals.succeeded_items == 4 and result.totals.failed_items == 2


def test_a_bad_row_fails_its_mini_batch_once_names_file_and_range_and_the_rest_goes_on(runner):
    runner.inputs.mkdir()
    (runner.inputs / "a.csv").write_text("id,value\n" + "".join(f"{i},{i}\n" for i in range(50)))
    (runner.inputs / "b.csv").write_text("id,value\n1,2\n3,4,5\n6,7\n")
    result = runner.run(runner.script(SCORE),
                        inputs=[TabularDataset.from_delimited_files(str(runner.inputs))],
                        mini_batch_size="1KB", run_max_try=3)
    assert result.success  # no threshold
    assert result.totals.failed_mini_batches == 1
    assert result.totals.failed_items == 3  # the three rows of b.csv
    record, _ = read_record(LocalLocation(str(runner.output)), 1)
    assert (record.status, record.tries) == ("failed", 1)  # a retry cannot help a bad file
    errors = (runner.output / "logs/user/error.txt").read_text()
    assert "b.csv" in errors and "bytes 0-" in errors
    assert output_lines(runner.output) == [f"{i} {i * 2}" for i in range(50)]


def test_a_row_count_is_not_a_size_in_bytes(runner):
    write_csvs(runner.inputs, files=1, rows=10)
    with pytest.raises(ConfigError) as error:
        runner.run(runner.script(SCORE), inputs=[TabularDataset.from_delimited_files(str(runner.inputs))],
                   mini_batch_size=10)
    assert "mini_batch_size = 10" in str(error.value) and "bytes" in str(error.value)


def test_partition_keys_are_for_tables_only(runner):
    runner.inputs.mkdir()
    (runner.inputs / "a.txt").write_text("a")
    with pytest.raises(ConfigError) as error:
        runner.run(runner.script("def run(mb):\n    return mb\n"), partition_keys=["x"])
    assert "partition_keys" in str(error.value) and "tabular" in str(error.value)


def test_cli_with_a_csv_input(runner):
    whole = write_csvs(runner.inputs, files=2, rows=100)
    script = runner.script(SCORE)
    done = subprocess.run(CLI + [str(script), "--input", str(runner.inputs), "--output",
                                 str(runner.output), "--input-type", "csv",
                                 "--mini-batch-size", "2KB", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(output_lines(runner.output)) == len(whole)


@pytest.mark.parametrize("separator", [" ", ",", "\t", "|"])
def test_dataframe_results_are_written_as_pandas_to_csv_writes_them(separator):
    import numpy as np

    from airflow_parallel_run.engine.worker import _dataframe_lines

    frames = [
        pd.DataFrame({"id": [1, -2, 2**62], "small": np.array([1, 2, 255], dtype="uint8")}),
        pd.DataFrame({"id": [1, 2], "score": [0.1, 100.0], "name": ["a b", 'say "x"']}),
        pd.DataFrame({"id": pd.array([1, None], dtype="Int64")}),
        pd.DataFrame({"id": [3, 4]}, index=[10, 11]),
    ]
    for frame in frames:
        expected = frame.to_csv(header=False, index=False, sep=separator, lineterminator="\n")
        assert _dataframe_lines(frame, separator) == expected.encode()


THREADS = """
import os
import pyarrow
def run(mini_batch):
    with open(os.path.join(MARKS, f"threads-{os.getpid()}"), "w") as f:
        f.write(str(pyarrow.cpu_count()))
    return mini_batch[["id"]]
"""


@pytest.mark.parametrize("ppn, env, expected", [
    (2, {}, lambda cores: max(1, cores // 2)),
    (1, {}, lambda cores: cores),
    (2, {"OMP_NUM_THREADS": "3"}, lambda cores: 3),  # the user's choice wins
])
def test_workers_share_the_cores_among_their_arrow_threads(runner, monkeypatch, ppn, env,
                                                          expected):
    import os

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    write_csvs(runner.inputs, files=4, rows=50)
    result = runner.run(runner.script(THREADS),
                        inputs=[TabularDataset.from_delimited_files(str(runner.inputs))],
                        mini_batch_size="1MB", process_count_per_node=ppn,
                        environment_variables=env)
    assert result.success, result.reason
    counts = {p.read_text() for p in runner.marks_named("threads-")}
    assert counts == {str(expected(len(os.sched_getaffinity(0))))}


def test_failed_items_of_a_split_csv_with_quoted_line_breaks_are_its_rows(runner):
    # The planner looks for quoted line breaks only in a file's first 256 KB: here they come
    # later, so the file is split; pieces cut inside a quoted field fail to read, the others
    # run and fail. Either way every row counts as one failed item, never a line.
    runner.inputs.mkdir()
    plain = "".join(f"{i},plain text of row {i}\n" for i in range(12_000))
    quoted = "".join(f'{i},"two\nlines ""{i}"""\n' for i in range(12_000, 18_000))
    (runner.inputs / "t.csv").write_text("id,text\n" + plain + quoted)
    result = runner.run(runner.script("def run(mini_batch):\n    raise ValueError('no')\n"),
                        inputs=[TabularDataset.from_delimited_files(str(runner.inputs))],
                        mini_batch_size="32KB", run_max_try=1, process_count_per_node=2)
    assert result.mini_batch_count > 10
    assert result.totals.failed_items == 18_000


def test_a_finished_table_job_gives_its_row_count_as_planned(runner):
    write_csvs(runner.inputs, files=2, rows=300)
    result = runner.run(runner.script(SCORE),
                        inputs=[TabularDataset.from_delimited_files(str(runner.inputs))],
                        mini_batch_size="4KB")
    assert result.success, result.reason
    assert result.item_count == 600
    assert "items: 600 planned, 600 succeeded, 0 failed\n" in \
        (runner.output / "logs/job_result.txt").read_text()
