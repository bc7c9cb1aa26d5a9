"""How the HubSpot client reads write answers the sandbox serves only in some variants, as pure functions over
HubSpot-shaped bodies: not-found for updates (grouped ids, quoted ids, nothing named), and refused values."""

from __future__ import annotations

from audience_sync.clients.hubspot import batch_rejected, read_upsert_answer, refused_values
from audience_sync.hooks.base import ApiError

INPUTS = [
    {"idProperty": "email", "id": "a@example.com", "properties": {"aep_gold": "realized"}},
    {"idProperty": "email", "id": "b@x.org", "properties": {"aep_gold": "platinum"}},
    {"idProperty": "email", "id": "c@example.com", "properties": {"aep_gold": "exited"}},
]
NOT_FOUND = "Could not update some CONTACT objects, they may be deleted or not exist. Check that ids are valid."


def error(status: int, body: dict) -> ApiError:
    return ApiError("HubSpot", status, body.get("category"), body.get("message", ""), "r-1", body)


def test_a_207_naming_missing_ids_in_one_grouped_entry_reports_them_gone():
    body = {
        "status": "COMPLETE",
        "results": [{"id": "7", "properties": {"email": "a@example.com"}}],
        "numErrors": 1,
        "errors": [{"category": "OBJECT_NOT_FOUND", "message": NOT_FOUND, "context": {"ids": ["B@x.org", "c@example.com"]}}],
    }
    answer = read_upsert_answer(body, INPUTS, "email")
    assert (set(answer.written), answer.gone, answer.rejected) == ({0}, {1, 2}, {})


def test_whole_batch_not_found_variants_name_the_gone_or_nobody():
    named = {"category": "OBJECT_NOT_FOUND", "message": NOT_FOUND, "context": {"ids": ["c@example.com"]}}
    by_context = batch_rejected(error(404, named), INPUTS, True)
    assert (by_context.gone, by_context.not_found, by_context.blamed) == ({2}, True, {})
    in_message = {"category": "OBJECT_NOT_FOUND", "message": f"{NOT_FOUND} Not found: [b@x.org]"}
    quoted = batch_rejected(error(400, in_message), INPUTS, True)
    assert (quoted.gone, quoted.not_found) == ({1}, True)
    nothing = {"category": "OBJECT_NOT_FOUND", "message": "Could not update some CONTACT objects."}
    silent = batch_rejected(error(404, nothing), INPUTS, True)
    assert (silent.gone, silent.not_found, silent.blamed) == (set(), True, {})


def test_a_404_without_object_not_found_or_for_an_upsert_never_means_gone():
    """A wrong path answers 404 too: only an OBJECT_NOT_FOUND answer to an update names contacts as gone."""
    bare = batch_rejected(error(404, {"message": "Not Found c@example.com"}), INPUTS, True)
    assert (bare.gone, bare.not_found) == (set(), False)
    named = {"category": "OBJECT_NOT_FOUND", "context": {"ids": ["c@example.com"]}}
    upsert = batch_rejected(error(404, named), INPUTS, False)
    assert (upsert.gone, upsert.not_found) == (set(), False)


def test_a_refused_value_is_a_verdict_only_when_it_is_the_subject_of_the_message():
    message = "platinum was not one of the allowed options: [realized, exited]"
    starts = [{"code": "INVALID_OPTION", "message": message, "name": "aep_gold"}]
    assert list(refused_values(starts, INPUTS)) == [1]
    # "exited" is quoted (in the allowed options) but is not the refused value
    message = "gold was not one of the allowed options: [ exited ]"
    listed = [{"code": "INVALID_OPTION", "message": message, "name": "aep_gold"}]
    assert refused_values(listed, INPUTS) == {}
    no_code = [{"message": "platinum was not one of the allowed options", "name": "aep_gold"}]
    assert refused_values(no_code, INPUTS) == {}
