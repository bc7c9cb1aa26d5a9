"""map_export on dirty XDM exports built with pyarrow, checked by hand and against the per-row baseline."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from audience_sync.mapping import MAX_VALUE_LENGTH, GovernanceError, MappingError, load_mapping, map_export
from benchmarks.mapping_baseline import map_export_baseline
from xdm_profiles import profile, synthetic_part, write_part

ROOT = Path(__file__).resolve().parents[2]

AUDIENCES = {"seg-gold": "aep_gold", "seg-churn": "aep_churn"}
COLUMNS = ["email", "firstname", "lastname", "address", "city", "country", "aep_gold", "aep_churn", "_profile_id"]


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(ROOT / "include" / "mappings" / "default.yaml")


def dirty_profiles() -> list[dict]:
    return [
        profile(
            "p01",
            emails=[(" Alice@Example.COM ", True)],
            first=" Alice ",
            last="Smith",
            city="Paris",
            audiences={"seg-gold": ("realized", 1)},
        ),
        profile(
            "p02",
            personal=" Bob@Example.com",
            first="Bob",
            audiences={"seg-gold": ("existing", 2), "seg-churn": ("exited", 3)},
        ),
        profile("p03", emails=[("carol.old@example.com", False), ("Carol@Example.com", True)], first="Carol"),
        profile("p04", emails=[("not-an-email", True)], personal="dave@example.com", first="Dave"),
        profile("p05", first="Nobody", audiences={"seg-gold": ("realized", 1)}),
        profile("p06", emails=[("eve@@example", True)], first="Eve"),
        profile(
            "p07",
            emails=[("zoe@example.fr", True)],
            first="Zoë",
            last="Ñúñez-Łęcka",
            city="Zürich",
            country="Österreich 🇦🇹",
        ),
        profile("p08", emails=[("long@example.com", True)], street="x" * (MAX_VALUE_LENGTH + 1)),
        profile("p09", emails=[("limit@example.com", True)], street="y" * MAX_VALUE_LENGTH),
        profile("p10", emails=[("blank@example.com", True)], first="   ", last="", city=" Lyon "),
        profile("p11", ecid="123456789", first="Ecid-only"),
        profile(
            "p12",
            emails=[("frank@example.com", False), ("frank.alt@example.com", False)],
            first="Frank",
            audiences={"seg-gold": ("Realized", 1), "seg-other": ("realized", 1)},
        ),
        profile("p13", emails=[("grace@example.com", True)], audiences={"seg-churn": ("paused", 1)}),
        profile("p14", emails=[], personal="", first="Empty"),
    ]


def run(tmp_path, parts, mapping, **kwargs):
    result = map_export(parts, mapping, AUDIENCES, str(tmp_path / "out"), **kwargs)
    mapped = pd.concat([pq.read_table(p).to_pandas() for p in result.mapped_paths]) if result.mapped_paths else None
    rejects = pq.read_table(result.rejects_path).to_pandas()
    return result, (mapped.set_index("_profile_id") if mapped is not None else None), rejects.set_index("record_id")


def value(frame, pid, column):
    found = frame.loc[pid, column]
    return None if pd.isna(found) else found


def test_dirty_profiles_are_mapped_or_rejected_with_a_reason(tmp_path, mapping):
    part = write_part(tmp_path / "part-0.parquet", dirty_profiles())
    result, mapped, rejects = run(tmp_path, [part], mapping, read_batch_rows=5)

    assert result.counts == {
        "exported": 14,
        "valid": 8,
        "rejected": 6,
        "rejected_by_category": {"INVALID_EMAIL": 1, "INVALID_STATUS": 1, "MISSING_EMAIL": 3, "VALUE_TOO_LONG": 1},
        "deduplicated": 0,
        "merged": 0,
    }
    assert sorted(mapped.index) == ["p01", "p02", "p03", "p04", "p07", "p09", "p10", "p12"]
    assert value(mapped, "p01", "email") == "alice@example.com"  # trimmed, lowercased
    assert value(mapped, "p01", "firstname") == "Alice"  # trimmed, case kept
    assert value(mapped, "p02", "email") == "bob@example.com"  # personalEmail fallback
    assert value(mapped, "p03", "email") == "carol@example.com"  # the primary identity wins
    assert value(mapped, "p04", "email") == "dave@example.com"  # invalid identity, valid fallback
    assert value(mapped, "p12", "email") == "frank@example.com"  # no primary: first in export order
    assert [value(mapped, "p07", c) for c in ("firstname", "lastname", "city", "country")] == [
        "Zoë",
        "Ñúñez-Łęcka",
        "Zürich",
        "Österreich 🇦🇹",
    ]
    assert len(value(mapped, "p09", "address")) == MAX_VALUE_LENGTH  # at the limit: sent whole
    assert value(mapped, "p10", "firstname") is None and value(mapped, "p10", "lastname") is None
    assert value(mapped, "p10", "city") == "Lyon"
    assert value(mapped, "p10", "address") is None  # no workAddress at all → null, not sent

    assert rejects.loc["p05", "category"] == "MISSING_EMAIL"
    assert rejects.loc["p11", "category"] == "MISSING_EMAIL"  # an ECID is not an email
    assert rejects.loc["p14", "category"] == "MISSING_EMAIL"  # empty strings are no email
    assert pd.isna(rejects.loc["p05", "email"])
    assert rejects.loc["p06", "category"] == "INVALID_EMAIL" and rejects.loc["p06", "email"] == "eve@@example"
    assert rejects.loc["p08", "category"] == "VALUE_TOO_LONG" and rejects.loc["p08", "field"] == "address"
    assert str(MAX_VALUE_LENGTH + 1) in rejects.loc["p08", "reason"]
    assert rejects.loc["p13", "category"] == "INVALID_STATUS" and rejects.loc["p13", "field"] == "aep_churn"
    assert set(rejects["stage"]) == {"map"}
    assert rejects["reason"].str.len().min() > 10


def test_audience_status_columns(tmp_path, mapping):
    part = write_part(tmp_path / "part-0.parquet", dirty_profiles())
    _, mapped, _ = run(tmp_path, [part], mapping)
    assert value(mapped, "p01", "aep_gold") == "realized" and value(mapped, "p01", "aep_churn") is None
    assert value(mapped, "p02", "aep_gold") == "existing" and value(mapped, "p02", "aep_churn") == "exited"
    assert value(mapped, "p12", "aep_gold") == "realized"  # "Realized" normalised; seg-other not synced
    assert "aep_other" not in mapped.columns
    assert value(mapped, "p03", "aep_gold") is None  # not a member


def test_output_contract_columns_and_chunks(tmp_path, mapping):
    part = write_part(tmp_path / "part-0.parquet", dirty_profiles())
    result = map_export([part], mapping, AUDIENCES, str(tmp_path / "out"), chunk_rows=3)
    assert [pq.read_metadata(p).num_rows for p in result.mapped_paths] == [3, 3, 2]
    assert [Path(p).name for p in result.mapped_paths] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    for path in result.mapped_paths:
        schema = pq.read_schema(path)
        assert schema.names == COLUMNS
        assert all(t == pa.string() for t in schema.types)
    assert pq.read_schema(result.rejects_path).names == ["stage", "record_id", "email", "field", "category", "reason"]
    # a rerun into the same folder replaces the chunks instead of leaving stale ones behind
    again = map_export([part], mapping, AUDIENCES, str(tmp_path / "out"), chunk_rows=10)
    assert len(again.mapped_paths) == 1 and len(list((tmp_path / "out" / "mapped").glob("*.parquet"))) == 1


def test_duplicates_across_batches_and_parts_keep_the_latest_qualification(tmp_path, mapping):
    first = write_part(
        tmp_path / "part-0.parquet",
        [
            profile("p1", emails=[("Alice@Example.com", True)], first="Old", audiences={"seg-gold": ("realized", 1)}),
            profile(
                "p3", emails=[("  alice@example.COM", True)], first="Tie-loser", audiences={"seg-gold": ("existing", 5)}
            ),
            profile("q1", emails=[("bob@example.com", True)], first="Bob-unranked"),
        ],
    )
    second = write_part(
        tmp_path / "part-1.parquet",
        [
            profile(
                "p2",
                personal="ALICE@example.com",
                first="Latest",
                audiences={"seg-gold": ("existing", 5), "seg-churn": ("exited", 2)},
            ),
            profile(
                "q2", emails=[("bob@example.com", True)], first="Bob-ranked", audiences={"seg-churn": ("realized", 0)}
            ),
        ],
    )
    result, mapped, rejects = run(tmp_path, [first, second], mapping, read_batch_rows=1)
    assert result.counts["deduplicated"] == 3 and result.counts["valid"] == 2
    assert sorted(mapped.index) == ["p2", "q2"]  # same time as p3: the smaller _id wins; any time beats none
    assert value(mapped, "p2", "firstname") == "Latest"
    dupes = rejects[rejects["category"] == "DUPLICATE_EMAIL"]
    assert sorted(dupes.index) == ["p1", "p3", "q1"]
    assert dupes.loc["p1", "reason"].endswith(": p2") and dupes.loc["q1", "reason"].endswith(": q2")
    assert set(dupes["email"]) == {"alice@example.com", "bob@example.com"}


def test_missing_optional_columns_are_null(tmp_path, mapping):
    part = write_part(
        tmp_path / "part-0.parquet", dirty_profiles(), drop=("workAddress", "segmentMembership", "personalEmail")
    )
    result, mapped, rejects = run(tmp_path, [part], mapping)
    assert mapped["address"].isna().all() and mapped["city"].isna().all()
    assert mapped["aep_gold"].isna().all()
    assert "p02" not in mapped.index and rejects.loc["p02", "category"] == "MISSING_EMAIL"  # no fallback column
    assert value(mapped, "p01", "firstname") == "Alice"


def test_parts_with_different_schemas(tmp_path, mapping):
    full = write_part(tmp_path / "part-0.parquet", dirty_profiles()[:3])
    narrow = write_part(tmp_path / "part-1.parquet", dirty_profiles()[6:8], drop=("workAddress",))
    _, mapped, _ = run(tmp_path, [full, narrow], mapping)
    assert value(mapped, "p01", "city") == "Paris" and value(mapped, "p07", "city") is None


@pytest.mark.parametrize(
    "drop, named",
    [
        (("person",), "person.name.firstName (for firstname)"),
        (("identityMap", "personalEmail"), "identityMap.Email or personalEmail.address (for email)"),
    ],
)
def test_missing_required_column_is_a_clear_error(tmp_path, mapping, drop, named):
    part = write_part(tmp_path / "part-0.parquet", dirty_profiles(), drop=drop)
    with pytest.raises(MappingError) as caught:
        map_export([part], mapping, AUDIENCES, str(tmp_path / "out"))
    assert named in str(caught.value) and part in str(caught.value)
    assert not (tmp_path / "out" / "rejects" / "map.parquet").exists()  # nothing written


def test_scalar_types_identity_sources_and_non_scalar_error(tmp_path):
    rows = [
        dict(
            profile("p1", emails=[("a@example.com", True)], ecid="e-1"),
            _tenant={
                "score": 42,
                "vip": True,
                "since": pd.Timestamp("2026-01-02T03:04:05.006Z").to_pydatetime(),
                "ratio": 0.5,
                "tags": ["x"],
            },
        )
    ]
    tenant = pa.struct(
        [
            ("score", pa.int64()),
            ("vip", pa.bool_()),
            ("since", pa.timestamp("ms", "UTC")),
            ("ratio", pa.float64()),
            ("tags", pa.list_(pa.string())),
        ]
    )
    from xdm_profiles import SCHEMA

    part = tmp_path / "part-0.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA.append(pa.field("_tenant", tenant))), part)
    mapping_file = tmp_path / "m.yaml"
    mapping_file.write_text(
        "fields:\n"
        "  - {source: identityMap.email, target: email}\n"
        "  - {source: _tenant.score, target: score}\n"
        "  - {source: _tenant.vip, target: vip}\n"
        "  - {source: _tenant.since, target: customer_since}\n"
        "  - {source: _tenant.ratio, target: ratio}\n"
        "  - {source: identityMap.ECID, target: aep_ecid}\n"
        "  - {source: _tenant.missing, target: absent_prop, optional: true}\n"
    )
    # no governance here (the sync config blocks identityMap.ECID): this test is about identity sources
    result = map_export([str(part)], load_mapping(mapping_file, blocked_fields=()), {}, str(tmp_path / "out"))
    row = pq.read_table(result.mapped_paths[0]).to_pylist()[0]
    assert row == {
        "email": "a@example.com",
        "score": "42",
        "vip": "true",
        "customer_since": "1767323045006",
        "ratio": "0.5",
        "aep_ecid": "e-1",
        "absent_prop": None,
        "_profile_id": "p1",
    }

    mapping_file.write_text(
        "fields:\n  - {source: identityMap.email, target: email}\n  - {source: _tenant.tags, target: tags}\n"
    )
    with pytest.raises(MappingError, match="_tenant.tags holds list"):
        map_export([str(part)], load_mapping(mapping_file), {}, str(tmp_path / "out2"))


def test_audience_property_clashing_with_a_mapped_property_is_refused(tmp_path, mapping):
    part = write_part(tmp_path / "part-0.parquet", dirty_profiles()[:1])
    with pytest.raises(MappingError, match=r"names also mapped from XDM \['city'\]"):
        map_export([part], mapping, {"seg-gold": "city"}, str(tmp_path / "out"))


def canonical(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    mapped = pd.concat([pq.read_table(p).to_pandas() for p in result.mapped_paths])
    rejects = pq.read_table(result.rejects_path).to_pandas()[["record_id", "email", "field", "category", "stage"]]
    return (
        mapped.sort_values("_profile_id").reset_index(drop=True),
        rejects.sort_values("record_id").reset_index(drop=True),
    )


def test_vectorised_equals_per_row_baseline_on_dirty_data(tmp_path, mapping):
    profiles = dirty_profiles()
    duplicates = [
        profile("d1", emails=[("Alice@example.com", True)], first="Dup", audiences={"seg-gold": ("exited", 9)}),
        profile("d2", emails=[("zoe@EXAMPLE.fr ", False)], first="Dup2"),
    ]
    parts = [
        write_part(tmp_path / "part-0.parquet", profiles[:7]),
        write_part(tmp_path / "part-1.parquet", profiles[7:] + duplicates[:1]),
        write_part(tmp_path / "part-2.parquet", duplicates[1:], drop=("workAddress",)),
        synthetic_part(tmp_path / "part-3.parquet", 3_000, list(AUDIENCES), seed=3),
    ]
    fast = map_export(parts, mapping, AUDIENCES, str(tmp_path / "fast"), chunk_rows=700, read_batch_rows=333)
    slow = map_export_baseline(parts, mapping, AUDIENCES, str(tmp_path / "slow"), chunk_rows=500, read_batch_rows=1000)
    assert fast.counts == slow.counts
    assert fast.counts["deduplicated"] > 50 and fast.counts["rejected_by_category"]["DUPLICATE_EMAIL"] > 50
    fast_mapped, fast_rejects = canonical(fast)
    slow_mapped, slow_rejects = canonical(slow)
    pd.testing.assert_frame_equal(fast_mapped, slow_mapped)
    pd.testing.assert_frame_equal(fast_rejects, slow_rejects)


def test_speed_sanity_200k_profiles(tmp_path, mapping, capsys):
    """Not a timed assertion: prints the throughput so regressions show in the log."""
    part = synthetic_part(tmp_path / "big.parquet", 200_000, list(AUDIENCES) + ["seg-x"], seed=1)
    started = time.perf_counter()
    result = map_export([part], mapping, AUDIENCES, str(tmp_path / "out"), chunk_rows=10_000)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nmap_export: 200,000 profiles in {elapsed:.2f} s ({200_000 / elapsed:,.0f} profiles/s)")
    assert result.counts["exported"] == 200_000
    assert result.counts["rejected_by_category"] == {"DUPLICATE_EMAIL": 3_999, "MISSING_EMAIL": 2_000}
    assert len(result.mapped_paths) == 20


def test_empty_export_writes_an_empty_rejects_file_and_no_chunks(tmp_path, mapping):
    part = write_part(tmp_path / "part-0.parquet", [])
    result = map_export([part], mapping, AUDIENCES, str(tmp_path / "out"))
    assert result.mapped_paths == [] and result.counts["exported"] == 0 and result.counts["valid"] == 0
    assert pq.read_metadata(result.rejects_path).num_rows == 0


@pytest.mark.slow
def test_one_million_profiles_map_and_plan(tmp_path, mapping, capsys):
    from audience_sync.incremental import plan

    parts = [
        synthetic_part(tmp_path / f"part-{i}.parquet", 250_000, list(AUDIENCES), seed=i, start=i * 250_000)
        for i in range(4)
    ]
    started = time.perf_counter()
    result = map_export(parts, mapping, AUDIENCES, str(tmp_path / "out"))
    mapped_at = time.perf_counter()
    planned = plan(result.mapped_paths, None, list(AUDIENCES.values()), False, str(tmp_path / "plan"))
    with capsys.disabled():
        print(f"\n1,000,000 profiles: map {mapped_at - started:.1f} s, plan {time.perf_counter() - mapped_at:.1f} s")
    assert result.counts["rejected_by_category"] == {"DUPLICATE_EMAIL": 19_999, "MISSING_EMAIL": 10_000}
    assert planned.counts["new"] == result.counts["valid"] == 970_001


def test_profiles_without_id_are_named_by_their_primary_identity(tmp_path, mapping):
    """Nothing documents that a profile export carries ``_id``: rejects and the dedup tie-break fall back to
    the primary identity ``<namespace>:<id>``."""
    profiles = [
        *dirty_profiles(),
        profile("x1", emails=[("Tie@Example.com", True)], first="Tie-b", audiences={"seg-gold": ("realized", 5)}),
        profile("x2", emails=[("tie@example.com ", True)], first="Tie-a", audiences={"seg-gold": ("realized", 5)}),
    ]
    part = write_part(tmp_path / "part-0.parquet", profiles, drop=("_id",))
    with_ids = write_part(tmp_path / "with-ids.parquet", profiles)
    result, mapped, rejects = run(tmp_path, [part], mapping)
    reference, _, _ = run(tmp_path / "ref", [with_ids], mapping)
    assert result.counts == reference.counts
    assert value(mapped, "email:Alice@Example.COM", "firstname") == "Alice"  # trimmed, case kept
    assert value(mapped, "email:Carol@Example.com", "firstname") == "Carol"  # the primary one, not the first
    assert rejects.loc["ecid:123456789", "category"] == "MISSING_EMAIL"  # no email identity: ECID names it
    assert value(mapped, "email:not-an-email", "email") == "dave@example.com"  # the fallback path's email
    assert rejects.loc["email:eve@@example", "category"] == "INVALID_EMAIL"
    assert value(mapped.reset_index().set_index("firstname"), "Bob", "_profile_id") is None  # no identity at all
    assert list(rejects[rejects.index.isna()]["category"]) == ["MISSING_EMAIL", "MISSING_EMAIL"]  # p05, p14
    # the tie (same time) goes to the smaller profile id, "email:Tie@..." < "email:tie@..."
    dupes = rejects[rejects["category"] == "DUPLICATE_EMAIL"]
    assert value(mapped, "email:Tie@Example.com", "firstname") == "Tie-b"
    assert dupes.loc["email:tie@example.com", "reason"].endswith(": email:Tie@Example.com")
    # the same export twice gives the same ids: the fallback is stable
    again, mapped_again, _ = run(tmp_path / "again", [part], mapping)
    assert mapped_again.index.equals(mapped.index)


@pytest.mark.parametrize("namespace", ["Email", "email", "EMAIL"])
def test_email_identity_namespace_matches_case_insensitively(tmp_path, mapping, namespace):
    """identityMap keys are namespace codes: Adobe's code is ``Email``; exports also show ``email``."""
    profiles = [
        profile("p1", emails=[("a@example.com", True)], email_namespace=namespace),
        profile("p2", emails=[("old@example.com", False), ("b@example.com", True)], email_namespace=namespace),
    ]
    _, mapped, rejects = run(tmp_path, [write_part(tmp_path / "part-0.parquet", profiles)], mapping)
    assert value(mapped, "p1", "email") == "a@example.com" and value(mapped, "p2", "email") == "b@example.com"
    assert rejects.empty


