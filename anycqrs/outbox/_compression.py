"""Optional compression of the outbox payload column, recorded per row.

A compressed payload is stored as text, `~zlib:` or `~zstd:` followed by the
base64 of the compressed JSON; JSON never starts with `~`, so uncompressed
rows (every row written before, or without compression) read as they are.
Reading is transparent: `OutboxRecord.to_message` decompresses what a row
says it holds, whatever the writer's setting is now.
"""

from __future__ import annotations

import base64
import importlib
import zlib
from collections.abc import Callable
from typing import Any, Literal

from ..errors import DeserializationError

__all__ = ["COMPRESSIONS", "Compression", "compressor", "decompress"]

Compression = Literal["zlib", "zstd"]
"""How an outbox writer compresses payloads (`None`: it doesn't)."""

COMPRESSIONS = ("zlib", "zstd")

_PREFIX = "~"


def _zstd() -> Any:
    try:
        return importlib.import_module("zstandard")
    except ImportError as exc:
        raise ImportError(
            "outbox compression 'zstd' needs the zstandard package "
            "(pip install zstandard), or use compression='zlib'"
        ) from exc


def compressor(method: Compression | None) -> Callable[[str], str] | None:
    """The payload transformation of `method` (`None` for no compression).

    Raises:
        ValueError: an unknown method.
        ImportError: `"zstd"` without the `zstandard` package.
    """
    if method is None:
        return None
    if method == "zlib":
        pack: Callable[[bytes], bytes] = zlib.compress
    elif method == "zstd":
        pack = _zstd().ZstdCompressor().compress
    else:
        raise ValueError(f"compression must be one of {COMPRESSIONS} or None, got {method!r}")
    tag = f"{_PREFIX}{method}:"

    def compress(text: str) -> str:
        return tag + base64.b64encode(pack(text.encode())).decode("ascii")

    return compress


def decompress(stored: str) -> str:
    """The payload JSON of a stored payload (compressed or not).

    Raises:
        DeserializationError: a compressed payload that does not decompress.
    """
    if not stored.startswith(_PREFIX):
        return stored
    method, _, body = stored[1:].partition(":")
    try:
        raw = base64.b64decode(body, validate=True)
        if method == "zlib":
            return zlib.decompress(raw).decode()
        if method == "zstd":
            return str(_zstd().ZstdDecompressor().decompress(raw).decode())
    except (ValueError, zlib.error, UnicodeDecodeError) as exc:
        raise DeserializationError(
            Any, [f"corrupt {method}-compressed payload: {exc} @ $.payload"]
        ) from exc
    except ImportError:
        raise
    except Exception as exc:  # zstandard.ZstdError
        raise DeserializationError(
            Any, [f"corrupt {method}-compressed payload: {exc} @ $.payload"]
        ) from exc
    raise DeserializationError(
        Any, [f"unknown payload compression {method!r} (not zlib or zstd) @ $.payload"]
    )
