"""What a node keeps in its local cache folder once it has work, and how it starts workers.

The folder (made and removed by the node) holds the side inputs, the remote input files of
running mini-batches and, for a remote output, the staging folder of records and logs. The
resource monitor samples the workers meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import logs
from ..inputs import SideInput
from ..storage import LocalLocation
from .log_pump import LogPump
from .messages import WorkerSpec
from .processes import WorkerProcess
from .reaper import TAG, ProcessTracker
from .staging import Staging
from .template import WorkerTemplate, available

if TYPE_CHECKING:
    from .node import NodeSpec
    from .node_logs import NodeLogs


class NodeCache:
    def __init__(self, spec: NodeSpec, cache_dir: str, node_logs: NodeLogs,
                 process_names: list[str], pids: Callable[[], dict[str, int]]) -> None:
        """``pids`` tells the resource monitor which processes to sample."""
        self.dir = cache_dir
        work = node_logs.stage_in(self.dir, process_names)
        self.staging = Staging(self.dir, spec.datasets, work, spec.output, node_logs.master)
        self.tracker = ProcessTracker(spec.output, spec.node_index)
        # with secrets, the workers' stdout and stderr are masked before they reach a file
        self.pump = LogPump(node_logs.masker) if node_logs.masker else None
        self.launcher = WorkerLauncher(spec, self.dir, work, len(process_names), self.tracker,
                                       self.pump)
        from ..monitor import ResourceMonitor

        self.monitor = ResourceMonitor(
            work, spec.ip, float(spec.config.resource_monitor_interval), pids,
            redact=node_logs.masker.mask if node_logs.masker else None)
        self.monitor.start()

    def close(self) -> None:
        """Once the workers are killed: the monitor stops, the template and what the
        workers started end."""
        self.monitor.stop()
        self.launcher.close()
        self.tracker.end_all()

    def stop_pump(self) -> None:
        """Once every worker is gone: the last of their output, masked, into the logs."""
        if self.pump is not None:
            self.pump.stop()


class WorkerLauncher:
    """The pool's process factory: workers share one spec and one environment. A table
    job's workers are forked from a template that has imported pandas and pyarrow (made
    here, at once: it imports while the planner reads the input); others are spawned."""

    def __init__(self, spec: NodeSpec, cache_dir: str, work: LocalLocation, workers: int,
                 tracker: ProcessTracker, pump: LogPump | None = None) -> None:
        """``work`` holds the workers' output and logs; ``workers`` share the machine's cores;
        ``tracker`` follows every process a worker starts; ``pump`` masks their output."""
        self.spec = spec
        self.tracker = tracker
        self.work = work
        self.pump = pump
        worker = worker_spec(spec, cache_dir, work, workers)
        self.spec_json = worker.to_json()
        self.env = worker_env(spec.config.environment_variables)
        self.template: WorkerTemplate | None = None
        if worker.tables and tracker.subreaper and available():
            # Tagged as the node's: what a worker forks without exec carries the template's
            # environment, and is still ended with the node.
            tag = f"{tracker.token}:0"
            try:
                self.template = WorkerTemplate({**self.env, TAG: tag}, spec.working_dir)
            except OSError:  # no process to spare: the workers are spawned, each on its own
                self.template = None
            else:
                tracker.started(self.template.popen.pid, tag)  # not one of the workers'

    def launch(self, name: str) -> WorkerProcess:
        ip = self.spec.ip
        tag = self.tracker.new_tag()
        process = WorkerProcess(
            name, self.spec_json,
            str(self.work.path(logs.user_stdout(ip, name))),
            str(self.work.path(logs.user_stderr(ip, name))),
            cwd=self.spec.working_dir, env={**self.env, TAG: tag}, pump=self.pump,
            on_killed=self.tracker.end_worker, template=self.template,
        )
        self.tracker.started(process.pid, tag)
        return process

    def close(self) -> None:
        if self.template is not None:
            self.template.close()


def worker_spec(spec: NodeSpec, cache_dir: str, work: LocalLocation, workers: int) -> WorkerSpec:
    """Fetch the side inputs into ``cache_dir``; the workers' spec (sent to each, never written:
    it holds secrets and storage options)."""
    config = spec.config
    side_paths = {side.name: side.fetch(cache_dir) for side in spec.side_inputs}
    arguments = [side_paths[a.name] if isinstance(a, SideInput) else str(a)
                 for a in spec.arguments]
    return WorkerSpec(
        entry_script=spec.entry_script, working_dir=spec.working_dir,
        arguments=arguments, output_root=str(work.root),
        output_action=config.output_action,
        append_row_separator=config.append_row_separator,
        append_row_dataframe_header=config.append_row_dataframe_header,
        logging_level=config.logging_level, ip=spec.ip,
        node_index=spec.node_index, side_inputs=side_paths, secrets=list(spec.secrets),
        tables={name: {"options": d.options, "storage_options": d.storage_options}
                for name, d in spec.datasets.items() if d.kind == "tabular"},
        arrow_threads=arrow_threads(config.environment_variables, workers),
        memory_limit=config.worker_memory_limit,
    )


def arrow_threads(environment_variables: dict[str, str], workers: int) -> int:
    """pyarrow threads per worker when reading tables: the cores shared among the workers.

    pyarrow's default is a thread per core in every process; with a pool of workers that
    oversubscribes the cores (the tabular benchmark runs 7% faster with the share). An
    OMP_NUM_THREADS the user sets, on this process or in environment_variables, wins.
    """
    if "OMP_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in environment_variables:
        return 0
    return max(1, len(os.sched_getaffinity(0)) // workers)


def worker_env(environment_variables: dict[str, str]) -> dict[str, str]:
    """This process's environment with the user's variables, and this package importable."""
    env = dict(os.environ)
    env.update(environment_variables)
    # A worker holds one mini-batch at a time: with the system allocator pyarrow gives a
    # done mini-batch's buffers back at once, where mimalloc (its default) keeps them for
    # reuse: a table worker's peak is about 12 MB lower, at the same speed. A pool the user
    # names (here or in environment_variables) wins.
    env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    # The worker must import this package even when it is not installed (a source tree).
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env
