"""Recipient URLs without their secrets, for the alert log, the page and error messages.

An apprise URL carries its credentials: a password (`mailto://user:pw@host`), a token as
the host or path (`slack://T0/B0/XXXX`, `dingtalk://TOKEN`, `wecombot://KEY`) or a query
value (`?token=...`). What reaches the database, the log and the dashboard is the masked
form: the scheme, the user, the host of plain webhooks and mail servers, channel names and
the recipient addresses stay readable; every credential becomes `****`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit

MASK = "****"
# schemes whose host is a server, not a credential (webhooks, mail)
ADDRESSED = frozenset(
    {"json", "jsons", "xml", "xmls", "form", "forms", "mailto", "mailtos", "http", "https"}
)
MAIL = frozenset({"mailto", "mailtos"})
# query keys whose values say where a message goes or how, not who may send it
SAFE_QUERY = frozenset(
    {"to", "cc", "bcc", "from", "name", "format", "method", "mode", "overflow", "channel", "cto"}
    | {"rto", "smtp", "user", "lang", "timezone", "verify", "image", "footer", "timestamp"}
)
URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]{1,15}://[^\s'\"<>]+", re.IGNORECASE)


def _secretish(segment: str) -> bool:
    """A path segment that looks like a token: long, or letters and digits mixed."""
    if len(segment) >= 20:
        return True
    return (
        len(segment) >= 8
        and any(c.isdigit() for c in segment)
        and any(c.isalpha() for c in segment)
    )


def _segment(segment: str, scheme: str) -> str:
    if not segment or segment.startswith(("#", "@", "%23")) or "${" in segment:
        return segment
    if scheme in MAIL and "@" in segment:
        return segment  # a recipient address
    if scheme in ADDRESSED:
        return MASK if _secretish(segment) else segment
    return MASK


def mask_url(url: str) -> str:
    """`url` with passwords, tokens and secret query values replaced by `****`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return f"{url.split('://', 1)[0]}://{MASK}" if "://" in url else MASK
    scheme = parts.scheme.lower()
    if not scheme:
        return MASK
    netloc = ""
    if parts.username is not None:
        netloc = parts.username + (f":{MASK}" if parts.password is not None else "") + "@"
    host = parts.hostname or ""
    netloc += (host if scheme in ADDRESSED else _segment(host, scheme)) if host else ""
    if port is not None:
        netloc += f":{port}"
    path = "/".join(_segment(s, scheme) for s in parts.path.split("/"))
    query = "&".join(
        f"{k}={quote(v, safe='@.,:-_') if k.lower() in SAFE_QUERY else MASK}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    out = f"{scheme}://{netloc}{path}"
    if query:
        out += f"?{query}"
    if parts.fragment:
        out += f"#{parts.fragment}"
    return out


def mask_text(text: str) -> str:
    """Every URL inside `text` (an error message) masked."""
    return URL_IN_TEXT.sub(lambda m: mask_url(m.group()), text)
