"""File-based audience exports (``source_files``): CSV or Parquet files turned into Parquet parts of the
export schema, as an export job would have produced them. No Airflow import: paths go through ``storage``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from audience_sync import file_exports, storage
from audience_sync.config import check_input_size
from audience_sync.errors import InputError

GLOB_CHARS = re.compile(r"[*?\[]")
PART_NAME = "part-{:05d}.parquet"


@dataclass(frozen=True)
class Converted:
    paths: tuple[str, ...]
    rows: int
    audience_ids: frozenset[str]  # audiences with at least one member in the files


def source_paths(spec: str) -> list[storage.ObjectStoragePath]:
    """A file, a folder (its CSV and Parquet files) or a glob, local or on object storage, sorted."""
    text = str(spec)
    glob = GLOB_CHARS.search(text)
    if glob:
        cut = text.rfind("/", 0, glob.start()) + 1
        found = list(storage.as_path(text[:cut] or ".").glob(text[cut:]))
    else:
        path = storage.as_path(text)
        found = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path] if path.exists() else []
    found = sorted((p for p in found if p.name.lower().endswith((".csv", ".parquet", ".parq"))), key=str)
    if not found:
        raise InputError(f"no CSV or Parquet audience export files at {text!r}")
    return found


def convert(spec: str, folder: storage.ObjectStoragePath, max_bytes: int) -> Converted:
    """Each source file → ``folder/part-NNNNN.parquet`` in the export schema. Every file's size is checked
    against ``max_bytes`` (setting ``max_input_bytes``) before any is read."""
    sources = source_paths(spec)
    for source in sources:
        check_input_size(str(source), source.stat().st_size, max_bytes)
    paths, rows, found = [], 0, set()
    for number, source in enumerate(sources):
        with source.open("rb") as handle:
            table = file_exports.read_export_file(handle, str(source))
        path = folder / PART_NAME.format(number)
        storage.write_parquet(table, path)
        rows += table.num_rows
        paths.append(str(path))
        found |= file_exports.audience_ids(table)
    return Converted(tuple(paths), rows, frozenset(found))
