"""The three tasks of a ParallelRunOperator step: planner, node (mapped), reducer.

Each is a thin shell over one call of the engine's ``Job``: ``plan()``, ``run_node()``,
``reduce()`` (or ``adopt()`` of a reused run's result).
What Airflow adds lives here: rendering params into settings, the default output location,
reuse of a finished run, ``[core] max_map_length``, XCom descriptors, ``on_kill()``, the
Asset event, and turning the engine's verdict into a task state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from ..engine.job import (
    JOB_REPORT,
    JOB_RESULT,
    USER_ERROR_SUMMARY,
    AbortSwitch,
    Job,
    JobPlan,
    JobResult,
    MiniBatchRecord,
    NodeResult,
    OutputLock,
    Totals,
)
from ..errors import ParallelRunError, StoreUnavailable
from ..inputs import SideInput
from .connections import connections_by_url, naming_connections, split_conn
from .links import OUTPUT_LOCATION_KEY, JobReportLink, OutputLink
from .provider import output_root
from .reuse import ReuseFacts, ReuseIndex, earlier_run, reuse_key
from .script_log import ScriptLog
from .step import NODE_RESULT_KEY, PLAN_KEY, Shard, StepDefinition, StepPlan, rendered_settings

PROGRESS_EVERY = 15.0  # seconds between a node's progress lines in its task log
ERRORS_SHOWN = 20  # lines of the error summary copied into the reducer's task log
RESUME_HOW = "clear the failed node task(s) and the reducer of this run to resume"
RESUME_OUTAGE = ("once it answers, clear the failed tasks of this run to resume (a retry of "
                 "the task resumes too)")
PLANNER_FAILURE_KEY = "parallel_run_planner_failure"  # why the planner failed, for the reducer


def default_output(dag_id: str, step: str, run_id: str) -> str:
    """``<output_root>/<dag_id>/<step>/<run_id>``: two runs' outputs never mix."""
    safe_run = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    return "/".join([output_root().rstrip("/"), dag_id, step, safe_run])


def _failed(step: StepDefinition, exc: ParallelRunError) -> AirflowFailException:
    return AirflowFailException(f"{step.name}: {naming_connections(str(exc), _connections(step))}")


@contextmanager
def _store_outage(step: StepDefinition) -> Iterator[None]:
    """A store that stopped answering for longer than the job waits for it fails the task
    in one line that says how to resume (a task that raises AirflowException is retried
    when it has retries left), not with a traceback from inside the storage layer."""
    try:
        yield
    except StoreUnavailable as exc:
        raise AirflowException(f"{step.name}: {exc}; {RESUME_OUTAGE}") from None


def _connections(step: StepDefinition) -> dict[str, str]:
    """The connection of each URL the step reads or writes: an error names the one to fix."""
    from .provider import default_output_conn_id

    found = connections_by_url([*step.inputs, *step.side_inputs, *(
        a for a in step.arguments if isinstance(a, SideInput))])
    output, conn_id = split_conn((step.output or output_root()).split("{{")[0])
    conn_id = conn_id or step.output_conn_id or default_output_conn_id()
    if conn_id and "://" in output:
        found.setdefault(output.rstrip("/"), conn_id)
    return found


def _step_plan(context: Any, planner_task_id: str) -> StepPlan | None:
    data = context["ti"].xcom_pull(task_ids=planner_task_id, key=PLAN_KEY)
    return None if data is None else StepPlan.from_dict(data)


