"""ParallelRunConfig: every knob of a job, checked where it is made.

Values that Airflow fills in later (``"{{ params.x }}"``) are accepted as they are for the
fields that may come from params, and checked again by :meth:`ParallelRunConfig.rendered`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

SIZE_PATTERN = re.compile(r"^(\d+)([kKmMgG][bB])?$")
_UNITS = {"": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}

DEFAULT_FILES_PER_MINI_BATCH = 10
DEFAULT_TABULAR_MINI_BATCH_BYTES = 1024**2

OUTPUT_ACTIONS = ("append_row", "summary_only")
LOGGING_LEVELS = ("WARNING", "INFO", "DEBUG")

# Fields a DAG may take from Params ("{{ params.x }}"); SPEC.md, "Airflow".
TEMPLATABLE_FIELDS = (
    "mini_batch_size",
    "node_count",
    "process_count_per_node",
    "logging_level",
    "run_invocation_timeout",
    "run_max_try",
    "error_threshold",
)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def parse_size(value: int | str, *, what: str = "mini_batch_size") -> tuple[int, bool]:
    """Return (number, has_unit) of a size such as ``10``, ``"10"``, ``"64KB"`` or ``"1GB"``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(
            f"{what} = {value!r}: must be an int or a string like '10', '64KB', '10MB', '1GB'"
        )
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{what} = {value!r}: must be >= 1")
        return value, False
    match = SIZE_PATTERN.match(value.strip())
    if not match:
        raise ConfigError(
            f"{what} = {value!r}: must match ^\\d+([kKmMgG][bB])?$ (e.g. '10', '64KB', '10MB', '1GB')"
        )
    number = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    if number < 1:
        raise ConfigError(f"{what} = {value!r}: must be >= 1")
    return number, bool(match.group(2))


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} = {value!r}: must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} = {value!r}: must be {bound}")


def _check_seconds(name: str, value: Any, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} = {value!r}: must be a number of seconds")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} = {value!r}: must be {'>= 0' if allow_zero else '> 0'} seconds")


def _coerce_number(value: Any) -> Any:
    """Turn ``"3"`` / ``"2.5"`` (a rendered template or a CLI string) into a number."""
    if isinstance(value, str):
        text = value.strip()
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    return value


