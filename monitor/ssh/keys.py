"""The door's keys: its own host key, made once and kept, and the users' authorized keys.

Authorized keys come from a directory or one file, both in OpenSSH ``authorized_keys``
format, and are read again at every login, so an edit takes effect without a restart:

- a directory holds one file per user, ``<user>.pub`` or ``<user>`` (several keys each);
- one file binds each key to its users with ``principals="alice,bob"``; a key without
  that option lets nobody in (one shared file must not let every key be everyone).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import asyncssh

log = logging.getLogger("monitor.ssh")

HOST_KEY_NAME = "ssh_host_ed25519_key"
_PRINCIPALS_RE = re.compile(r'(?:^|,)principals="([^"]*)"')
_KEY_TYPE_RE = re.compile(r"(?:^|\s)(ssh-|ecdsa-|sk-)")


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """The host key at ``path``; made (ed25519, mode 0600) the first time."""
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two servers starting at once must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return asyncssh.read_private_key(path)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    log.info("event=host_key_created path=%s fingerprint=%s", path, key.get_fingerprint())
    return key


def _principals(line: str) -> set[str] | None:
    """The names of a ``principals="..."`` option before the key type, if any."""
    head = _KEY_TYPE_RE.split(line, maxsplit=1)[0]
    match = _PRINCIPALS_RE.search(head)
    if match is None:
        return None
    return {name.strip() for name in match.group(1).split(",") if name.strip()}


class AuthorizedKeys:
    """Where the users' public keys live: a directory of per-user files, or one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self) -> None:
        """Raise ``OSError`` when the path cannot be used at all."""
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file or directory")
        if self.path.is_file():
            self.path.read_text(encoding="utf-8")

    def text_for(self, user: str) -> str:
        """The ``authorized_keys`` lines that let ``user`` in (empty when none)."""
        try:
            if self.path.is_dir():
                # a user name is never a path: no "../alice" or "a/b" lookups
                if "/" in user or "\\" in user or user.startswith("."):
                    return ""
                for name in (f"{user}.pub", user):
                    candidate = self.path / name
                    if candidate.is_file():
                        return candidate.read_text(encoding="utf-8")
                return ""
            lines = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if user in (_principals(line) or ()):
                    lines.append(line)
            return "\n".join(lines)
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("event=authorized_keys_unreadable path=%s error=%r", self.path, str(exc))
            return ""

    def for_user(self, user: str) -> asyncssh.SSHAuthorizedKeys | None:
        """The keys ``user`` may log in with, or ``None`` when there are none."""
        text = self.text_for(user)
        if not text.strip():
            return None
        try:
            return asyncssh.import_authorized_keys(text)
        except ValueError as exc:  # "No valid entries found" or a bad option
            log.warning("event=authorized_keys_invalid path=%s user=%s error=%r",
                        self.path, user, str(exc))
            return None

    def unbound_lines(self) -> list[int]:
        """Line numbers of keys in a single file that name no user (they let nobody in)."""
        if self.path.is_dir():
            return []
        numbers = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#") and _principals(line) is None:
                numbers.append(number)
        return numbers
