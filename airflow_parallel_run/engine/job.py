"""The engine's entry point: a checked ``Job`` and its steps, plan -> nodes -> reduce.

``parallel-run`` calls :func:`run_job`, which runs every step here, every node on a thread
(engine/local_run.py). The Airflow layer calls the same :class:`Job` methods from separate
tasks: the planner :meth:`Job.plan`, each mapped node :meth:`Job.run_node`, the reducer
:meth:`Job.reduce` (or :meth:`Job.adopt` to take a finished earlier run's result as its own).
Nothing outside the engine needs to reach further in than this module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..config import ParallelRunConfig, check_arguments
from ..errors import ConfigError, StateError
from ..inputs import SideInput
from ..leases import OutputInUse, OutputLock, has_atomic_create
from ..logs import JOB_REPORT, JOB_RESULT, USER_ERROR_SUMMARY
from ..plan import JOB_FILE, JobPlan, MiniBatch, adopt_plan, plan_job, script_fingerprint
from ..reduce import NODE_STARTS_DIR, JobResult, reduce_job, write_job_result
from ..results import RESULTS_DIR, MiniBatchRecord
from ..source import Manifest, job_manifest, manifest_hash, manifest_record, store_manifest
from ..storage import (
    STATE_DIR,
    current_umask,
    is_remote_url,
    keep_files_owner_writable,
    local_path,
    open_location,
)
from ..thresholds import Totals, clear_counts
from .checks import (
    check_inputs,
    check_node_machine,
    check_output_outside_inputs,
    input_folder,
    resolve_entry_script,
)
from .claims import clear_claims
from .local_run import LocalRun, Progress
from .node import Node, NodeResult, NodeSpec
from .ownership import take_output
from .reaper import end_leftovers

__all__ = [
    "JOB_REPORT", "JOB_RESULT", "STATE_DIR", "USER_ERROR_SUMMARY",
    "AbortSwitch", "EarlierRun", "Job", "JobPlan", "JobResult", "MiniBatchRecord", "NodeResult",
    "OutputInUse", "OutputLock", "Progress", "Totals", "run_job",
]

RecordListener = Callable[[int, MiniBatchRecord], None]
# How long the lock of a run made of several processes (Airflow tasks) holds without being
# renewed: long enough for its next task to be scheduled, short enough that a crashed run
# frees the output the same day.
SHARED_LEASE_SECONDS = 30 * 60.0

# What the plan was made from (entry script, its folder, arguments, result-shaping settings):
# a node or reducer started later (an Airflow task cleared after an edit) compares with it.
DEFINITION_FILE = f"{STATE_DIR}/definition.json"
SCRIPT_CHANGED = ("the entry script changed since this run was planned: clear the whole step "
                  "(planner) to start again")
DEFINITION_CHANGED = ("the arguments or the settings that shape results changed since this run "
                      "was planned: clear the whole step (planner) to start again")


@dataclass
class EarlierRun:
    """A finished run with the same inputs, script, configuration and arguments, whose
    result a job may adopt instead of running: its output file and what it counted."""

    name: str  # how this job's logs name it, with its output folder
    output_file: str | None  # None when it wrote no output file (summary_only)
    totals: Totals
    mini_batch_count: int
    item_count: int | None
    output_dir: str | None = None  # its folder, where its report is

    @classmethod
    def from_result(cls, name: str, result: dict[str, Any]) -> EarlierRun:
        """From that run's ``JobResult.to_dict()``."""
        return cls(name, result.get("output_file"), Totals(**result["totals"]),
                   result["mini_batch_count"], result["item_count"], result.get("output_dir"))

    def report(self) -> str | None:
        """Its job report (a reusing run's folder has none of its own)."""
        return None if self.output_dir is None else f"{self.output_dir.rstrip('/')}/{JOB_REPORT}"


class AbortSwitch:
    """Stops a node from another thread or a signal handler, also when pulled before the
    node exists (a task may be killed while its node is still being made)."""

    def __init__(self) -> None:
        self.pulled = False
        self._node: Node | None = None

    def pull(self) -> None:
        self.pulled = True
        if self._node is not None:
            self._node.abort()

    def connect(self, node: Node) -> None:
        self._node = node
        if self.pulled:
            node.abort()