def test_audience_statuses_are_read_in_each_audience_namespace(tmp_path, mapping):
    """Platform audiences are exported under ``ups``, Audience Manager and custom uploads under their own
    namespace: each audience's status is read where the Audiences API says it lives."""
    namespaces = {"seg-churn": "AAM"}
    profiles = [
        profile("p1", emails=[("a@example.com", True)], audience_namespaces=namespaces,
                audiences={"seg-gold": ("realized", 1), "seg-churn": ("existing", 1)}),
        profile("p2", emails=[("b@example.com", True)], audiences={"seg-churn": ("exited", 1)},
                audience_namespaces={"seg-churn": "ups"}),  # same id, other namespace: not this audience
    ]
    part = write_part(tmp_path / "part-0.parquet", profiles)
    _, mapped, _ = run(tmp_path, [part], mapping, audience_namespaces={"seg-gold": "ups", "seg-churn": "aam"})
    assert value(mapped, "p1", "aep_gold") == "realized" and value(mapped, "p1", "aep_churn") == "existing"
    assert value(mapped, "p2", "aep_churn") is None
    _, default, _ = run(tmp_path / "default", [part], mapping)  # without namespaces: ups for every audience
    assert value(default, "p1", "aep_churn") is None and value(default, "p2", "aep_churn") == "exited"


