"""Invitations and session cookies of the web door: signed, expiring, revocable.

An invitation names a user and the role the roles file gave them; it is a bearer secret
until it expires. Opening it gets a session cookie with the same user, role and expiry.
Both are ``payload.signature`` (base64url JSON, HMAC-SHA256 with the door's secret and
the kind, so a cookie is never taken for an invitation or the other way round).

The door's state directory (mode 0700) holds the secret (0600, made on first use: delete
it to void every invitation and session at once), ``revoked.json`` (per user, or ``*``
for everyone, the time before which their invitations and sessions no longer count) and
``door.json`` (where the running door is and which roles file it reads, for ``monitor
web invite``). Several processes use the directory: the door, and the commands that
invite and revoke; each file is replaced whole, never written in place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INVITE = "invite"
SESSION = "session"
EVERYONE = "*"
SECRET_FILE = "secret"
REVOKED_FILE = "revoked.json"
DOOR_FILE = "door.json"
#: An invitation or cookie longer than this is refused before it is decoded.
MAX_PASS_CHARS = 2048
_DAYS_RE = re.compile(r"(?:(\d+)d)?(.*)")


class PassError(Exception):
    """An invitation or cookie that does not let anyone in; ``reason`` is for the log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Pass:
    """What a verified invitation or session cookie says."""

    kind: str
    user: str
    role: str
    issued_ms: int
    expires: int  # Unix seconds
    id: str  # the invitation's id (a session keeps the id of the invitation it came from)


def parse_ttl(text: str, flag: str = "--ttl") -> float:
    """Seconds from ``8h``, ``30m``, ``7d``, ``1d12h``; raises ``ValueError`` with the flag."""
    from monitor.config import ConfigError
    from monitor.tui.settings import parse_duration

    match = _DAYS_RE.fullmatch(text.strip().lower())
    assert match is not None  # the pattern matches every string
    days = int(match.group(1) or 0) * 86400
    rest = match.group(2)
    try:
        seconds = days + (parse_duration(rest, flag) if rest else 0.0)
    except ConfigError as exc:
        raise ValueError(f"{flag}: expected a duration like 8h, 30m or 7d, got {text!r}") \
            from exc
    if seconds <= 0:
        raise ValueError(f"{flag}: must be positive, got {text!r}")
    return seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks passes with the door's secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the web door's secret must be at least 32 bytes")
        self._secret = secret

    def _mac(self, kind: str, payload: str) -> str:
        message = f"monitor-web/{kind}/{payload}".encode("ascii")
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    def sign(self, kind: str, user: str, role: str, expires: int, *, issued_ms: int | None = None,
             pass_id: str | None = None) -> str:
        """A pass of ``kind`` for ``user``, valid until ``expires`` (Unix seconds)."""
        body = {"u": user, "r": role, "i": issued_ms if issued_ms is not None
                else time.time_ns() // 1_000_000, "e": int(expires),
                "n": pass_id or secrets.token_hex(8)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._mac(kind, payload)}"

    def verify(self, kind: str, text: str, now: float | None = None) -> Pass:
        """The pass ``text`` of ``kind``, or :class:`PassError` saying why not."""
        if not isinstance(text, str) or not 0 < len(text) <= MAX_PASS_CHARS \
                or text.count(".") != 1 or not text.isascii():
            raise PassError("malformed", "This link is not an invitation.")
        payload, mac = text.split(".")
        if not hmac.compare_digest(mac, self._mac(kind, payload)):
            raise PassError("bad_signature", "This invitation is not valid here.")
        try:
            body: Any = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            raise PassError("malformed", "This link is not an invitation.") from None
        # Signed by us, so well formed unless the secret leaked; checked all the same.
        if not (isinstance(body, dict) and isinstance(body.get("u"), str)
                and isinstance(body.get("r"), str) and isinstance(body.get("i"), int)
                and isinstance(body.get("e"), int) and isinstance(body.get("n"), str)):
            raise PassError("malformed", "This link is not an invitation.")
        if body["e"] <= (time.time() if now is None else now):
            raise PassError("expired", "This invitation has expired: ask for a new one.")
        return Pass(kind, body["u"], body["r"], body["i"], body["e"], body["n"])


def _write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` whole with ``data``, mode 0600 (a reader never sees half a file)."""
    new = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(new, path)


class WebState:
    """The door's state directory: its secret, the revocations, where the door runs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._revoked: dict[str, int] = {}
        self._revoked_stamp: tuple[int, int] | None = None

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def secret(self) -> bytes:
        """The signing secret, made (32 random bytes) on first use."""
        path = self.directory / SECRET_FILE
        try:
            return bytes.fromhex(path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            pass
        self._ensure_directory()
        secret = secrets.token_bytes(32)
        try:
            # O_EXCL: if another process made it meanwhile, theirs is the one
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return bytes.fromhex(path.read_text(encoding="ascii").strip())
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secret.hex() + "\n")
        return secret

    def signer(self) -> Signer:
        return Signer(self.secret())

    # -- revocations ----------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = (self.directory / REVOKED_FILE).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def revocations(self) -> dict[str, int]:
        """User (or ``*``) → the time in ms before which their passes are void; read again
        when the file changed."""
        stamp = self._stamp()
        if stamp != self._revoked_stamp:
            self._revoked_stamp = stamp
            try:
                data = json.loads((self.directory / REVOKED_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            self._revoked = {k: v for k, v in data.items()
                             if isinstance(k, str) and isinstance(v, int)} \
                if isinstance(data, dict) else {}
        return self._revoked

    def is_revoked(self, found: Pass) -> bool:
        """True if ``found`` was issued at or before a revocation of its user or everyone."""
        revoked = self.revocations()
        return found.issued_ms <= max(revoked.get(found.user, 0), revoked.get(EVERYONE, 0))

    def revoke(self, user: str) -> None:
        """Void every pass of ``user`` (``*``: everyone's) issued until now."""
        self._ensure_directory()
        revoked = dict(self.revocations())
        revoked[user] = time.time_ns() // 1_000_000
        _write_private(self.directory / REVOKED_FILE,
                       json.dumps(revoked, indent=1, sort_keys=True).encode("utf-8"))

    # -- the running door -----------------------------------------------------------------

    def record_door(self, url: str, roles: str | None) -> None:
        """Note where the door is and which roles file it reads (for ``invite``)."""
        self._ensure_directory()
        _write_private(self.directory / DOOR_FILE,
                       json.dumps({"url": url, "roles": roles}).encode("utf-8"))

    def door(self) -> dict[str, str | None]:
        """What :meth:`record_door` noted, or ``{}``."""
        try:
            data = json.loads((self.directory / DOOR_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str | None)} \
            if isinstance(data, dict) else {}
