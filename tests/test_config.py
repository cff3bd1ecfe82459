"""ParallelRunConfig: every field's default, its edge values, and every rule it enforces;
ConfigTemplate: the same rules for the settings a DAG takes from Params.

Each violation must raise ConfigError with a message that names the field, the bad value
and the rule.
"""

from __future__ import annotations

import math

import pytest

from airflow_parallel_run.airflow import ConfigTemplate
from airflow_parallel_run.config import (
    FIELD_NAMES,
    RULES,
    TEMPLATABLE_FIELDS,
    LoggingLevel,
    MiniBatchSize,
    OutputAction,
    ParallelRunConfig,
    check_arguments,
)
from airflow_parallel_run.errors import ConfigError

TEMPLATE = "{{ params.x }}"


def make(**fields: object) -> ParallelRunConfig:
    fields.setdefault("entry_script", "score.py")
    return ParallelRunConfig(**fields)


def refused(**fields: object) -> str:
    """The message of the ConfigError that making a config with ``fields`` raises."""
    with pytest.raises(ConfigError) as info:
        make(**fields)
    return str(info.value)


def assert_names(msg: str, *parts: str) -> None:
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"


# -- defaults -------------------------------------------------------------------------------


def test_defaults_are_those_of_the_spec():
    c = make()
    assert c.entry_script == "score.py"
    assert c.source_directory is None
    assert c.mini_batch_size is None
    assert c.files_per_mini_batch() == 10
    assert c.bytes_per_mini_batch() == 1024 * 1024
    assert c.error_threshold == -1
    assert c.allowed_failed_count == -1
    assert c.allowed_failed_percent == 100
    assert c.output_action == "append_row"
    assert c.append_row_file_name == "parallel_run_step.txt"
    assert c.append_row_dataframe_header is False
    assert c.append_row_separator == " "
    assert c.node_count == 1
    assert c.process_count_per_node == 1
    assert c.logging_level == "INFO"
    assert c.run_invocation_timeout == 60
    assert c.run_max_try == 3
    assert c.init_timeout is None
    assert c.partition_keys is None
    assert c.environment_variables == {}
    assert c.resource_monitor_interval == 600


def test_every_spec_field_exists():
    spec_fields = {
        "entry_script", "source_directory", "mini_batch_size", "error_threshold",
        "allowed_failed_count", "allowed_failed_percent", "output_action",
        "append_row_file_name", "append_row_dataframe_header", "append_row_separator",
        "node_count", "process_count_per_node", "logging_level", "run_invocation_timeout",
        "run_max_try", "init_timeout", "partition_keys", "environment_variables",
        "resource_monitor_interval",
    }
    assert spec_fields <= set(FIELD_NAMES)


def test_init_timeout_defaults_to_three_run_timeouts_plus_30():
    assert make().effective_init_timeout == 3 * 60 + 30
    assert make(run_invocation_timeout=10).effective_init_timeout == 60
    assert make(run_invocation_timeout=2.5).effective_init_timeout == 37.5
    assert make(run_invocation_timeout=10, init_timeout=5).effective_init_timeout == 5


def test_environment_variables_are_copied():
    env = {"A": "1"}
    c = make(environment_variables=env)
    env["B"] = "2"
    assert c.environment_variables == {"A": "1"}


# -- entry_script, source_directory -----------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", None, 5])
def test_entry_script_must_be_a_non_empty_path(value):
    msg = refused(entry_script=value)
    assert_names(msg, "entry_script", repr(value), "non-empty path")


def test_source_directory_accepts_a_path():
    assert make(source_directory="src").source_directory == "src"


def test_source_directory_must_be_a_path():
    msg = refused(source_directory=5)
    assert_names(msg, "source_directory", "5", "path")


# -- mini_batch_size --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, files, nbytes",
    [
        (1, 1, 1),
        ("1", 1, 1),
        (10, 10, 10),
        ("64KB", None, 64 * 1024),
        ("64kb", None, 64 * 1024),
        ("10mb", None, 10 * 1024**2),
        ("10MB", None, 10 * 1024**2),
        ("1GB", None, 1024**3),
        ("1g" + "B", None, 1024**3),
        (1_000_000, 1_000_000, 1_000_000),
    ],
)
def test_mini_batch_size_valid_values(value, files, nbytes):
    c = make(mini_batch_size=value)
    assert isinstance(c.mini_batch_size, MiniBatchSize)
    assert str(c.mini_batch_size) == str(value)  # kept as the user wrote it
    assert c.bytes_per_mini_batch() == nbytes
    if files is not None:
        assert c.files_per_mini_batch() == files


