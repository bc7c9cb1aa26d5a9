"""Send one planned Parquet chunk to HubSpot by email, resumably.

Input columns: ``email``, HubSpot property columns (strings; null means "don't send this property", an
empty string clears it) and ``_write``: "upsert" (batch upsert, may create the contact) or "update" (batch
update by email, never creates: a contact HubSpot no longer has is "gone", not re-created). Without a
``_write`` column every row is an upsert (plan files of older runs). Other columns starting with ``_`` are
ignored.

Outputs, next to each other in ``output_dir`` (``<stem>`` is the input file's name without ``.parquet``):
``<stem>.results.parquet`` (email, hubspot_id, new), ``<stem>.rejects.parquet`` (stage, record_id,
email, field, category, reason), ``<stem>.gone.parquet`` (email) and ``<stem>.checkpoint/`` (one JSON file
per finished batch).

Resuming: the chunk is cut into fixed batches (upserts then updates, row order, ``batch_size``); a batch's
outcome is written atomically as soon as HubSpot answers. A retried task (even after SIGKILL) skips the
finished batches and sends only the rest. The checkpoint's manifest pins a hash of the records (write,
email and values, in order) and the batch size: a run over different content starts the chunk over
instead of skipping records that were never sent. A batch in flight when the task died is sent again:
writes by email are idempotent, so that makes no duplicate contact (HubSpot may then report its new
contacts as updated). The same holds for a batch the hook resends after a 5xx or a dropped connection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from audience_sync import storage
from audience_sync.clients.hubspot import (
    PROPERTY_LEVEL_CODES,
    VALUE_LEVEL_CODES,
    BatchRejected,
    HubSpotClient,
    Reject,
    UpsertAnswer,
)
from audience_sync.constants import MAX_BATCH, checked_batch_size
from audience_sync.errors import InputError

log = logging.getLogger(__name__)

STAGE = "upsert"
RESULT_COLUMNS = ["email", "hubspot_id", "new"]
REJECT_COLUMNS = ["stage", "record_id", "email", "field", "category", "reason"]
GONE_COLUMNS = ["email"]
WRITE_COLUMN = "_write"
UPSERT, UPDATE = "upsert", "update"
Record = tuple[str, dict[str, str]]


@dataclass
class BatchOutcome:
    written: list[tuple[str, str | None, bool]] = field(default_factory=list)  # email, hubspot id, new
    rejected: list[tuple[str, str | None, str, str]] = field(default_factory=list)  # email, field, category, reason
    requests: int = 0
    gone: list[str] = field(default_factory=list)  # emails an update found no contact for

    def as_json(self) -> dict[str, Any]:
        return {"written": self.written, "rejected": self.rejected, "requests": self.requests, "gone": self.gone}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchOutcome:
        return cls(
            [tuple(w) for w in data["written"]], [tuple(r) for r in data["rejected"]], data["requests"], data["gone"]
        )


# --- pure steps -----------------------------------------------------------------------------------------
def prepare_records(frame: pd.DataFrame) -> tuple[dict[str, list[Record]], BatchOutcome]:
    """Rows → {"upsert": [...], "update": [...]} of (email, properties without nulls), in row order.

    Rows without an email, repeating an earlier row's email (HubSpot refuses duplicate ids in a batch and
    the last write would win at random) or with an unknown ``_write`` become rejects.
    """
    if "email" not in frame.columns:
        raise InputError("the upsert input has no 'email' column")
    columns = [c for c in frame.columns if not str(c).startswith("_") and c != "email"]
    records: dict[str, list[Record]] = {UPSERT: [], UPDATE: []}
    local = BatchOutcome()
    seen: set[str] = set()
    for row in frame.itertuples(index=False, name=None):
        values = dict(zip(frame.columns, row))
        email = values["email"]
        email = "" if email is None or pd.isna(email) else str(email).strip()
        write = values.get(WRITE_COLUMN, UPSERT)
        if not email:
            local.rejected.append(("", "email", "MISSING_EMAIL", "the record has no email, HubSpot's id for the upsert"))
            continue
        if write not in records:
            local.rejected.append(
                (email, WRITE_COLUMN, "INVALID_WRITE", f"_write is {write!r}, not one of {UPSERT!r}, {UPDATE!r}")
            )
            continue
        if email.lower() in seen:
            local.rejected.append((email, "email", "DUPLICATE_EMAIL", "an earlier record of this chunk has the same email"))
            continue
        seen.add(email.lower())
        properties = {c: str(values[c]) for c in columns if values[c] is not None and not pd.isna(values[c])}
        records[write].append((email, properties))
    return records, local


def content_hash(batches: Sequence[tuple[str, Sequence[Record]]]) -> str:
    """SHA-256 of what the batches send (write, email, values; in order): pins a checkpoint to its content."""
    digest = hashlib.sha256()
    for write, batch in batches:
        for email, properties in batch:
            digest.update(json.dumps([write, email, properties], sort_keys=True).encode())
            digest.update(b"\n")
    return digest.hexdigest()


class KnownRefusals:
    """Verdicts HubSpot gave earlier in this task that hold for every record: a value-level code (this value of
    this property) or a property-level one (any value of this property). A whole-batch 400 costs a refused
    request for every batch a bad value lands in, so an option removed from a property, or a property made
    read-only, would otherwise double the requests of each batch carrying it; a record that holds a known
    refusal is rejected with HubSpot's reason instead, without a request. Shared by the task's threads."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str | None], Reject] = {}  # (property, value or None for any value)
        self._lock = threading.Lock()

    def learn(self, record: Record, reject: Reject) -> None:
        if reject.field is None:
            return
        if reject.code in PROPERTY_LEVEL_CODES:
            key = (reject.field, None)
        elif reject.code in VALUE_LEVEL_CODES:
            key = (reject.field, _value_of(record, reject.field))
        else:
            return
        with self._lock:
            self._known.setdefault(key, reject)

    def screen(self, records: Sequence[Record], outcome: BatchOutcome) -> list[Record]:
        """The records to send; those holding a known refusal go to ``outcome.rejected``."""
        with self._lock:
            known = dict(self._known)
        if not known:
            return list(records)
        keep = []
        for record in records:
            found = _known_refusal(known, record)
            if found is None:
                keep.append(record)
            else:
                reason = f"{found.reason} (refused for another record earlier in this run; not sent)"
                outcome.rejected.append((record[0], found.field, found.category, reason))
        return keep


