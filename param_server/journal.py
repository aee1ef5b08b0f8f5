"""The update journal: every update the server takes, appended before it is acknowledged.

Laid out like a Kafka partition (see docs/param_server.md, "Journal"): a folder of segments, each
named by the offset of its first record, zero-padded to 20 digits (`00000000000000000042.log`),
with a sparse `.index` beside it (offset -> byte position, one entry per `INDEX_INTERVAL` bytes).
A record is

    offset u64 | length u32 | crc32 u32 | magic u8 | header length u32 | header (JSON) | payload

where `length` counts the bytes after itself and the CRC covers magic to the end. The payload is the
push body exactly as received (safetensors), so a replay decodes and applies it through the same
code as the original push.

Appends come from the server's single apply thread and only enqueue; one writer thread writes
whatever has queued, fdatasyncs once and then reports the new durable offset (group commit: N
concurrent pushes cost one fsync). A push is acknowledged, and a version made visible, only once
the offsets it depends on are durable. On open the newest segment is scanned and a torn tail (a
record cut short or failing its CRC, from a crash mid-write) is cut off. Segments whose records all
precede the oldest kept checkpoint are deleted (`retain_from`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owtrain.errors import OwtrainError

log = logging.getLogger(__name__)

PREFIX = struct.Struct("<QII")  # offset, length (bytes after this field), crc32 (of magic .. end)
HEAD = struct.Struct("<BI")  # magic, header length
INDEX_ENTRY = struct.Struct("<QQ")  # offset, byte position
MAGIC = 1
INDEX_INTERVAL = 64 * 1024
SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")
MAX_HEADER = 1 << 20


class JournalCorrupt(OwtrainError):
    """A record before the newest segment's tail is unreadable, or records are missing: the state
    after it cannot be rebuilt exactly, so the server refuses to start rather than guess."""


@dataclass(frozen=True)
class Record:
    """One record as read back: its place in the log, its header and the payload bytes."""

    offset: int
    position: int
    size: int
    header: dict[str, Any]
    payload: bytes


@dataclass(frozen=True)
class SegmentInfo:
    """What `owtrain ps journal list` shows for one segment file."""

    base: int
    path: Path
    size: int


def segment_path(folder: Path, base: int, suffix: str = ".log") -> Path:
    return folder / f"{base:020d}{suffix}"


def list_segments(folder: Path) -> list[SegmentInfo]:
    """Every segment in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [SegmentInfo(int(m.group(1)), p, p.stat().st_size) for p in folder.iterdir()
             if (m := SEGMENT_NAME.match(p.name))]
    return sorted(found, key=lambda s: s.base)


def encode_header(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), sort_keys=True).encode()


def _read_record(fh: Any, position: int) -> tuple[Record | None, str]:
    """The record at `position` of an open segment, or (None, why) when there is none that is whole
    and valid there ("end" at a clean end of file)."""
    fh.seek(position)
    prefix = fh.read(PREFIX.size)
    if not prefix:
        return None, "end"
    if len(prefix) < PREFIX.size:
        return None, "record prefix cut short"
    offset, length, crc = PREFIX.unpack(prefix)
    if length < HEAD.size:
        return None, f"record length {length} is too small"
    rest = fh.read(length)
    if len(rest) < length:
        return None, f"record of {length} bytes cut short at {len(rest)}"
    if zlib.crc32(rest) != crc:
        return None, "CRC mismatch"
    magic, hlen = HEAD.unpack_from(rest)
    if magic != MAGIC or hlen > min(MAX_HEADER, length - HEAD.size):
        return None, f"bad magic {magic} or header length {hlen}"
    try:
        header = json.loads(rest[HEAD.size:HEAD.size + hlen])
    except ValueError:
        return None, "header is not JSON"
    if not isinstance(header, dict):
        return None, "header is not a JSON object"
    return Record(offset, position, PREFIX.size + length, header, rest[HEAD.size + hlen:]), ""


def scan_segment(path: Path, base: int) -> Iterator[tuple[Record | None, str, int]]:
    """(record, problem, position) for each record of one segment, ending with the first problem
    (record None) or a clean end (record None, problem "end"). Offsets must run on from `base`."""
    expected = base
    with open(path, "rb") as fh:
        position = 0
        while True:
            record, problem = _read_record(fh, position)
            if record is not None and record.offset != expected:
                problem = f"offset {record.offset} where {expected} was expected"
                record = None
            yield record, problem, position
            if record is None:
                return
            position += record.size
            expected += 1


