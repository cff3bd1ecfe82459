"""``parallel-run`` as a user meets it: a real subprocess, real files, real entry scripts.

Bad usage or configuration exits 2 with a short reason and no traceback, and touches no
output; an empty input is not an error; a good run prints a summary and exits 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "airflow_parallel_run"]
OK_SCRIPT = """
import os

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""


def parallel_run(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Path]:
    """An entry script that works, an input folder of three files, an output folder path."""
    script = write(tmp_path / "score.py", OK_SCRIPT)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"f{i}.txt").write_text(f"item {i}\n")
    return {"tmp": tmp_path, "script": script, "in": inputs, "out": tmp_path / "out"}


def assert_usage_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, a short stderr without a traceback naming every one of ``names``."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, f"{len(lines)} lines on stderr:\n{err}"
    for name in names:
        assert name in err, f"{name!r} not in stderr:\n{err}"
    return err


def assert_untouched(out: Path) -> None:
    assert not out.exists(), f"a refused job created {out}: {sorted(os.listdir(out))}"


def tree(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []


def assert_no_debris(out: Path, *command: object) -> None:
    """A refused job may have made the output folder, but leaves no file in it, and running
    it again does not pile up more leftovers (e.g. a half-written plan per attempt)."""
    files = [p for p in tree(out) if (out / p).is_file()]
    assert not files, f"a refused job left files in {out}: {files}"
    before = tree(out)
    assert_usage_error(parallel_run(*command))
    assert tree(out) == before, f"leftovers pile up in {out}: {before} -> {tree(out)}"


# -- inputs -------------------------------------------------------------------------------------


def test_missing_input_folder(job):
    missing = job["tmp"] / "no_such_folder"
    command = (job["script"], "--input", missing, "--output", job["out"])
    assert_usage_error(parallel_run(*command), str(missing))
    assert_no_debris(job["out"], *command)


def test_glob_matching_nothing(job):
    pattern = str(job["in"] / "*.csv")
    command = (job["script"], "--input", pattern, "--output", job["out"])
    assert_usage_error(parallel_run(*command), pattern)
    assert_no_debris(job["out"], *command)


def test_second_input_matching_nothing_is_named(job):
    missing = job["tmp"] / "nope"
    proc = parallel_run(job["script"], "--input", job["in"], "--input", missing,
                        "--output", job["out"])
    assert_usage_error(proc, str(missing))


def test_empty_folder_is_nothing_to_do(job):
    empty = job["tmp"] / "empty"
    empty.mkdir()
    proc = parallel_run(job["script"], "--input", empty, "--output", job["out"])
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    said = (proc.stdout + proc.stderr).lower()
    assert "empty" in said or "nothing to do" in said, said
    result = job["out"] / "parallel_run_step.txt"
    assert result.is_file()
    assert result.read_bytes() == b""


# -- entry script -----------------------------------------------------------------------------


def test_entry_script_missing(job):
    proc = parallel_run(job["tmp"] / "nowhere.py", "--input", job["in"], "--output", job["out"])
    assert_usage_error(proc, "nowhere.py")
    assert_untouched(job["out"])


def test_entry_script_with_syntax_error(job):
    script = write(job["tmp"] / "broken.py", """
        import os

        def run(mini_batch:
            return mini_batch
    """)
    proc = parallel_run(script, "--input", job["in"], "--output", job["out"])
    err = assert_usage_error(proc, "broken.py")
    assert "line 4" in err, err  # the dedented text starts with a blank line
    assert_untouched(job["out"])


def test_entry_script_with_null_byte(job):
    script = job["tmp"] / "nul.py"
    script.write_bytes(b"def run(mini_batch):\n    return mini_batch\n\x00\n")
    proc = parallel_run(script, "--input", job["in"], "--output", job["out"])
    assert_usage_error(proc, "nul.py")


def test_entry_script_without_run(job):
    script = write(job["tmp"] / "norun.py", """
        def init():
            pass

        def runner(mini_batch):
            return mini_batch
    """)
    proc = parallel_run(script, "--input", job["in"], "--output", job["out"])
    assert_usage_error(proc, "norun.py", "run()")
    assert_untouched(job["out"])


def test_entry_script_that_is_a_folder(job):
    folder = job["tmp"] / "pkg.py"
    folder.mkdir()
    proc = parallel_run(folder, "--input", job["in"], "--output", job["out"])
    assert_usage_error(proc, "pkg.py")


def test_a_script_folder_of_more_than_10000_files_is_refused(job):
    # in memory where it can be: 10,000 files on a busy disk take seconds
    folder = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else job["tmp"]))
    try:
        script = write(folder / "score.py", OK_SCRIPT)
        for i in range(10_001):
            os.close(os.open(folder / f"{i}", os.O_CREAT | os.O_WRONLY))
        proc = parallel_run(script, "--input", job["in"], "--output", job["out"])
        assert_usage_error(proc, "source_directory", str(folder), "10000 files")
    finally:
        shutil.rmtree(folder)


