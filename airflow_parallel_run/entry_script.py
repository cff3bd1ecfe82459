"""EntryScript: what an entry script may ask about where it runs (Azure's helper, our way).

``from airflow_parallel_run import EntryScript`` and, inside worker processes,
``from azureml_user.parallel_run import EntryScript`` give the same per-process singleton.
Outside a worker (a script tried in a plain Python shell) it still works: the logger writes
to stderr and the folders are the current one.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from dataclasses import dataclass, field

_LOG_FORMAT = "%(asctime)s %(levelname)s %(process)d %(message)s"


@dataclass
class _Context:
    log_dir: str
    output_dir: str
    working_dir: str
    node_id: str
    process_name: str
    side_inputs: dict[str, str] = field(default_factory=dict)
    log_file: str | None = None
    logging_level: str = "INFO"


_context: _Context | None = None


def configure(context: _Context) -> None:
    """Called by the worker process before it loads the entry script."""
    global _context
    _context = context
    EntryScript._instance = None


class EntryScript:
    """Per-process singleton: ``logger``, ``log_dir``, ``output_dir``, ``working_dir``,
    ``node_id``, ``process_name`` (alias ``agent_name``) and ``side_inputs``."""

    _instance: EntryScript | None = None

    def __new__(cls) -> EntryScript:
        if cls._instance is None:
            instance = super().__new__(cls)
            instance._setup(_context)
            cls._instance = instance
        return cls._instance

    def _setup(self, context: _Context | None) -> None:
        cwd = os.getcwd()
        if context is None:
            context = _Context(log_dir=cwd, output_dir=cwd, working_dir=cwd, node_id="local",
                               process_name=f"process{os.getpid()}")
        self.log_dir = context.log_dir
        self.output_dir = context.output_dir
        self.working_dir = context.working_dir
        self.node_id = context.node_id
        self.process_name = context.process_name
        self.side_inputs = dict(context.side_inputs)
        self.logger = logging.getLogger(f"airflow_parallel_run.entry_script.{self.process_name}")
        self.logger.setLevel(context.logging_level)
        self.logger.propagate = context.log_file is None
        if context.log_file is not None and not self.logger.handlers:
            os.makedirs(os.path.dirname(context.log_file), exist_ok=True)
            handler = logging.FileHandler(context.log_file, encoding="utf-8")
            handler.setFormatter(logging.Formatter(_LOG_FORMAT))
            self.logger.addHandler(handler)
        elif context.log_file is None and not logging.getLogger().handlers:
            logging.basicConfig(format=_LOG_FORMAT, stream=sys.stderr)

    @property
    def agent_name(self) -> str:
        return self.process_name

    def get_side_input(self, name: str) -> str:
        try:
            return self.side_inputs[name]
        except KeyError:
            known = ", ".join(sorted(self.side_inputs)) or "none"
            raise KeyError(f"side input {name!r} is not known (known: {known})") from None


def install_azureml_alias() -> None:
    """Make ``azureml_user.parallel_run`` resolve to this module, in this process only."""
    package = types.ModuleType("azureml_user")
    package.__path__ = []  # a package, so the submodule import is allowed
    module = sys.modules[__name__]
    package.parallel_run = module  # type: ignore[attr-defined]
    sys.modules["azureml_user"] = package
    sys.modules["azureml_user.parallel_run"] = module
