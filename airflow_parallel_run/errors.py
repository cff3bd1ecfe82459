"""Errors a user can act on: each names the thing, the value and the rule."""

from __future__ import annotations


class ParallelRunError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(ParallelRunError, ValueError):
    """A configuration value breaks a rule (CLI exit status 2)."""


class InputError(ParallelRunError):
    """An input or side input cannot be used as given (CLI exit status 2)."""


class EntryScriptError(ParallelRunError):
    """The entry script is missing, does not compile, or has no run() (CLI exit status 2)."""


class StateError(ParallelRunError):
    """The output holds state this version cannot resume (CLI exit status 2)."""


class StoreUnavailable(Exception):
    """A store stopped answering (refused or cut connections, timeouts, server errors) for
    longer than a job waits for it. Nothing is wrong with what the user gave: the job ran and
    failed (CLI exit status 1), and running it again resumes. Not a ParallelRunError, which
    the Airflow layer fails at once: an Airflow task that raises this is retried."""
