"""The project's error families, so the task retry policy can classify failures by type.

``PermanentError``: a retry cannot fix it (bad configuration, bad input, a refused request, a guard that
stopped the run); the task fails at once. ``TransientError``: the service stayed unavailable or answered
something unreadable; a later task retry may succeed. Anything else is retried as Airflow's default.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Fails the task at once: fix the cause, then rerun."""


class TransientError(Exception):
    """Worth a task retry later: the service was unavailable or its answer unreadable."""


class ConfigurationError(PermanentError, ValueError):
    """A setting, connection or parameter is missing or wrong."""


class InputError(PermanentError, ValueError):
    """Input data (an export, a mapping file, a snapshot) cannot be used as it is."""