class Job:
    """What the user asked for, checked: config (rendered), inputs, output, arguments, side inputs.

    Made once per process that takes part (the CLI; each Airflow task); cheap to make.
    """

    def __init__(self, config: ParallelRunConfig, inputs: Sequence[Any], output: str,
                 arguments: Sequence[Any] | None = None,
                 side_inputs: Sequence[SideInput] | None = None,
                 output_storage_options: dict[str, Any] | None = None,
                 secrets: Sequence[str] = (), stat_inputs: bool = True) -> None:
        """``stat_inputs=False``: local input files are not stat'ed while planning (much faster
        for many small files); whether a resumed run's finished mini-batches still match their
        files is then checked by the node, from the sizes and times the workers recorded."""
        keep_files_owner_writable()
        self.secrets = list(secrets)
        self.stat_inputs = stat_inputs
        self.config = config
        self.inputs = list(inputs)
        self.arguments = check_arguments(list(arguments or []))
        self.side_inputs = _with_argument_side_inputs(list(side_inputs or []), self.arguments)
        self.script = resolve_entry_script(self.config)
        self.output_storage_options = dict(output_storage_options or {})
        self.location = open_location(output, self.output_storage_options)
        if self.location.is_remote:
            self.location.check_writable()
        for side in self.side_inputs:
            side.check()
        check_inputs(self.config, self.inputs)
        check_output_outside_inputs(output, self.inputs)
        self._manifest: Manifest | None = None
        self._offered_manifest: dict[str, Any] | None = None
        names = [d.name for d in self.inputs]
        if len(set(names)) != len(names):
            raise ConfigError(f"inputs: names must differ, got {names}")

    # -- fingerprints: what decides whether a result can be resumed or reused -------------------

    def fingerprinted_arguments(self) -> list[str]:
        """The arguments as they count for resume and reuse: a SideInput by its path, not its copy."""
        return [f"SideInput({a.path!r})" if isinstance(a, SideInput) else str(a)
                for a in self.arguments]

    def script_fingerprint(self) -> str:
        """A hash of the entry script and its folder alone (no settings, no arguments)."""
        return script_fingerprint(ParallelRunConfig(entry_script=self.config.entry_script),
                                  self.script.path, manifest_hash(self.source_manifest()), [])

    def source_manifest(self) -> Manifest:
        """The files of the script's folder that are part of the job (see source.py); the
        same all through this process, so that plan and reuse agree."""
        if self._manifest is None:
            left_out = [input_folder(spec) for dataset in self.inputs
                        for spec in getattr(dataset, "paths", []) if not is_remote_url(spec)]
            if not self.location.is_remote:
                left_out.append(self.location.display())
            self._manifest = job_manifest(self.location, self.script.working_dir,
                                          [local_path(path) for path in left_out],
                                          self._offered_manifest)
        return self._manifest

    def source_record(self) -> dict[str, Any]:
        """The script's folder and its manifest, for :meth:`offer_source` in a later job."""
        return manifest_record(self.script.working_dir, self.source_manifest())

    def offer_source(self, record: dict[str, Any] | None) -> None:
        """An earlier run's :meth:`source_record`: taken as this job's while its files are as
        they were, so that files the script made since do not make the folder another one."""
        self._offered_manifest = record

    # -- the output's lock ----------------------------------------------------------------------

    def hold_output(self, holder: str | None = None) -> OutputLock:
        """Take the output's lock (:class:`OutputInUse` names a live holder otherwise).

        ``holder=None``: this process alone is the run (``parallel-run``): its lock ends with
        it. A ``holder`` names a run whose steps are processes one after the other (an Airflow
        DAG run's step): each takes the lock again, and only its expiry frees it."""
        if holder is None:
            return take_output(self.location, f"parallel-run {uuid.uuid4().hex}",
                               job=f"parallel-run {os.path.basename(self.script.path)}")
        return take_output(self.location, holder, job=holder, ttl=SHARED_LEASE_SECONDS,
                           pid_bound=False)

    # -- the steps ------------------------------------------------------------------------------

    def plan(self, on_batch: Callable[[MiniBatch], None] | None = None,
             keep_previous_result: bool = False) -> JobPlan:
        """List the inputs into a plan in the output location; resume an identical earlier run.
        ``on_batch`` hears of each mini-batch as soon as it is planned. A fresh run removes
        the previous job's result first (:meth:`clear_previous_result`), unless
        ``keep_previous_result``: the caller does once it knows the result is not reused."""
        started = time.time()
        config, location = self.config, self.location
        location.makedirs()
        if location.read_json(JOB_FILE) is None:
            # Records without a job are left by a run stopped while it was still planning (its
            # node ran mini-batches as they were planned): they belong to no plan, and must not
            # pass for this run's results.
            location.remove(RESULTS_DIR)
            if not keep_previous_result:  # no job to resume: a fresh run, whatever follows
                self.clear_previous_result()
        manifest = self.source_manifest()
        base = script_fingerprint(config, self.script.path, manifest_hash(manifest),
                                  self.fingerprinted_arguments())
        summary = plan_job(self.inputs, config, location, base, note=self._note,
                           stats=self.stat_inputs, on_batch=on_batch)
        resumed = adopt_plan(location, summary)
        store_manifest(location, self.script.working_dir, manifest)
        if not resumed and not keep_previous_result:
            self.clear_previous_result()
        location.write_json(DEFINITION_FILE, {"definition": base,
                                              "script": self.script_fingerprint()})
        clear_counts(location)
        clear_claims(location)
        node_count = max(1, min(int(config.node_count), summary.mini_batch_count))
        self._note(
            f"planned {logs.count(summary.item_count)} items in {summary.mini_batch_count} "
            f"mini-batches from {len(self.inputs)} input(s) in {summary.planning_seconds:.2f} s; "
            f"{node_count} node(s) x {config.process_count_per_node} process(es); "
            + ("resuming an earlier run of the same job" if resumed else "fresh run"))
        if node_count > 1:
            self._note(self.sharing_mode())
        return JobPlan(str(location.url), summary.mini_batch_count, summary.item_count,
                       node_count, summary.fingerprint, resumed, started)

    def sharing_mode(self) -> str:
        """How the nodes divide the work, for master_role.txt."""
        if not self.config.work_sharing:
            return "fixed shares: each node runs its own share of the plan (work_sharing is off)"
        if not has_atomic_create(self.location):
            return ("fixed shares: each node runs its own share of the plan (this store offers "
                    "no atomic create, which claims need)")
        return (f"work sharing: nodes claim units of the plan in .parallel_run/claims, their own "
                f"share first; a unit not renewed for {self.config.lease_timeout:g} s "
                "(lease_timeout) is taken over")

    def shares_work(self, job_plan: JobPlan) -> bool:
        """The nodes of this job claim units from each other (else: fixed shares)."""
        return (job_plan.node_count > 1 and self.config.work_sharing
                and has_atomic_create(self.location))

    def definition_fingerprint(self) -> str:
        """The entry script, its folder, the arguments and the settings that shape results."""
        return script_fingerprint(self.config, self.script.path,
                                  manifest_hash(self.source_manifest()),
                                  self.fingerprinted_arguments())

    def check_unchanged(self) -> None:
        """Refuse to run or judge a plan made from another script, arguments or settings:
        its finished mini-batches would mix with ours in one output."""
        planned = self.location.read_json(DEFINITION_FILE)
        if not isinstance(planned, dict):
            return  # state of an older version, or no plan: nothing to compare with
        if planned.get("script") != self.script_fingerprint():
            raise StateError(SCRIPT_CHANGED)
        if planned.get("definition") != self.definition_fingerprint():
            raise StateError(DEFINITION_CHANGED)

    def make_node(self, job_plan: JobPlan | None, node_index: int,
                  on_record: RecordListener | None = None,
                  on_tick: Callable[[], None] | None = None) -> Node:
        """Node ``node_index`` of the plan; without a plan yet, a node to start early whose
        share :meth:`Node.assign` gives later."""
        spec = NodeSpec(config=self.config,
                        # A node started early has no plan until assign(): NodeSpec.plan is
                        # None until then, which its annotation does not say yet.
                        plan=job_plan,  # type: ignore[arg-type]
                        entry_script=self.script.path, working_dir=self.script.working_dir,
                        arguments=self.arguments, output=self.location, node_index=node_index,
                        datasets={d.name: d for d in self.inputs},
                        side_inputs=self.side_inputs, secrets=self.secrets)
        indices = job_plan.shard(node_index) if job_plan is not None else range(0)
        return Node(spec, indices, on_record, on_tick)

    def run_node(self, job_plan: JobPlan, node_index: int,
                 on_record: RecordListener | None = None,
                 on_tick: Callable[[], None] | None = None,
                 abort: AbortSwitch | None = None) -> NodeResult:
        """Run node ``node_index``'s shard of the plan on this machine; mini-batches that
        already have a result are not run again. ``abort`` stops it from another thread."""
        node = self.node_to_run(job_plan, node_index, on_record, on_tick)
        if abort is not None:
            abort.connect(node)
        return node.run()

    def has_results(self) -> bool:
        """Some mini-batch of this output has a record (an earlier try ran it)."""
        return bool(self.location.listdir(RESULTS_DIR))

    def node_to_run(self, job_plan: JobPlan, node_index: int,
                    on_record: RecordListener | None = None,
                    on_tick: Callable[[], None] | None = None) -> Node:
        """Node ``node_index``, made to run now: refused when the script, its arguments or
        the settings that shape results changed since the plan (StateError)."""
        self.check_unchanged()
        self.location.write_json(f"{NODE_STARTS_DIR}/node-{node_index}.json", {"at": time.time()})
        return self.make_node(job_plan, node_index, on_record, on_tick)

    def reduce(self, job_plan: JobPlan, node_results: Sequence[NodeResult | None],
               resume_how: str = "run it again to resume") -> JobResult:
        """Judge the job from its records; a node that did not report counts against it (with
        shared work, only when a mini-batch has no result). ``resume_how``: what the user does
        to resume an interrupted job, where it runs."""
        self.check_unchanged()
        reasons = [r.stop_reason for r in node_results if r is not None and r.stop_reason]
        # With shared work, other nodes take over the units of a node that was lost or stopped:
        # that counts against the job only when a mini-batch is left without a result.
        soft: list[str] = []
        lost = soft if self.shares_work(job_plan) else reasons
        if any(r is None for r in node_results):
            lost.append("a node did not report its result")
        stopped = [r.node_index for r in node_results if r is not None and r.aborted]
        if stopped:
            nodes = ", ".join(f"node {i + 1} of {job_plan.node_count}" for i in stopped)
            lost.append(f"the job was interrupted before it finished ({nodes} stopped); "
                        f"{resume_how}")
        result = reduce_job(self.location, self.config, job_plan, reasons,
                            if_missing=soft[0] if soft else None)
        if job_plan.mini_batch_count == 0:
            result.notes.append("the input is empty: nothing to do")
        return result

    def adopt(self, earlier: EarlierRun) -> JobResult:
        """Make a finished earlier run's result this job's: its output file, linked or copied."""
        location = self.location
        location.makedirs()
        output_file = None
        if earlier.output_file:
            name = self.config.append_row_file_name
            if earlier.output_file != location.display(name):  # not a rerun of that very run
                tmp = location.local_temp(name)
                _local_copy(earlier.output_file, tmp, self.output_storage_options)
                location.put_file(tmp, name)
            output_file = location.display(name)
        note = (f"reused the result of {earlier.name}: inputs, script, configuration and "
                "arguments are the same")
        result = JobResult(True, None, earlier.totals, earlier.mini_batch_count,
                           earlier.item_count, location.display(), output_file, notes=[note])
        write_job_result(location, result, None, report=earlier.report() or JOB_REPORT,
                         reused=note)
        self._note(note)
        return result

    def clear_state(self, with_logs: bool = False) -> None:
        """Remove the job's state (plan, records, counts): a plan no node will run."""
        if with_logs:
            self.location.remove("logs")
        self.location.remove(STATE_DIR)

    def clear_previous_result(self) -> None:
        """A fresh run: the previous job's output file and result go before any work starts,
        so that a run stopped half way never leaves them to pass for its own."""
        location = self.location
        earlier = location.read_json(logs.JOB_RESULT_JSON) or {}
        names = {self.config.append_row_file_name, logs.JOB_RESULT, logs.JOB_RESULT_JSON}
        prefix = location.display("").rstrip("/") + "/"
        output_file = earlier.get("output_file") if isinstance(earlier, dict) else None
        if isinstance(output_file, str) and output_file.startswith(prefix):
            rel = output_file[len(prefix):]  # a job with another append_row_file_name
            if rel and not rel.startswith((STATE_DIR, "logs")):
                names.add(rel)
        gone = sorted(name for name in names if location.exists(name))
        for name in gone:
            location.remove(name)
        if gone:
            self._note("fresh run: removed the previous job's " + ", ".join(gone)
                       + " before any work started")

    def _note(self, text: str) -> None:
        self.location.append_text(logs.MASTER_ROLE, logs.line(text))