def test_source_directory_missing(job):
    proc = parallel_run("score.py", "--source-directory", job["tmp"] / "no_src",
                        "--input", job["in"], "--output", job["out"])
    assert_usage_error(proc, "source_directory", "no_src")


def test_entry_script_relative_to_source_directory(job):
    src = job["tmp"] / "src"
    write(src / "inner.py", OK_SCRIPT)
    proc = parallel_run("inner.py", "--source-directory", src,
                        "--input", job["in"], "--output", job["out"], cwd=job["tmp"])
    assert proc.returncode == 0, proc.stderr
    proc = parallel_run("missing.py", "--source-directory", src,
                        "--input", job["in"], "--output", job["tmp"] / "out2", cwd=job["tmp"])
    assert_usage_error(proc, "missing.py")


# -- configuration rules through the options ------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, names",
    [
        ("--node-count", "0", ["node_count", "0", ">= 1"]),
        ("--node-count", "-3", ["node_count", "-3", ">= 1"]),
        ("--process-count-per-node", "0", ["process_count_per_node", "0", ">= 1"]),
        ("--run-max-try", "0", ["run_max_try", "0", ">= 1"]),
        ("--error-threshold", "-2", ["error_threshold", "-2", ">= -1"]),
        ("--allowed-failed-count", "-2", ["allowed_failed_count", "-2", ">= -1"]),
        ("--allowed-failed-percent", "101", ["allowed_failed_percent", "101", "100"]),
        ("--allowed-failed-percent", "-1", ["allowed_failed_percent", "-1", "100"]),
        ("--mini-batch-size", "10MB", ["mini_batch_size", "10MB", "tabular"]),
        ("--mini-batch-size", "abc", ["mini_batch_size", "abc"]),
        ("--mini-batch-size", "0", ["mini_batch_size", "0", ">= 1"]),
        ("--mini-batch-size", "{{ params.n }}", ["mini_batch_size", "not rendered"]),
        ("--append-row-file-name", "a/b.txt", ["append_row_file_name", "a/b.txt"]),
        ("--append-row-file-name", "..", ["append_row_file_name", ".."]),
        ("--append-row-separator", "", ["append_row_separator"]),
        ("--append-row-separator", "\n", ["append_row_separator", "line break"]),
        ("--append-row-separator", '"', ["append_row_separator", "double quote"]),
        ("--run-invocation-timeout", "0", ["run_invocation_timeout", "0", "> 0"]),
        ("--run-invocation-timeout", "-5", ["run_invocation_timeout", "-5", "> 0"]),
        ("--init-timeout", "0", ["init_timeout", "0", "> 0"]),
        ("--resource-monitor-interval", "-1", ["resource_monitor_interval", "-1", ">= 0"]),
        ("--partition-keys", "", ["partition_keys"]),
        ("--environment-variable", "NOVALUE", ["NOVALUE", "NAME=VALUE"]),
        # argparse's own refusals (a choice or a number it cannot read) are fine too:
        ("--logging-level", "LOUD", ["logging-level", "LOUD"]),
        ("--output-action", "everything", ["output-action", "everything"]),
        ("--node-count", "two", ["node-count", "two"]),
        ("--error-threshold", "1.5", ["error-threshold", "1.5"]),
        ("--input-type", "xml", ["input-type", "xml"]),
    ],
)
def test_config_rule_broken_through_an_option(job, option, value, names):
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"], option, value)
    assert_usage_error(proc, *names)
    assert_untouched(job["out"])


