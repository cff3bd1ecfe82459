"""ParallelRunOperator: one object in the DAG, a task group of planner -> nodes -> reducer.

An operator cannot add task instances from ``execute()``, so the step is a TaskGroup that
builds its three tasks at parse time (the shape of astronomer-cosmos's DbtTaskGroup)::

    <task_id>.planner --> <task_id>.node [mapped: one instance per shard] --> <task_id>.reducer

The planner's return value (one Shard per node) is what ``node`` is expanded over, so the
number of node instances is decided at run time: ``min(node_count, mini-batches)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, TaskGroup, TriggerRule, XComArg

from ..config import ParallelRunConfig, is_template
from ..errors import ConfigError
from ..inputs import SideInput
from .provider import output_root
from .step import StepDefinition
from .tasks import ParallelRunNode, ParallelRunPlanner, ParallelRunReducer
from .templated import ConfigTemplate, as_template

# Arguments that shape the group itself rather than its tasks.
_GROUP_ARGS = ("dag", "parent_group", "tooltip", "ui_color", "ui_fgcolor", "prefix_group_id",
               "add_suffix_on_collision", "group_display_name")

MAP_INDEX_TEMPLATE = ("node {{ task.shard.node_index + 1 }} of {{ task.shard.node_count }}: "
                      "{{ task.shard.mini_batches }} mini-batches")


class ParallelRunOperator(TaskGroup):
    """Azure ML's ParallelRunStep as an Airflow step: ``entry_script`` over mini-batches.

    :param task_id: the step's name: the group id, and the last part of its default output
    :param parallel_run_config: a ParallelRunConfig, or a ConfigTemplate whose
        ``mini_batch_size``, ``node_count``, ``process_count_per_node``, ``logging_level``,
        ``run_invocation_timeout``, ``run_max_try`` and ``error_threshold`` may be
        ``"{{ params.x }}"`` (templated, checked after rendering before any work starts)
    :param inputs: a dataset (``FileDataset.from_files(...)``) or a list of them
    :param output: the output folder or URL; by default a folder per run,
        ``<[parallel_run] output_root>/<dag_id>/<task_id>/<run_id>``. Templated
        (``"s3://bucket/scores/{{ ds }}/"``): the planner renders it, and the rendered
        path is what a retry resumes and what reuse records
    :param side_inputs: SideInputs fetched once per node
    :param arguments: the entry script's ``sys.argv[1:]``; a SideInput in it becomes its local path
    :param allow_reuse: reuse a finished run's result when inputs, script folder,
        configuration and arguments are the same
    :param output_conn_id: an Airflow connection whose extras are the fsspec storage options
        of the output location (and of ``output_root``, where the reuse index is kept)
    :param node_kwargs: BaseOperator arguments for the node task alone, over ``task_kwargs``
        (``pool_slots``, ``pool``, ``queue``, ``executor_config`` with a pod_override...):
        the planner and the reducer are light, the nodes run the workers
    :param task_kwargs: BaseOperator arguments for the three tasks (``retries``, ``pool``,
        ``queue``, ``execution_timeout``, ``executor_config``...); ``trigger_rule`` and
        ``inlets`` go to the planner, ``outlets`` to the reducer
    """

    def __init__(
        self,
        task_id: str,
        parallel_run_config: ParallelRunConfig | ConfigTemplate,
        inputs: Any,
        output: str | None = None,
        side_inputs: Sequence[SideInput] | None = None,
        arguments: Sequence[Any] | None = None,
        allow_reuse: bool = True,
        *,
        output_conn_id: str | None = None,
        node_kwargs: dict[str, Any] | None = None,
        **task_kwargs: Any,
    ) -> None:
        group_kwargs = {name: task_kwargs.pop(name) for name in _GROUP_ARGS if name in task_kwargs}
        group_kwargs.setdefault("tooltip", "ParallelRunStep: planner -> mapped nodes -> reducer")
        super().__init__(group_id=task_id, **group_kwargs)
        config = as_template(parallel_run_config)
        step = StepDefinition(self.group_id or task_id, config, inputs, output,
                              list(side_inputs or []), list(arguments or []), allow_reuse,
                              output_conn_id)
        _check_map_length(config)
        self.step = step

        planner_kwargs = {k: task_kwargs.pop(k) for k in ("trigger_rule", "inlets")
                          if k in task_kwargs}
        outlets = [self._asset(step), *task_kwargs.pop("outlets", [])]
        node_args = {**task_kwargs, **_node_only(node_kwargs)}
        with self:
            self.planner = ParallelRunPlanner(task_id="planner", settings=step.templated_settings,
                                              output_path=step.output, **planner_kwargs, **task_kwargs)
            self.nodes = ParallelRunNode.partial(
                task_id="node", planner_task_id=self.planner.task_id,
                map_index_template=MAP_INDEX_TEMPLATE, **node_args,
            ).expand(shard=self.planner.output)
            self.reducer = ParallelRunReducer(
                task_id="reducer", planner_task_id=self.planner.task_id,
                node_task_id=self.nodes.task_id, trigger_rule=TriggerRule.ALL_DONE,
                outlets=outlets, **task_kwargs)
            self.nodes >> self.reducer

    @property
    def output(self) -> XComArg:
        """The reducer's result (JobResult.to_dict(): counts, output file, reason)."""
        return self.reducer.output

    def _asset(self, step: StepDefinition) -> Asset:
        """The output file as an Asset; each event's ``extra["path"]`` is that run's file.

        With the default output (a folder per run) the Asset stands for the step's folder.
        """
        dag_id = self.dag.dag_id
        if step.output is None:
            uri = _as_uri("/".join([output_root().rstrip("/"), dag_id, step.name]))
        elif is_template(step.output):  # the folder above the first templated part
            uri = _as_uri(step.output.split("{{", 1)[0].rsplit("/", 1)[0] or "/")
        else:
            uri = _as_uri(step.output)
            if step.config.get("output_action") == "append_row":
                uri = f"{uri.rstrip('/')}/{step.config.get('append_row_file_name')}"
        return Asset(uri)  # named by its URI: a new output root is a new asset, not a clash


def _node_only(node_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``node_kwargs``, checked: the arguments the operator sets itself cannot be given here."""
    node_kwargs = dict(node_kwargs or {})
    taken = sorted(set(node_kwargs) & {"task_id", "planner_task_id", "shard",
                                       "map_index_template", "outlets", "inlets"})
    if taken:
        raise ConfigError(f"node_kwargs: {', '.join(taken)} cannot be set for the node task "
                          "(the step sets them)")
    return node_kwargs


def _as_uri(path: str) -> str:
    return path if "://" in path else "file://" + os.path.abspath(path)


def _check_map_length(config: ConfigTemplate) -> None:
    node_count = config.get("node_count")
    if is_template(node_count):
        return  # checked by the planner once rendered
    from airflow.sdk.configuration import conf

    limit = conf.getint("core", "max_map_length")
    if node_count > limit:
        raise ConfigError(f"node_count = {node_count}: more than [core] max_map_length "
                          f"= {limit} mapped node tasks; lower node_count or raise max_map_length")
