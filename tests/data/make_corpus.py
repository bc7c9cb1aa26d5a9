"""Writes the bad-input corpus (tests/data/bad_inputs/); run it again after changing a case.

Usage: ``.venv/bin/python tests/data/make_corpus.py``. Deterministic, and small (well under 1 MB):
the README beside this script lists each case and the outcome the reliability tests expect.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parent / "bad_inputs"
HEADER = (
    "_id,identityMap.email,personalEmail.address,person.name.firstName,person.name.lastName,"
    "segmentMembership.ups.aud-gold.status,segmentMembership.ups.aud-gold.lastQualificationTime"
)
GOOD_ROW = "p1,ada@example.com,,Ada,Lovelace,realized,2026-03-01T10:00:00Z"
MAPPING_HEAD = (
    "version: 1\nfields:\n  - source: identityMap.email\n    fallback: personalEmail.address\n    target: email\n"
)


def csv(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def mapping(*rows: str, head: str = MAPPING_HEAD) -> bytes:
    return (head + "".join(rows)).encode()


def valid_parquet() -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table(
        {
            "_id": [f"p{i}" for i in range(200)],
            "personalEmail": [{"address": f"user{i}@example.com"} for i in range(200)],
        }
    )
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def cases() -> dict[str, bytes]:
    parquet = valid_parquet()
    wrong_types = pa.BufferOutputStream()
    pq.write_table(pa.table({"_id": ["p1", "p2"], "personalEmail": [1, 2]}), wrong_types)
    return {
        # --- export files -------------------------------------------------------------------------
        "export_no_email.csv": csv(
            "p1,Ada,Lovelace,realized,2026-03-01T10:00:00Z",
            header="_id,person.name.firstName,person.name.lastName,"
            "segmentMembership.ups.aud-gold.status,segmentMembership.ups.aud-gold.lastQualificationTime",
        ),
        "export_no_id.csv": csv("ada@example.com,Ada", header="identityMap.email,person.name.firstName"),
        "export_row_without_id.csv": csv(GOOD_ROW, ",bob@example.com,,Bob,Builder,realized,2026-03-01T10:00:00Z"),
        "export_wrong_types.parquet": wrong_types.getvalue().to_pybytes(),
        "export_corrupt.parquet": b"PAR1" + bytes(range(256)) * 4 + b"PAR1",
        "export_truncated.parquet": parquet[: len(parquet) // 2],
        "export_empty.csv": csv(),
        "export_zero_bytes.csv": b"",
        "export_invalid_utf8.csv": csv(
            GOOD_ROW, "p2,bob@example.com,,LATIN1,Builder,realized,2026-03-01T10:00:00Z"
        ).replace(b"LATIN1", "Bé".encode("latin-1")),
        "export_bad_timestamp.csv": csv(GOOD_ROW, "p2,bob@example.com,,Bob,Builder,realized,yesterday at noon"),
        "export_bad_boolean.csv": csv(
            "p1,ada@example.com,maybe",
            header="_id,identityMap.email.id,identityMap.email.primary",
        ),
        "export_unsupported_type.json": b'{"_id": "p1"}\n',
        "export_value_too_long.csv": csv(GOOD_ROW, "p2,bob@example.com,,Bob," + "x" * 65_537 + ",realized,"),
        "export_wrong_identity_namespace.csv": csv(
            "p1,+33100000001,Ada,Lovelace,realized,2026-03-01T10:00:00Z",
            "p2,+33100000002,Bob,Builder,realized,2026-03-01T10:00:00Z",
            header="_id,identityMap.phone,person.name.firstName,person.name.lastName,"
            "segmentMembership.ups.aud-gold.status,segmentMembership.ups.aud-gold.lastQualificationTime",
        ),
        "export_split_profile_gold.csv": csv(GOOD_ROW),
        "export_split_profile_churn.csv": csv(
            "p1,ada@example.com,,Ada,Lovelace,realized,2026-03-02T10:00:00Z",
            header=HEADER.replace("aud-gold", "aud-churn"),
        ),
        "export_bad_emails.csv": csv(
            GOOD_ROW,
            "p2,not-an-email,,Bob,Builder,realized,2026-03-01T10:00:00Z",
            "p3,,,Cy,NoMail,realized,2026-03-01T10:00:00Z",
            "p4,ADA@example.com ,,Ada,Again,existing,2026-03-02T10:00:00Z",
        ),
        # --- mapping files ------------------------------------------------------------------------
        "mapping_malformed.yaml": b"version: 1\nfields:\n  - source: identityMap.email\n    target: [email\n",
        "mapping_not_a_mapping.yaml": b"- just\n- a list\n",
        "mapping_unknown_property.yaml": mapping("  - source: person.name.firstName\n    target: favourite_colour\n"),
        "mapping_blocked_field.yaml": mapping(
            "  - source: person.birthDate\n    target: date_of_birth\n",
            "governance:\n  blocked_fields:\n    - person.birthDate\n",
        ),
        "mapping_duplicate_target.yaml": mapping(
            "  - source: person.name.firstName\n    target: firstname\n",
            "  - source: person.name.lastName\n    target: firstname\n",
        ),
        "mapping_no_email.yaml": b"version: 1\nfields:\n  - source: person.name.firstName\n    target: firstname\n",
        "mapping_optional_email.yaml": mapping(head=MAPPING_HEAD + "    optional: true\n"),
        "mapping_bad_version.yaml": mapping(head=MAPPING_HEAD.replace("version: 1", "version: 2")),
        "mapping_missing_xdm_path.yaml": mapping("  - source: person.name.middleName\n    target: middlename\n"),
        "mapping_audience_target.yaml": mapping("  - source: person.name.firstName\n    target: aep_gold_members\n"),
        "mapping_bad_target_name.yaml": mapping("  - source: person.name.firstName\n    target: First Name\n"),
        "mapping_duplicate_keys.yaml": mapping(
            "  - source: person.name.firstName\n    target: firstname\n",
            "governance:\n  blocked_fields: [person.gender]\ngovernance:\n  blocked_fields: []\n",
        ),
        # --- state --------------------------------------------------------------------------------
        "snapshot_corrupt.parquet": b"PAR1" + b"\x00" * 64 + b"PAR1",
        # --- configuration ------------------------------------------------------------------------
        "config_batch_size_too_big.yaml": b"batch_size: 500\n",
        "config_unknown_setting.yaml": b"batch_sise: 50\n",
        "config_duplicate_keys.yaml": b"max_exit_fraction: 0.10\nbatch_size: 100\nmax_exit_fraction: 1.0\n",
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for stale in OUT.iterdir():
        stale.unlink()
    for name, data in cases().items():
        (OUT / name).write_bytes(data)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(list(OUT.iterdir()))} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