@pytest.mark.parametrize("value", [0, -1, "0", "0KB"])
def test_mini_batch_size_below_one(value):
    msg = refused(mini_batch_size=value)
    assert_names(msg, "mini_batch_size", repr(value), ">= 1")


@pytest.mark.parametrize("value", ["abc", "10 MB", "10TB", "1.5MB", "-3", "", "MB", "10M", "10B"])
def test_mini_batch_size_bad_pattern(value):
    msg = refused(mini_batch_size=value)
    assert_names(msg, "mini_batch_size", repr(value), r"^\d+([kKmMgG][bB])?$")


@pytest.mark.parametrize("value", [True, False, 2.5, [10], {"n": 1}])
def test_mini_batch_size_wrong_type(value):
    msg = refused(mini_batch_size=value)
    assert_names(msg, "mini_batch_size", repr(value), "int or a string")


@pytest.mark.parametrize("value", ["10MB", "64KB", "1GB"])
def test_files_refuse_a_size_in_bytes(value):
    c = make(mini_batch_size=value)  # fine for a tabular input
    with pytest.raises(ConfigError) as info:
        c.files_per_mini_batch()
    msg = str(info.value)
    assert_names(msg, "mini_batch_size", repr(value), "count of files", "tabular")


# -- error_threshold, allowed_failed_count ------------------------------------------------------


@pytest.mark.parametrize("name", ["error_threshold", "allowed_failed_count"])
@pytest.mark.parametrize("value", [-1, 0, 1, 10**9])
def test_thresholds_valid(name, value):
    assert getattr(make(**{name: value}), name) == value


@pytest.mark.parametrize("name", ["error_threshold", "allowed_failed_count"])
@pytest.mark.parametrize("value", [-2, -100])
def test_thresholds_below_minus_one(name, value):
    msg = refused(**{name: value})
    assert_names(msg, name, str(value), ">= -1")


@pytest.mark.parametrize("name", ["error_threshold", "allowed_failed_count"])
@pytest.mark.parametrize("value", [True, False, 1.5, "3", None])
def test_thresholds_wrong_type(name, value):
    msg = refused(**{name: value})
    assert_names(msg, name, repr(value), "integer")


# -- allowed_failed_percent ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 100, 0.0, 100.0, 50, 12.5])
def test_allowed_failed_percent_valid(value):
    assert make(allowed_failed_percent=value).allowed_failed_percent == value


@pytest.mark.parametrize("value", [-1, -0.5, 100.5, 101, math.nan, math.inf])
def test_allowed_failed_percent_out_of_range(value):
    msg = refused(allowed_failed_percent=value)
    assert_names(msg, "allowed_failed_percent", repr(value), "between 0 and 100")


@pytest.mark.parametrize("value", [True, "50", None])
def test_allowed_failed_percent_wrong_type(value):
    msg = refused(allowed_failed_percent=value)
    assert_names(msg, "allowed_failed_percent", repr(value), "number")


# -- output_action, append_row_* -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["append_row", "summary_only"])
def test_output_action_valid(value):
    action = make(output_action=value).output_action
    assert action == value
    assert action is OutputAction(value)


@pytest.mark.parametrize("value", ["append", "APPEND_ROW", "", None, 1])
def test_output_action_unknown(value):
    msg = refused(output_action=value)
    assert_names(msg, "output_action", repr(value), "append_row", "summary_only")


@pytest.mark.parametrize("value", ["out.txt", "results", "a.b.csv", "naïve résumé.txt", ".hidden"])
def test_append_row_file_name_valid(value):
    assert make(append_row_file_name=value).append_row_file_name == value


@pytest.mark.parametrize("value", ["a/b.txt", "/abs.txt", "a\\b.txt", "..", "../x.txt", "x/..", "."])
def test_append_row_file_name_must_be_plain(value):
    msg = refused(append_row_file_name=value)
    assert_names(msg, "append_row_file_name", repr(value), "plain file name", "separator", "..")


