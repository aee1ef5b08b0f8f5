"""The update journal on its own: records round-trip, segments roll by size, a torn tail is cut,
damage before the tail refuses recovery, retention deletes whole segments, group commit shares
fsyncs, and `owtrain ps journal` prints the segments like Kafka's DumpLogSegments."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from param_server.journal import Journal, JournalCorrupt, list_segments, segment_path
from tests.fixtures.common import PYTHON


def _journal(folder, **kw) -> Journal:
    j = Journal(folder, **kw)
    j.open()
    return j


def test_records_round_trip_across_rolled_segments(tmp_path):
    j = _journal(tmp_path, segment_bytes=10_000)
    payloads = [os.urandom(3000 + i) for i in range(10)]
    offsets = [j.append({"type": "update", "seq": i}, p) for i, p in enumerate(payloads)]
    j.flush()
    assert offsets == list(range(10)) and j.durable == 10
    j.close()
    segments = list_segments(tmp_path)
    assert len(segments) >= 3 and segments[0].base == 0  # rolled every ~10 kB, named by base offset
    assert all(segment_path(tmp_path, s.base, ".index").exists() for s in segments)
    j = _journal(tmp_path, segment_bytes=10_000)
    assert j.next_offset == 10
    records = list(j.read(4))
    assert [r.offset for r in records] == list(range(4, 10))
    assert [r.payload for r in records] == payloads[4:]
    assert [r.header["seq"] for r in records] == list(range(4, 10))
    assert j.append({"type": "update", "seq": 10}) == 10  # offsets go on; never given twice
    j.close()


@pytest.mark.parametrize("cut", [1, 7, 20, 500])
def test_a_torn_tail_is_cut_and_appends_continue(tmp_path, cut):
    j = _journal(tmp_path)
    for i in range(3):
        j.append({"seq": i}, b"x" * 1000)
    j.close()
    log = list_segments(tmp_path)[-1].path
    size = log.stat().st_size
    with open(log, "rb+") as fh:  # a crash in the middle of writing the last record
        fh.truncate(size - cut)
    j = _journal(tmp_path)
    assert j.next_offset == 2 and j.truncated_bytes == size - cut - (size // 3) * 2
    assert [r.header["seq"] for r in j.read(0)] == [0, 1]
    assert j.append({"seq": 2}, b"y") == 2
    j.close()
    assert [r.payload for r in _journal(tmp_path).read(2)] == [b"y"]


def test_a_flipped_byte_in_the_tail_record_is_cut(tmp_path):
    j = _journal(tmp_path)
    for i in range(3):
        j.append({"seq": i}, b"z" * 100)
    j.close()
    log = list_segments(tmp_path)[-1].path
    data = bytearray(log.read_bytes())
    data[-5] ^= 0xFF  # CRC mismatch in the last record
    log.write_bytes(bytes(data))
    assert _journal(tmp_path).next_offset == 2


def test_damage_before_the_tail_refuses_to_replay(tmp_path):
    j = _journal(tmp_path, segment_bytes=500)
    for i in range(6):
        j.append({"seq": i}, b"q" * 400)
    j.close()
    first = list_segments(tmp_path)[0].path
    data = bytearray(first.read_bytes())
    data[40] ^= 0xFF
    first.write_bytes(bytes(data))
    j = _journal(tmp_path, segment_bytes=500)
    with pytest.raises(JournalCorrupt, match="CRC"):
        list(j.read(0))
    list_segments(tmp_path)[0].path.unlink()
    with pytest.raises(JournalCorrupt, match="missing"):
        list(j.read(0))


def test_retention_deletes_only_whole_segments_before_the_offset(tmp_path):
    j = _journal(tmp_path, segment_bytes=500)
    for i in range(8):
        j.append({"seq": i}, b"r" * 400)
    j.flush()
    bases = [s.base for s in list_segments(tmp_path)]
    j.retain_from(bases[2] + 0)
    assert [s.base for s in list_segments(tmp_path)] == bases[2:]
    assert [r.offset for r in j.read(bases[2])][0] == bases[2]
    j.close()


def test_start_at_skips_offsets_a_checkpoint_already_covers(tmp_path):
    j = _journal(tmp_path)
    j.append({"seq": 0})
    j.flush()
    j.start_at(5)
    assert j.append({"seq": 5}) == 5
    j.close()
    j = _journal(tmp_path)
    assert [r.offset for r in j.read(5)] == [5] and j.next_offset == 6
    j.close()


def test_concurrent_appends_share_fsyncs(tmp_path):
    j = _journal(tmp_path)
    barrier = threading.Barrier(8)

    def writer(w: int) -> None:
        barrier.wait()
        for i in range(50):
            j.append({"w": w, "i": i}, b"p" * 2000)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    j.flush()
    assert j.records_written == 400 and j.fsyncs < 400
    j.close()


def test_owtrain_ps_journal_lists_and_dumps(tmp_path):
    j = _journal(tmp_path, segment_bytes=600)
    for i in range(4):
        j.append({"type": "update", "worker": "w0", "seq": i, "status": "applied", "version": i + 1,
                  "time": 1.0}, b"t" * 500)
    j.close()
    run = [str(Path(PYTHON).parent / "owtrain"), "ps", "journal"]
    listed = subprocess.run([*run, "list", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "00000000000000000000.log base: 0" in listed and "records: 1" in listed
    dumped = subprocess.run([*run, "dump", str(tmp_path), "--from", "2"], capture_output=True, text=True,
                            check=True).stdout
    lines = [line for line in dumped.splitlines() if line.startswith("offset:")]
    assert [line.split()[1] for line in lines] == ["2", "3"]
    assert "isvalid: true" in lines[0] and "worker: w0" in lines[0] and "payloadsize: 500" in lines[0]
    missing = subprocess.run([*run, "list", str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode != 0 and "no journal segments" in missing.stderr
