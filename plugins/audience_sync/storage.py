"""Where intermediate data lives: ``<base>/runs/<dag_id>/<run_id>/`` and ``<base>/state/<dag_id>/``.

The base is ``AUDIENCE_SYNC_BASE_PATH`` (any URL Airflow's object storage understands:
``file:///...``, ``s3://conn_id@bucket/prefix``, ``gs://...``), by default ``data/`` in the project.
Runs are keyed on ``run_id``, never on the logical date, which a manual run may not have.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath

from audience_sync.config import PROJECT_ROOT

DEFAULT_BASE = (PROJECT_ROOT / "data").as_uri()
SNAPSHOT_NAME = "snapshot.parquet"


def base_path() -> ObjectStoragePath:
    return ObjectStoragePath(os.environ.get("AUDIENCE_SYNC_BASE_PATH") or DEFAULT_BASE)


def _safe(part: str) -> str:
    """Run ids carry ':' and '+'; keep folder names portable across filesystems and buckets."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", part)


def runs_path(dag_id: str) -> ObjectStoragePath:
    """Where the DAG's run folders are; nothing is created (for readers such as the report pages)."""
    return base_path() / "runs" / _safe(dag_id)


def run_path(dag_id: str, run_id: str) -> ObjectStoragePath:
    """The run's folder, not created (for readers); tasks that write use :func:`run_folder`."""
    return runs_path(dag_id) / _safe(run_id)


def run_folder(dag_id: str, run_id: str) -> ObjectStoragePath:
    folder = run_path(dag_id, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def state_folder(dag_id: str) -> ObjectStoragePath:
    folder = base_path() / "state" / _safe(dag_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snapshot_path(dag_id: str) -> ObjectStoragePath:
    """What the last successful run sent: read by the plan, written only by the snapshot commit."""
    return state_folder(dag_id) / SNAPSHOT_NAME


def as_path(value: str | ObjectStoragePath) -> ObjectStoragePath:
    return value if isinstance(value, ObjectStoragePath) else ObjectStoragePath(value)


def local_or_none(path: ObjectStoragePath) -> str | None:
    """The plain filesystem path when the storage is local, so pyarrow can memory-map it."""
    return path.path if path.protocol in ("file", "local", "") else None


@contextlib.contextmanager
def atomic_path(path: str | Path | ObjectStoragePath) -> Iterator[Path | ObjectStoragePath]:
    """The one atomic write: yields a temporary sibling of ``path`` to write, renamed onto ``path`` when
    the block ends and removed when it fails, so a killed task never leaves half a file under the real name.
    A ``pathlib.Path`` stays a plain local path (for pyarrow writers and the pure modules); the temporary
    name is unique, so two writers of one file never write into each other's temporary file."""
    path = as_path(path) if isinstance(path, str) else path
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.rename(path)


def write_parquet(frame: pd.DataFrame | pa.Table, path: str | ObjectStoragePath) -> str:
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        pq.write_table(table, handle, compression="zstd")
    return str(path)


def read_parquet(path: str | ObjectStoragePath, columns: list[str] | None = None) -> pd.DataFrame:
    return read_table(path, columns).to_pandas()


def read_table(path: str | ObjectStoragePath, columns: list[str] | None = None) -> pa.Table:
    path = as_path(path)
    local = local_or_none(path)
    if local:
        return pq.read_table(local, columns=columns)
    with path.open("rb") as handle:
        return pq.read_table(io.BytesIO(handle.read()), columns=columns)


def iter_parquet_batches(path: str | ObjectStoragePath, batch_size: int = 100_000, columns: list[str] | None = None):
    """Stream record batches so memory stays bounded whatever the file size."""
    path = as_path(path)
    local = local_or_none(path)
    handle = open(local, "rb") if local else path.open("rb")
    with handle:
        yield from pq.ParquetFile(handle).iter_batches(batch_size=batch_size, columns=columns)


def write_bytes_atomically(data: bytes, path: str | ObjectStoragePath) -> str:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return str(path)


def download_to(path: str | ObjectStoragePath, local: str) -> None:
    """Put ``path`` at the plain file ``local`` (for code that works on local files, e.g. in a
    :func:`staged_folder`): nothing to do when it is that file already, or does not exist."""
    path = as_path(path)
    if local_or_none(path) == local or not path.exists():
        return
    Path(local).parent.mkdir(parents=True, exist_ok=True)
    _copy(path, Path(local))


def _copy(source: Path | ObjectStoragePath, target: Path | ObjectStoragePath) -> None:
    """Stream one file into another, local or object storage, 8 MiB at a time (memory stays flat)."""
    with source.open("rb") as reader, target.open("wb") as writer:
        shutil.copyfileobj(reader, writer, length=8 << 20)


def write_json(data: Any, path: str | ObjectStoragePath) -> str:
    return write_bytes_atomically(json.dumps(data, indent=2, sort_keys=True, default=str).encode(), path)


def read_json(path: str | ObjectStoragePath) -> Any:
    return json.loads(as_path(path).read_text())


@contextlib.contextmanager
def staged_folder(folder: ObjectStoragePath) -> Iterator[tuple[str, Callable[[str], str]]]:
    """A local working folder for code that needs plain files (pyarrow writers, atomic renames).

    Local storage: the folder itself. Object storage: a temporary folder whose files are uploaded to
    ``folder`` when the block ends without error. Yields the local folder and a function turning a
    local path inside it into the path it will have in ``folder``.
    """
    folder = as_path(folder)
    local = local_or_none(folder)
    if local:
        Path(local).mkdir(parents=True, exist_ok=True)
        yield local, lambda path: path
        return
    with tempfile.TemporaryDirectory(prefix="audience-sync-") as workdir:
        yield workdir, lambda path: str(folder / Path(path).relative_to(workdir).as_posix())
        for file in Path(workdir).rglob("*"):
            if file.is_file():
                target = folder / file.relative_to(workdir).as_posix()
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy(file, target)


def fetched(paths: list[str], workdir: str) -> list[str]:
    """Plain local paths for ``paths``: local files as they are, remote ones downloaded into ``workdir``."""
    local_paths = []
    for number, value in enumerate(paths):
        path = as_path(value)
        local = local_or_none(path)
        if local is None:
            local = str(Path(workdir) / f"{number:05d}-{path.name}")
            _copy(path, Path(local))
        local_paths.append(local)
    return local_paths