@pytest.mark.parametrize("value", ["", None, 5])
def test_append_row_file_name_wrong_type_or_empty(value):
    msg = refused(append_row_file_name=value)
    assert_names(msg, "append_row_file_name", repr(value), "plain file name")


@pytest.mark.parametrize("value", [".parallel_run", ".parallel_run.lock", ".parallel_run.takeover-1f",
                                   ".parallel_run_step.txt", ".Parallel_Run", "logs", "LOGS"])
def test_append_row_file_name_the_job_uses_itself_is_refused(value):
    msg = refused(append_row_file_name=value)
    assert_names(msg, "append_row_file_name", repr(value), "the job keeps its own files",
                 "logs/", ".parallel_run*")


@pytest.mark.parametrize("value", [".out.txt.1a2b3c4d.tmp", ".results.csv.123-0.TMP"])
def test_append_row_file_name_of_a_temporary_file_is_refused(value):
    msg = refused(append_row_file_name=value)
    assert_names(msg, "append_row_file_name", repr(value)[:20], "temporary files")


@pytest.mark.parametrize("value", ["a" * 256, "é" * 128])
def test_append_row_file_name_over_255_bytes_is_refused(value):
    msg = refused(append_row_file_name=value)
    assert_names(msg, "append_row_file_name", value[:40], "(256 bytes)", "at most 255 bytes")


@pytest.mark.parametrize("value", ["a" * 255, "é" * 127 + "a", "logs.txt", "my.parallel_run",
                                   ".out.tmp.txt", "out.tmp"])
def test_append_row_file_name_beside_the_jobs_names_is_accepted(value):
    assert make(append_row_file_name=value).append_row_file_name == value


@pytest.mark.parametrize("value", [True, False])
def test_append_row_dataframe_header_valid(value):
    assert make(append_row_dataframe_header=value).append_row_dataframe_header is value


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_append_row_dataframe_header_must_be_bool(value):
    msg = refused(append_row_dataframe_header=value)
    assert_names(msg, "append_row_dataframe_header", repr(value), "True or False")


@pytest.mark.parametrize("value", [" ", ",", "\t", "|"])
def test_append_row_separator_valid(value):
    assert make(append_row_separator=value).append_row_separator == value


@pytest.mark.parametrize("value", ["", None, 1, "||"])
def test_append_row_separator_invalid(value):
    msg = refused(append_row_separator=value)
    assert_names(msg, "append_row_separator", repr(value), "single character")


@pytest.mark.parametrize("value", ["\n", "\r", '"'])
def test_append_row_separator_refuses_line_breaks_and_quotes(value):
    msg = refused(append_row_separator=value)
    assert_names(msg, "append_row_separator", repr(value), "line break", "double quote")


# -- node_count, process_count_per_node, run_max_try ----------------------------------------------


@pytest.mark.parametrize("name", ["node_count", "process_count_per_node", "run_max_try"])
@pytest.mark.parametrize("value", [1, 2, 64])
def test_counts_valid(name, value):
    assert getattr(make(**{name: value}), name) == value


@pytest.mark.parametrize("name", ["node_count", "process_count_per_node", "run_max_try"])
@pytest.mark.parametrize("value", [0, -1])
def test_counts_below_one(name, value):
    msg = refused(**{name: value})
    assert_names(msg, name, str(value), ">= 1")


@pytest.mark.parametrize("name", ["node_count", "process_count_per_node", "run_max_try"])
@pytest.mark.parametrize("value", [True, False, 2.0, 1.5, "3", None])
def test_counts_wrong_type(name, value):
    msg = refused(**{name: value})
    assert_names(msg, name, repr(value), "integer")


# -- logging_level ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["WARNING", "INFO", "DEBUG"])
def test_logging_level_valid(value):
    level = make(logging_level=value).logging_level
    assert level == value
    assert level is LoggingLevel(value)


@pytest.mark.parametrize("value", ["LOUD", "ERROR", "", None, 10])
def test_logging_level_unknown(value):
    msg = refused(logging_level=value)
    assert_names(msg, "logging_level", repr(value), "WARNING", "INFO", "DEBUG")


# -- run_invocation_timeout, init_timeout, resource_monitor_interval -----------------------------


