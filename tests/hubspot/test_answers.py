"""Mapping HubSpot answers back to inputs, for answer shapes the sandbox does not produce."""

from __future__ import annotations

from audience_sync.clients.hubspot import attribute_errors, quoted_values, read_upsert_answer

INPUTS = [
    {"idProperty": "email", "id": "a@example.com", "properties": {"city": "Paris"}, "objectWriteTraceId": "t0"},
    {"idProperty": "email", "id": "B@example.com", "properties": {"city": "Oslo", "shoe": "9"}, "objectWriteTraceId": "t1"},
    {"idProperty": "email", "id": "c@example.com", "properties": {"city": "Rome"}, "objectWriteTraceId": "t2"},
]


def test_errors_name_inputs_by_ids_when_there_is_no_trace_id():
    entries = [{"category": "OBJECT_NOT_FOUND", "message": "gone", "context": {"ids": ["b@example.com"]}}]
    blamed = attribute_errors(entries, INPUTS)
    assert list(blamed) == [1]
    assert (blamed[1].category, blamed[1].reason, blamed[1].field) == ("OBJECT_NOT_FOUND", "gone", None)


def test_an_unknown_property_blames_only_the_inputs_that_carry_it():
    entries = [{"message": 'Property "shoe" does not exist', "code": "PROPERTY_DOESNT_EXIST", "context": {"propertyName": ["shoe"]}}]
    blamed = attribute_errors(entries, INPUTS)
    assert list(blamed) == [1] and blamed[1].field == "shoe" and blamed[1].reason.startswith("PROPERTY_DOESNT_EXIST: ")


def test_a_quoted_value_is_only_a_suspect():
    details = [{"message": "Oslo was not one of the allowed options", "context": {"propertyName": ["city"]}}]
    assert quoted_values(details, INPUTS) == {1}
    assert attribute_errors(details, INPUTS) == {}  # no code that condemns the property itself


def test_results_without_trace_ids_match_by_email_or_by_count():
    body = {
        "status": "COMPLETE",
        "results": [
            {"id": "11", "new": True, "properties": {"email": "b@example.com"}},
            {"id": "12", "new": False, "properties": {}},
        ],
        "errors": [{"category": "VALIDATION_ERROR", "message": "bad", "context": {"objectWriteTraceId": ["t0"]}}],
    }
    answer = read_upsert_answer(body, INPUTS, "email")
    assert answer.written[1].hubspot_id == "11" and answer.written[1].new
    assert answer.written[2].hubspot_id is None and not answer.written[2].new  # the one result left, id unknown
    assert list(answer.rejected) == [0]


def test_an_answer_that_accounts_for_nothing_is_never_a_silent_drop():
    answer = read_upsert_answer({"status": "COMPLETE", "results": []}, INPUTS, "email")
    assert answer.written == {} and {r.category for r in answer.rejected.values()} == {"UNCONFIRMED"}
    assert sorted(answer.rejected) == [0, 1, 2]
