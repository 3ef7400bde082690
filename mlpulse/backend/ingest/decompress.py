"""Incremental, capped decompression of request bodies.

A body is inflated chunk by chunk as it arrives and never beyond `cap` bytes of output:
a 1 MB gzip of 1 GiB of zeros stops after `cap + 1` bytes with `BodyTooLargeError`.

Encodings: gzip (also x-gzip), deflate and zstd (RFC 8878; collectors send it with
`compression: zstd`). zstd is fed to its decoder in small slices, sized so that one call
never inflates far past the cap (one zstd input byte can stand for ~32 KiB of output).
"""

from __future__ import annotations

import zlib

import zstandard


class BodyTooLargeError(Exception):
    """The body, after decompression, exceeds the cap (HTTP 413)."""


class BadEncodingError(Exception):
    """The body does not decompress (HTTP 400)."""


class UnsupportedEncodingError(Exception):
    """The Content-Encoding is not one we inflate (HTTP 415)."""


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_ZSTD = "zstd"
# An RLE block of zstd turns 4 input bytes into up to 128 KiB: at most 2**15 out per byte in.
_ZSTD_MAX_RATIO_LOG = 15
_ZSTD_MIN_WINDOW = 8 << 20  # what streaming encoders (the collector's among them) declare
_ZSTD_MAX_WINDOW = 1 << 27  # zstd's own default limit


class _Unzstd:
    """Capped incremental zstd: frames one after another, as RFC 8878 allows."""

    def __init__(self, cap: int) -> None:
        window = max(_ZSTD_MIN_WINDOW, 1 << max(cap - 1, 1).bit_length())
        self._dctx = zstandard.ZstdDecompressor(max_window_size=min(window, _ZSTD_MAX_WINDOW))
        self._d = self._dctx.decompressobj()
        self._started = False

    def decompress(self, data: memoryview, room: int) -> tuple[bytes, memoryview]:
        """Inflate a prefix of `data` worth at most ~`room` bytes; return (out, the rest)."""
        if self._d.eof:  # the next frame
            self._d = self._dctx.decompressobj()
        step = max(16, min(1 << 16, room >> _ZSTD_MAX_RATIO_LOG))
        self._started = True
        try:
            out = self._d.decompress(data[:step])
        except zstandard.ZstdError as exc:
            raise BadEncodingError(f"corrupt zstd body: {exc}") from exc
        if self._d.eof and self._d.unused_data:
            return out, memoryview(self._d.unused_data + bytes(data[step:]))
        return out, data[step:]

    @property
    def complete(self) -> bool:
        return self._started and self._d.eof


class Inflater:
    """Feed compressed chunks, get the body back, never holding more than `cap` bytes.

    >>> inflater = Inflater("gzip", cap=8 << 20)
    >>> inflater.feed(chunk)   # raises BodyTooLargeError past the cap
    >>> body = inflater.finish()
    """

    def __init__(self, encoding: str | None, cap: int) -> None:
        enc = (encoding or "identity").strip().lower()
        if enc not in ("identity", "", _ZSTD, *_WBITS):
            raise UnsupportedEncodingError(f"unsupported Content-Encoding {encoding!r}")
        self._zstd = _Unzstd(cap) if enc == _ZSTD else None
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
        if self._zstd is not None:
            view = memoryview(chunk)
            while view:
                out, view = self._zstd.decompress(view, self._cap - self._size + 1)
                self._append(out)
            return
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
        if self._zstd is not None and not self._zstd.complete:
            raise BadEncodingError("truncated zstd body")
        if self._d is not None:
            try:
                self._append(self._d.flush())
            except zlib.error as exc:
                raise BadEncodingError(f"corrupt compressed body: {exc}") from exc
            if not self._d.eof:
                raise BadEncodingError("truncated compressed body")
        return b"".join(self._out)