class Journal:
    """The append side (one writer thread, group commit) and the read side (replay, tools)."""

    def __init__(self, folder: Path, segment_bytes: int = 64 * 1024 * 1024,
                 on_durable: Callable[[int], None] | None = None, background: bool = True) -> None:
        """`background`: the writer thread writes as soon as records are appended (group commit of
        whatever queued meanwhile). Without it, records wait for `commit()` (or `flush()`), which the
        appending thread calls itself: the parameter server's apply thread commits once per batch, so
        a push crosses no extra thread on its way to disk. `on_durable` is called by the writer
        thread after each of its group commits."""
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.on_durable = on_durable
        self.background = background
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()  # one writer of the files at a time, in offset order
        self._queue: list[tuple[int, bytes, bytes | bytearray]] = []
        self._next = 0  # offset the next append gets
        self._durable = 0  # every offset below this is on disk
        self._fd = -1
        self._index_fd = -1
        self._base = 0
        self._pos = 0
        self._last_index_pos = -INDEX_INTERVAL
        self._closing = False
        self._writer: threading.Thread | None = None
        self.fsyncs = 0
        self.records_written = 0
        self.bytes_written = 0
        self.truncated_bytes = 0

    # ---- opening and recovery -------------------------------------------------------------------

    def open(self) -> None:
        """Find the end of the log (cutting a torn tail) and start the writer thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        segments = list_segments(self.folder)
        if not segments:
            self._open_segment(0)
            self._next = 0
        else:
            last = segments[-1]
            end, position = last.base, 0
            for record, problem, pos in scan_segment(last.path, last.base):
                if record is None:
                    position = pos
                    if problem != "end":
                        self.truncated_bytes = last.size - pos
                        log.warning("journal %s: cutting a torn tail of %d bytes at position %d (%s)",
                                    last.path.name, self.truncated_bytes, pos, problem)
                    break
                end = record.offset + 1
            with open(last.path, "rb+") as fh:
                fh.truncate(position)
                os.fsync(fh.fileno())
            self._open_segment(last.base, position=position)
            self._next = end
            self._rebuild_index(last.path, last.base)
        self._durable = self._next
        self._writer = threading.Thread(target=self._write_loop, name="journal-writer", daemon=True)
        self._writer.start()

    def start_at(self, offset: int) -> None:
        """Make the next append get at least `offset` (a checkpoint covers records up to it that a
        crash kept out of the log): a new segment starts there, so offsets are never given twice."""
        with self._cond:
            if offset <= self._next:
                return
            if self._queue:
                raise RuntimeError("start_at with appends pending")
            self._close_segment()
            self._open_segment(offset)
            self._next = self._durable = offset

    def _open_segment(self, base: int, position: int = 0) -> None:
        """Make the segment starting at offset `base` the one appended to, from byte `position`."""
        path = segment_path(self.folder, base)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.lseek(self._fd, position, os.SEEK_SET)
        self._index_fd = os.open(segment_path(self.folder, base, ".index"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                 0o644)
        self._base, self._pos = base, position
        self._last_index_pos = -INDEX_INTERVAL
        _fsync_dir(self.folder)

    def _close_segment(self) -> None:
        if self._fd >= 0:
            os.fdatasync(self._fd)
            os.close(self._fd)
            os.close(self._index_fd)
        self._fd = self._index_fd = -1

    def _rebuild_index(self, path: Path, base: int) -> None:
        os.ftruncate(self._index_fd, 0)
        last = -INDEX_INTERVAL
        for record, _, _ in scan_segment(path, base):
            if record is None:
                break
            if record.position - last >= INDEX_INTERVAL:
                os.write(self._index_fd, INDEX_ENTRY.pack(record.offset, record.position))
                last = record.position
        self._last_index_pos = last

    # ---- appending --------------------------------------------------------------------------------

    @property
    def next_offset(self) -> int:
        return self._next

    @property
    def durable(self) -> int:
        """Every record with an offset below this is on disk."""
        return self._durable

    def append(self, header: dict[str, Any], payload: bytes | bytearray = b"") -> int:
        """Queue one record and return its offset; it is durable once `durable` passes it."""
        encoded = encode_header(header)
        with self._cond:
            offset = self._next
            self._next += 1
            self._queue.append((offset, encoded, payload))
            if self.background:
                self._cond.notify_all()
        return offset

    def flush(self) -> None:
        """Block until every record appended so far is on disk (not for the gevent loop)."""
        if not self.background:
            self.commit()
            return
        with self._cond:
            target = self._next
            while self._durable < target:
                self._cond.wait()

    def commit(self) -> None:
        """Write and fdatasync everything appended so far on the calling thread; on return it is
        all durable (part of it may have been written by the writer thread meanwhile)."""
        with self._write_lock:
            with self._cond:
                batch, self._queue = self._queue, []
            if batch:
                self._write_batch(batch)

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
            with self._write_lock:
                with self._cond:
                    batch, self._queue = self._queue, []
                if batch:
                    self._write_batch(batch)
                    if self.on_durable is not None:
                        self.on_durable(self._durable)

    def _write_batch(self, batch: list[tuple[int, bytes, bytes | bytearray]]) -> None:
        """Write records (under `_write_lock`, in offset order), fdatasync once, advance `durable`."""
        try:
            for offset, header, payload in batch:
                self._write_record(offset, header, payload)
            os.fdatasync(self._fd)
        except OSError as exc:
            # An acknowledgement now would be a lie and a retry cannot be trusted: crash, and let
            # the restart recover what is on disk (as databases do when fsync fails).
            log.critical("journal write failed (%s): stopping the server; a restart recovers", exc)
            os._exit(70)
        with self._cond:
            self._durable = batch[-1][0] + 1
            self.fsyncs += 1
            self._cond.notify_all()

    def _write_record(self, offset: int, header: bytes, payload: bytes | bytearray) -> None:
        if self._pos >= self.segment_bytes:
            self._close_segment()
            self._open_segment(offset)
        head = HEAD.pack(MAGIC, len(header)) + header
        crc = zlib.crc32(payload, zlib.crc32(head))
        parts = [PREFIX.pack(offset, len(head) + len(payload), crc), head, payload]
        size = sum(len(p) for p in parts)
        _write_all(self._fd, parts, size)
        if self._pos - self._last_index_pos >= INDEX_INTERVAL:
            os.write(self._index_fd, INDEX_ENTRY.pack(offset, self._pos))
            self._last_index_pos = self._pos
        self._pos += size
        self.records_written += 1
        self.bytes_written += size

    # ---- reading ----------------------------------------------------------------------------------

    def read(self, start: int) -> Iterator[Record]:
        """Every record from offset `start` to the end, in order; JournalCorrupt if one in between is
        unreadable or missing. Only for recovery (before appends) and offline tools."""
        segments = list_segments(self.folder)
        if not segments or start >= self._next:
            return
        first = max((i for i, s in enumerate(segments) if s.base <= start), default=None)
        if first is None:
            raise JournalCorrupt(f"journal {self.folder}: records {start}..{segments[0].base - 1} are missing "
                                 "(deleted or lost); the state after them cannot be rebuilt")
        expected = start
        for i, seg in enumerate(segments[first:], start=first):
            if seg.base > expected:
                raise JournalCorrupt(f"journal {self.folder}: records {expected}..{seg.base - 1} are missing")
            with open(seg.path, "rb") as fh:
                position = _index_lookup(segment_path(self.folder, seg.base, ".index"), expected)
                current = seg.base if position == 0 else None
                while True:
                    record, problem = _read_record(fh, position)
                    if record is None:
                        if problem != "end":
                            raise JournalCorrupt(f"journal {seg.path.name} position {position}: {problem}")
                        break
                    if current is not None and record.offset != current:
                        raise JournalCorrupt(f"journal {seg.path.name} position {position}: offset "
                                             f"{record.offset} where {current} was expected")
                    current = record.offset + 1
                    position += record.size
                    if record.offset >= expected:
                        expected = record.offset + 1
                        yield record
            if i + 1 < len(segments) and expected < segments[i + 1].base:
                raise JournalCorrupt(f"journal {seg.path.name}: ends at {expected}, the next segment starts "
                                     f"at {segments[i + 1].base}")

    # ---- retention and shutdown -------------------------------------------------------------------

    def retain_from(self, offset: int) -> list[Path]:
        """Delete the segments whose records all precede `offset` (never the one being written)."""
        segments = list_segments(self.folder)
        removed = []
        for seg, following in zip(segments, segments[1:], strict=False):
            if following.base <= offset and seg.base != self._base:
                seg.path.unlink(missing_ok=True)
                segment_path(self.folder, seg.base, ".index").unlink(missing_ok=True)
                removed.append(seg.path)
        if removed:
            log.info("journal: deleted %d segment(s) before offset %d", len(removed), offset)
        return removed

    def stats(self) -> dict[str, Any]:
        """Counters for /status and the benchmarks (fsyncs per record is what group commit buys)."""
        segments = list_segments(self.folder)
        return {"next_offset": self._next, "durable": self._durable, "records_written": self.records_written,
                "fsyncs": self.fsyncs, "bytes_written": self.bytes_written, "segments": len(segments),
                "disk_bytes": sum(s.size for s in segments)}

    def close(self) -> None:
        """Write what is queued, stop the writer and close the files."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join()
        self._close_segment()


def _index_lookup(index: Path, offset: int) -> int:
    """The byte position of the last index entry at or before `offset` (0 without one)."""
    try:
        data = index.read_bytes()
    except OSError:
        return 0
    position = 0
    for i in range(0, len(data) - INDEX_ENTRY.size + 1, INDEX_ENTRY.size):
        entry_offset, entry_pos = INDEX_ENTRY.unpack_from(data, i)
        if entry_offset > offset:
            break
        position = entry_pos
    return position


def _write_all(fd: int, parts: list[bytes | bytearray], size: int) -> None:
    written = os.writev(fd, parts)
    if written == size:
        return
    rest = b"".join(parts)[written:]  # a short write (rare on regular files): finish it plainly
    while rest:
        rest = rest[os.write(fd, rest):]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe(record: Record) -> str:
    """One line per record, in the manner of Kafka's DumpLogSegments."""
    h = record.header
    fields = " ".join(f"{k}: {h[k]}" for k in sorted(h) if k != "time")
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(h.get("time", 0)))
    return (f"offset: {record.offset} position: {record.position} CreateTime: {created} isvalid: true "
            f"size: {record.size} payloadsize: {len(record.payload)} {fields}")
