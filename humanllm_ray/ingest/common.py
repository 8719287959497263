"""Shared reader plumbing: streaming (de)compression, line splitting with limits, decoding, dates.

Everything here streams: a file is read in 1 MiB chunks, decompressed on the fly (zstd with a
configurable window, gzip, bz2) and cut into lines, so a multi-GB Pushshift month never sits
in memory. Problems come back as statuses, never exceptions, so a reader can quarantine the
affected unit and go on.
"""

from __future__ import annotations

import bz2
import calendar
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Tuple

CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"


@dataclass
class ReadContext:
    """Everything a reader needs, picklable so Ray ships it to the workers."""

    salt: str = "humanllm-ray"
    max_line_bytes: int = 8_000_000
    max_document_bytes: int = 256_000_000
    zstd_window_log_max: int = 31
    bot_authors: List[str] = field(default_factory=lambda: ["automoderator", "autotldr"])
    corporate_handle_keywords: List[str] = field(default_factory=lambda: ["official", "store", "shop", "llc", "inc"])
    s3_options: Dict[str, Any] = field(default_factory=dict)
    batch_rows: int = 5000


class TruncatedInput(Exception):
    """The compressed stream ended inside a frame."""


class ReadError(Exception):
    pass


def _open(uri: str, ctx: ReadContext):
    from .. import storage

    fs, path = storage.get_fs(uri, ctx.s3_options or None)
    return fs.open(path, "rb")


def _raw_chunks(fh) -> Iterator[bytes]:
    while True:
        b = fh.read(CHUNK)
        if not b:
            return
        yield b


def _zstd_chunks(first: bytes, rest: Iterator[bytes], window_log_max: int) -> Iterator[bytes]:
    import zstandard

    dctx = zstandard.ZstdDecompressor(max_window_size=2**window_log_max)
    obj = dctx.decompressobj()
    fed = False

    def feed(data: bytes) -> Iterator[bytes]:
        nonlocal obj, fed
        while data:
            if obj.eof:
                obj = dctx.decompressobj()
                fed = False
            out = obj.decompress(data)
            fed = True
            if out:
                yield out
            data = obj.unused_data if obj.eof else b""

    try:
        yield from feed(first)
        for chunk in rest:
            yield from feed(chunk)
    except zstandard.ZstdError as exc:
        raise TruncatedInput(f"zstd error: {exc}") from None
    if fed and not obj.eof:
        raise TruncatedInput("zstd stream ends inside a frame (truncated file)")


