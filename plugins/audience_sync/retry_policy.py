"""Which failures a task retry can fix (Airflow 3.3 retry policies), by exception type.

The hooks already retry transient trouble (429, 423, 5xx, dropped connections, unreadable answers) within a task;
when they give up (``RetriesExhausted``, a ``TransientError``) a task retry later may still succeed. A
``PermanentError`` (bad configuration, bad input, a guard that stopped the run) and an API refusal (``ApiError``
that is not ``RetriesExhausted``: a 4xx) fail the same way every time: failing at once saves the retry delays and
says so in the log. Anything else falls through to the task's ``retries``. There is deliberately no rule for
``ValueError``: a parse error of an unreadable answer is transient, not a verdict.
"""

from __future__ import annotations

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

from audience_sync.errors import PermanentError, TransientError
from audience_sync.hooks.base import ApiError

# Rules match with isinstance, first match wins: TransientError comes before ApiError because RetriesExhausted is both.
SYNC_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=TransientError,
            action=RetryAction.RETRY,
            reason="the service stayed unavailable or unreadable through the in-task retries; retrying the task later",
        ),
        RetryRule(
            exception=[PermanentError, ApiError],
            action=RetryAction.FAIL,
            reason="a permanent error (request refused, invalid input or configuration): fix it and rerun",
        ),
    ],
)
