"""ConfigTemplate: a ParallelRunConfig whose run-time settings Airflow fills in from Params.

The engine's ParallelRunConfig holds plain values only. In a DAG, the settings that may come
from Params (``mini_batch_size="{{ params.mini_batch_size }}"``) are written here instead, the
way BashOperator keeps its ``template_fields``: every value that is not a template is checked
when the DAG is parsed, and the planner task renders the templates and calls :meth:`render`,
which checks what Airflow filled in by the same rules before any work starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import (
    FIELD_NAMES,
    TEMPLATABLE_FIELDS,
    ParallelRunConfig,
    is_template,
    values_from_text,
)
from ..errors import ConfigError


class ConfigTemplate:
    """ParallelRunConfig's keyword arguments, where the fields that may come from Params
    (``TEMPLATABLE_FIELDS``) may be ``"{{ ... }}"``.

    :param fields: the same keyword arguments as ParallelRunConfig; ``mini_batch_size``,
        ``node_count``, ``process_count_per_node``, ``logging_level``,
        ``run_invocation_timeout``, ``run_max_try`` and ``error_threshold`` may be templated
    """

    def __init__(self, **fields: Any) -> None:
        unknown = sorted(set(fields) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError(f"unknown ParallelRunConfig field(s): {', '.join(unknown)}; "
                              f"the fields are {', '.join(FIELD_NAMES)}")
        self.templates: dict[str, str] = {}
        for name, value in fields.items():
            values = value if isinstance(value, list | tuple) else (value,)
            if not any(is_template(v) for v in values):
                continue
            if name not in TEMPLATABLE_FIELDS:
                raise ConfigError(f"{name} = {value!r}: cannot come from a template; only "
                                  f"{', '.join(TEMPLATABLE_FIELDS)} can")
            self.templates[name] = value
        # The templated fields keep their defaults here until render() puts the real values in.
        fixed = {name: value for name, value in fields.items() if name not in self.templates}
        self._fixed = ParallelRunConfig(**fixed)

    def get(self, name: str) -> Any:
        """A field as given: its template text if it has one, else its checked value."""
        if name in self.templates:
            return self.templates[name]
        return getattr(self._fixed, name)

    def render(self, values: Mapping[str, Any] | None = None) -> ParallelRunConfig:
        """The ParallelRunConfig with ``values`` (the rendered templates, by field) put in.

        Strings become numbers where the field takes one (``"3"`` -> 3); every field is
        checked. Raises ConfigError naming the field, the value and the rule, also when a
        templated field was left out of ``values`` or still holds a template.
        """
        values = dict(values or {})
        rendered: dict[str, Any] = {}
        for name, template in self.templates.items():
            value = values.get(name, template)
            if is_template(value):
                raise ConfigError(f"{name} = {value!r}: the template was not rendered")
            rendered[name] = value
        fields = {**self._fixed.to_dict(), **values_from_text(rendered)}
        return ParallelRunConfig(**fields)

    def __repr__(self) -> str:
        given = ", ".join(f"{name}={self.get(name)!r}" for name in FIELD_NAMES)
        return f"ConfigTemplate({given})"


def as_template(config: object) -> ConfigTemplate:
    """ParallelRunOperator's ``parallel_run_config`` as a ConfigTemplate.

    A ParallelRunConfig becomes a template without templates, which renders to itself.
    """
    if isinstance(config, ConfigTemplate):
        return config
    if isinstance(config, ParallelRunConfig):
        return ConfigTemplate(**config.to_dict())
    raise ConfigError(f"parallel_run_config: expected a ParallelRunConfig or a ConfigTemplate, "
                      f"got {type(config).__name__}")