def _gzip_chunks(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    fed = False
    try:
        for chunk in _chain(first, rest):
            while chunk:
                if d.eof:
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = d.decompress(chunk)
                fed = True
                if out:
                    yield out
                chunk = d.unused_data if d.eof else b""
    except zlib.error as exc:
        raise TruncatedInput(f"gzip error: {exc}") from None
    if fed and not d.eof:
        raise TruncatedInput("gzip stream ends inside a member (truncated file)")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _bz2_chunks(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    d = bz2.BZ2Decompressor()
    try:
        for chunk in _chain(first, rest):
            while chunk:
                if d.eof:
                    d = bz2.BZ2Decompressor()
                out = d.decompress(chunk)
                if out:
                    yield out
                chunk = d.unused_data if d.eof else b""
    except (OSError, EOFError) as exc:
        raise TruncatedInput(f"bz2 error: {exc}") from None
    if not d.eof:
        raise TruncatedInput("bz2 stream ends inside a block (truncated file)")


def open_chunks(uri: str, ctx: ReadContext) -> Iterator[bytes]:
    """Decompressed byte chunks of a file; compression detected from magic bytes.

    Raises TruncatedInput at the end of a truncated compressed stream (after yielding all
    the data that could be recovered)."""
    fh = _open(uri, ctx)
    try:
        first = fh.read(CHUNK)
        rest = _raw_chunks(fh)
        if first.startswith(ZSTD_MAGIC):
            yield from _zstd_chunks(first, rest, ctx.zstd_window_log_max)
        elif first.startswith(GZIP_MAGIC):
            yield from _gzip_chunks(first, rest)
        elif first.startswith(BZ2_MAGIC) and uri.endswith(".bz2"):
            yield from _bz2_chunks(first, rest)
        else:
            if first:
                yield first
            yield from rest
    finally:
        fh.close()


def peek(uri: str, ctx: ReadContext, n: int = 65536) -> bytes:
    """The first n decompressed bytes (for format sniffing)."""
    out = bytearray()
    gen = open_chunks(uri, ctx)
    try:
        for chunk in gen:
            out += chunk
            if len(out) >= n:
                break
    except TruncatedInput:
        pass
    finally:
        gen.close()
    return bytes(out[:n])


@dataclass
class Line:
    lineno: int
    data: bytes
    status: str = "ok"  # ok | too_long | truncated
    detail: str = ""


def iter_lines(uri: str, ctx: ReadContext) -> Iterator[Line]:
    """Lines of a (possibly compressed) file without their line ending (LF or CRLF).

    A line longer than ctx.max_line_bytes comes back once with status ``too_long`` (data =
    its first 4000 bytes) and the rest of it is skipped. A truncated compressed stream ends
    with one ``truncated`` line holding the partial last line (possibly empty)."""
    limit = ctx.max_line_bytes
    buf = bytearray()
    lineno = 0
    skipping = False  # inside an over-long line
    try:
        for chunk in open_chunks(uri, ctx):
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                if nl < 0:
                    if not skipping:
                        buf += chunk[start:]
                        if len(buf) > limit:
                            lineno += 1
                            yield Line(lineno, bytes(buf[:4000]), "too_long", f"line longer than {limit} bytes")
                            buf.clear()
                            skipping = True
                    break
                if skipping:
                    skipping = False
                else:
                    buf += chunk[start:nl]
                    lineno += 1
                    if len(buf) > limit:
                        yield Line(lineno, bytes(buf[:4000]), "too_long", f"line longer than {limit} bytes")
                    else:
                        if buf.endswith(b"\r"):
                            del buf[-1:]
                        yield Line(lineno, bytes(buf))
                    buf.clear()
                start = nl + 1
    except TruncatedInput as exc:
        yield Line(lineno + 1, bytes(buf[:4000]), "truncated", str(exc))
        return
    if buf and not skipping:
        lineno += 1
        if buf.endswith(b"\r"):
            del buf[-1:]
        yield Line(lineno, bytes(buf))


def read_document(uri: str, ctx: ReadContext) -> bytes:
    """A whole (decompressed) file, refused above ctx.max_document_bytes (ReadError)."""
    out = bytearray()
    for chunk in open_chunks(uri, ctx):
        out += chunk
        if len(out) > ctx.max_document_bytes:
            raise ReadError(f"document larger than {ctx.max_document_bytes} bytes")
    return bytes(out)


# ----------------------------------------------------------------------------- decoding


def _no_constants(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def parse_json_line(data: bytes) -> Tuple[Any, str, str]:
    """(object, reason, detail): reason "" when fine, else invalid_utf8 | nan_value | bad_json."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, "invalid_utf8", str(exc)
    try:
        return json.loads(text, parse_constant=_no_constants), "", ""
    except ValueError as exc:
        msg = str(exc)
        if "non-standard JSON constant" in msg:
            return None, "nan_value", msg
        return None, "bad_json", msg
    except RecursionError:
        return None, "bad_json", "nesting too deep"


def decode_legacy(data: bytes) -> Tuple[str, str]:
    """Decode text from old corpora: UTF-8, else cp1252, else latin-1. Returns (text, encoding)."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


# ----------------------------------------------------------------------------- authors


_TOKEN_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_NOT_BOTS = ("robot", "talbot", "abbot", "cabot", "bigbot")


def handle_tokens(handle: str) -> List[str]:
    """'EnglishTeaStore' -> ['english', 'tea', 'store']; 'NOT_ah_BOT' -> ['not', 'ah', 'bot']."""
    return [t.lower() for t in _TOKEN_RE.findall(handle)]


def author_flags(handle: Optional[str], ctx: ReadContext) -> Dict[str, bool]:
    """Flags that need the raw handle, computed before it is hashed away.

    bot: a known bot name (``curate.bot_authors``) or a name whose last word is "bot"
    (``CaptionBot``, ``flair_your_post_bot``, all-lowercase ``autowikibot``; not ``hawaiianrobot``
    or ``iantalbot``). corporate_handle: a word of the handle is one of
    ``ingest.corporate_handle_keywords`` (``EnglishTeaStore``, ``RSPCA_official``; not
    ``JonDBishop`` or ``BrandonB``), or an all-lowercase handle starts/ends with one.
    """
    h = (handle or "").strip()
    low = h.lower()
    deleted = low in ("", "[deleted]", "[removed]", "deleted", "none", "null")
    if deleted:
        return {"deleted": True, "bot": False, "corporate_handle": False}
    tokens = handle_tokens(h)
    bots = {b.lower() for b in ctx.bot_authors}
    bot = low in bots or (bool(tokens) and tokens[-1] == "bot")
    if not bot and h == low and low.endswith("bot") and not low.endswith(_NOT_BOTS):
        bot = True
    kws = [re.sub(r"[^a-z0-9]", "", k.lower()) for k in ctx.corporate_handle_keywords]
    kws = [k for k in kws if k]
    corporate = any(t in kws for t in tokens)
    if not corporate and h == low:
        flat = re.sub(r"[^a-z0-9]", "", low)
        corporate = any(len(k) >= 4 and (flat.startswith(k) or flat.endswith(k)) for k in kws)
    return {"deleted": False, "bot": bool(bot), "corporate_handle": bool(corporate)}


# ----------------------------------------------------------------------------- time

_TZ_ABBR = {
    "UTC": 0, "GMT": 0, "Z": 0,
    "PST": -8, "PDT": -7, "MST": -7, "MDT": -6, "CST": -6, "CDT": -5, "EST": -5, "EDT": -4,
    "BST": 1, "CET": 1, "CEST": 2,
}
_MON = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}


def epoch_seconds(v: Any) -> Optional[int]:
    """An epoch value as int seconds: int, float or numeric string; ms values (>1e11) scaled."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        if v != v or v in (float("inf"), float("-inf")):
            return None
        x = float(v)
    elif isinstance(v, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", v):
        x = float(v)
    else:
        return None
    if abs(x) > 1e11:  # milliseconds
        x /= 1000.0
    return int(x)


def parse_twitter_date(s: str) -> Optional[int]:
    """'Mon Apr 06 22:19:45 PDT 2009' (Sentiment140) or 'Sun Aug 31 00:29:15 +0000 2014' (API)."""
    if not isinstance(s, str):
        return None
    parts = s.split()
    if len(parts) == 6:
        _dow, mon, day, hms, tz, year = parts
        try:
            m = _MON[mon[:3].lower()]
            hh, mm, ss = (int(x) for x in hms.split(":"))
            if re.fullmatch(r"[+-]\d{4}", tz):
                off = (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 3600 + int(tz[3:5]) * 60)
            elif tz.upper() in _TZ_ABBR:
                off = _TZ_ABBR[tz.upper()] * 3600
            else:
                return None
            dt = datetime(int(year), m, int(day), hh, mm, ss, tzinfo=timezone.utc)
            return int(dt.timestamp()) - off
        except (KeyError, ValueError):
            return None
    return parse_any_date(s)


def parse_any_date(s: str) -> Optional[int]:
    """Numeric epochs, ISO 8601 and a few common formats; naive times are taken as UTC."""
    if not isinstance(s, str) or not s.strip():
        return None
    s = s.strip()
    e = epoch_seconds(s)
    if e is not None:
        return e
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp())
    except ValueError:
        pass
    for fmt in ("%a %b %d %H:%M:%S %z %Y", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d/%m/%Y %H:%M",
                "%b %d, %Y", "%m %d, %Y", "%d %B %Y"):
        try:
            dt = datetime.strptime(s, fmt)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return int(dt.timestamp())
        except ValueError:
            continue
    return None


# Month names seen in the Blog Authorship Corpus (bloggers' locale leaked into the dates).
_MONTHS_ML = {}
for _i, _names in enumerate(
    [
        "january janvier januar enero gennaio janeiro januari jan",
        "february fevrier février februar febrero febbraio fevereiro februari feb",
        "march mars märz marz marzo março maart mar",
        "april avril abril aprile apr",
        "may mai mayo maggio maio mei",
        "june juin juni junio giugno junho jun",
        "july juillet juli julio luglio julho jul",
        "august aout août agosto augustus aug",
        "september septembre septiembre settembre setembro sep sept",
        "october octobre oktober octubre ottobre outubro oct okt",
        "november novembre noviembre novembro nov",
        "december decembre décembre dezember diciembre dicembre dezembro dec dez",
    ],
    start=1,
):
    for _n in _names.split():
        _MONTHS_ML[_n] = _i


def parse_blog_date(s: str) -> Optional[int]:
    """'13,mars,2004' -> epoch seconds at 00:00 UTC; month names in several languages."""
    parts = [p.strip() for p in s.strip().split(",")]
    if len(parts) != 3:
        return None
    day, mon, year = parts
    m = _MONTHS_ML.get(mon.lower())
    if m is None:
        return None
    try:
        return calendar.timegm((int(year), m, int(day), 0, 0, 0))
    except (ValueError, OverflowError):
        return None


def open_text_stream(uri: str, ctx: ReadContext):
    """A text stream (UTF-8, undecodable bytes kept as surrogates, newline='') over the
    decompressed file, for csv.reader on tables whose quoted fields may span lines."""
    import io

    gen = open_chunks(uri, ctx)

    class Raw(io.RawIOBase):
        def __init__(self):
            self._buf = b""

        def readable(self):
            return True

        def readinto(self, b):
            while not self._buf:
                nxt = next(gen, None)
                if nxt is None:
                    return 0
                self._buf = nxt
            n = min(len(b), len(self._buf))
            b[:n] = self._buf[:n]
            self._buf = self._buf[n:]
            return n

    return io.TextIOWrapper(io.BufferedReader(Raw(), buffer_size=CHUNK), encoding="utf-8",
                            errors="surrogateescape", newline="")


def fix_surrogates(s: str) -> Tuple[str, str]:
    """Re-decode a str read with errors='surrogateescape' (legacy bytes) via decode_legacy."""
    try:
        s.encode("utf-8")
        return s, "utf-8"
    except UnicodeEncodeError:
        return decode_legacy(s.encode("utf-8", "surrogateescape"))