def _known_refusal(known: dict[tuple[str, str | None], Reject], record: Record) -> Reject | None:
    for field_name in ("email", *record[1]):
        found = known.get((field_name, None)) or known.get((field_name, _value_of(record, field_name)))
        if found:
            return found
    return None


def _value_of(record: Record, field_name: str) -> str | None:
    email, properties = record
    return email if field_name == "email" else properties.get(field_name)


def send_batch(
    client: HubSpotClient, records: Sequence[Record], write: str = UPSERT, refusals: KnownRefusals | None = None
) -> BatchOutcome:
    """Upsert (or update by email) one batch; isolate bad inputs when HubSpot refuses the whole batch.

    A 207 answer already separates written, rejected and (updates) not-found inputs. A whole-batch refusal
    writes nothing; the inputs its error names become rejects (or gone, when it names contacts that do not
    exist) and the rest is sent again; inputs whose values it merely quotes are sent apart, one by one, so a
    clue never rejects a good record; only an error that names nothing splits the batch in halves, down to
    single records. When the first half goes through, the second must hold the culprit: it is split at once
    instead of being sent whole only to be refused. An update batch first drops its merged-away addresses
    (:func:`without_merged_away`). ``refusals``: what HubSpot refused earlier in the task (:class:`KnownRefusals`),
    screened out before sending and taught by this batch's whole-batch refusals.
    """
    send: Callable[[Sequence[Record]], UpsertAnswer] = (
        client.batch_upsert if write == UPSERT else client.batch_update_by_email
    )
    outcome = BatchOutcome()
    refusals = refusals or KnownRefusals()
    records = refusals.screen(records, outcome)
    if write == UPDATE and records:
        records = without_merged_away(client, records, outcome)

    def split(group: list[Record]) -> None:
        middle = len(group) // 2
        first_went_through = attempt(group[:middle], refused=False)
        attempt(group[middle:], refused=first_went_through)

    def attempt(group: list[Record], refused: bool) -> bool:
        """Send ``group`` (or, when it is known to be refused, its halves); True when it went through whole."""
        if refused and len(group) > 1:
            split(group)
            return False
        outcome.requests += 1
        try:
            answer = send(group)
        except BatchRejected as error:
            single = len(group) == 1
            gone = error.gone or ({0} if single and error.not_found else set())
            blamed = {i: r for i, r in error.blamed.items() if i not in gone}
            if single and not gone and not blamed:
                blamed = {0: error.reject}
            suspects = error.suspects - set(blamed) - gone
            if not blamed and not gone and len(suspects) == len(group):
                suspects = set()  # a clue that points at everyone tells nothing
            if blamed or gone or suspects:
                for i, r in sorted(blamed.items()):
                    outcome.rejected.append((group[i][0], r.field, r.category, r.reason))
                    refusals.learn(group[i], r)
                outcome.gone += [group[i][0] for i in sorted(gone)]
                for i in sorted(suspects):
                    attempt([group[i]], refused=False)
                rest = [r for i, r in enumerate(group) if i not in blamed and i not in suspects and i not in gone]
                if rest:
                    attempt(rest, refused=False)
            else:
                split(group)
            return False
        outcome.written += [(group[i][0], w.hubspot_id, w.new) for i, w in sorted(answer.written.items())]
        outcome.rejected += [(group[i][0], r.field, r.category, r.reason) for i, r in sorted(answer.rejected.items())]
        outcome.gone += [group[i][0] for i in sorted(answer.gone)]
        return not answer.rejected and not answer.gone

    if records:
        attempt(list(records), refused=False)
    return outcome


