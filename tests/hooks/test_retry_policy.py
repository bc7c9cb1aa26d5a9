"""The task retry policy classifies failures by exception type (Airflow 3.3 ExceptionRetryPolicy)."""

from __future__ import annotations

import json

import pytest
import requests
from airflow.sdk import ExceptionRetryPolicy, RetryAction

from audience_sync.errors import ConfigurationError, InputError, PermanentError, TransientError
from audience_sync.hooks.base import ApiError, RetriesExhausted
from audience_sync.retry_policy import SYNC_RETRY_POLICY


class GuardStopped(PermanentError):
    """Stands for any project error that declares itself permanent."""


CASES = [
    (RetriesExhausted("HubSpot", 503, None, "still unavailable"), RetryAction.RETRY),
    (RetriesExhausted("AEP", 0, "UNREADABLE_ANSWER", "cut body"), RetryAction.RETRY),
    (TransientError("unreadable"), RetryAction.RETRY),
    (ApiError("HubSpot", 400, "VALIDATION_ERROR", "bad input"), RetryAction.FAIL),
    (ApiError("HubSpot", 403, "MISSING_SCOPES", "scope"), RetryAction.FAIL),
    (ConfigurationError("no credentials"), RetryAction.FAIL),
    (InputError("bad export"), RetryAction.FAIL),
    (GuardStopped("too many exits"), RetryAction.FAIL),
    (ValueError("a parse error is not a verdict"), RetryAction.DEFAULT),
    (requests.JSONDecodeError("Expecting value", "<html>", 0), RetryAction.DEFAULT),
    (RuntimeError("anything else"), RetryAction.DEFAULT),
]


@pytest.mark.parametrize(("error", "action"), CASES, ids=[type(e).__name__ + str(i) for i, (e, _) in enumerate(CASES)])
def test_failures_are_classified_by_type(error, action):
    assert SYNC_RETRY_POLICY.evaluate(error, try_number=1, max_tries=4).action == action


def test_the_policy_names_classes_and_survives_dag_serialization():
    data = json.loads(json.dumps(SYNC_RETRY_POLICY.serialize()))
    assert all(not isinstance(rule.exception, str) for rule in SYNC_RETRY_POLICY.rules)
    assert "builtins.ValueError" not in json.dumps(data)
    restored = ExceptionRetryPolicy.deserialize(data)
    for error, action in CASES:
        assert restored.evaluate(error, try_number=1, max_tries=4).action == action
