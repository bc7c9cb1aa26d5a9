"""storage: the one atomic write, run folder paths, and moving files between object storage and local work
folders (Airflow's ObjectStoragePath over fsspec's in-memory filesystem stands in for a bucket)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach
from audience_sync import storage
from fsspec.implementations.memory import MemoryFileSystem


def test_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "file.bin"
    with storage.atomic_path(target) as tmp:
        assert isinstance(tmp, Path) and tmp.parent == tmp_path and tmp.name.startswith(".file.bin.")
        tmp.write_bytes(b"new")
        assert not target.exists()  # readers never see a half-written file under the real name
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), storage.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["file.bin"]


def test_two_writers_of_one_file_get_their_own_temporary_names(tmp_path):
    with storage.atomic_path(tmp_path / "f") as first, storage.atomic_path(str(tmp_path / "f")) as second:
        assert str(first) != str(second)
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert (tmp_path / "f").read_bytes() == b"1"  # the block that ends last wins, whole


def test_run_path_creates_nothing_and_run_folder_does():
    path = storage.run_path("my dag", "manual__2026-12-01T10:00:00+00:00")
    assert path.name == "manual__2026-12-01T10_00_00_00_00" and path.parent == storage.runs_path("my dag")
    assert not path.exists()
    assert storage.run_folder("my dag", "manual__2026-12-01T10:00:00+00:00") == path and path.is_dir()


def test_files_move_between_object_storage_and_local_work_folders(tmp_path):
    attach("memory", fs=MemoryFileSystem())  # what a provider does for s3:// or gs://
    bucket = ObjectStoragePath("memory://audience-sync-test/run")
    remote = bucket / "in" / "part.bin"
    remote.parent.mkdir(parents=True, exist_ok=True)
    remote.write_bytes(b"x" * (9 << 20))  # more than one 8 MiB block
    [local] = storage.fetched([str(remote)], str(tmp_path))
    assert Path(local).read_bytes() == remote.read_bytes()
    storage.download_to(remote, str(tmp_path / "copy" / "part.bin"))
    assert (tmp_path / "copy" / "part.bin").stat().st_size == 9 << 20
    with storage.staged_folder(bucket / "out") as (work, published):
        Path(work, "a", "b.txt").parent.mkdir()
        Path(work, "a", "b.txt").write_text("done")
        assert published(str(Path(work, "a", "b.txt"))) == str(bucket / "out" / "a" / "b.txt")
    assert (bucket / "out" / "a" / "b.txt").read_text() == "done"