def without_merged_away(client: HubSpotClient, records: Sequence[Record], outcome: BatchOutcome) -> list[Record]:
    """The records an update by email may write; the merged-away ones go to ``outcome.gone``.

    HubSpot may resolve an address merged into another contact to that contact (the docs are silent; the
    sandbox's ``merged_email_lookup`` serves both ways), whose own primary address can still be in an
    audience: an exit sent there would mark the wrong person exited. So one read by email comes first (one
    extra request per update batch; exits are few): a requested email that is neither a returned contact's
    primary email nor named as not found resolved to another contact: merged away, gone, not updated.
    Not-found ones go on to the update, whose answer reports them gone as before.
    """
    lookup = client.lookup_emails([email for email, _ in records])
    outcome.requests += 1
    known = lookup.primaries | lookup.not_found
    merged = [email for email, _ in records if email.lower() not in known]
    outcome.gone += merged
    return [record for record in records if record[0].lower() in known]


# --- checkpoint -----------------------------------------------------------------------------------------
class Checkpoint:
    """One JSON file per finished batch, written atomically; a manifest pins the content and the batching.

    A manifest that differs (other records, other values, another batch size) means the finished batches
    describe other inputs: they are discarded and the chunk starts over, never skipped."""

    def __init__(self, folder, manifest: dict[str, Any]) -> None:
        self.folder = storage.as_path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest_path = self.folder / "manifest.json"
        found = storage.read_json(manifest_path) if manifest_path.exists() else None
        if found != manifest:
            if found is not None:
                changed = sorted(k for k in {*found, *manifest} if found.get(k) != manifest.get(k))
                log.warning(
                    "checkpoint %s was made for other input (%s differ): starting this chunk over",
                    self.folder.name, ", ".join(changed),
                )
            for path in self._batch_files():
                path.unlink()
            storage.write_json(manifest, manifest_path)

    def _batch_files(self) -> list:
        return [p for p in self.folder.iterdir() if p.name.startswith("batch-") and p.name.endswith(".json")]

    def _path(self, number: int):
        return self.folder / f"batch-{number:06d}.json"

    def load(self) -> dict[int, BatchOutcome]:
        return {int(p.name[6:-5]): BatchOutcome.from_json(storage.read_json(p)) for p in self._batch_files()}

    def save(self, number: int, outcome: BatchOutcome) -> None:
        storage.write_json(outcome.as_json(), self._path(number))


# --- progress -------------------------------------------------------------------------------------------
class Progress:
    """Counts only (records, rate, ETA, rejects): never an email."""

    def __init__(self, name: str, total: int, done: int, rejected: int, every_s: float) -> None:
        self.name, self.total, self.every_s = name, total, every_s
        self.start_done = self.done = done
        self.rejected = rejected
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()

    def add(self, records: int, rejected: int) -> None:
        with self.lock:
            self.done += records
            self.rejected += rejected

    def maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        with self.lock:
            done, rejected = self.done, self.rejected
        rate = (done - self.start_done) / max(now - self.started, 1e-9)
        eta = f"{(self.total - done) / rate:.0f} s" if rate > 0 else "unknown"
        share = 100 * done / self.total if self.total else 100
        log.info(
            "upsert %s: %d/%d records (%.0f%%), %.1f rec/s, ETA %s, %d rejected so far",
            self.name, done, self.total, share, rate, eta, rejected,
        )


# --- the whole chunk ------------------------------------------------------------------------------------
def chunk_stem(input_path) -> str:
    name = storage.as_path(input_path).name
    return name.removesuffix(".parquet")