@pytest.mark.parametrize("name", ["run_invocation_timeout", "init_timeout"])
@pytest.mark.parametrize("value", [0.001, 1, 2.5, 3600])
def test_timeouts_valid(name, value):
    assert getattr(make(**{name: value}), name) == value


@pytest.mark.parametrize("name", ["run_invocation_timeout", "init_timeout"])
@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5])
def test_timeouts_must_be_positive(name, value):
    msg = refused(**{name: value})
    assert_names(msg, name, repr(value), "> 0")


@pytest.mark.parametrize("name", ["run_invocation_timeout", "init_timeout", "resource_monitor_interval"])
@pytest.mark.parametrize("value", [True, "60", [1]])
def test_seconds_wrong_type(name, value):
    msg = refused(**{name: value})
    assert_names(msg, name, repr(value), "seconds")


@pytest.mark.parametrize("name", ["run_invocation_timeout", "init_timeout", "resource_monitor_interval"])
def test_seconds_refuse_nan(name):
    """NaN compares false with everything, so it slips past '< 0' checks unless refused."""
    msg = refused(**{name: math.nan})
    assert_names(msg, name, "nan")


def test_run_invocation_timeout_none_is_refused():
    msg = refused(run_invocation_timeout=None)
    assert_names(msg, "run_invocation_timeout", "None", "seconds")


@pytest.mark.parametrize("value", [0, 0.0, 1, 600, 0.5])
def test_resource_monitor_interval_valid(value):
    assert make(resource_monitor_interval=value).resource_monitor_interval == value


@pytest.mark.parametrize("value", [-1, -0.1])
def test_resource_monitor_interval_negative(value):
    msg = refused(resource_monitor_interval=value)
    assert_names(msg, "resource_monitor_interval", repr(value), ">= 0")


# -- partition_keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [(["a"], ("a",)), (["a", "b"], ("a", "b")), (("a", "b"), ("a", "b")), ("a,b", ("a", "b")),
     ("a, b", ("a", "b")), (None, None)],
)
def test_partition_keys_valid(value, expected):
    assert make(partition_keys=value).partition_keys == expected


@pytest.mark.parametrize("value", [[], (), "", ["a", ""], [1], "a,,b"])
def test_partition_keys_empty_or_bad(value):
    msg = refused(partition_keys=value)
    assert_names(msg, "partition_keys", "non-empty list of column names")


# -- environment_variables ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [{}, {"A": "1"}, {"PATH_X": "", "B": "x=y"}])
def test_environment_variables_valid(value):
    assert make(environment_variables=value).environment_variables == value


@pytest.mark.parametrize(
    "value",
    [{"A": 1}, {"A": None}, {"A=B": "x"}, {"": "x"}, {1: "x"}, [("A", "1")], "A=1", None],
)
def test_environment_variables_invalid(value):
    msg = refused(environment_variables=value)
    assert_names(msg, "environment_variables", repr(value), "names", "string values")


# -- templates: refused by ParallelRunConfig, kept and rendered by ConfigTemplate ---------------


def test_templatable_fields_are_those_a_dag_may_take_from_params():
    assert set(TEMPLATABLE_FIELDS) == {
        "mini_batch_size", "node_count", "process_count_per_node", "logging_level",
        "run_invocation_timeout", "run_max_try", "error_threshold",
    }


def test_every_field_has_a_rule():
    assert set(RULES) == set(FIELD_NAMES)


@pytest.mark.parametrize("name", TEMPLATABLE_FIELDS)
def test_config_refuses_a_template_and_points_to_config_template(name):
    msg = refused(**{name: TEMPLATE})
    assert_names(msg, name, TEMPLATE, "not rendered", "ConfigTemplate")


NON_TEMPLATABLE = [
    "entry_script", "source_directory", "allowed_failed_count", "allowed_failed_percent",
    "output_action", "append_row_file_name", "append_row_dataframe_header",
    "append_row_separator", "init_timeout", "partition_keys", "environment_variables",
    "resource_monitor_interval",
]


@pytest.mark.parametrize("name", NON_TEMPLATABLE)
def test_template_refused_for_other_fields(name):
    """An unrendered template would be taken literally (a file named '{{ params.x }}')."""
    msg = refused(**{name: TEMPLATE})
    assert name in msg, msg