def _with_argument_side_inputs(side_inputs: list[SideInput],
                               arguments: Sequence[Any]) -> list[SideInput]:
    """A SideInput given only among the arguments is fetched by the node like the others."""
    for arg in arguments:
        if isinstance(arg, SideInput) and arg.name not in {s.name for s in side_inputs}:
            side_inputs.append(arg)
    return side_inputs


def _local_copy(source: str, local: str, storage_options: dict[str, Any]) -> None:
    """A local copy of ``source``: a hard link when it can be, else a download or a copy."""
    if is_remote_url(source):
        import fsspec

        fs, path = fsspec.core.url_to_fs(source, **storage_options)
        fs.get_file(path, local)
        return
    source = local_path(source)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(local)  # a remote location's temp file exists already
    try:
        os.link(source, local)
    except OSError:
        shutil.copyfile(source, local)


def run_job(
    config: ParallelRunConfig,
    inputs: Sequence[Any],
    output: str,
    arguments: Sequence[Any] | None = None,
    side_inputs: Sequence[SideInput] | None = None,
    on_plan: Callable[[JobPlan, Progress], None] | None = None,
    stop_event: threading.Event | None = None,
    output_storage_options: dict[str, Any] | None = None,
    secrets: Sequence[str] = (),
    stat_inputs: bool = True,
) -> JobResult:
    """Plan, run every node on this machine (a thread each), reduce.

    Raises ParallelRunError on bad input (ConfigError, InputError, EntryScriptError) and when
    another live run holds the output (OutputInUse); StoreUnavailable when a store stopped
    answering for longer than the job waits (running it again resumes). The job's files are
    never group- or other-writable; the process's umask is as it was after.
    """
    umask = current_umask()
    try:
        return _run_job(config, inputs, output, arguments, side_inputs, on_plan, stop_event,
                        output_storage_options, secrets, stat_inputs)
    finally:
        os.umask(umask)


