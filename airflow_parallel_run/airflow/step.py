"""What one ParallelRunOperator step is made of, and the descriptors its tasks pass on.

Data flows one way, through XCom, as small named types::

    planner --StepPlan (key "plan"), [Shard, ...] (return value)--> node k --NodeResult--> reducer

A StepPlan is a few hundred bytes whatever the size of the input: the mini-batches themselves
are in the output location, written by the engine's planner and read by each node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import TEMPLATABLE_FIELDS, ParallelRunConfig, check_arguments
from ..engine.job import Job
from ..errors import ConfigError
from ..inputs import SideInput
from ..inputs.files import is_one_path, path_text
from .connections import scheme_of, secret_values, split_conn, storage_options, with_credentials
from .templated import ConfigTemplate, as_template

PLAN_KEY = "plan"  # the planner's StepPlan
NODE_RESULT_KEY = "node_result"  # each node's NodeResult, pushed even when the node fails


@dataclass
class StepDefinition:
    """What the DAG author gave ParallelRunOperator; checked at parse time, never listed there."""

    name: str
    config: ConfigTemplate
    inputs: list[Any]
    output: str | None = None
    side_inputs: list[SideInput] = field(default_factory=list)
    arguments: list[Any] = field(default_factory=list)
    allow_reuse: bool = True
    output_conn_id: str | None = None  # credentials for the output location and the output root

    def __post_init__(self) -> None:
        self.config = as_template(self.config)
        if not isinstance(self.inputs, Sequence) or isinstance(self.inputs, str):
            self.inputs = [self.inputs]
        self.inputs = list(self.inputs)
        if not self.inputs:
            raise ConfigError("inputs: give at least one dataset (FileDataset.from_files(...))")
        names = [getattr(d, "name", None) for d in self.inputs]
        if len(set(names)) != len(names):
            raise ConfigError(f"inputs: names must differ, got {names}")
        if self.output is not None:
            self.output, self.output_conn_id = _output_and_conn(self.output, self.output_conn_id)
        self.side_inputs = list(self.side_inputs or [])
        self.arguments = check_arguments(list(self.arguments or []))

    @property
    def templated_settings(self) -> dict[str, str]:
        """The config fields that hold ``"{{ params.x }}"``: rendered by the planner."""
        return dict(self.config.templates)

    def output_options(self) -> dict[str, Any]:
        """The output's storage options: the step's connection, else the configured one."""
        from .provider import default_output_conn_id, output_root

        conn_id = self.output_conn_id or default_output_conn_id()
        scheme = scheme_of(self.output if self.output is not None else output_root())
        return storage_options(conn_id, scheme) if conn_id else {}

    def job(self, settings: dict[str, Any], output: str) -> Job:
        """The engine's Job, with rendered settings and the connections' credentials."""
        arguments = [with_credentials(a) if isinstance(a, SideInput) else a for a in self.arguments]
        inputs = [with_credentials(d) for d in self.inputs]
        side_inputs = [with_credentials(s) for s in self.side_inputs]
        output_options = self.output_options()
        with_options = [*inputs, *side_inputs, *(a for a in arguments if isinstance(a, SideInput))]
        secrets = secret_values([output_options, *(x.storage_options for x in with_options)])
        return Job(self.config.render(settings), inputs, output, arguments, side_inputs,
                   output_storage_options=output_options, secrets=secrets,
                   stat_inputs=True)  # allow_reuse compares the inputs' sizes and times


def _output_and_conn(output: Any, output_conn_id: str | None) -> tuple[str, str | None]:
    """The output as a URL, and its connection: an ObjectStoragePath (``s3://conn_id@b/k``)
    names its own."""
    text = path_text(output) if is_one_path(output) else output
    if not isinstance(text, str):
        raise ConfigError(f"output = {output!r}: must be a folder path or URL")
    url, conn_id = split_conn(text)
    if conn_id and output_conn_id and conn_id != output_conn_id:
        raise ConfigError(f"output names connection {conn_id!r} and output_conn_id "
                          f"= {output_conn_id!r}: give one")
    return url, output_conn_id or conn_id


def rendered_settings(config: ParallelRunConfig) -> dict[str, Any]:
    """The fields that may come from Params, as plain JSON values for XCom."""
    data = config.to_dict()
    return {name: data[name] for name in TEMPLATABLE_FIELDS}


@dataclass
class Shard:
    """What one mapped node instance is told: which share of the plan is its own."""

    node_index: int
    node_count: int
    mini_batches: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        return cls(**data)

    def label(self) -> str:
        return f"node {self.node_index + 1} of {self.node_count}: {self.mini_batches} mini-batches"


@dataclass
class StepPlan:
    """The planner's answer for nodes and reducer: the engine's JobPlan plus what Airflow added."""

    job: dict[str, Any]  # JobPlan.to_dict()
    settings: dict[str, Any]  # the rendered values of TEMPLATABLE_FIELDS
    reuse_key: str
    reused_from: dict[str, Any] | None = None  # a finished run's index entry (allow_reuse hit)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepPlan:
        return cls(**data)
