"""Small media files generated in memory, served to the standard suite in place of its downloads."""

from __future__ import annotations

import io
import struct
import wave
import zlib
from dataclasses import dataclass


def png(width: int = 4, height: int = 4) -> bytes:
    """A valid RGB PNG (a red square)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def pdf(text: str = "Dummy PDF file") -> bytes:
    """A valid one-page PDF showing ``text`` (with a correct xref table)."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def wav(seconds: float = 0.25, rate: int = 8000) -> bytes:
    """A valid mono 16-bit WAV (a square-wave tone)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(struct.pack("<h", 8000 if (i // 20) % 2 else -8000) for i in range(int(seconds * rate)))
        )
    return buf.getvalue()


@dataclass(frozen=True)
class _Response:
    content: bytes


class LocalMedia:
    """Stands in for the ``httpx`` module of ``langchain_tests``: ``get(url)`` serves a generated file
    of the URL's type and refuses anything else (nothing may reach the network)."""

    def get(self, url: str, **_: object) -> _Response:
        for suffix, make in ((".png", png), (".pdf", pdf), (".wav", wav)):
            if url.lower().endswith(suffix):
                return _Response(make())
        raise AssertionError(f"no local media for {url}: the suite runs offline")