def _run_job(config: ParallelRunConfig, inputs: Sequence[Any], output: str,
             arguments: Sequence[Any] | None, side_inputs: Sequence[SideInput] | None,
             on_plan: Callable[[JobPlan, Progress], None] | None,
             stop_event: threading.Event | None, output_storage_options: dict[str, Any] | None,
             secrets: Sequence[str], stat_inputs: bool) -> JobResult:
    job = Job(config, inputs, output, arguments, side_inputs, output_storage_options, secrets,
              stat_inputs)
    check_node_machine(job.config)  # every node runs here
    job.location.makedirs()  # a clear error (an output that is a file) before anything starts
    # one live run per output: a second run (of this job or another) is refused before it
    # touches anything there; each run is a holder of its own
    lock = job.hold_output()
    lock.start_renewing()
    try:
        end_leftovers(job.location)  # what a run of this job killed -9 left running
        return _run(job, on_plan, stop_event)
    finally:
        lock.release()


def _run(job: Job, on_plan: Callable[[JobPlan, Progress], None] | None,
         stop_event: threading.Event | None) -> JobResult:
    run = LocalRun(job)
    try:
        job_plan = job.plan(run.on_batch)
    except BaseException:
        run.planning_failed()
        raise
    run.planned(job_plan)
    if on_plan is not None:
        on_plan(job_plan, run.progress)
    results = run.run(job_plan, stop_event)
    return job.reduce(job_plan, results or [])