def test_an_output_file_name_the_job_uses_is_one_line_and_exit_2(job):
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"],
                        "--append-row-file-name", ".parallel_run")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "parallel-run: error: append_row_file_name = '.parallel_run': the job keeps its own "
        "files under that name (logs/, .parallel_run*); choose another file name"]
    assert_untouched(job["out"])


@pytest.mark.parametrize("option", ["--run-invocation-timeout", "--init-timeout",
                                    "--resource-monitor-interval"])
def test_nan_seconds_are_refused(job, option):
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"], option, "nan")
    assert_usage_error(proc, option.lstrip("-").replace("-", "_"))


def test_several_valid_options_run(job):
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"],
                        "--mini-batch-size", "2", "--error-threshold", "0",
                        "--allowed-failed-count", "0", "--allowed-failed-percent", "0",
                        "--node-count", "2", "--process-count-per-node", "2",
                        "--run-max-try", "1", "--run-invocation-timeout", "30",
                        "--init-timeout", "30", "--logging-level", "DEBUG",
                        "--append-row-file-name", "res.txt", "--resource-monitor-interval", "0",
                        "--environment-variable", "A=1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (job["out"] / "res.txt").read_text().split() == ["f0.txt", "f1.txt", "f2.txt"]


# -- arguments and side inputs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, name",
    [
        (["--mini_batch_size", "3"], "mini_batch_size"),
        (["--node-count=3"], "node_count"),
        (["--model", "m", "--run_max_try", "2"], "run_max_try"),
    ],
)
def test_reserved_argument_name(job, args, name):
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"], "--", *args)
    assert_usage_error(proc, name, "reserved")
    assert_untouched(job["out"])


def test_script_arguments_reach_the_script(job):
    script = write(job["tmp"] / "args.py", """
        import argparse

        def init():
            global ARGS
            parser = argparse.ArgumentParser()
            parser.add_argument("--model")
            ARGS, _ = parser.parse_known_args()

        def run(mini_batch):
            return [ARGS.model for _ in mini_batch]
    """)
    proc = parallel_run(script, "--input", job["in"], "--output", job["out"], "--quiet",
                        "--", "--model", "m.pkl")
    assert proc.returncode == 0, proc.stderr
    assert (job["out"] / "parallel_run_step.txt").read_text().split() == ["m.pkl"] * 3


@pytest.mark.parametrize("value", ["model", "=x"])
def test_side_input_without_name(job, value):
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"],
                        "--side-input", value)
    assert_usage_error(proc, "--side-input", value)
    assert_untouched(job["out"])


def test_side_input_that_does_not_exist(job):
    missing = job["tmp"] / "no_model"
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"],
                        "--side-input", f"model={missing}")
    assert_usage_error(proc, "model", str(missing))


def test_a_side_input_reaches_the_script_by_its_name(job):
    (job["tmp"] / "labels.txt").write_text("cat")
    script = write(job["tmp"] / "side.py", """
        from airflow_parallel_run import EntryScript

        def run(mini_batch):
            return [open(EntryScript().side_inputs["labels"]).read() for _ in mini_batch]
    """)
    proc = parallel_run(script, "--input", job["in"], "--output", job["out"], "--quiet",
                        "--side-input", f"labels={job['tmp'] / 'labels.txt'}")
    assert proc.returncode == 0, proc.stderr
    assert (job["out"] / "parallel_run_step.txt").read_text().split() == ["cat"] * 3