class _StepTask(BaseOperator):
    """A task of a ParallelRunOperator: the step's definition belongs to its task group.

    It is looked up there rather than passed in, so that it is never serialized into the
    metadata database with the DAG (storage options may hold secrets).
    """

    operator_extra_links = (JobReportLink(), OutputLink())

    @property
    def step(self) -> StepDefinition:
        step = getattr(self.task_group, "step", None)
        if not isinstance(step, StepDefinition):
            raise AirflowFailException(f"{self.task_id}: this task only runs inside the task "
                                       "group of a ParallelRunOperator")
        return step

    def _job(self, settings: dict[str, Any], output: str) -> Job:
        try:
            return self.step.job(settings, output)
        except ParallelRunError as exc:
            raise _failed(self.step, exc) from None

    def _hold(self, job: Job, ti: Any) -> OutputLock:
        """The output's lock, held by this DAG run's step: its planner, nodes and reducer
        (and their retries, and a clear of the run) share it; another run is refused."""
        holder = f"Airflow dag {ti.dag_id} run {ti.run_id} step {self.step.name}"
        try:
            return job.hold_output(holder)
        except ParallelRunError as exc:
            raise _failed(self.step, exc) from None


class ParallelRunPlanner(_StepTask):
    """Render the settings, list the inputs into a plan, decide reuse, hand out shards.

    :param settings: the config fields that hold templates, by name (templated)
    :param output_path: the step's output folder or URL, or None for a folder per run (templated)
    """

    template_fields = ("settings", "output_path")
    ui_color = "#d6e4f0"

    def __init__(self, *, settings: dict[str, Any], output_path: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.output_path = output_path

    def execute(self, context: Any) -> list[dict[str, Any]]:
        try:
            with _store_outage(self.step):
                return self._plan(context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:  # the reducer repeats it, not "nothing to reduce"
            context["ti"].xcom_push(PLANNER_FAILURE_KEY, str(exc))
            raise

    def _plan(self, context: Any) -> list[dict[str, Any]]:
        step, ti = self.step, context["ti"]
        try:
            config = step.config.render(self.settings)
        except ParallelRunError as exc:
            raise AirflowFailException(f"{step.name}: a setting is not valid: {exc}") from None
        settings = rendered_settings(config)
        self.log.info("settings: %s", ", ".join(f"{k}={v!r}" for k, v in settings.items()))
        output = self._rendered_output(ti)
        job = self._job(settings, output)
        if step.allow_reuse:
            index = ReuseIndex(output_root(), step.output_options())
            job.offer_source(index.last_source(ti.dag_id, step.name))
        job_plan = self._plan_held(job, ti)
        self.log.info("output: %s", job_plan.output)
        from .provider import default_output_conn_id

        ti.xcom_push(OUTPUT_LOCATION_KEY, {  # for the "Job report" and "Output" pages
            "output": job_plan.output, "conn_id": step.output_conn_id or default_output_conn_id()})
        items = "" if job_plan.item_count is None else f"{job_plan.item_count} items in "
        self.log.info("planned %s%d mini-batches%s", items, job_plan.mini_batch_count,
                      " (resuming an earlier try of this run)" if job_plan.resumed else "")
        step_plan = StepPlan(job_plan.to_dict(), settings, reuse_key(job_plan, job.config))
        if job_plan.mini_batch_count == 0:
            ti.xcom_push(PLAN_KEY, step_plan.to_dict())
            raise AirflowSkipException(f"{step.name}: the input is empty: nothing to do")

        step_plan.reused_from = self._reusable(job, step_plan.reuse_key, ti)
        if step_plan.reused_from is None and not job_plan.resumed:
            job.clear_previous_result()  # before any node runs
        ti.xcom_push(PLAN_KEY, step_plan.to_dict())
        if step_plan.reused_from is not None:
            if step_plan.reused_from["output"] != job.location.display():
                job.clear_state()  # this run's plan is not needed
            return []  # no node runs; the reducer adopts the earlier result
        return [s.to_dict() for s in self._shards(job_plan, settings)]

    def _plan_held(self, job: Job, ti: Any) -> JobPlan:
        """The plan, made holding the output's lock; the lock is kept for the nodes and the
        reducer (which releases it), but not when no plan was made."""
        lock = self._hold(job, ti)
        lock.start_renewing()
        try:
            # an earlier result in this output may be the one reused: cleared later if not
            job_plan = job.plan(keep_previous_result=True)
        except BaseException as exc:
            lock.release()
            if isinstance(exc, ParallelRunError):
                raise _failed(self.step, exc) from None
            raise
        lock.stop_renewing()
        return job_plan

    def _rendered_output(self, ti: Any) -> str:
        """The output as rendered for this run (a retry renders the same path, and resumes)."""
        if self.output_path is None:
            return default_output(ti.dag_id, self.step.name, ti.run_id)
        output = str(self.output_path).strip()
        if not output or "{{" in output:
            raise AirflowFailException(f"{self.step.name}: output = {self.output_path!r}: the "
                                       "template must render to a folder path or URL")
        return output

    def _reusable(self, job: Job, key: str, ti: Any) -> dict[str, Any] | None:
        """A finished run's index entry whose result this run may take, else None."""
        step = self.step
        if not step.allow_reuse:
            self.log.info("reuse: off (allow_reuse=False); running the step")
            return None
        index = ReuseIndex(output_root(), step.output_options())
        decision = index.decide(key, ti.dag_id, step.name, ReuseFacts.of(job))
        self.log.info("%s", decision.message)
        return decision.entry if decision.hit else None

    def _shards(self, job_plan: JobPlan, settings: dict[str, Any]) -> list[Shard]:
        """One Shard per node task, within Airflow's limit of mapped instances."""
        from airflow.sdk.configuration import conf

        limit = conf.getint("core", "max_map_length")
        if job_plan.node_count > limit:
            raise AirflowFailException(
                f"{self.step.name}: {job_plan.node_count} node tasks would exceed [core] "
                f"max_map_length = {limit}; lower node_count, or raise max_map_length "
                "(AIRFLOW__CORE__MAX_MAP_LENGTH)")
        shards = [Shard(i, job_plan.node_count, len(job_plan.shard(i)))
                  for i in range(job_plan.node_count)]
        self.log.info("%d node task(s) x %s process(es): %s", len(shards),
                      settings["process_count_per_node"],
                      ", ".join(str(s.mini_batches) for s in shards) + " mini-batches")
        return shards


class _ProgressLog:
    """Counts a node's finished mini-batches; writes a line to the task log now and then."""

    def __init__(self, log: Any, shard: Shard) -> None:
        self.log = log
        self.shard = shard
        self.totals = Totals()
        self.started = time.monotonic()
        self.logged = self.started

    def __call__(self, node_index: int, record: MiniBatchRecord) -> None:
        self.totals.add(record)
        self.tick()

    def tick(self) -> None:
        """Also called by the node every few seconds: a line even while nothing finishes."""
        now = time.monotonic()
        if now - self.logged >= PROGRESS_EVERY:
            self.logged = now
            self.write()

    def write(self) -> None:
        t = self.totals
        elapsed = time.monotonic() - self.started
        share = max(self.shard.mini_batches, 1)
        done = min(t.mini_batches_done, share)
        left = f"{elapsed / done * (share - done):.0f} s left" if done else "time left unknown"
        self.log.info("%s: %d%% (%d run now, %d failed; %d items ok, %d failed); %.0f s, %s",
                      self.shard.label(), 100 * done // share, t.mini_batches_done,
                      t.failed_mini_batches, t.succeeded_items, t.failed_items, elapsed, left)


class ParallelRunNode(_StepTask):
    """One node: a pool of ``process_count_per_node`` workers over its shard of the plan.

    Mini-batches that already have a result (an earlier try of this task) are not run again.

    :param planner_task_id: where the StepPlan comes from
    :param shard: this instance's Shard (mapped from the planner's return value)
    """

    ui_color = "#e8f0d6"

    def __init__(self, *, planner_task_id: str, shard: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planner_task_id = planner_task_id
        self.shard = shard
        self._abort = AbortSwitch()

    def execute(self, context: Any) -> None:
        with _store_outage(self.step):
            self._run_node(context)

    def _run_node(self, context: Any) -> None:
        ti = context["ti"]
        step_plan = _step_plan(context, self.planner_task_id)
        if step_plan is None:
            raise AirflowFailException(f"{self.step.name}: the planner left no plan")
        shard = Shard.from_dict(self.shard)
        job_plan = JobPlan.from_dict(step_plan.job)
        job = self._job(step_plan.settings, job_plan.output)
        progress = _ProgressLog(self.log, shard)
        self.log.info("%s (mini-batches %s); worker logs under %s/logs", shard.label(),
                      _span(job_plan.shard(shard.node_index)), job_plan.output)
        if ti.try_number > 1 and job.has_results():  # not after a fresh plan
            self.log.info("try %d: mini-batches that already have a result are not run again",
                          ti.try_number)
        lock = self._hold(job, ti)
        lock.start_renewing()
        try:  # a changed script, or settings this machine cannot run (too many processes)
            node = job.node_to_run(job_plan, shard.node_index, on_record=progress)
        except ParallelRunError as exc:
            lock.stop_renewing()
            raise _failed(self.step, exc) from None
        script_log = ScriptLog(self.log, node, str(job.config.logging_level).upper() == "DEBUG")

        def on_tick() -> None:  # every few seconds while the node runs
            script_log.poll()
            progress.tick()

        node.on_tick = on_tick
        self._abort.connect(node)
        try:
            result = node.run()
        finally:
            script_log.close()
            lock.stop_renewing()
        progress.write()
        ti.xcom_push(NODE_RESULT_KEY, result.to_dict())
        if result.stop_reason:
            raise AirflowFailException(f"{shard.label()}: stopped early: {result.stop_reason}")
        if result.aborted:
            raise AirflowException(f"{shard.label()}: stopped before it finished its share; "
                                   "a retry of this task resumes it")

    def on_kill(self) -> None:
        """SIGTERM or execution_timeout: stop the pool; no worker process is left running."""
        self._abort.pull()


def _span(indices: range) -> str:
    return f"{indices.start}..{indices.stop - 1}" if indices else "none"


class ParallelRunReducer(_StepTask):
    """Judge the whole job against the plan, assemble the output, fail the step with the reason.

    Runs whatever the nodes did (trigger rule ``all_done``): a node that did not finish fails
    the step here, so the DAG run cannot end as a success when the nodes failed.

    :param planner_task_id: where the StepPlan comes from
    :param node_task_id: the mapped node task, whose NodeResults are read
    """

    ui_color = "#f0e4d6"

    def __init__(self, *, planner_task_id: str, node_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planner_task_id = planner_task_id
        self.node_task_id = node_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        step, ti = self.step, context["ti"]
        step_plan = _step_plan(context, self.planner_task_id)
        if step_plan is None:
            reason = ti.xcom_pull(task_ids=self.planner_task_id, key=PLANNER_FAILURE_KEY)
            raise AirflowFailException(
                f"the planner failed: {reason}" if reason else
                f"{step.name}: the planner did not finish (see the planner's log)")
        job_plan = JobPlan.from_dict(step_plan.job)
        with _store_outage(step):
            job = self._job(step_plan.settings, job_plan.output)
            lock = self._hold(job, ti)
            try:
                return self._reduce(job, job_plan, step_plan, context)
            finally:
                lock.release()  # the step ends here, whatever its outcome

    def _reduce(self, job: Job, job_plan: JobPlan, step_plan: Any, context: Any) -> dict[str, Any]:
        step, ti = self.step, context["ti"]
        if job_plan.mini_batch_count == 0:
            job.reduce(job_plan, [])  # writes logs/job_result.txt: nothing to do
            raise AirflowSkipException(f"{step.name}: the input is empty: nothing to do")
        report = job.location.display(JOB_REPORT)
        try:
            if step_plan.reused_from is not None:
                earlier = earlier_run(step_plan.reused_from)
                report = earlier.report() or report
                result = job.adopt(earlier)
            else:
                result = job.reduce(job_plan, self._node_results(context, job, job_plan), RESUME_HOW)
        except ParallelRunError as exc:
            raise _failed(step, exc) from None
        self._log_result(job, result, report)
        if not result.success:
            raise AirflowFailException(f"{step.name} FAILED: {result.reason}")

        data = result.to_dict()
        if step_plan.reused_from is None:
            index = ReuseIndex(output_root(), step.output_options())
            index.record(step_plan.reuse_key, ti.dag_id, step.name, ti.run_id, ReuseFacts.of(job),
                         data)
        self.log.info("%s", result.summary())
        self._warn_partial(result)
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {
                "path": result.output_file or result.output_dir, "run_id": ti.run_id,
                "succeeded_items": result.totals.succeeded_items,
                "failed_items": result.totals.failed_items,
                "reused_from": (step_plan.reused_from or {}).get("run_id"),
            }
        # The counts at the top of the return value: ``step.output["failed_items"]`` downstream.
        return {**data, "succeeded_items": result.totals.succeeded_items,
                "failed_items": result.totals.failed_items}

    def _warn_partial(self, result: JobResult) -> None:
        """A success with failed items is a WARNING (a DAG-run note cannot be set from a task:
        the Execution API takes a note only for a run the task triggers)."""
        t = result.totals
        if t.failed_items or t.failed_mini_batches:
            self.log.warning("%s succeeded with failures: %d items failed, %d succeeded (%d "
                             "mini-batches failed); within error_threshold. See %s",
                             self.step.name, t.failed_items, t.succeeded_items,
                             t.failed_mini_batches, USER_ERROR_SUMMARY)

    def _log_result(self, job: Job, result: JobResult, report: str) -> None:
        """The job's result file in the task log, and for a failed job its first errors."""
        for note in result.notes:
            self.log.info("%s", note)
        self.log.info("job report: %s (one page: open it in a browser)", report)
        self._log_group(JOB_RESULT, list(job.location.iter_lines(JOB_RESULT)))
        if not result.success:
            errors = list(job.location.iter_lines(USER_ERROR_SUMMARY))
            if errors and errors[0].strip() != "no errors":
                self._log_group(f"{USER_ERROR_SUMMARY} (first {min(ERRORS_SHOWN, len(errors))} "
                                f"of {len(errors)})", errors[:ERRORS_SHOWN])

    def _log_group(self, title: str, lines: list[str]) -> None:
        """Lines that the Airflow UI folds under ``title``."""
        self.log.info("::group::%s", title)
        for line in lines:
            self.log.info("%s", line.rstrip("\n"))
        self.log.info("::endgroup::")

    def _node_results(self, context: Any, job: Job,
                      job_plan: JobPlan) -> list[NodeResult | None]:
        """Every planned node's result; a node without one did not finish, and says so."""
        found = {r.node_index: r for r in self._reported(context)}
        missing = [i for i in range(job_plan.node_count) if i not in found]
        for i in missing:
            self.log.error("node %d of %d did not finish: its task failed or was killed "
                           "(see the log of %s, map index %d)", i + 1, job_plan.node_count,
                           self.node_task_id, i)
        results: list[NodeResult | None] = [found[i] for i in sorted(found)]
        if missing and job.shares_work(job_plan):  # the others took its units over
            return results + [None]
        if missing:
            nodes = ", ".join(str(i + 1) for i in missing)
            results.append(NodeResult(missing[0], Totals(), stop_reason=(
                f"{len(missing)} of {job_plan.node_count} node tasks did not finish "
                f"(node {nodes}): see their task logs")))
        return results

    def _reported(self, context: Any) -> list[NodeResult]:
        """The NodeResults that node tasks pushed (a failed node pushes one too)."""
        raw = context["ti"].xcom_pull(task_ids=self.node_task_id, key=NODE_RESULT_KEY)
        if isinstance(raw, dict):  # a single mapped instance comes back unwrapped
            raw = [raw]
        return [NodeResult.from_dict(d) for d in raw or [] if d]
