"""The engine's entry point, Job: its steps called one by one, as the Airflow tasks call them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import make_files, output_lines, write_script

from airflow_parallel_run import FileDataset, ParallelRunConfig
from airflow_parallel_run.engine.job import STATE_DIR, AbortSwitch, EarlierRun, Job, Totals
from airflow_parallel_run.errors import StateError

ECHO = """
def run(mini_batch):
    return [open(p).read().strip() for p in mini_batch]
"""


class FakeNode:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


def make_job(tmp_path: Path, output: str = "out", **config: object) -> Job:
    script = write_script(tmp_path / "scripts", ECHO)
    make_files(tmp_path / "in", 6)
    return Job(ParallelRunConfig(entry_script=str(script), **config),
               [FileDataset.from_files(str(tmp_path / "in"))], str(tmp_path / output))


def earlier(output_file: str | None) -> EarlierRun:
    return EarlierRun("run 'r1' of dag.step (/earlier)", output_file,
                      Totals(mini_batches_done=3, succeeded_items=6), 3, 6)


def test_an_abort_switch_pulled_before_the_node_exists_aborts_it_when_connected():
    switch, node = AbortSwitch(), FakeNode()

    switch.pull()
    switch.connect(node)  # type: ignore[arg-type]

    assert node.aborted


def test_an_abort_switch_pulled_after_connecting_aborts_the_node_at_once():
    switch, node = AbortSwitch(), FakeNode()
    switch.connect(node)  # type: ignore[arg-type]
    assert not node.aborted

    switch.pull()

    assert node.aborted


def test_plan_run_each_node_and_reduce_give_the_whole_output_in_input_order(tmp_path):
    job = make_job(tmp_path, mini_batch_size=2, node_count=2)

    job_plan = job.plan()
    results = [job.run_node(job_plan, i) for i in range(job_plan.node_count)]
    result = job.reduce(job_plan, results)

    assert result.success, result.reason
    assert output_lines(tmp_path / "out") == [f"item {i}" for i in range(6)]


def test_a_node_that_did_not_report_fails_the_job_with_fixed_shares(tmp_path):
    job = make_job(tmp_path, mini_batch_size=3, node_count=2, work_sharing=False)
    job_plan = job.plan()

    result = job.reduce(job_plan, [job.run_node(job_plan, 0), None])

    assert not result.success
    assert result.reason == "a node did not report its result"


def test_adopting_an_earlier_run_copies_its_output_file_and_says_whose_it_is(tmp_path):
    source = tmp_path / "earlier" / "parallel_run_step.txt"
    source.parent.mkdir()
    source.write_text("a\nb\n")
    job = make_job(tmp_path)

    result = job.adopt(earlier(str(source)))

    assert result.success
    assert result.output_file == str(tmp_path / "out" / "parallel_run_step.txt")
    assert output_lines(tmp_path / "out") == ["a", "b"]
    assert (result.totals.succeeded_items, result.mini_batch_count) == (6, 3)
    assert result.notes == ["reused the result of run 'r1' of dag.step (/earlier): inputs, "
                            "script, configuration and arguments are the same"]
    assert (tmp_path / "out" / "logs" / "job_result.txt").read_text().startswith("SUCCESS\n")


def test_adopting_a_run_without_an_output_file_gives_none(tmp_path):
    job = make_job(tmp_path, output_action="summary_only")

    result = job.adopt(earlier(None))

    assert result.success
    assert result.output_file is None
    assert not (tmp_path / "out" / "parallel_run_step.txt").exists()


def test_clear_state_removes_the_plan_and_keeps_the_logs_unless_asked(tmp_path):
    job = make_job(tmp_path)
    job.plan()
    out = tmp_path / "out"

    job.clear_state()
    assert not (out / STATE_DIR).exists()
    assert (out / "logs").exists()

    job.clear_state(with_logs=True)
    assert not (out / "logs").exists()


def same_job(job: Job, output: str) -> Job:
    return Job(job.config, job.inputs, output)


def test_an_earlier_runs_source_offered_leaves_files_its_script_wrote_out_of_the_fingerprint(
        tmp_path):
    first = make_job(tmp_path, output="out1")
    first_plan = first.plan()
    (tmp_path / "scripts" / "run.log").write_text("written by the script as it ran\n")
    second = same_job(first, str(tmp_path / "out2"))
    second.offer_source(first.source_record())

    assert second.plan().fingerprint == first_plan.fingerprint  # what reuse keys hold


def test_an_earlier_runs_source_offered_with_a_changed_file_is_not_taken(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "helper.py").write_text("VALUE = 1\n")
    first = make_job(tmp_path, output="out1")
    first_plan = first.plan()
    (tmp_path / "scripts" / "helper.py").write_text("VALUE = 2\n")
    second = same_job(first, str(tmp_path / "out2"))
    second.offer_source(first.source_record())

    assert second.plan().fingerprint != first_plan.fingerprint


def test_an_interrupted_node_names_itself_and_how_to_resume_where_the_job_runs(tmp_path):
    # fixed shares: with shared work node 1 would finish the units of the stopped node 2
    job = make_job(tmp_path, mini_batch_size=3, node_count=2, work_sharing=False)
    job_plan = job.plan()
    switch = AbortSwitch()
    switch.pull()

    result = job.reduce(job_plan, [job.run_node(job_plan, 0),
                                   job.run_node(job_plan, 1, abort=switch)],
                        resume_how="clear the failed node task(s) and the reducer of this run")

    assert result.reason == ("the job was interrupted before it finished (node 2 of 2 stopped); "
                             "clear the failed node task(s) and the reducer of this run")
    assert "run it again" not in result.reason


def test_a_node_run_after_its_entry_script_changed_refuses_to_mix_results(tmp_path):
    job = make_job(tmp_path)
    job_plan = job.plan()
    write_script(tmp_path / "scripts", ECHO + "\n# v2\n")

    with pytest.raises(StateError, match="the entry script changed since this run was planned"):
        same_job(job, str(tmp_path / "out")).run_node(job_plan, 0)


def test_an_adopted_result_says_it_was_reused_and_points_at_the_earlier_runs_report(tmp_path):
    job = make_job(tmp_path)
    run = EarlierRun("run 'r1' of dag.step (/earlier)", None, Totals(), 3, 6, "/earlier")

    job.adopt(run)

    text = (tmp_path / "out" / "logs" / "job_result.txt").read_text()
    assert "reused the result of run 'r1' of dag.step (/earlier)" in text
    assert "report: /earlier/logs/job_report.html" in text
    assert "report: logs/job_report.html" not in text


def test_a_node_run_again_later_reports_its_attempts_time_apart_from_the_time_since_planning(
        tmp_path):
    job = make_job(tmp_path, mini_batch_size=3, node_count=2)
    job_plan = job.plan()
    job_plan.started -= 300  # planned five minutes ago
    job.reduce(job_plan, [job.run_node(job_plan, 0), None])  # node 2 did not finish

    result = job.reduce(job_plan, [job.run_node(job_plan, 0), job.run_node(job_plan, 1)])

    assert result.success
    assert result.attempt_seconds is not None and result.attempt_seconds < 60
    assert result.elapsed_seconds >= 300
    text = (tmp_path / "out" / "logs" / "job_result.txt").read_text()
    assert re.search(r"elapsed: \d+\.\d s this attempt, 3\d\d\.\d s since the job was planned",
                     text)