def test_a_blocked_identity_namespace_is_blocked_in_any_case(tmp_path):
    """Namespaces are read case-insensitively, so governance compares them the same way."""
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "fields:\n  - {source: identityMap.Email, target: email}\n  - {source: identityMap.ecid, target: ecid}\n"
        "governance:\n  blocked_fields: [identityMap.ECID]\n"
    )
    with pytest.raises(GovernanceError, match=r"ecid <- identityMap.ecid \(blocked: identityMap.ECID\)"):
        load_mapping(path)
    path.write_text("fields:\n  - {source: identityMap.EMAIL, target: email}\n"
                    "governance:\n  blocked_fields: [identityMap.ECID, person.birthDate]\n")
    assert load_mapping(path).email.source == "identityMap.EMAIL"


def test_a_profile_split_over_rows_is_merged_into_one_contact(tmp_path, mapping):
    """File-based exports write one file per audience, so one profile comes as several rows: one contact,
    values from the winning row (latest qualification), statuses the union with the winning row's first.
    Another profile with the same email stays a DUPLICATE_EMAIL reject."""
    email = [("ada@example.com", True)]
    parts = [
        write_part(tmp_path / "part-0.parquet", [
            profile("p1", emails=email, first="Old", audiences={"seg-gold": ("existing", 2)}),
            profile("p2", emails=[("bo@example.com", True)], first="Bo", audiences={"seg-gold": ("realized", 1)}),
        ]),
        write_part(tmp_path / "part-1.parquet", [
            profile("p1", emails=email, first="Ada", audiences={"seg-churn": ("realized", 9)}),
            profile("p9", emails=email, first="Other", audiences={"seg-gold": ("exited", 3)}),
        ]),
        write_part(tmp_path / "part-2.parquet", [
            profile("p1", emails=email, first="Older", audiences={"seg-gold": ("exited", 1), "seg-churn": ("exited", 1)}),
            profile("p3", emails=[("bo@example.com", False)], first="Bob", audiences={"seg-churn": ("exited", 0)}),
        ]),
    ]
    fast = map_export(parts, mapping, AUDIENCES, str(tmp_path / "fast"), chunk_rows=2, read_batch_rows=1)
    slow = map_export_baseline(parts, mapping, AUDIENCES, str(tmp_path / "slow"))
    assert fast.counts == slow.counts
    assert fast.counts["merged"] == 2 and fast.counts["rejected_by_category"] == {"DUPLICATE_EMAIL": 2}
    fast_mapped, fast_rejects = canonical(fast)
    slow_mapped, slow_rejects = canonical(slow)
    pd.testing.assert_frame_equal(fast_mapped, slow_mapped)
    pd.testing.assert_frame_equal(fast_rejects, slow_rejects)
    ada = fast_mapped.set_index("email").loc["ada@example.com"]
    # winner: part-1's row (qualified on day 9); gold from the next row in dedup order (day 2: existing)
    assert (ada["firstname"], ada["aep_churn"], ada["aep_gold"], ada["_profile_id"]) == ("Ada", "realized", "existing", "p1")
    assert sorted(fast_rejects["record_id"]) == ["p3", "p9"]