def template(**fields: object) -> ConfigTemplate:
    fields.setdefault("entry_script", "score.py")
    return ConfigTemplate(**fields)


def template_refused(**fields: object) -> str:
    with pytest.raises(ConfigError) as info:
        template(**fields)
    return str(info.value)


@pytest.mark.parametrize("name", TEMPLATABLE_FIELDS)
def test_config_template_keeps_a_template_of_a_templatable_field(name):
    t = template(**{name: TEMPLATE})
    assert t.templates == {name: TEMPLATE}
    assert t.get(name) == TEMPLATE


@pytest.mark.parametrize("name", NON_TEMPLATABLE)
def test_config_template_refuses_a_template_in_another_field_at_parse_time(name):
    msg = template_refused(**{name: TEMPLATE})
    assert_names(msg, name, "cannot come from a template", "mini_batch_size")


def test_config_template_checks_a_literal_beside_templates_at_parse_time():
    msg = template_refused(node_count=TEMPLATE, run_max_try=0)
    assert_names(msg, "run_max_try", "0", ">= 1")


def test_config_template_refuses_an_unknown_field():
    msg = template_refused(mini_batchsize=3)
    assert_names(msg, "mini_batchsize", "unknown")


def test_config_template_without_templates_renders_to_the_config():
    c = make(node_count=2, mini_batch_size="64KB", logging_level="DEBUG")
    assert ConfigTemplate(**c.to_dict()).render() == c


def test_render_keeps_the_fields_that_are_no_template():
    t = template(node_count=TEMPLATE, run_max_try=2, append_row_file_name="out.txt")
    c = t.render({"node_count": "3"})
    assert (c.node_count, c.run_max_try, c.append_row_file_name) == (3, 2, "out.txt")


@pytest.mark.parametrize(
    "name, text, value",
    [
        ("node_count", "3", 3),
        ("process_count_per_node", " 4 ", 4),
        ("run_max_try", "1", 1),
        ("error_threshold", "-1", -1),
        ("error_threshold", "0", 0),
        ("run_invocation_timeout", "2.5", 2.5),
        ("run_invocation_timeout", "30", 30),
        ("mini_batch_size", "7", MiniBatchSize(7)),
        ("mini_batch_size", "64KB", MiniBatchSize(64, "KB")),
        ("logging_level", "DEBUG", LoggingLevel.DEBUG),
    ],
)
def test_render_turns_rendered_strings_into_values(name, text, value):
    t = template(**{name: TEMPLATE})
    r = t.render({name: text})
    assert getattr(r, name) == value
    assert type(getattr(r, name)) is type(value)
    assert t.get(name) == TEMPLATE  # the template is untouched


def test_render_takes_values_that_are_already_numbers():
    """Settings come back from XCom as JSON values, and a DAG may render native objects."""
    assert template(node_count=TEMPLATE).render({"node_count": 3}).node_count == 3


def test_rendered_init_timeout_follows_rendered_run_timeout():
    t = template(run_invocation_timeout=TEMPLATE)
    assert t.render({"run_invocation_timeout": "10"}).effective_init_timeout == 60


@pytest.mark.parametrize(
    "name, text, rule",
    [
        ("node_count", "0", ">= 1"),
        ("process_count_per_node", "-1", ">= 1"),
        ("run_max_try", "0", ">= 1"),
        ("error_threshold", "-2", ">= -1"),
        ("run_invocation_timeout", "0", "> 0"),
        ("mini_batch_size", "0", ">= 1"),
        ("mini_batch_size", "abc", r"^\d+([kKmMgG][bB])?$"),
        ("logging_level", "LOUD", "WARNING"),
        ("node_count", "three", "integer"),
        ("node_count", "2.5", "integer"),
        ("run_max_try", "", "integer"),
    ],
)
def test_render_refuses_a_bad_rendered_value_naming_the_field(name, text, rule):
    with pytest.raises(ConfigError) as info:
        template(**{name: TEMPLATE}).render({name: text})
    msg = str(info.value)
    assert_names(msg, name, rule)
    if text.strip():
        assert text in msg


