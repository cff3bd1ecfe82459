"""Bad input met head-on: links, FIFOs, odd results, a full or read-only disk. Each gives a
clear line naming the thing and the rule, never a hang, a traceback or silent loss."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support import CLI, make_files

from airflow_parallel_run import FileDataset
from airflow_parallel_run.errors import InputError


def listed(dataset: FileDataset) -> tuple[list[str], list[str]]:
    notes: list[str] = []
    paths = [os.path.basename(item.path) for item in dataset.iter_items(note=notes.append)]
    return paths, notes


# -- links and files that are not regular ------------------------------------------------------


def test_a_link_loop_is_skipped_with_a_note_and_never_followed(tmp_path):
    make_files(tmp_path / "in", 2)
    (tmp_path / "in" / "loop").symlink_to(tmp_path / "in")
    (tmp_path / "in" / "self").symlink_to(tmp_path / "in" / "self")
    dataset = FileDataset.from_files(str(tmp_path / "in"))
    assert [os.path.basename(i.path) for i in dataset.iter_items()] == ["f0000.txt", "f0001.txt"]
    paths, notes = listed(dataset)
    assert paths == ["f0000.txt", "f0001.txt"]
    assert any("loop" in n and "never followed" in n for n in notes), notes
    assert any("self" in n and "symbolic links" in n for n in notes), notes


def test_a_link_outside_the_input_is_followed_unless_told_not_to(tmp_path):
    make_files(tmp_path / "elsewhere", 1, prefix="out")
    make_files(tmp_path / "in", 1)
    (tmp_path / "in" / "link").symlink_to(tmp_path / "elsewhere")
    assert listed(FileDataset.from_files(str(tmp_path / "in")))[0] == ["f0000.txt", "out0000.txt"]
    paths, notes = listed(FileDataset.from_files(str(tmp_path / "in"), follow_links_outside=False))
    assert paths == ["f0000.txt"]
    assert any("link" in n and "outside the input" in n for n in notes), notes


def test_a_fifo_in_a_folder_is_skipped_with_a_note(tmp_path):
    make_files(tmp_path / "in", 1)
    os.mkfifo(tmp_path / "in" / "pipe.txt")
    for stats in (True, False):
        notes: list[str] = []
        items = list(FileDataset.from_files(str(tmp_path / "in")).iter_items(stats, notes.append))
        assert [os.path.basename(i.path) for i in items] == ["f0000.txt"]
        assert any("pipe.txt" in n and "not a regular file" in n for n in notes), notes


def test_a_fifo_named_as_the_input_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InputError, match="pipe.*not a regular file"):
        list(FileDataset.from_files(str(tmp_path / "pipe")).iter_items())


def test_a_fifo_in_a_table_folder_does_not_hang_the_command(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("a,b\n1,2\n")
    os.mkfifo(tmp_path / "in" / "pipe.csv")
    (tmp_path / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    proc = subprocess.run([*CLI, str(tmp_path / "score.py"), "--input", str(tmp_path / "in"),
                           "--input-type", "csv", "--output", str(tmp_path / "out"), "--quiet"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "parallel_run_step.txt").read_text() == "1 2\n"
    master = (tmp_path / "out" / "logs/sys/master_role.txt").read_text()
    assert "pipe.csv' skipped: not a regular file" in master


def test_the_command_skips_links_outside_the_input_with_no_follow_outside(tmp_path):
    make_files(tmp_path / "elsewhere", 1, prefix="out")
    make_files(tmp_path / "in", 1)
    (tmp_path / "in" / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    proc = subprocess.run([*CLI, str(tmp_path / "score.py"), "--input", str(tmp_path / "in"),
                           "--output", str(tmp_path / "out"), "--no-follow-outside", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "parallel_run_step.txt").read_text() == f"{tmp_path}/in/f0000.txt\n"


# -- results that cannot be one line each ------------------------------------------------------


def test_a_result_with_a_line_break_fails_that_item_and_names_it(runner):
    make_files(runner.inputs, 3)
    result = runner.run(runner.script("""
        import os
        def run(mini_batch):
            return [os.path.basename(p) + ("\\nmore" if "f0001" in p else "") for p in mini_batch]
    """))
    assert (result.totals.succeeded_items, result.totals.failed_items) == (2, 1)
    assert (runner.output / "parallel_run_step.txt").read_text() == "f0000.txt\nf0002.txt\n"
    errors = (runner.output / "logs/user/error.txt").read_text()
    assert "f0001.txt'): 'f0001.txt\\nmore'" in errors and "line break" in errors


def test_a_dataframe_result_with_a_line_break_stays_valid_csv(runner):
    import csv

    make_files(runner.inputs, 2)
    runner.run(runner.script("""
        import pandas as pd
        def run(mini_batch):
            return pd.DataFrame({"a": ["x\\ny", "z"], "b": [1, 2]})
    """), append_row_separator=",")
    with open(runner.output / "parallel_run_step.txt", newline="") as handle:
        assert list(csv.reader(handle)) == [["x\ny", "1"], ["z", "2"]]


def test_a_pandas_series_result_is_its_list_of_values(runner):
    make_files(runner.inputs, 3)
    result = runner.run(runner.script("""
        import os
        import pandas as pd
        def run(mini_batch):
            return pd.Series([os.path.basename(p) for p in mini_batch])
    """))
    assert result.totals.succeeded_items == 3
    assert (runner.output / "parallel_run_step.txt").read_text().split() == [
        "f0000.txt", "f0001.txt", "f0002.txt"]


def test_a_result_of_a_type_that_cannot_work_fails_once_naming_the_type(runner):
    make_files(runner.inputs, 2)
    result = runner.run(runner.script("""
        def run(mini_batch):
            return (p for p in mini_batch)
    """), run_max_try=3)
    assert result.totals.failed_mini_batches == 1
    tries = (runner.output / "logs/sys/job_report/processed_mini_batches.csv").read_text()
    assert len(tries.splitlines()) == 2  # the header and one try: not retried
    assert "run() returned generator" in (runner.output / "logs/user/error.txt").read_text()


# -- partition mini-batches --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_partition_mini_batches_come_in_order_of_first_appearance(tmp_path, fmt):
    import json

    from airflow_parallel_run.inputs.tabular import TabularDataset

    keys = [("b", 2.5), ("b", 1.5), ("a", None), ("b", None), ("a", 1.5), ("a", 2.5)]
    rows = [keys[i] for i in (0, 1, 0, 2, 3, 1, 4, 2, 5, 3)]
    path = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        path.write_text("s,k\n" + "".join(f"{s},{'' if k is None else k}\n" for s, k in rows))
        dataset = TabularDataset.from_delimited_files(str(path))
    else:
        path.write_text("".join(json.dumps({"s": s, "k": k}) + "\n" for s, k in rows))
        dataset = TabularDataset.from_json_lines_files(str(path))
    pieces = dataset.iter_partition_pieces(["s", "k"])
    assert [(p.partition_key_value["s"], p.partition_key_value["k"]) for p in pieces] == keys


# -- a full or read-only output disk -----------------------------------------------------------


@pytest.fixture
def mount_tmpfs(tmp_path):
    """A small tmpfs of its own (root only): a disk that fills up, or is read-only."""
    mounted = []

    def mount(size: str, *flags: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *flags]),
                               "tmpfs", str(where)], capture_output=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


CAT = "def run(mini_batch):\n    return [open(p).read() for p in mini_batch]\n"


def test_a_full_disk_fails_the_job_in_one_line_and_leaves_job_result_and_no_temp_file(
        tmp_path, mount_tmpfs):
    disk = mount_tmpfs("1m")
    (tmp_path / "in").mkdir()
    for i in range(100):
        (tmp_path / "in" / f"f{i:03d}.txt").write_text(f"{i:06d}" * 1000)  # 6 KB each
    (tmp_path / "score.py").write_text(CAT)
    proc = subprocess.run([*CLI, str(tmp_path / "score.py"), "--input", str(tmp_path / "in"),
                           "--output", str(disk / "out"), "--quiet",
                           "--resource-monitor-interval", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "parallel_run_step.txt': No space left on device" in proc.stdout
    job_result = (disk / "out/logs/job_result.txt").read_text()
    assert job_result.startswith("FAILED\n") and "No space left on device" in job_result
    assert not list(disk.rglob("*.tmp")), list(disk.rglob("*.tmp"))


def test_a_read_only_output_folder_is_refused_in_one_line(tmp_path, mount_tmpfs):
    disk = mount_tmpfs("64k", "ro")
    make_files(tmp_path / "in", 1)
    (tmp_path / "score.py").write_text(CAT)
    proc = subprocess.run([*CLI, str(tmp_path / "score.py"), "--input", str(tmp_path / "in"),
                           "--output", str(disk), "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"parallel-run: error: output {str(disk)!r}: cannot write "
                                   "in the folder (Read-only file system)")
