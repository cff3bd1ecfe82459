"""allow_reuse: an index of finished runs under the output root, keyed by what decides a result.

The key is the engine's plan fingerprint (inputs' names, sizes and modification times or
etags; the entry script and its folder's manifest (source.py); the arguments; the settings that shape results) joined
with the whole rendered configuration. A reducer that succeeds records its run with a hash
of its output file's content; a planner that finds the same key reuses that run's output
only while its content is still the one recorded (the folder may have run again since, with
another script: an entry never outlives the output it points at).

Layout under ``<output_root>/.reuse/``::

    runs/<key>.json            a finished run: where its output is, what it counted
    steps/<dag_id>/<step>.json the latest finished run of a step: to explain a miss
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from ..config import ParallelRunConfig
from ..engine.job import JOB_RESULT, EarlierRun, Job, JobPlan
from ..logs import JOB_RESULT_JSON
from ..storage import is_remote_url, local_path, open_location

INDEX_DIR = ".reuse"
# What a hit passes on (in the planner's XCom): enough to adopt the result and say whose.
REUSED_FIELDS = ("run_id", "dag_id", "step", "output", "output_file", "result")


@dataclass
class ReuseFacts:
    """What a miss is explained with: compared field by field with the step's last run."""

    config: dict[str, Any]
    arguments: list[str]
    script: str  # hash of the entry script and its folder
    source: dict[str, Any] | None = None  # the folder's manifest (Job.source_record)

    @classmethod
    def of(cls, job: Job) -> ReuseFacts:
        return cls(job.config.to_dict(), job.fingerprinted_arguments(), job.script_fingerprint(),
                   job.source_record())


def reuse_key(job_plan: JobPlan, config: ParallelRunConfig) -> str:
    text = json.dumps({"fingerprint": job_plan.fingerprint, "config": config.to_dict()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Decision:
    """The planner's answer, and on a hit the finished run's entry (fields of REUSED_FIELDS)."""

    hit: bool
    message: str
    entry: dict[str, Any] | None = None


def earlier_run(entry: dict[str, Any]) -> EarlierRun:
    """What the reducer adopts, from a hit's entry."""
    name = f"run {entry['run_id']!r} of {entry['dag_id']}.{entry['step']} ({entry['output']})"
    return EarlierRun.from_result(name, entry["result"])


class ReuseIndex:
    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        self.storage_options = dict(storage_options or {})
        self.location = open_location(root, self.storage_options)

    def _run_rel(self, key: str) -> str:
        return f"{INDEX_DIR}/runs/{key}.json"

    def _step_rel(self, dag_id: str, step: str) -> str:
        return f"{INDEX_DIR}/steps/{dag_id}/{step}.json"

    def decide(self, key: str, dag_id: str, step: str, facts: ReuseFacts) -> Decision:
        entry = self.location.read_json(self._run_rel(key))
        if entry is not None:
            if self._output_present(entry) and self._content_hash(entry) != entry.get("content"):
                miss = (f"the matching run {entry['run_id']!r} finished, but its output "
                        f"{entry['output']} has changed since (that folder ran again)")
            elif self._output_present(entry):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["finished"]))
                return Decision(True, (
                    "reuse: HIT: the inputs (names, sizes, modification times), the entry "
                    "script's folder, the configuration and the arguments are those of run "
                    f"{entry['run_id']!r} of {entry['dag_id']}.{entry['step']}, finished {when}; "
                    f"its result is reused from {entry['output']}"),
                    {k: entry[k] for k in REUSED_FIELDS})
            miss = (f"the matching run {entry['run_id']!r} finished, but its output "
                    f"{entry['output']} is gone")
        else:
            miss = self._explain(dag_id, step, facts)
        return Decision(False, f"reuse: MISS: {miss}; running the step")

    def last_source(self, dag_id: str, step: str) -> dict[str, Any] | None:
        """The script folder's manifest of the step's latest finished run (for Job.offer_source:
        files its script wrote into its folder since do not make a miss)."""
        last = self.location.read_json(self._step_rel(dag_id, step))
        return None if last is None else last["facts"].get("source")

    def _explain(self, dag_id: str, step: str, facts: ReuseFacts) -> str:
        last = self.location.read_json(self._step_rel(dag_id, step))
        if last is None:
            return "no earlier finished run of this step"
        before = last["facts"]
        changed = [f"{name} {before['config'].get(name)!r} -> {value!r}"
                   for name, value in facts.config.items() if before["config"].get(name) != value]
        since = f"since run {last['run_id']!r}"
        if changed:
            return f"the configuration changed {since}: " + ", ".join(changed)
        if before["arguments"] != facts.arguments:
            return f"the arguments changed {since}: {before['arguments']} -> {facts.arguments}"
        if before["script"] != facts.script:
            return f"the entry script or its folder changed {since}"
        return f"the inputs changed {since} (names, sizes or modification times)"

    def record(self, key: str, dag_id: str, step: str, run_id: str, facts: ReuseFacts,
               result: dict[str, Any]) -> None:
        entry = {"key": key, "dag_id": dag_id, "step": step, "run_id": run_id,
                 "finished": time.time(), "output": result["output_dir"],
                 "output_file": result.get("output_file"), "result": result,
                 "facts": facts.__dict__}
        entry["content"] = self._content_hash(entry)
        self.location.write_json(self._run_rel(key), entry)
        self.location.write_json(self._step_rel(dag_id, step), entry)

    def _output_present(self, entry: dict[str, Any]) -> bool:
        """The earlier run's output file (or, for summary_only, its result log) is still there."""
        output = open_location(entry["output"], self.storage_options)
        return output.exists(_output_name(entry))

    def _content_hash(self, entry: dict[str, Any]) -> str | None:
        """A hash of the run's output file (for summary_only, of its result), read in blocks."""
        output = open_location(entry["output"], self.storage_options)
        rel = JOB_RESULT_JSON if not entry.get("output_file") else _output_name(entry)
        url = output.display(rel)
        try:
            if is_remote_url(url):
                import fsspec

                handle = fsspec.open(url, "rb", **self.storage_options).open()
            else:
                handle = open(local_path(url), "rb")
            with handle:
                digest = hashlib.file_digest(handle, "sha256")
        except FileNotFoundError:
            return None
        return digest.hexdigest()


def _output_name(entry: dict[str, Any]) -> str:
    return entry["output_file"].rstrip("/").rsplit("/", 1)[-1] if entry.get("output_file") \
        else JOB_RESULT