# -- table options ------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "options"), [
    (["--csv-separator", ";"], {"separator": ";"}),
    (["--csv-separator", "\\t"], {"separator": "\t"}),
    (["--no-csv-header"], {"header": False}),
    (["--multiline"], {"multiline": True}),
    (["--no-multiline"], {"multiline": False}),
    (["--encoding", "latin-1"], {"encoding": "iso8859-1"}),
])
def test_csv_options_reach_the_dataset(args, options):
    from airflow_parallel_run.cli import build_parser, make_inputs

    ns = build_parser().parse_args(["s.py", "--input", "a.csv", "--output", "o",
                                    "--input-type", "csv", *args])
    (dataset,) = make_inputs(ns)
    assert {name: dataset.options[name] for name in options} == options


def test_csv_options_read_a_semicolon_file_without_header(job):
    (job["tmp"] / "t.csv").write_text("1;2\n3;4\n")
    script = write(job["tmp"] / "rows.py", """
        def run(mini_batch):
            return mini_batch
    """)
    proc = parallel_run(script, "--input", job["tmp"] / "t.csv", "--output", job["out"],
                        "--input-type", "csv", "--csv-separator", ";", "--no-csv-header",
                        "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (job["out"] / "parallel_run_step.txt").read_text() == "1 2\n3 4\n"


@pytest.mark.parametrize(("args", "option"), [
    (["--csv-separator", ";"], "--csv-separator"),
    (["--input-type", "parquet", "--encoding", "latin-1"], "--encoding"),
    (["--input-type", "jsonl", "--multiline"], "--multiline"),
    (["--input-type", "csv", "--no-follow-outside"], "--no-follow-outside"),
])
def test_a_table_option_for_another_input_type_is_refused(job, args, option):
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"], *args)
    assert_usage_error(proc, option, "only for --input-type")
    assert_untouched(job["out"])


def test_inputs_that_look_like_tables_taken_as_files_get_a_hint(job):
    (job["tmp"] / "t.csv").write_text("a\n1\n")
    proc = parallel_run(job["script"], "--input", job["tmp"] / "t.csv", "--output", job["out"],
                        "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "--input-type csv" in proc.stderr and "one item" in proc.stderr, proc.stderr
    assert (job["out"] / "parallel_run_step.txt").read_text() == "t.csv\n"


def test_help_says_the_input_type_is_files_by_default():
    assert "files (the default" in " ".join(parallel_run("--help").stdout.split())


# -- output location ------------------------------------------------------------------------------


def test_output_that_is_a_file(job):
    taken = job["tmp"] / "taken"
    taken.write_text("keep me\n")
    proc = parallel_run(job["script"], "--input", job["in"], "--output", taken)
    assert_usage_error(proc, str(taken))
    assert taken.read_text() == "keep me\n"


@pytest.mark.parametrize("spelling", ["in/out", "in/", "in/sub/../out", "link/out"])
def test_output_inside_or_equal_to_the_input_folder_is_refused(job, spelling):
    (job["tmp"] / "link").symlink_to(job["in"])
    before = tree(job["in"])
    output = f"{job['tmp']}/{spelling}"
    proc = parallel_run(job["script"], "--input", job["in"], "--output", output)
    assert_usage_error(proc, output, str(job["in"]))
    assert tree(job["in"]) == before


def test_refused_rerun_loses_nothing(job):
    first = parallel_run(job["script"], "--input", job["in"], "--output", job["out"], "--quiet")
    assert first.returncode == 0, first.stderr
    result = job["out"] / "parallel_run_step.txt"
    before = result.read_bytes()
    for bad in (["--node-count", "0"], ["--input", str(job["tmp"] / "gone")],
                ["--", "--mini_batch_size", "3"]):
        proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"], *bad)
        assert_usage_error(proc)
        assert result.read_bytes() == before


# -- success, help, imports ---------------------------------------------------------------------


def test_successful_run_prints_a_summary(job):
    proc = parallel_run(job["script"], "--input", job["in"], "--output", job["out"],
                        "--mini-batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "3 items succeeded" in out, out
    assert "0 failed" in out, out
    assert "mini-batches" in out, out
    assert "2 of 2" in out, out
    assert "error.txt" not in out, out  # nothing failed: no pointer to errors
    result = job["out"] / "parallel_run_step.txt"
    assert str(result) in out, out
    assert result.read_text().split() == ["f0.txt", "f1.txt", "f2.txt"]


def test_failed_job_exits_1(job):
    script = write(job["tmp"] / "fails.py", """
        def run(mini_batch):
            raise ValueError("no good")
    """)
    proc = parallel_run(script, "--input", job["in"], "--output", job["out"],
                        "--run-max-try", "1", "--error-threshold", "0", "--quiet")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout
    assert "error_threshold" in proc.stdout + proc.stderr


def test_a_job_whose_every_item_failed_warns_and_names_error_txt(job):
    script = write(job["tmp"] / "fails.py", """
        def run(mini_batch):
            raise ValueError("no good")
    """)
    proc = parallel_run(script, "--input", job["in"], "--output", job["out"],
                        "--run-max-try", "1", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the default thresholds allow it
    for text in (proc.stdout, (job["out"] / "logs/job_result.txt").read_text()):
        assert "failed: 3 items in 1 mini-batches; see logs/user/error.txt" in text, text
        assert "warning: every item failed" in text, text


def test_a_job_with_some_failures_names_error_txt_without_the_warning(job):
    script = write(job["tmp"] / "some.py", """
        def run(mini_batch):
            if any(p.endswith("f1.txt") for p in mini_batch):
                raise ValueError("no good")
            return mini_batch
    """)
    proc = parallel_run(script, "--input", job["in"], "--output", job["out"],
                        "--run-max-try", "1", "--mini-batch-size", "1", "--quiet")
    for text in (proc.stdout, (job["out"] / "logs/job_result.txt").read_text()):
        assert "failed: 1 items in 1 mini-batches; see logs/user/error.txt" in text, text
        assert "warning" not in text, text


def test_console_script_works(job):
    exe = Path(sys.executable).with_name("parallel-run")
    if not exe.exists():
        pytest.skip("no parallel-run script beside this interpreter")
    proc = subprocess.run([str(exe), str(job["script"]), "--input", str(job["in"]),
                           "--output", str(job["out"]), "--node-count", "0"],
                          capture_output=True, text=True, timeout=60)
    assert_usage_error(proc, "node_count")


def test_help():
    proc = parallel_run("--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--input", "--output", "--mini-batch-size", "--node-count",
                   "--process-count-per-node", "--error-threshold", "--allowed-failed-percent",
                   "--append-row-file-name", "--side-input", "--run-invocation-timeout",
                   "--run-max-try", "--logging-level", "--input-type"):
        assert option in proc.stdout, option


def test_no_arguments_is_usage_error():
    proc = parallel_run()
    assert_usage_error(proc)


def test_cli_and_engine_do_not_import_airflow():
    code = textwrap.dedent("""
        import sys
        import airflow_parallel_run.cli
        import airflow_parallel_run.engine.job
        import airflow_parallel_run.engine.node
        import airflow_parallel_run.engine.worker
        bad = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        assert not bad, bad
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_run_does_not_import_airflow(job):
    """The whole CLI run, parent process included, never imports Airflow."""
    script = write(job["tmp"] / "probe.py", """
        import sys

        def run(mini_batch):
            return ["airflow" in sys.modules for _ in mini_batch]
    """)
    code = textwrap.dedent(f"""
        import sys
        from airflow_parallel_run.cli import main
        rc = main([{str(script)!r}, "--input", {str(job["in"])!r}, "--output",
                   {str(job["out"])!r}, "--quiet"])
        assert rc == 0, rc
        assert "airflow" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (job["out"] / "parallel_run_step.txt").read_text().split() == ["False"] * 3