@pytest.mark.parametrize("name", TEMPLATABLE_FIELDS)
def test_render_refuses_an_unrendered_template(name):
    with pytest.raises(ConfigError) as info:
        template(**{name: TEMPLATE}).render()
    assert_names(str(info.value), name, TEMPLATE, "not rendered")


def test_render_refuses_a_value_that_is_still_a_template():
    with pytest.raises(ConfigError) as info:
        template(node_count=TEMPLATE).render({"node_count": "{{ params.other }}"})
    assert "node_count" in str(info.value)


# -- to_dict / from_dict ----------------------------------------------------------------------


def test_dict_round_trip():
    c = make(mini_batch_size="64KB", partition_keys=["a", "b"], environment_variables={"A": "1"},
             node_count=3, allowed_failed_percent=12.5, init_timeout=9)
    assert ParallelRunConfig.from_dict(c.to_dict()) == c


def test_to_dict_holds_plain_json_values():
    data = make(mini_batch_size="64KB", logging_level="DEBUG", partition_keys="a,b").to_dict()
    assert data["mini_batch_size"] == "64KB" and type(data["logging_level"]) is str
    assert data["partition_keys"] == ["a", "b"] and type(data["output_action"]) is str
    assert make(mini_batch_size=10).to_dict()["mini_batch_size"] == 10


def test_from_dict_loads_a_dict_written_by_the_earlier_version():
    """The plan keeps the config as JSON: sizes as written, Enums as strings, numbers as given."""
    earlier = {
        "entry_script": "score.py", "source_directory": None, "mini_batch_size": "10",
        "error_threshold": -1, "allowed_failed_count": -1, "allowed_failed_percent": 100,
        "output_action": "append_row", "append_row_file_name": "parallel_run_step.txt",
        "append_row_dataframe_header": False, "append_row_separator": " ", "node_count": 2,
        "process_count_per_node": 1, "logging_level": "INFO", "run_invocation_timeout": 60,
        "run_max_try": 3, "init_timeout": None, "partition_keys": None,
        "environment_variables": {}, "resource_monitor_interval": 600,
    }
    c = ParallelRunConfig.from_dict(earlier)
    assert c.files_per_mini_batch() == 10 and c.node_count == 2
    assert c.logging_level is LoggingLevel.INFO


def test_from_dict_refuses_unknown_fields():
    data = make().to_dict()
    data["mini_batchsize"] = 3
    with pytest.raises(ConfigError) as info:
        ParallelRunConfig.from_dict(data)
    assert "mini_batchsize" in str(info.value)


def test_from_dict_checks_rules():
    data = make().to_dict()
    data["node_count"] = 0
    with pytest.raises(ConfigError) as info:
        ParallelRunConfig.from_dict(data)
    assert_names(str(info.value), "node_count", "0", ">= 1")


# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, reserved",
    [
        (["--mini_batch_size", "3"], "mini_batch_size"),
        (["--mini-batch-size", "3"], "mini_batch_size"),
        (["--node-count=3"], "node_count"),
        (["--node_count=3"], "node_count"),
        (["--model", "m", "--error_threshold", "5"], "error_threshold"),
        (["--entry_script", "x.py"], "entry_script"),
        (["--run-invocation-timeout", "5"], "run_invocation_timeout"),
        (["--logging_level=DEBUG"], "logging_level"),
    ],
)
def test_check_arguments_refuses_reserved_names(arguments, reserved):
    with pytest.raises(ConfigError) as info:
        check_arguments(arguments)
    msg = str(info.value)
    assert_names(msg, "arguments", reserved, "reserved")
    bad = next(a for a in arguments if a.startswith("--") and reserved in a.replace("-", "_"))
    assert bad in msg


@pytest.mark.parametrize(
    "arguments",
    [
        ["--model", "m.pkl"],
        ["--model=m.pkl", "-n", "3", "positional"],
        ["--batch_size", "3"],  # not a field name
        ["--mini_batch", "3"],
        ["mini_batch_size"],  # a value, not an option
        ["-mini_batch_size"],
        [],
    ],
)
def test_check_arguments_accepts_other_names(arguments):
    assert check_arguments(arguments) == arguments


def test_check_arguments_accepts_none_and_non_strings():
    assert check_arguments(None) == []
    marker = object()
    assert check_arguments([marker, 3, "--x"]) == [marker, 3, "--x"]