@dataclass(frozen=True)
class ParallelRunConfig:
    """What to run and how: the fields, defaults and rules of SPEC.md's configuration table."""

    entry_script: str
    source_directory: str | None = None
    mini_batch_size: int | str | None = None
    error_threshold: int | str = -1
    allowed_failed_count: int = -1
    allowed_failed_percent: float = 100
    output_action: str = "append_row"
    append_row_file_name: str = "parallel_run_step.txt"
    append_row_dataframe_header: bool = False
    append_row_separator: str = " "
    node_count: int | str = 1
    process_count_per_node: int | str = 1
    logging_level: str = "INFO"
    run_invocation_timeout: float | str = 60
    run_max_try: int | str = 3
    init_timeout: float | None = None
    partition_keys: tuple[str, ...] | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    resource_monitor_interval: float = 600

    def __post_init__(self) -> None:
        if self.partition_keys is not None and not isinstance(self.partition_keys, tuple):
            keys = self.partition_keys
            if isinstance(keys, str):
                keys = [k.strip() for k in keys.split(",")]
            object.__setattr__(self, "partition_keys", tuple(keys))
        if isinstance(self.environment_variables, dict):
            object.__setattr__(self, "environment_variables", dict(self.environment_variables))
        self._validate()

    # -- validation -------------------------------------------------------------------------

    def _validate(self) -> None:
        def checked(name: str) -> bool:
            """False for a field still holding a template: it is checked after rendering."""
            return not (name in TEMPLATABLE_FIELDS and is_template(getattr(self, name)))

        for name in ("entry_script", "source_directory", "append_row_file_name",
                     "append_row_separator", "partition_keys"):
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,)
            if any(is_template(v) for v in values):
                raise ConfigError(
                    f"{name} = {value!r}: cannot come from a template; only "
                    f"{', '.join(TEMPLATABLE_FIELDS)} can"
                )
        if not isinstance(self.entry_script, str) or not self.entry_script.strip():
            raise ConfigError(f"entry_script = {self.entry_script!r}: must be a non-empty path")
        if self.source_directory is not None and not isinstance(self.source_directory, str):
            raise ConfigError(f"source_directory = {self.source_directory!r}: must be a path or None")
        if self.mini_batch_size is not None and checked("mini_batch_size"):
            parse_size(self.mini_batch_size)
        if checked("error_threshold"):
            _check_int("error_threshold", self.error_threshold, -1)
        _check_int("allowed_failed_count", self.allowed_failed_count, -1)
        if isinstance(self.allowed_failed_percent, bool) or not isinstance(
            self.allowed_failed_percent, int | float
        ) or not 0 <= self.allowed_failed_percent <= 100:
            raise ConfigError(
                f"allowed_failed_percent = {self.allowed_failed_percent!r}: must be a number between 0 and 100"
            )
        if self.output_action not in OUTPUT_ACTIONS:
            raise ConfigError(
                f"output_action = {self.output_action!r}: must be one of {', '.join(OUTPUT_ACTIONS)}"
            )
        name = self.append_row_file_name
        if (
            not isinstance(name, str)
            or not name
            or "/" in name
            or "\\" in name
            or name == "."
            or ".." in name
            or "\0" in name
        ):
            raise ConfigError(
                f"append_row_file_name = {name!r}: must be a plain file name "
                "(no path separator, no '..')"
            )
        if not isinstance(self.append_row_dataframe_header, bool):
            raise ConfigError(
                f"append_row_dataframe_header = {self.append_row_dataframe_header!r}: must be True or False"
            )
        if not isinstance(self.append_row_separator, str) or len(self.append_row_separator) != 1:
            raise ConfigError(
                f"append_row_separator = {self.append_row_separator!r}: must be a single "
                "character (DataFrame results are written as CSV with it)"
            )
        if checked("node_count"):
            _check_int("node_count", self.node_count, 1)
        if checked("process_count_per_node"):
            _check_int("process_count_per_node", self.process_count_per_node, 1)
        if checked("logging_level") and self.logging_level not in LOGGING_LEVELS:
            raise ConfigError(
                f"logging_level = {self.logging_level!r}: must be one of {', '.join(LOGGING_LEVELS)}"
            )
        if checked("run_invocation_timeout"):
            _check_seconds("run_invocation_timeout", self.run_invocation_timeout)
        if checked("run_max_try"):
            _check_int("run_max_try", self.run_max_try, 1)
        if self.init_timeout is not None:
            _check_seconds("init_timeout", self.init_timeout)
        if self.partition_keys is not None and (
            not self.partition_keys
            or not all(isinstance(k, str) and k for k in self.partition_keys)
        ):
            raise ConfigError(
                f"partition_keys = {self.partition_keys!r}: must be a non-empty list of column names"
            )
        if not isinstance(self.environment_variables, dict) or not all(
            isinstance(k, str) and k and "=" not in k and isinstance(v, str)
            for k, v in self.environment_variables.items()
        ):
            raise ConfigError(
                f"environment_variables = {self.environment_variables!r}: must map names "
                "(without '=') to string values"
            )
        _check_seconds("resource_monitor_interval", self.resource_monitor_interval, allow_zero=True)

    # -- derived values ---------------------------------------------------------------------

    @property
    def is_rendered(self) -> bool:
        return not any(is_template(getattr(self, name)) for name in TEMPLATABLE_FIELDS)

    @property
    def effective_init_timeout(self) -> float:
        if self.init_timeout is not None:
            return float(self.init_timeout)
        return 3 * float(self.run_invocation_timeout) + 30

    def files_per_mini_batch(self) -> int:
        """mini_batch_size for a file input: a count of files."""
        if self.mini_batch_size is None:
            return DEFAULT_FILES_PER_MINI_BATCH
        number, has_unit = parse_size(self.mini_batch_size)
        if has_unit:
            raise ConfigError(
                f"mini_batch_size = {self.mini_batch_size!r}: a file input takes a count of files "
                "(e.g. 10); sizes in bytes such as '10MB' are for tabular inputs"
            )
        return number

    def bytes_per_mini_batch(self) -> int:
        """mini_batch_size for a tabular input: approximate bytes (a plain number is bytes)."""
        if self.mini_batch_size is None:
            return DEFAULT_TABULAR_MINI_BATCH_BYTES
        return parse_size(self.mini_batch_size)[0]

    # -- rendering and transport --------------------------------------------------------------

    def rendered(self, values: dict[str, Any] | None = None) -> ParallelRunConfig:
        """A copy with rendered template values put in, coerced to numbers, and checked.

        Raises ConfigError naming the field when a value is still a template or breaks a rule.
        """
        changes: dict[str, Any] = dict(values or {})
        for name in TEMPLATABLE_FIELDS:
            value = changes.get(name, getattr(self, name))
            if is_template(value):
                raise ConfigError(f"{name} = {value!r}: the template was not rendered")
            if name not in ("logging_level", "mini_batch_size"):
                value = _coerce_number(value)
            if name == "mini_batch_size" and isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            changes[name] = value
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.partition_keys is not None:
            data["partition_keys"] = list(self.partition_keys)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParallelRunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ParallelRunConfig field(s): {', '.join(unknown)}")
        return cls(**data)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ParallelRunConfig))


def check_arguments(arguments: list[Any] | None) -> list[Any]:
    """Entry-script arguments may not reuse a config field's name (``--mini_batch_size``...)."""
    arguments = list(arguments or [])
    for arg in arguments:
        if isinstance(arg, str) and arg.startswith("--"):
            name = arg[2:].split("=", 1)[0].replace("-", "_")
            if name in FIELD_NAMES:
                raise ConfigError(
                    f"arguments: {arg!r} uses the reserved name {name!r} of a ParallelRunConfig "
                    "field; set the field itself, or give the script's option another name"
                )
    return arguments
