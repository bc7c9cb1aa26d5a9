"""Which failures a task retry can fix (Airflow 3.3 retry policies).

The hooks already retry transient trouble (429, 5xx, dropped connections) within a task; when
they give up (``RetriesExhausted``) a task retry later may still succeed. A 4xx answer, a bad
mapping, an unknown audience or a spent daily budget will fail the same way every time: failing
at once saves the retry delays and says so in the log.
"""

from __future__ import annotations

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

SYNC_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="audience_sync.hooks.base.RetriesExhausted",
            action=RetryAction.RETRY,
            reason="the API stayed unavailable through the in-task retries; retrying the task later",
        ),
        RetryRule(
            exception=[
                "audience_sync.hooks.base.ApiError",
                "audience_sync.clients.hubspot.DailyBudgetExceeded",
                "builtins.ValueError",
            ],
            action=RetryAction.FAIL,
            reason="a permanent error (request refused, invalid input or configuration): fix it and rerun",
        ),
    ],
)
