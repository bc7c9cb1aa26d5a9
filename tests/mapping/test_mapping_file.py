"""Loading and validating mapping files: the default one, malformed ones, governance."""

from __future__ import annotations

from pathlib import Path

import pytest
from audience_sync.mapping import GovernanceError, MappingError, load_mapping

DEFAULT = Path(__file__).resolve().parents[2] / "include" / "mappings" / "default.yaml"

VALID_ROWS = """
fields:
  - source: identityMap.email
    fallback: personalEmail.address
    target: email
  - source: person.name.firstName
    target: firstname
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def test_default_mapping_matches_the_seed_destination():
    mapping = load_mapping(DEFAULT)
    assert mapping.target_properties == ["email", "firstname", "lastname", "address", "city", "country"]
    assert mapping.email.sources == ("identityMap.email", "personalEmail.address")
    assert [f.source for f in mapping.attributes] == [
        "person.name.firstName",
        "person.name.lastName",
        "workAddress.street1",
        "workAddress.city",
        "workAddress.country",
    ]
    assert "person.birthDate" in mapping.blocked_fields


def test_custom_rows_and_optional_flag(tmp_path):
    mapping = load_mapping(
        write(tmp_path, VALID_ROWS + "  - source: _tenant.loyalty.tier\n    target: loyalty_tier\n    optional: true\n")
    )
    assert mapping.target_properties == ["email", "firstname", "loyalty_tier"]
    assert mapping.attributes[-1].optional is True


@pytest.mark.parametrize(
    "text, expected",
    [
        ("fields: [\n  - source: a\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("fields:\n  - source: person.name.firstName\n    target: firstname\n", "no row with target 'email'"),
        (
            VALID_ROWS + "  - source: person.name.lastName\n    target: firstname\n",
            "target 'firstname' is already written by row 2",
        ),
        (
            VALID_ROWS + "  - source: person.name.lastName\n    target: LastName\n",
            "target 'LastName' is not a HubSpot property name",
        ),
        (VALID_ROWS + "  - source: person.name.lastName\n    target: 2nd_name\n", "not a HubSpot property name"),
        (
            VALID_ROWS + "  - source: person..lastName\n    target: lastname\n",
            "source 'person..lastName' is not a dotted XDM path",
        ),
        (
            VALID_ROWS + "  - source: person.name.lastName\n    target: lastname\n    default: x\n",
            "unknown key(s) default in fields row 3",
        ),
        (VALID_ROWS + "extra: 1\n", "unknown key(s) extra in the top level"),
        (VALID_ROWS + "governance:\n  labels: [C5]\n", "unknown key(s) labels in 'governance'"),
        (VALID_ROWS + "governance:\n  blocked_fields: person.birthDate\n", "must be a list of dotted XDM paths"),
        (VALID_ROWS + "version: 2\n", "version 2 is not supported"),
        ("fields: []\n", "'fields' must be a non-empty list"),
        ("fields:\n  - identityMap.email\n", "expected 'source' and 'target' keys"),
        (
            "fields:\n  - source: identityMap.email\n    target: email\n    optional: true\n",
            "the email row cannot be optional",
        ),
        (
            VALID_ROWS + "  - source: person.name.lastName\n    target: lastname\n    optional: 'yes'\n",
            "optional must be true or false",
        ),
        (
            VALID_ROWS + "  - source: workAddress.city\n    target: city\n    on_missing: drop\n",
            "on_missing must be one of",
        ),
        (VALID_ROWS.replace("target: email\n", "target: email\n    on_missing: keep\n"), "does not apply to the email"),
        (VALID_ROWS + "fields: []\n", "found duplicate key 'fields'"),
        (VALID_ROWS + "  - source: a.b\n    source: c.d\n    target: x\n", "found duplicate key 'source'"),
    ],
)
def test_malformed_mapping_files_name_the_problem_and_the_file(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_a_mapping_error(tmp_path):
    with pytest.raises(MappingError, match="cannot be read"):
        load_mapping(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "row, blocked",
    [
        ("  - source: person.birthDate\n    target: birthday\n", "person.birthDate"),  # the field itself
        ("  - source: person.birthDate.year\n    target: birth_year\n", "person.birthDate"),  # inside it
        (
            "  - source: person.name.lastName\n    fallback: person.birthDate\n    target: lastname\n",
            "person.birthDate",
        ),
        ("  - source: identityMap.ECID\n    target: aep_ecid\n", "identityMap.ECID"),
    ],
)
def test_governance_blocks_fields_that_must_not_leave_aep(tmp_path, row, blocked):
    path = write(tmp_path, VALID_ROWS + row + "governance:\n  blocked_fields: [person.birthDate, identityMap.ECID]\n")
    with pytest.raises(GovernanceError) as caught:
        load_mapping(path)
    assert blocked in str(caught.value) and str(path) in str(caught.value)


def test_governance_blocks_a_parent_that_contains_a_blocked_field(tmp_path):
    """Mapping a whole struct that holds a blocked child would send the child."""
    path = write(tmp_path, VALID_ROWS + "  - source: person.name\n    target: fullname\n")
    with pytest.raises(GovernanceError, match="fullname <- person.name"):
        load_mapping(path, blocked_fields=["person.name.middleName"])


def test_default_mapping_plus_organisation_policy(tmp_path):
    with pytest.raises(GovernanceError, match="workAddress"):
        load_mapping(DEFAULT, blocked_fields=["workAddress"])


def test_on_missing_defaults_to_clear_and_can_keep(tmp_path):
    mapping = load_mapping(
        write(tmp_path, VALID_ROWS + "  - source: workAddress.city\n    target: city\n    on_missing: keep\n")
    )
    assert [f.on_missing for f in mapping.attributes] == ["clear", "keep"]
    assert mapping.keep_on_missing == ["city"]


def test_governance_of_the_sync_config_applies_to_any_mapping_file(tmp_path):
    """A user-chosen mapping file without a governance section cannot send a blocked field."""
    path = write(tmp_path, VALID_ROWS + "  - source: person.gender\n    target: gender\n")
    with pytest.raises(GovernanceError, match="person.gender"):
        load_mapping(path)
    # the mapping file may add blocked fields on top of the configuration's
    added = write(tmp_path, VALID_ROWS + "governance:\n  blocked_fields: [person.name.firstName]\n")
    with pytest.raises(GovernanceError, match="firstname <- person.name.firstName"):
        load_mapping(added, blocked_fields=["person.gender"])
    assert "person.gender" in load_mapping(write(tmp_path, VALID_ROWS)).blocked_fields
