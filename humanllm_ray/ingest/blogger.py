"""Blogger: Blog Authorship Corpus files ``ID.gender.age.industry.sign.xml``.

The files are "XML" in name only: unescaped ``&``, HTML fragments, Latin-1/cp1252 bytes and
month names in several languages (``13,mars,2004``). So this reader never uses an XML
parser: it streams lines, decodes each one as UTF-8 (else cp1252, else latin-1) and runs a
small tag state machine over ``<date>``, ``<post>`` and ``</post>``. A post that is never closed,
text outside any post or a post without a date is quarantined (``bad_xml``), never dropped.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Dict, Iterator, List, Optional

from . import common, schema
from .common import ReadContext

PLATFORM = "blogger"
JOIN_REQUIRES_AUX = True
join = None

NAME_RE = re.compile(r"^(?P<id>[^.]+)\.(?P<gender>male|female)\.(?P<age>\d+)\.(?P<industry>[^.]+)\.(?P<sign>[^.]+)\.xml$",
                     re.IGNORECASE)
TAG_RE = re.compile(r"<\s*(/?)\s*(blog|date|post)\s*>", re.IGNORECASE)
DATE_RE = re.compile(r"<\s*date\s*>(.*?)<\s*/\s*date\s*>", re.IGNORECASE | re.DOTALL)


def file_meta(uri: str) -> Dict[str, Any]:
    name = posixpath.basename(uri.replace("\\", "/"))
    m = NAME_RE.match(name)
    if not m:
        stem = name.rsplit(".", 1)[0]
        return {"blog_id": stem, "gender": "", "age": None, "industry": "", "sign": ""}
    return {
        "blog_id": m.group("id"),
        "gender": m.group("gender").lower(),
        "age": int(m.group("age")),
        "industry": m.group("industry"),
        "sign": m.group("sign"),
    }


def read(uri: str, ctx: ReadContext) -> Iterator[Dict[str, Any]]:
    meta = file_meta(uri)
    blog_id = meta["blog_id"]
    uid = schema.user_hash(ctx.salt, PLATFORM, blog_id)
    flags = common.author_flags(blog_id, ctx)
    flags["bot"] = False  # numeric corpus ids, not handles
    base_extra = {k: meta[k] for k in ("gender", "age", "industry", "sign")}
    base_extra["author_flags"] = flags

    def q(reason, lineno, detail, raw=""):
        return schema.quarantine(reason, platform=PLATFORM, source_file=uri, source_line=lineno, detail=detail,
                                 raw=raw, user_id=uid)

    date_str: Optional[str] = None
    date_line = 0
    in_post = False
    post_start = 0
    buf: List[str] = []
    buf_bytes = 0
    n_posts = 0
    seen_blog = False
    encodings = set()
    stray: List[str] = []
    stray_line = 0

    def finish_post() -> Dict[str, Any]:
        nonlocal n_posts
        n_posts += 1
        text = "\n".join(buf).strip()
        rid = f"blogger:{blog_id}:{n_posts:05d}"
        if buf_bytes > ctx.max_line_bytes:
            return q("line_too_long", post_start, f"post longer than {ctx.max_line_bytes} bytes", text[:4000])
        if date_str is None:
            return q("bad_xml", post_start, "<post> without a preceding <date>", text)
        ts = common.parse_blog_date(date_str)
        if ts is None:
            return q("bad_timestamp", post_start, f"unparsable date {date_str!r}"[:200], text)
        if not text:
            return q("empty_text", post_start, "empty <post>", "")
        extra = dict(base_extra)
        extra["date"] = date_str
        if encodings - {"utf-8"}:
            extra["encoding"] = sorted(encodings - {"utf-8"})[0]
        return schema.record(platform=PLATFORM, record_id=rid, user_id=uid, timestamp=ts, kind="post", title="",
                             text=text, context="", extra=extra, source_file=uri, source_line=post_start)

    def flush_stray():
        nonlocal stray, stray_line
        out = None
        if "".join(stray).strip():
            out = q("bad_xml", stray_line, "text outside <post>", "\n".join(stray)[:4000])
        stray = []
        stray_line = 0
        return out

    for line in common.iter_lines(uri, ctx):
        if line.status == "truncated":
            if in_post:
                yield q("truncated_file", post_start, line.detail, "\n".join(buf)[:4000])
                in_post = False
            else:
                yield q("truncated_file", line.lineno, line.detail)
            break
        if line.status == "too_long":
            if in_post:
                buf_bytes = ctx.max_line_bytes + 1
            else:
                yield q("line_too_long", line.lineno, line.detail, line.data)
            continue
        text, enc = common.decode_legacy(line.data)
        encodings.add(enc)
        pos = 0
        for m in TAG_RE.finditer(text):
            seg = text[pos:m.start()]
            pos = m.end()
            closing, tag = m.group(1) == "/", m.group(2).lower()
            if in_post:
                if tag == "post" and closing:
                    buf.append(seg)
                    yield finish_post()
                    in_post = False
                    buf, buf_bytes = [], 0
                    continue
                if tag == "post" and not closing:
                    # a new <post> while one is open: the open one was never closed
                    buf.append(seg)
                    yield q("bad_xml", post_start, "<post> not closed before the next <post>", "\n".join(buf)[:4000])
                    n_posts += 1
                    buf, buf_bytes = [], 0
                    post_start = line.lineno
                    continue
                if tag == "date" and not closing:
                    buf.append(seg)
                    yield q("bad_xml", post_start, "<post> not closed before the next <date>", "\n".join(buf)[:4000])
                    n_posts += 1
                    in_post = False
                    buf, buf_bytes = [], 0
                    # fall through to the date handling below
                else:
                    buf.append(seg + m.group(0))  # keep other tags as text
                    continue
            else:
                if seg.strip():
                    if not stray:
                        stray_line = line.lineno
                    stray.append(seg)
            if tag == "blog":
                seen_blog = True
                if (out := flush_stray()) is not None:
                    yield out
            elif tag == "date" and not closing:
                if (out := flush_stray()) is not None:
                    yield out
                rest = text[m.start():]
                dm = DATE_RE.match(rest)
                if dm:
                    date_str, date_line = dm.group(1).strip(), line.lineno
                    pos = m.start() + dm.end()
                else:
                    date_str, date_line = text[m.end():].strip(), line.lineno
                    pos = len(text)
            elif tag == "date" and closing:
                pass
            elif tag == "post" and not closing:
                if (out := flush_stray()) is not None:
                    yield out
                in_post = True
                post_start = line.lineno
                buf, buf_bytes = [], 0
            elif tag == "post" and closing:
                stray_line = stray_line or line.lineno
                stray.append("</post>")
                if (out := flush_stray()) is not None:
                    yield out
        tail = text[pos:]
        if in_post:
            buf.append(tail)
            buf_bytes += len(line.data)
        elif tail.strip():
            if not stray:
                stray_line = line.lineno
            stray.append(tail)
    if in_post:
        yield q("bad_xml", post_start, "<post> not closed at end of file", "\n".join(buf)[:4000])
    if (out := flush_stray()) is not None:
        yield out
    if not seen_blog and n_posts == 0:
        yield q("bad_xml", 0, "no <Blog> element and no posts", common.peek(uri, ctx, 400))
