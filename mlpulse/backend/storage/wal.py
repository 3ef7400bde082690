"""The write-ahead log: accepted export requests, appended before the 200, replayed on start.

Nothing is acknowledged before it is here. The log is a folder of numbered segment files
(`00000001.wal`, ...); a checkpoint rolls to a new segment, writes the head into the
database together with the number of the last segment it covers, and then removes the
covered segments. On start the engine replays every segment after that number.

Each record is `length (u32) | crc32 (u32) | payload`, little-endian. A crash can leave a
torn record at the end of the newest segment: replay stops there, so a request whose
record is torn never got its 200 and is simply retried by its client.

With `sync=True` (`MLPULSE_SQLITE_SYNCHRONOUS=FULL`) every append is fsynced, which also
survives power loss; otherwise an append survives a crash of the process (kill -9), as
the data is in the operating system's page cache.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<II")
_SUFFIX = ".wal"


class WriteAheadLog:
    """Append-only segments of records in one folder.

    >>> wal = WriteAheadLog(Path("/tmp/wal"))
    >>> wal.append(b"payload")
    >>> covered = wal.roll()        # a checkpoint: new appends go to a new segment
    >>> wal.remove_through(covered)  # after the checkpoint committed
    """

    def __init__(self, folder: Path, *, sync: bool = False) -> None:
        self.folder = folder
        self.sync = sync
        folder.mkdir(parents=True, exist_ok=True)
        existing = self.segments()
        self._segment = (existing[-1] if existing else 0) + 1
        self._file = self._open(self._segment)
        self.bytes_written = 0

    def _path(self, number: int) -> Path:
        return self.folder / f"{number:08d}{_SUFFIX}"

    def _open(self, number: int) -> Any:
        return open(self._path(number), "ab", buffering=0)  # kept open: appends go here

    @property
    def segment(self) -> int:
        """The number of the segment appends go to."""
        return self._segment

    def segments(self) -> list[int]:
        """Return the numbers of the segment files present, oldest first."""
        out = []
        for path in self.folder.glob(f"*{_SUFFIX}"):
            stem = path.name[: -len(_SUFFIX)]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def append(self, payload: bytes) -> None:
        """Append one record (one write call; fsynced when `sync`)."""
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        self._file.write(record)
        if self.sync:
            os.fsync(self._file.fileno())
        self.bytes_written += len(record)

    def roll(self) -> int:
        """Start a new segment; return the number of the one just closed."""
        closed = self._segment
        self._file.close()
        self._segment += 1
        self._file = self._open(self._segment)
        return closed

    def remove_through(self, number: int) -> None:
        """Delete every segment numbered `number` or lower (covered by a checkpoint)."""
        for seg in self.segments():
            if seg <= number and seg != self._segment:
                self._path(seg).unlink(missing_ok=True)

    def replay(self, after: int) -> Iterator[bytes]:
        """Yield the payloads of every record in segments numbered above `after`.

        Stops a segment at its first torn or corrupt record (the tail of a crash).
        """
        for seg in self.segments():
            if seg <= after or seg == self._segment:
                continue
            data = self._path(seg).read_bytes()
            pos = 0
            while pos + _HEADER.size <= len(data):
                length, crc = _HEADER.unpack_from(data, pos)
                start = pos + _HEADER.size
                payload = data[start : start + length]
                if len(payload) < length or zlib.crc32(payload) != crc:
                    break
                yield payload
                pos = start + length

    def close(self) -> None:
        """Close the open segment."""
        self._file.close()
