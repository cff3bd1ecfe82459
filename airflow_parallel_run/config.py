"""ParallelRunConfig: every knob of a job, each checked by its rule when the config is made.

A ParallelRunConfig holds plain values only (ints, floats, bools, tuples, dicts, Enums and a
parsed :class:`MiniBatchSize`), so the engine runs with exactly what it reads. The rules are
one table, :data:`RULES`: field -> how a value is checked and how a string becomes one.
Values that Airflow fills in later (``"{{ params.x }}"``) belong to the Airflow layer's
``ConfigTemplate``, which renders them into a ParallelRunConfig through these same rules, as
the command line does with its option strings (:func:`values_from_text`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .storage import STATE_DIR

SIZE_PATTERN = re.compile(r"^(\d+)([kKmMgG][bB])?$")
_UNITS = {"": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}

DEFAULT_FILES_PER_MINI_BATCH = 10
DEFAULT_TABULAR_MINI_BATCH_BYTES = 1024**2


class OutputAction(enum.StrEnum):
    APPEND_ROW = "append_row"
    SUMMARY_ONLY = "summary_only"


class LoggingLevel(enum.StrEnum):
    WARNING = "WARNING"
    INFO = "INFO"
    DEBUG = "DEBUG"


OUTPUT_ACTIONS = tuple(action.value for action in OutputAction)
LOGGING_LEVELS = tuple(level.value for level in LoggingLevel)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


@dataclass(frozen=True, repr=False)
class MiniBatchSize:
    """mini_batch_size, parsed: a number and the unit it was written with ('' for none).

    A plain number is a count of files for a file input and bytes for a tabular one; a size
    with a unit (``'64KB'``) is bytes, for tabular inputs only.
    """

    number: int
    unit: str = ""

    @classmethod
    def parse(cls, value: Any, what: str = "mini_batch_size") -> MiniBatchSize:
        """``10``, ``"10"``, ``"64KB"`` or ``"1GB"`` (``k``, ``m``, ``g`` in either case)."""
        if isinstance(value, MiniBatchSize):
            size = value
        elif isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(
                f"{what} = {value!r}: must be an int or a string like '10', '64KB', '10MB', '1GB'"
            )
        elif isinstance(value, int):
            size = cls(value)
        else:
            match = SIZE_PATTERN.match(value.strip())
            if not match:
                raise ConfigError(f"{what} = {value!r}: must match ^\\d+([kKmMgG][bB])?$ "
                                  "(e.g. '10', '64KB', '10MB', '1GB')")
            size = cls(int(match.group(1)), match.group(2) or "")
        if size.in_bytes < 1:
            raise ConfigError(f"{what} = {value!r}: must be >= 1")
        return size

    @property
    def has_unit(self) -> bool:
        return bool(self.unit)

    @property
    def in_bytes(self) -> int:
        return self.number * _UNITS[self.unit.lower()]

    @property
    def value(self) -> int | str:
        """As a user writes it, and as ``to_dict`` stores it: ``10`` or ``'64KB'``."""
        return f"{self.number}{self.unit}" if self.unit else self.number

    def __repr__(self) -> str:  # messages quote the size as the user wrote it
        return repr(self.value)

    def __str__(self) -> str:
        return str(self.value)


def parse_size(value: int | str | MiniBatchSize, *, what: str = "mini_batch_size") -> tuple[int, bool]:
    """Return (number of bytes or items, has_unit) of a size such as ``10`` or ``"64KB"``."""
    size = MiniBatchSize.parse(value, what)
    return size.in_bytes, size.has_unit


# -- the rule of each field ----------------------------------------------------------------------
#
# A check takes (field name, value) and returns the value to store, or raises a ConfigError
# whose message names the field, the value and the rule.

Check = Callable[[str, Any], Any]


def _non_empty_path(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} = {value!r}: must be a non-empty path")
    return value


def _optional_path(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{name} = {value!r}: must be a path or None")
    return value


def _optional_mini_batch_size(name: str, value: Any) -> MiniBatchSize | None:
    return None if value is None else MiniBatchSize.parse(value, name)


def _int_at_least(minimum: int) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} = {value!r}: must be an integer")
        if value < minimum:
            raise ConfigError(f"{name} = {value!r}: must be >= {minimum}")
        return value

    return check


def _optional_megabytes(minimum: int) -> Check:
    def check(name: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name} = {value!r}: must be None or a whole number of MB >= {minimum}")
        return value

    return check


def _percent(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ConfigError(f"{name} = {value!r}: must be a number between 0 and 100")
    return value


def _seconds(*, allow_zero: bool = False, optional: bool = False) -> Check:
    def check(name: str, value: Any) -> float | None:
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} = {value!r}: must be a number of seconds")
        # NaN compares false with everything, so it would slip past the bound below.
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"{name} = {value!r}: must be {bound} seconds")
        return value

    return check


def _one_of(kind: type[enum.StrEnum]) -> Check:
    choices = [member.value for member in kind]

    def check(name: str, value: Any) -> enum.StrEnum:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{name} = {value!r}: must be one of {', '.join(choices)}")
        return kind(value)

    return check


def _plain_file_name(name: str, value: Any) -> str:
    if (not isinstance(value, str) or value in ("", ".") or ".." in value
            or any(c in value for c in "/\\\0")):
        raise ConfigError(f"{name} = {value!r}: must be a plain file name "
                          "(no path separator, no '..')")
    return value


MAX_NAME_BYTES = 255  # the longest file name Linux file systems and most stores take


def _output_file_name(name: str, value: Any) -> str:
    """A plain file name that none of the job's own files at the top of the output takes:
    ``logs/``, the state folder and its lock (``.parallel_run*``), temporary files
    (``.<name>.<...>.tmp``, cleared as leftovers of a killed run)."""
    value = _plain_file_name(name, value)
    folded = value.casefold()  # on a case-insensitive file system "LOGS" is "logs"
    if folded == "logs" or folded.startswith(STATE_DIR):
        raise ConfigError(f"{name} = {value!r}: the job keeps its own files under that name "
                          f"(logs/, {STATE_DIR}*); choose another file name")
    if value.startswith(".") and folded.endswith(".tmp"):
        raise ConfigError(f"{name} = {value!r}: names like '.<name>.<...>.tmp' are the job's "
                          "temporary files; choose another file name")
    size = len(value.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        raise ConfigError(f"{name} = {value[:40]!r}... ({size} bytes): must be at most "
                          f"{MAX_NAME_BYTES} bytes in UTF-8 (the longest file name)")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} = {value!r}: must be True or False")
    return value


def _separator(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) != 1:
        raise ConfigError(f"{name} = {value!r}: must be a single character "
                          "(DataFrame results are written as CSV with it)")
    if value in "\r\n\"":  # CSV would quote every field, or split every row: unreadable
        raise ConfigError(f"{name} = {value!r}: must not be a line break or a double quote "
                          "(DataFrame results are written as CSV with it)")
    return value


def _column_names(name: str, value: Any) -> tuple[str, ...] | None:
    """None, or column names: a list, a tuple, or one string ``"a, b"``."""
    if value is None:
        return None
    keys = [k.strip() for k in value.split(",")] if isinstance(value, str) else value
    if (not isinstance(keys, list | tuple) or not keys
            or not all(isinstance(k, str) and k for k in keys)):
        raise ConfigError(f"{name} = {value!r}: must be a non-empty list of column names")
    return tuple(keys)


def _environment(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{name} = {value!r}: must map names (without '=') to string values")
    return dict(value)  # a copy: the caller's dict may change after the config is made


def _int_text(text: str) -> int | str:
    try:
        return int(text.strip())
    except ValueError:
        return text  # left for the rule to refuse, naming the value


def _number_text(text: str) -> float | str:
    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            pass
    return text


def _as_written(text: str) -> str:
    return text


def _switch_text(text: str) -> bool | str:
    """``on``/``off`` (or true/false) as a bool; anything else stays text, for the rule to refuse."""
    return {"on": True, "true": True, "off": False, "false": False}.get(text.strip().lower(), text)


@dataclass(frozen=True)
class FieldRule:
    """How one field is checked, and how a string (a rendered template, an option) becomes it."""

    check: Check
    from_text: Callable[[str], Any] = _as_written
    templatable: bool = False  # may come from Airflow Params ("{{ params.x }}")


RULES: dict[str, FieldRule] = {
    "entry_script": FieldRule(_non_empty_path),
    "source_directory": FieldRule(_optional_path),
    "mini_batch_size": FieldRule(_optional_mini_batch_size, templatable=True),
    "error_threshold": FieldRule(_int_at_least(-1), _int_text, templatable=True),
    "allowed_failed_count": FieldRule(_int_at_least(-1), _int_text),
    "allowed_failed_percent": FieldRule(_percent, _number_text),
    "output_action": FieldRule(_one_of(OutputAction)),
    "append_row_file_name": FieldRule(_output_file_name),
    "append_row_dataframe_header": FieldRule(_bool),
    "append_row_separator": FieldRule(_separator),
    "node_count": FieldRule(_int_at_least(1), _int_text, templatable=True),
    "process_count_per_node": FieldRule(_int_at_least(1), _int_text, templatable=True),
    "logging_level": FieldRule(_one_of(LoggingLevel), templatable=True),
    "run_invocation_timeout": FieldRule(_seconds(), _number_text, templatable=True),
    "run_max_try": FieldRule(_int_at_least(1), _int_text, templatable=True),
    "init_timeout": FieldRule(_seconds(optional=True), _number_text),
    "partition_keys": FieldRule(_column_names),
    "environment_variables": FieldRule(_environment),
    "resource_monitor_interval": FieldRule(_seconds(allow_zero=True), _number_text),
    # a Python worker alone takes some 20 MB of address space
    "worker_memory_limit": FieldRule(_optional_megabytes(64), _int_text),
    "lease_timeout": FieldRule(_seconds(), _number_text),
    "work_sharing": FieldRule(_bool, _switch_text),
}

TEMPLATABLE_FIELDS = tuple(name for name, rule in RULES.items() if rule.templatable)


def values_from_text(values: Mapping[str, Any]) -> dict[str, Any]:
    """Field values given as strings, as their fields take them: ``"3"`` -> 3, ``"2.5"`` -> 2.5.

    Text that is not a number stays text, so that the field's rule refuses it by name; values
    that are not strings are left as they are.
    """
    return {name: RULES[name].from_text(value) if name in RULES and isinstance(value, str)
            else value for name, value in values.items()}


def _refuse_template(name: str, value: Any) -> None:
    values = value if isinstance(value, list | tuple) else (value,)
    if not any(is_template(v) for v in values):
        return
    if name in TEMPLATABLE_FIELDS:
        instead = ("or, in a DAG, give these settings to ParallelRunOperator as "
                   "airflow_parallel_run.airflow.ConfigTemplate(...), which renders them")
    else:
        instead = f"only {', '.join(TEMPLATABLE_FIELDS)} may come from a template"
    raise ConfigError(f"{name} = {value!r}: a template is not rendered in a ParallelRunConfig; "
                      f"write the value itself, {instead}")


@dataclass(frozen=True)
class ParallelRunConfig:
    """What to run and how: every field with its default, checked by its rule in :data:`RULES`.

    Besides the stored types, the constructor takes ``mini_batch_size`` as ``10``, ``"10"``
    or ``"64KB"``, the two Enums as their strings, and ``partition_keys`` as a list or
    ``"a, b"``.
    """

    entry_script: str
    source_directory: str | None = None
    mini_batch_size: MiniBatchSize | None = None
    error_threshold: int = -1
    allowed_failed_count: int = -1
    allowed_failed_percent: float = 100
    output_action: OutputAction = OutputAction.APPEND_ROW
    append_row_file_name: str = "parallel_run_step.txt"
    append_row_dataframe_header: bool = False
    append_row_separator: str = " "
    node_count: int = 1
    process_count_per_node: int = 1
    logging_level: LoggingLevel = LoggingLevel.INFO
    run_invocation_timeout: float = 60
    run_max_try: int = 3
    init_timeout: float | None = None
    partition_keys: tuple[str, ...] | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    resource_monitor_interval: float = 600
    worker_memory_limit: int | None = None  # MB of address space per worker (RLIMIT_AS)
    # seconds a node's claim on a unit of work holds without renewal before another takes it
    lease_timeout: float = 60
    # nodes claim units of the plan from each other (False: fixed shares, one per node)
    work_sharing: bool = True

    def __post_init__(self) -> None:
        for name, rule in RULES.items():
            value = getattr(self, name)
            _refuse_template(name, value)
            object.__setattr__(self, name, rule.check(name, value))

    # -- derived values ---------------------------------------------------------------------

    @property
    def effective_init_timeout(self) -> float:
        """init_timeout, or by default room for three run() calls and 30 s of start-up."""
        if self.init_timeout is not None:
            return float(self.init_timeout)
        return 3 * float(self.run_invocation_timeout) + 30

    def files_per_mini_batch(self) -> int:
        """mini_batch_size for a file input: a count of files."""
        if self.mini_batch_size is None:
            return DEFAULT_FILES_PER_MINI_BATCH
        if self.mini_batch_size.has_unit:
            raise ConfigError(
                f"mini_batch_size = {self.mini_batch_size!r}: a file input takes a count of files "
                "(e.g. 10); sizes in bytes such as '10MB' are for tabular inputs"
            )
        return self.mini_batch_size.number

    def bytes_per_mini_batch(self) -> int:
        """mini_batch_size for a tabular input: approximate bytes (a plain number is bytes)."""
        if self.mini_batch_size is None:
            return DEFAULT_TABULAR_MINI_BATCH_BYTES
        return self.mini_batch_size.in_bytes

    # -- transport --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, in the form a user writes them (``"64KB"``, ``"INFO"``)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(
            mini_batch_size=None if self.mini_batch_size is None else self.mini_batch_size.value,
            output_action=self.output_action.value,
            logging_level=self.logging_level.value,
            partition_keys=None if self.partition_keys is None else list(self.partition_keys),
            environment_variables=dict(self.environment_variables),
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParallelRunConfig:
        unknown = sorted(set(data) - set(FIELD_NAMES))
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
