"""Compare the contact counts a run expects in HubSpot with the counts HubSpot's search reports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Counts = Mapping[str, Mapping[str, int]]  # audience property → status → contacts


def compare_counts(expected: Counts, found: Counts, tolerance: int = 0) -> list[dict[str, Any]]:
    """One row per (property, status) that is expected: expected, found, difference, within tolerance."""
    rows = []
    for prop in sorted(expected):
        for status in sorted(expected[prop]):
            want = int(expected[prop][status])
            got = found.get(prop, {}).get(status)
            difference = None if got is None else int(got) - want
            rows.append(
                {
                    "property": prop,
                    "status": status,
                    "expected": want,
                    "found": got,
                    "difference": difference,
                    "ok": difference is not None and abs(difference) <= tolerance,
                }
            )
    return rows


def all_ok(rows: list[dict[str, Any]]) -> bool:
    return all(row["ok"] for row in rows)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table for logs and error messages."""
    header = ("audience property", "status", "expected", "found", "difference", "")
    lines = [
        (
            row["property"],
            row["status"],
            str(row["expected"]),
            "?" if row["found"] is None else str(row["found"]),
            "?" if row["difference"] is None else f"{row['difference']:+d}",
            "ok" if row["ok"] else "MISMATCH",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(line: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()

    return "\n".join([render(header), render(tuple("-" * w for w in widths)), *map(render, lines)])
