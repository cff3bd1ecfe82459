"""ParallelRunOperator in real ``airflow dags test`` runs on SQLite.

Each test gets a data folder of its own (``PRT_DATA``) and its own output root, so the runs of
one module share only the metadata database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
from airflow_runs import TEST_DAGS, AirflowHome, make_files, write_editable_script

from airflow_parallel_run.airflow.script_log import MAX_LINES
from airflow_parallel_run.leases import OutputLock
from airflow_parallel_run.storage import LocalLocation


def test_step_runs_planner_mapped_nodes_and_reducer(airflow_home: AirflowHome, tmp_path: Path):
    expected = make_files(tmp_path / "input", [f"ok {i}" for i in range(23)])

    run = airflow_home.dags_test("prt_files", tmp_path)

    assert run.state == "success"
    assert run.states("planner") == ["success"]
    assert run.states("node") == ["success", "success"]
    assert run.states("reducer") == ["success"]
    assert [t.label for t in run.tasks if t.task_id == "step.node"] == [
        "node 1 of 2: 2 mini-batches", "node 2 of 2: 3 mini-batches"]
    assert run.output_lines() == expected  # every item once, in input order
    assert (run.output_dir / "logs" / "job_result.txt").read_text().startswith("SUCCESS")
    [(task, uri, extra)] = airflow_home.asset_events(run)  # the output is the reducer's outlet
    assert task == "step.reducer"
    assert uri == f"file://{tmp_path}/out/prt_files/step"
    assert extra["path"] == str(run.output_dir / "parallel_run_step.txt")


def test_conf_overrides_params(airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", [f"ok {i}" for i in range(23)])

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"mini_batch_size": 2})

    assert run.state == "success"
    assert "planned 23 items in 12 mini-batches" in run.task_log("planner")  # 5 by default
    assert len(run.output_lines()) == 23


def test_node_count_3_gives_3_mapped_node_instances(airflow_home: AirflowHome, tmp_path: Path):
    expected = make_files(tmp_path / "input", [f"ok {i}" for i in range(20)])

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"node_count": 3})

    assert run.state == "success"
    assert [(t.map_index, t.state) for t in run.tasks if t.task_id == "step.node"] == [
        (0, "success"), (1, "success"), (2, "success")]
    assert {node for _, _, node in run.calls()} != set()  # nodes ran run() themselves
    assert run.output_lines() == expected


def test_fewer_mini_batches_than_nodes_maps_one_node_per_mini_batch(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["ok a", "ok b"])

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"node_count": 8})

    assert run.state == "success"
    assert run.states("node") == ["success"]  # min(node_count, mini-batches) = 1


def test_error_threshold_exceeded_fails_the_run_with_threshold_and_count(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["fail" if i in (2, 6, 11) else f"ok {i}" for i in range(20)])

    run = airflow_home.dags_test("prt_files", tmp_path,
                                 conf={"mini_batch_size": 1, "error_threshold": 1})

    assert run.state == "failed"
    assert run.states("reducer") == ["failed"]
    reducer_log = run.task_log("reducer")
    assert "error_threshold exceeded: 2 items failed, error_threshold is 1" in reducer_log
    assert not (run.output_dir / "parallel_run_step.txt").exists()
    assert (run.output_dir / "logs" / "job_result.txt").read_text().startswith("FAILED")


def test_every_node_failing_fails_the_run(airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", [f"ok {i}" for i in range(10)])

    run = airflow_home.dags_test("prt_broken_init", tmp_path)

    assert run.states("node") == ["failed", "failed"]
    assert run.states("reducer") == ["failed"]  # all_done: it ran, and it must not pass
    assert run.state == "failed"
    assert "init() failed" in run.task_log("reducer")
    assert "init() is broken on purpose" in run.task_log("reducer")


def test_node_task_timeout_kills_its_workers_and_fails_the_step(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["sleep 60"] * 4)

    started = time.monotonic()
    run = airflow_home.dags_test("prt_node_timeout", tmp_path,
                                 conf={"node_count": 1, "process_count_per_node": 2,
                                       "mini_batch_size": 1})

    assert time.monotonic() - started < 50  # not the 60 s of run()
    assert run.states("node") == ["failed"]
    assert run.state == "failed"
    assert "1 of 1 node tasks did not finish" in run.task_log("reducer")
    workers = {pid for _, pid, _ in run.calls()}
    assert len(workers) == 2
    alive = [pid for pid in workers if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_a_node_task_killed_without_retries_has_its_units_run_by_the_others(
        airflow_home: AirflowHome, tmp_path: Path):
    expected = make_files(tmp_path / "input", ["sleep-once 60"] + [f"ok {i}" for i in range(8)])

    run = airflow_home.dags_test("prt_lost_node", tmp_path)

    states = run.states("node")  # the node that took mini-batch 0 hung: killed at 8 s
    assert sorted(states) == ["failed", "success", "success"]
    assert run.states("reducer") == ["success"]
    assert run.state == "success"
    assert run.output_lines() == expected  # every item once, in input order
    master = (run.output_dir / "logs" / "sys" / "master_role.txt").read_text()
    lost = states.index("failed") + 1  # numbered from 1, as the UI numbers node tasks
    assert re.search(rf"node [1-3] took over mini-batches 0-0 from node {lost}\b", master), master


def test_empty_input_folder_skips_the_step(airflow_home: AirflowHome, tmp_path: Path):
    (tmp_path / "input").mkdir()

    run = airflow_home.dags_test("prt_files", tmp_path)

    assert run.state == "success"
    assert run.states("planner") == ["skipped"]
    assert run.states("node") == ["skipped"]
    assert run.states("reducer") == ["skipped"]
    assert "the input is empty: nothing to do" in run.task_log("planner")


def test_param_out_of_its_bounds_is_refused_before_the_run(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["ok"])

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"mini_batch_size": 0})

    assert run.state == "not started"
    assert "mini_batch_size" in run.log and "less than the minimum of 1" in run.log


def test_rendered_value_breaking_a_config_rule_fails_the_planner_naming_the_rule(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["ok"])

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"error_threshold": -5})

    assert run.state == "failed"
    assert run.states("planner") == ["failed"]
    assert run.states("node") == ["upstream_failed"]
    assert "error_threshold = -5: must be >= -1" in run.task_log("planner")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("calls.log"))


def test_more_nodes_than_max_map_length_fails_the_planner_clearly(
        airflow_home: AirflowHome, tmp_path: Path):
    # 4, not less: another DAG of the file has a literal node_count of 3, checked at parse time
    make_files(tmp_path / "input", [f"ok {i}" for i in range(9)])

    run = airflow_home.dags_test("prt_files", tmp_path,
                                 conf={"node_count": 5, "mini_batch_size": 1},
                                 AIRFLOW__CORE__MAX_MAP_LENGTH="4")

    assert run.state == "failed"
    assert "5 node tasks would exceed [core] max_map_length = 4" in run.task_log("planner")


def test_same_inputs_script_config_and_arguments_reuse_the_finished_run(
        airflow_home: AirflowHome, tmp_path: Path):
    expected = make_files(tmp_path / "input", [f"ok {i}" for i in range(12)])
    first = airflow_home.dags_test("prt_files", tmp_path)
    assert first.state == "success"

    second = airflow_home.dags_test("prt_files", tmp_path)

    assert second.state == "success"
    assert "reuse: HIT" in second.task_log("planner")
    assert first.run_id in second.task_log("planner")
    assert second.states("node") == ["skipped"]  # nothing computed again
    assert not (second.output_dir / "calls.log").exists()
    assert second.output_lines() == expected
    assert second.output_dir != first.output_dir


def test_a_changed_input_file_means_a_fresh_run(airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", [f"ok {i}" for i in range(12)])
    assert airflow_home.dags_test("prt_files", tmp_path).state == "success"
    changed = tmp_path / "input" / "f003.txt"
    changed.write_text("ok changed\n")
    os.utime(changed, (time.time() + 5, time.time() + 5))

    run = airflow_home.dags_test("prt_files", tmp_path)

    assert run.state == "success"
    assert "reuse: MISS: the inputs changed" in run.task_log("planner")
    assert "f003.txt: ok changed" in run.output_lines()
    assert len(run.calls()) == 3  # computed again


def test_a_planner_finding_the_output_held_by_another_live_job_fails_naming_it(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["ok a", "ok b"])
    held = OutputLock(LocalLocation(str(tmp_path / "fixed_out")), "another job", ttl=600)
    held.acquire()

    run = airflow_home.dags_test("prt_fixed_output", tmp_path)

    assert run.state == "failed"
    assert run.states("planner") == ["failed"]
    assert (f"output folder in use by {socket.gethostname()} pid {os.getpid()} since "
            in run.task_log("planner"))
    assert held.read().holder == "another job"
    assert not (tmp_path / "fixed_out" / ".parallel_run").exists()  # nothing planned there


def test_a_finished_run_leaves_its_fixed_output_free_for_the_next(
        airflow_home: AirflowHome, tmp_path: Path):
    expected = make_files(tmp_path / "input", ["ok a", "ok b"])

    run = airflow_home.dags_test("prt_fixed_output", tmp_path)

    assert run.state == "success"
    assert (tmp_path / "fixed_out" / "parallel_run_step.txt").read_text().splitlines() == expected
    assert not (tmp_path / "fixed_out" / ".parallel_run.lock").exists()


def test_a_changed_config_value_means_a_fresh_run(airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", [f"ok {i}" for i in range(12)])
    assert airflow_home.dags_test("prt_files", tmp_path).state == "success"

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"mini_batch_size": 4})

    assert run.state == "success"
    assert "reuse: MISS: the configuration changed" in run.task_log("planner")
    assert "mini_batch_size 5 -> 4" in run.task_log("planner")
    assert len(run.calls()) == 3  # 12 files / 4, computed again


def test_a_rule_broken_in_the_dag_file_is_an_import_error_naming_it(
        airflow_home: AirflowHome, tmp_path: Path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "broken_rule.py").write_text(
        "from airflow.sdk import DAG\n"
        "from airflow_parallel_run import FileDataset, ParallelRunConfig\n"
        "from airflow_parallel_run.airflow import ParallelRunOperator\n"
        "with DAG('prt_broken_rule', schedule=None):\n"
        "    ParallelRunOperator(task_id='step', inputs=FileDataset.from_files('/in'),\n"
        "                        parallel_run_config=ParallelRunConfig(entry_script='s.py',\n"
        "                                                              node_count=0))\n")

    done = airflow_home.airflow("dags", "test", "prt_broken_rule",
                                AIRFLOW__CORE__DAGS_FOLDER=str(dags))

    assert done.returncode != 0
    assert "Error loading DAG from broken_rule.py: node_count = 0: must be >= 1" in done.stdout


def test_a_run_is_not_reused_once_its_folder_ran_again_with_another_script(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["ok"] * 6)
    write_editable_script(tmp_path, "v1")
    first = airflow_home.dags_test("prt_editable_fixed", tmp_path)
    assert first.state == "success"
    write_editable_script(tmp_path, "v2")
    assert airflow_home.dags_test("prt_editable_fixed", tmp_path).state == "success"
    write_editable_script(tmp_path, "v1")

    run = airflow_home.dags_test("prt_editable_fixed", tmp_path)

    assert run.state == "success"
    assert f"reuse: MISS: the matching run {first.run_id!r} finished, but its output" \
        in run.task_log("planner")
    assert (tmp_path / "fixed" / "parallel_run_step.txt").read_text().splitlines() == \
        [f"f{i:03d}.txt: v1" for i in range(6)]


def test_a_failed_planner_s_reason_is_repeated_by_the_reducer(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["ok"])

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"error_threshold": -5})

    reducer = run.task_log("reducer")
    assert "the planner failed: step: a setting is not valid" in reducer
    assert "error_threshold = -5: must be >= -1" in reducer
    assert "nothing to reduce" not in reducer


def test_templated_output_is_rendered_by_the_planner(airflow_home: AirflowHome, tmp_path: Path):
    expected = make_files(tmp_path / "input", ["ok a", "ok b", "ok c"])

    run = airflow_home.dags_test("prt_templated_output", tmp_path, conf={"tag": "x"})

    assert run.state == "success"
    folder = tmp_path / "scores" / "x" / run.run_id
    assert (folder / "parallel_run_step.txt").read_text().splitlines() == expected
    [(_, uri, extra)] = airflow_home.asset_events(run)
    assert uri == f"file://{tmp_path}/scores"  # the Asset: the folder above the template
    assert extra["path"] == str(folder / "parallel_run_step.txt")


def test_node_kwargs_reach_the_node_task_only(airflow_home: AirflowHome):
    """As the scheduler sees them: the DAG as serialized by the dag processor."""
    code = ("import json, sys\n"
            "from airflow.dag_processing.dagbag import DagBag\n"
            "from airflow.serialization.serialized_objects import DagSerialization\n"
            "bag = DagBag(dag_folder=sys.argv[1])\n"
            "dag = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags['prt_node_kwargs']))\n"
            "print(json.dumps({t.task_id: [t.pool_slots, t.queue, t.executor_config, t.retries]\n"
            "                  for t in dag.tasks}))")
    done = subprocess.run([sys.executable, "-c", code, str(TEST_DAGS)], env=airflow_home.env(),
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-3000:]
    tasks = json.loads(done.stdout.splitlines()[-1])
    pod = {"pod_override": {"spec": {"containers": [
        {"name": "base", "resources": {"requests": {"cpu": "4"}}}]}}}
    assert tasks["step.node"] == [4, "workers", pod, 2]
    assert tasks["step.planner"] == tasks["step.reducer"] == [1, "light", {}, 2]


def test_success_with_failed_items_warns_and_returns_the_counts(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["fail" if i == 3 else f"ok {i}" for i in range(6)])

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"node_count": 1})

    assert run.state == "success"  # error_threshold -1: failures are allowed
    warning = next(line for line in run.task_log("reducer").splitlines()
                   if "succeeded with failures" in line)
    assert "warn" in warning.lower() and "5 items failed, 1 succeeded" in warning
    with sqlite3.connect(airflow_home.path / "airflow.db") as db:
        (value,) = db.execute("select value from xcom where run_id = ? and task_id = ? and "
                              "key = 'return_value'", (run.run_id, "step.reducer")).fetchone()
    returned = json.loads(value)
    assert (returned["succeeded_items"], returned["failed_items"]) == (1, 5)
    [(_, _, extra)] = airflow_home.asset_events(run)
    assert (extra["succeeded_items"], extra["failed_items"]) == (1, 5)


def test_node_task_log_shows_the_scripts_warnings_first_traceback_and_progress(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["ok 0", "warn careful", "fail", "fail"])

    run = airflow_home.dags_test("prt_files", tmp_path,
                                 conf={"node_count": 1, "mini_batch_size": 1})

    log = run.task_log("node", 0)
    assert "f001.txt says warn careful" in log  # the script's WARNING
    assert "init in pid" not in log  # its INFO stays in the files
    assert log.count("Traceback (most recent call last)") == 1  # one per kind of error
    assert "f002.txt asks to fail" in log
    assert "node 1 of 1: 4 mini-batches: 100% (4 run now, 2 failed" in log


def test_an_interrupted_node_makes_the_reducer_say_to_clear_the_node_and_the_reducer(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["sleep 60"] * 2)

    def interrupt() -> None:  # SIGTERM, as Airflow sends it, once run() is running
        deadline = time.monotonic() + 120
        while not (calls := [p for p in (tmp_path / "out").rglob("calls.log") if p.read_text()]):
            assert time.monotonic() < deadline, "run() never started"
            time.sleep(0.2)
        node_task = int(calls[0].read_text().split()[2])
        os.kill(node_task, signal.SIGTERM)

    run = airflow_home.dags_test("prt_files", tmp_path, conf={"node_count": 1},
                                 during=interrupt)

    assert run.states("node") == ["failed"]
    reducer = run.task_log("reducer")
    assert ("the job was interrupted before it finished (node 1 of 1 stopped); clear the "
            "failed node task(s) and the reducer of this run to resume") in reducer
    assert "node 0" not in reducer  # numbered from 1, as the UI's "node 1 of 1"
    assert "no errors" not in reducer


def test_the_node_task_log_holds_at_most_max_lines_of_the_script_s_warnings_and_the_dropped_count(
        airflow_home: AirflowHome, tmp_path: Path):
    make_files(tmp_path / "input", ["ok"])
    (tmp_path / "script").mkdir()
    (tmp_path / "script" / "score.py").write_text(
        "from airflow_parallel_run import EntryScript\n"
        "def run(mini_batch):\n"
        f"    for i in range({MAX_LINES + 700}):\n"
        "        EntryScript().logger.warning('loud line %d', i)\n"
        "    return ['done' for _ in mini_batch]\n")

    run = airflow_home.dags_test("prt_editable", tmp_path, conf={"node_count": 1})

    assert run.state == "success"
    log = run.task_log("node", 0)
    copied = [line for line in log.splitlines() if "loud line" in line]
    assert len(copied) == MAX_LINES
    assert f"loud line {MAX_LINES - 1} " in copied[-1]  # the first ones, in order
    assert (f"entry script: 700 more lines not copied here (at most {MAX_LINES} per node task)"
            in log)
