"""Exceptions with messages that name the file, line, field or option at fault.

The CLI prints ``str(error)`` on one line and exits 2 for :class:`UserError` subclasses,
1 for anything else.
"""
from __future__ import annotations


class AttractorError(Exception):
    """Base class of every error attractor raises on purpose."""


class UserError(AttractorError):
    """Bad input from the user: the CLI prints one line and exits with code 2."""


class DataError(UserError):
    """A data file is malformed or lacks a field (the message names file and line)."""


class ConfigError(UserError):
    """An option or config field has an invalid value (the message names the option)."""


class ModelLoadError(UserError):
    """A model spec does not name a loadable model."""


class RunMismatchError(UserError):
    """An existing run directory was made with a different configuration."""
