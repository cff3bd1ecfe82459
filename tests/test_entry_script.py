"""What an entry script sees: EntryScript, the Azure import, argv, side inputs, folders, logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import make_files, output_lines, write_script

from airflow_parallel_run import ParallelRunConfig, SideInput
from airflow_parallel_run.errors import ConfigError


def test_a_script_written_for_azure_runs_unchanged(runner, tmp_path):
    make_files(runner.inputs, 4)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n")
    script = runner.script("""
    import argparse, os
    from azureml_user.parallel_run import EntryScript

    def init():
        global LABEL, SCALE
        parser = argparse.ArgumentParser()
        parser.add_argument("--labels")
        parser.add_argument("--scale", type=int)
        args, _ = parser.parse_known_args()
        LABEL = open(args.labels).read().strip()
        SCALE = args.scale
        EntryScript().logger.info("init with labels %s", args.labels)

    def run(mini_batch):
        logger = EntryScript().logger
        logger.info("mini-batch of %d", len(mini_batch))
        print("printed", len(mini_batch))
        return [f"{os.path.basename(p)} {LABEL} {SCALE}" for p in mini_batch]
    """)
    result = runner.run(script, arguments=["--labels", SideInput(str(labels), name="labels"),
                                           "--scale", 3, "--unknown", "x"], mini_batch_size=2)
    assert result.success, result.reason
    assert output_lines(runner.output) == [f"f{i:04d}.txt cat 3" for i in range(4)]
    logs = runner.output / "logs/user"
    [entry_log] = list((logs / "entry_script_log").rglob("process000.log.txt"))
    text = entry_log.read_text()
    assert "init with labels" in text and text.count("mini-batch of 2") == 2
    [stdout] = list((logs / "stdout").rglob("process000.stdout.txt"))
    assert stdout.read_text().count("printed 2") == 2
    assert list((logs / "stderr").rglob("process000.stderr.txt"))


def test_entry_script_knows_where_it_runs(runner, tmp_path):
    make_files(runner.inputs, 1)
    source = tmp_path / "src"
    write_script(source, "VALUE = 'from the source folder'\n", name="helper_module.py")
    (source / "model.txt").write_text("model")
    write_script(source, f"""
    import json, os, sys
    from airflow_parallel_run import EntryScript
    import helper_module

    def run(mini_batch):
        es = EntryScript()
        info = dict(log_dir=es.log_dir, output_dir=es.output_dir, working_dir=es.working_dir,
                    node_id=es.node_id, process_name=es.process_name, agent_name=es.agent_name,
                    side_inputs=es.side_inputs, cwd=os.getcwd(), path0=sys.path[0],
                    argv=sys.argv, helper=helper_module.VALUE, env=os.environ.get("MY_SETTING"),
                    model=open("model.txt").read())
        open(os.path.join({str(runner.marks)!r}, "info.json"), "w").write(json.dumps(info))
        return mini_batch
    """, name="score.py")
    side = tmp_path / "side.bin"
    side.write_bytes(b"x")
    result = runner.run(source / "score.py", source_directory=str(source),
                        side_inputs=[SideInput(str(side), name="weights")],
                        environment_variables={"MY_SETTING": "on"})
    # entry_script relative to source_directory works as well
    assert result.success, result.reason
    info = json.loads((runner.marks / "info.json").read_text())
    assert info["cwd"] == str(source) and info["path0"] == str(source)
    assert info["working_dir"] == str(source)
    assert info["helper"] == "from the source folder" and info["model"] == "model"
    assert info["output_dir"] == str(runner.output)
    assert info["log_dir"] == str(runner.output / "logs")
    assert info["process_name"] == info["agent_name"] == "process000"
    assert info["side_inputs"] == {"weights": str(side)}
    assert info["argv"] == [str(source / "score.py")]
    assert info["env"] == "on"


def test_entry_script_relative_to_source_directory(runner, tmp_path):
    make_files(runner.inputs, 2)
    source = tmp_path / "code"
    write_script(source, "def run(mb):\n    return ['ok' for _ in mb]\n", name="relative.py")
    result = runner.run("relative.py", source_directory=str(source))
    assert result.success and output_lines(runner.output) == ["ok", "ok"]


def test_arguments_may_not_reuse_a_config_field_name(runner):
    make_files(runner.inputs, 1)
    script = runner.script("def run(mb):\n    return mb\n")
    try:
        runner.run(script, arguments=["--mini_batch_size", "3"])
    except ConfigError as exc:
        assert "--mini_batch_size" in str(exc) and "reserved" in str(exc)
    else:
        raise AssertionError("a reserved argument name was accepted")


def test_entry_script_helper_works_outside_a_worker(tmp_path):
    code = ("from airflow_parallel_run import EntryScript\n"
            "es = EntryScript()\n"
            "es.logger.warning('hello from a laptop')\n"
            "assert es is EntryScript()\n"
            "print(es.process_name.startswith('process'), es.output_dir)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, check=True)
    assert done.stdout.split() == ["True", str(tmp_path)]
    assert "hello from a laptop" in done.stderr


def test_azureml_user_is_not_installed_outside_workers():
    done = subprocess.run([sys.executable, "-c", "import azureml_user"], capture_output=True)
    assert done.returncode != 0


def test_worker_does_not_import_airflow(runner):
    make_files(runner.inputs, 1)
    script = runner.script("""
    import os, sys
    def run(mini_batch):
        loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        open(os.path.join(MARKS, "modules"), "w").write(repr((loaded, "pandas" in sys.modules)))
        return mini_batch
    """)
    assert runner.run(script).success
    assert (runner.marks / "modules").read_text() == repr(([], False))


def test_config_default_mini_batch_size_for_files_is_ten(runner):
    make_files(runner.inputs, 25)
    script = runner.script("def run(mb):\n    return [len(mb)] * len(mb)\n")
    runner.run(script)
    assert sorted(set(output_lines(runner.output))) == ["10", "5"]
    assert ParallelRunConfig(entry_script="x.py").files_per_mini_batch() == 10
    assert os.path.exists(runner.output / "parallel_run_step.txt")