def requests_needed(input_path, batch_size: int) -> int:
    """About how many calls the chunk takes, for the daily budget check before any write: one per batch,
    and one more per update batch (its read by email, :func:`without_merged_away`)."""
    table = storage.read_table(input_path)
    writes = table.column(WRITE_COLUMN).to_pylist() if WRITE_COLUMN in table.column_names else []
    updates = writes.count(UPDATE)
    return math.ceil((table.num_rows - updates) / batch_size) + 2 * math.ceil(updates / batch_size)


def upsert_file(
    client: HubSpotClient,
    input_path,
    output_dir,
    batch_size: int = MAX_BATCH,
    threads: int = 1,
    progress_every_s: float = 10.0,
) -> dict[str, Any]:
    """Write every record of ``input_path``; return counts and output paths (small: fit for XCom)."""
    batch_size = checked_batch_size(batch_size)
    started_at = time.time()
    stem = chunk_stem(input_path)
    output_dir = storage.as_path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    frame = storage.read_parquet(input_path)
    by_write, local = prepare_records(frame)
    batches = [
        (write, records[i : i + batch_size])
        for write, records in by_write.items()
        for i in range(0, len(records), batch_size)
    ]
    total = sum(len(records) for records in by_write.values())
    manifest = {"rows": len(frame), "records": total, "batch_size": batch_size, "content_sha256": content_hash(batches)}
    checkpoint = Checkpoint(output_dir / f"{stem}.checkpoint", manifest)
    outcomes = checkpoint.load()
    todo = [n for n in range(len(batches)) if n not in outcomes]
    if outcomes:
        log.info("upsert %s: resuming, %d of %d batches already finished", stem, len(outcomes), len(batches))
    progress = Progress(
        stem, total, sum(len(batches[n][1]) for n in outcomes), sum(len(o.rejected) for o in outcomes.values()),
        progress_every_s,
    )

    refusals = KnownRefusals()

    def run(number: int) -> None:
        write, batch = batches[number]
        outcome = send_batch(client, batch, write, refusals)
        checkpoint.save(number, outcome)
        outcomes[number] = outcome
        progress.add(len(batch), len(outcome.rejected))

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=f"upsert-{stem}") as pool:
        pending: set = set()
        queue = iter(todo)
        while True:
            while len(pending) < 2 * max(1, threads):  # a short queue: a failure stops new sends quickly
                number = next(queue, None)
                if number is None:
                    break
                pending.add(pool.submit(run, number))
            if not pending:
                break
            finished, pending = wait(pending, timeout=min(progress_every_s, 1.0), return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # an unexpected error fails the task; finished batches stay checkpointed
            progress.maybe_log()
    progress.maybe_log(force=True)
    summary = write_outputs(stem, output_dir, [outcomes[n] for n in sorted(outcomes)], local, len(frame))
    return {**summary, "started_at": started_at, "finished_at": time.time()}


def write_outputs(stem: str, output_dir, outcomes: list[BatchOutcome], local: BatchOutcome, rows: int) -> dict[str, Any]:
    written = [w for o in outcomes for w in o.written]
    rejected = local.rejected + [r for o in outcomes for r in o.rejected]
    gone = [g for o in outcomes for g in o.gone]
    results = pd.DataFrame(written, columns=RESULT_COLUMNS).astype({"email": "string", "hubspot_id": "string", "new": "bool"})
    rejects = pd.DataFrame(
        [(STAGE, email, email, fld, category, reason) for email, fld, category, reason in rejected], columns=REJECT_COLUMNS
    ).astype("string")
    results_path = storage.write_parquet(results, output_dir / f"{stem}.results.parquet")
    rejects_path = storage.write_parquet(rejects, output_dir / f"{stem}.rejects.parquet")
    gone_path = storage.write_parquet(
        pd.DataFrame(gone, columns=GONE_COLUMNS).astype("string"), output_dir / f"{stem}.gone.parquet"
    )
    created = int(results["new"].sum())
    summary = {
        "records": rows,
        "sent": rows - len(local.rejected),
        "created": created,
        "updated": len(results) - created,
        "gone": len(gone),
        "rejected": len(rejects),
        "rejected_by_category": dict(Counter(str(c) for c in rejects["category"])),
        "requests": sum(o.requests for o in outcomes),
        "results_path": results_path,
        "rejects_path": rejects_path,
        "gone_path": gone_path,
    }
    log.info(
        "upsert %s done: %d records, %d created, %d updated, %d gone in HubSpot, %d rejected %s, %d requests",
        stem, rows, summary["created"], summary["updated"], summary["gone"], summary["rejected"],
        summary["rejected_by_category"], summary["requests"],
    )
    return summary
