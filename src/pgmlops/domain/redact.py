"""Hide secrets in URLs, and locations in messages shown to anonymous clients (no I/O)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode

HIDDEN = "***"
# Query or conninfo keys whose value is a credential, whatever the driver calls it.
_SECRET_KEYS = re.compile(
    r"^(password|passwd|pwd|pass|sslpassword|secret|token|api[_-]?key|access[_-]?key|"
    r"secret[_-]?key|auth|authorization|credentials?|sas|sig|signature)$",
    re.IGNORECASE,
)
# scheme://[user[:password]@]host... anywhere in a text (a URL inside an error message too).
# Trailing punctuation (a closing parenthesis, a colon before the reason) is not the URL's.
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^\s'\"<>]*[^\s'\"<>).,:;])")
# libpq key=value connection strings: `host=db password=secret`, quoted or not.
_CONNINFO_SECRET = re.compile(
    r"\b(password|passwd|pwd|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*[^\s&:;,.)])",
    re.IGNORECASE,
)
# An absolute POSIX or Windows path of at least two components.
_ABS_PATH = re.compile(r"(?<![\w:/.])(?:/|[A-Za-z]:\\)[^\s'\"<>:,;()]+(?:[/\\][^\s'\"<>:,;()]*)+")


def _redact_rest(rest: str) -> str:
    """The part of a URL after `scheme://`, with the password and secret parameters hidden."""
    query: str | None = None
    base = rest
    if "?" in rest:
        base, query = rest.split("?", 1)
    fragment = ""
    if query is not None and "#" in query:
        query, fragment = query.split("#", 1)
        fragment = "#" + fragment
    authority, slash, path = base.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + HIDDEN
        authority = f"{userinfo}@{host}"
    out = authority + slash + path
    if query is not None:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEYS.match(k) for k, _ in pairs):
            pairs = [(k, HIDDEN if _SECRET_KEYS.match(k) else v) for k, v in pairs]
            query = urlencode(pairs, safe="*/:@", quote_via=quote)
        out += "?" + query
    return out + fragment


def redact_url(url: str) -> str:
    """A URL (or libpq conninfo string) with every credential replaced by ***."""
    return redact_secrets(url)


def redact_secrets(text: str) -> str:
    """Every URL password, secret query parameter and conninfo password in a text, hidden."""
    text = _URL.sub(lambda m: m.group(1) + _redact_rest(m.group(2)), text)
    return _CONNINFO_SECRET.sub(lambda m: m.group(1) + m.group(2) + HIDDEN, text)


def public_text(text: str) -> str:
    """A message for anonymous clients: no URL (database location) and no absolute path."""
    text = _URL.sub("<url>", text)
    text = _CONNINFO_SECRET.sub(lambda m: m.group(1) + m.group(2) + HIDDEN, text)
    return _ABS_PATH.sub("<path>", text)
