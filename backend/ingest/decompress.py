"""Incremental, capped decompression of request bodies.

A body is inflated chunk by chunk as it arrives and never beyond `cap` bytes of output:
a 1 MB gzip of 1 GiB of zeros stops after `cap + 1` bytes with `BodyTooLargeError`.
"""

from __future__ import annotations

import zlib


class BodyTooLargeError(Exception):
    """The body, after decompression, exceeds the cap (HTTP 413)."""


class BadEncodingError(Exception):
    """The body does not decompress (HTTP 400)."""


class UnsupportedEncodingError(Exception):
    """The Content-Encoding is not one we inflate (HTTP 415)."""


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Inflater:
    """Feed compressed chunks, get the body back, never holding more than `cap` bytes.

    >>> inflater = Inflater("gzip", cap=8 << 20)
    >>> inflater.feed(chunk)   # raises BodyTooLargeError past the cap
    >>> body = inflater.finish()
    """

    def __init__(self, encoding: str | None, cap: int) -> None:
        enc = (encoding or "identity").strip().lower()
        if enc not in ("identity", "", *_WBITS):
            raise UnsupportedEncodingError(f"unsupported Content-Encoding {encoding!r}")
        self._wbits = _WBITS.get(enc)
        self._cap = cap
        self._out: list[bytes] = []
        self._size = 0
        self._d = zlib.decompressobj(self._wbits) if self._wbits is not None else None

    def _append(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap:
            raise BodyTooLargeError(f"body exceeds {self._cap} bytes after decompression")
        self._out.append(data)

    def feed(self, chunk: bytes) -> None:
        """Add a chunk of the request body."""
        if self._d is None:
            self._append(chunk)
            return
        data = chunk
        while data:
            if self._d.eof:  # a further gzip member (RFC 1952 allows several)
                self._d = zlib.decompressobj(self._wbits or zlib.MAX_WBITS)
            try:
                out = self._d.decompress(data, self._cap - self._size + 1)
            except zlib.error as exc:
                raise BadEncodingError(f"corrupt compressed body: {exc}") from exc
            self._append(out)
            data = self._d.unused_data if self._d.eof else self._d.unconsumed_tail

    def finish(self) -> bytes:
        """Return the whole body; raise BadEncodingError if the stream was cut short."""
        if self._d is not None:
            try:
                self._append(self._d.flush())
            except zlib.error as exc:
                raise BadEncodingError(f"corrupt compressed body: {exc}") from exc
            if not self._d.eof:
                raise BadEncodingError("truncated compressed body")
        return b"".join(self._out)
