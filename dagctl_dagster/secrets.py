"""One home for secret handling: which names are secret, masking URLs/DSNs, redacting values.

A value is secret when the environment variable holding it is named like a secret
(``SLACK_BOT_TOKEN``, ``SQLMESH_STATE_PASSWORD``, ``AWS_SECRET_ACCESS_KEY``, ``FERNET_KEY``)::

    redact("connect failed: password=hunter2")  # with SQLMESH_STATE_PASSWORD=hunter2
    # -> "connect failed: password=***"

Connection strings are masked in every form a user may write them::

    mask_url("postgresql://u:p@ss@db/x?sslpassword=k")  # -> "postgresql://u:***@db/x?sslpassword=***"
    mask_url("host=db user=u password='p w'")          # -> "host=db user=u password=***"

Everything this project writes (failure descriptions, event metadata, engine events, JSON log
lines, Slack messages, CLI errors) passes through :func:`redact` or :func:`mask_url`; the
Kubernetes manifest check uses :data:`SECRET_NAME` to refuse literal secret values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

MASK = "***"

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|(?:^|_|PG)PASS$|CREDENTIAL|PRIVATE_KEY|API_KEY|ACCESS_KEY|(?:^|_)KEY$|(?:^|_)AUTH(?:$|_)",
    re.IGNORECASE,
)
# Shorter values ("1", "true") would mask unrelated text and are not real secrets.
MIN_SECRET_LENGTH = 6

# libpq keyword/value DSN: `password=secret`, `password = 'with spaces'`.
_DSN_SECRET = re.compile(
    r"\b(password|passwd|sslpassword|sslkey|sslcert)(\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)",
    re.IGNORECASE,
)
# URL query parameters: `?password=...&sslpassword=...`.
_QUERY_PARAM = re.compile(r"([?&;])([^=&;#]+)=([^&;#]*)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(//)?")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable (or URL parameter) name is that of a secret."""
    return bool(SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-named environment variables, longest first."""
    environ = os.environ if environ is None else environ
    values = {value for name, value in environ.items() if is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def _forms(value: str) -> set[str]:
    """A secret as it may appear in text: raw, and percent-encoded as in a URL."""
    return {value, quote(value, safe=""), quote_plus(value, safe="")}


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret environment value (and each of ``extra``) replaced by ``***``."""
    if not text:
        return text
    extra = tuple(extra)
    secrets = {form for value in [*secret_values(), *extra] if value for form in _forms(value)}
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH or secret in extra:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any, extra: Iterable[str] = ()) -> Any:
    """``value`` with :func:`redact` applied to every string inside mappings, lists and tuples."""
    extra = tuple(extra)
    if isinstance(value, str):
        return redact(value, extra)
    if isinstance(value, Mapping):
        return {key: redact_value(item, extra) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item, extra) for item in value)
    return value


def mask_url(url: str) -> str:
    """A connection URL or libpq DSN with every password and secret parameter shown as ``***``.

    Unescaped ``@``, ``:`` or ``/`` in a password never leak a part of it: a URL that does
    not parse cleanly keeps only its scheme and what follows the last ``@``.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return _DSN_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", url)
    rendered = _render_parsed(url)
    if rendered is None:
        rest = url[scheme.end() :]
        at = _userinfo_end(rest)
        rendered = f"{scheme.group(1)}://" + (f"{MASK}{rest[at:]}" if at >= 0 else rest)
    return _mask_query(rendered)


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL or DSN (password, secret parameters), raw and decoded.

    For redacting text that echoes them, e.g. a driver error quoting the connection string.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        found = [match.group(3).strip("'") for match in _DSN_SECRET.finditer(url)]
    else:
        found = [m.group(3) for m in _QUERY_PARAM.finditer(url) if is_secret_name(unquote(m.group(2)))]
        rest = url[scheme.end() :]
        at = _userinfo_end(rest)
        if at >= 0:
            userinfo = rest[:at]
            _user, colon, password = userinfo.partition(":")
            found += [password] if colon else []
            # With an unescaped `@`, a parser may take any fragment for the password or host.
            found += [part for part in re.split(r"[:@/]", password) if len(part) >= 3]
            found += [password.split("@", i)[-1] for i in range(1, password.count("@") + 1)]
    found = [value for value in found if value]
    return sorted({*found, *(unquote(value) for value in found)}, key=len, reverse=True)


def unescaped_password_problem(url: str) -> str | None:
    """Why a URL cannot be parsed as meant (an unescaped ``@`` in a password or parameter), or None.

    SQLAlchemy splits such a URL at the wrong ``@`` and would connect elsewhere, echoing a
    part of the password as the host.
    """
    scheme = _SCHEME.match(url)
    if scheme is None or url[scheme.end() :].count("@") <= 1:
        return None
    return (
        "an '@' in the password or a parameter is not percent-encoded; write it as %40 "
        "(and ':' as %3A, '/' as %2F, '?' as %3F)"
    )


def _userinfo_end(rest: str) -> int:
    """Index of the ``@`` ending the user information of ``rest`` (the URL after ``scheme://``), or -1.

    The user information ends at the last ``@`` before the query, so an ``@`` in a query value
    is no separator. A ``?`` before any ``/`` or ``@`` is taken to be inside the password.
    """
    query = rest.find("?")
    head = rest if query < 0 else rest[:query]
    if "@" in head:
        return head.rfind("@")
    if query >= 0 and "/" not in head:
        return rest.find("@", query)
    return -1


def _render_parsed(url: str) -> str | None:
    """SQLAlchemy's rendering with the password hidden, when the URL parses unambiguously."""
    if unescaped_password_problem(url):
        return None
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return None


def _mask_query(rest: str) -> str:
    def replace(match: re.Match[str]) -> str:
        separator, name, _value = match.groups()
        return f"{separator}{name}={MASK}" if is_secret_name(unquote(name)) else match.group(0)

    return _QUERY_PARAM.sub(replace, rest)


def redacted_traceback(exc: BaseException, limit_chars: int = 8000) -> str:
    """``exc``'s traceback (with its causes), secrets masked, keeping the last ``limit_chars``."""
    import traceback

    text = redact("".join(traceback.format_exception(exc)))
    return text if len(text) <= limit_chars else "..." + text[-limit_chars:]
