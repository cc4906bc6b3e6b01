"""API keys for a served domain's write endpoints: who may write.

Keys live in ``<project>/api-keys.json`` (mode 0600, written atomically). Each entry holds a
key id (``k_`` + 8 hex), its domain, an optional name, when it was created and revoked, and the
SHA-256 of its secret, never the secret itself: the secret (``rk_<domain>_<token>``) is shown
once, by ``recengine keys create``.

SHA-256, not a slow password hash: a secret is 32 random bytes (``secrets.token_urlsafe(32)``),
so there is nothing to guess from its digest. A slow hash such as scrypt only protects
low-entropy passwords, and it would make every write request cost tens of milliseconds, so
anyone could load the server down just by sending bad keys.

A check hashes the secret it is sent once and compares that digest, with
``hmac.compare_digest``, against every key in the file, with no early exit. How long a check
takes therefore depends only on how many keys the file holds, not on which key matched or
whether a key with that prefix exists. The secret is never parsed: the domain in it is only
a label for people and secret scanners.

:class:`ApiKeys` stats the file on every check and parses it again only when its mtime, size
or inode changes. So ``recengine keys revoke`` takes effect on a running server at once, with
no restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recengine.errors import AuthenticationError, ConfigError, NotFoundError, PermissionDeniedError
from recengine.serve.schemas import ErrorBody

KEYS_FILE = "api-keys.json"
FILE_MODE = 0o600
MAX_SECRET_CHARS = 512  # longer than any key handed out: refused before hashing
_DOMAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def keys_path(project: str | Path) -> Path:
    """The project's API keys file."""
    return Path(project) / KEYS_FILE


class KeyInfo(BaseModel):
    """One key as the CLI and the server may show it: everything but its secret's hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(pattern=r"^k_[0-9a-f]{8}$")
    domain: str = Field(min_length=1)
    name: str | None = None
    created_at: str
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class _StoredKey(KeyInfo):
    """A key as the file holds it: with the SHA-256 (hex) of its secret."""

    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def info(self) -> KeyInfo:
        return KeyInfo(**self.model_dump(exclude={"secret_sha256"}))


_Keys = list[_StoredKey]  # an alias: in ApiKeys, ``list`` names its method


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    keys: _Keys = Field(default_factory=list)


class KeyStatus(str, Enum):
    """The outcome of checking a secret against a domain."""

    OK = "ok"
    MISSING = "missing"  # no key sent: 401
    INVALID = "invalid"  # not the secret of any key: 403
    REVOKED = "revoked"  # 403
    OTHER_DOMAIN = "other_domain"  # a key of another domain: 403


@dataclass(frozen=True)
class KeyCheck:
    """A check's outcome, and the matching key's id (for ok, revoked and other_domain)."""

    status: KeyStatus
    key_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is KeyStatus.OK

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 401 if self.status is KeyStatus.MISSING else 403

    def raise_unless_ok(self, domain: str) -> str:
        """The key id when ok; else an ``AuthenticationError`` (missing) or a
        ``PermissionDeniedError`` saying what to do. The message never echoes the secret."""
        create = f"create one with `recengine keys create --domain {domain}`"
        if self.status is KeyStatus.OK:
            assert self.key_id is not None
            return self.key_id
        if self.status is KeyStatus.MISSING:
            raise AuthenticationError(f"writing to domain {domain!r} needs an API key: send "
                                      f"`Authorization: Bearer <key>`; {create}")
        if self.status is KeyStatus.REVOKED:
            raise PermissionDeniedError(f"API key {self.key_id} was revoked; {create}")
        if self.status is KeyStatus.OTHER_DOMAIN:
            raise PermissionDeniedError(f"API key {self.key_id} is not a key of domain {domain!r}; {create}")
        raise PermissionDeniedError(f"the API key sent is not a key of this server: send "
                                    f"`Authorization: Bearer <key>` with a valid key; {create}")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ApiKeys:
    """The API keys of one project (the file :func:`keys_path` names); a missing file means no keys."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._signature: tuple[int, int, int] | None = None
        self._entries: tuple[tuple[_StoredKey, bytes], ...] = ()

    @classmethod
    def of_project(cls, project: str | Path) -> ApiKeys:
        return cls(keys_path(project))

    # -- reading ---------------------------------------------------------------------------
    def _current(self) -> tuple[tuple[_StoredKey, bytes], ...]:
        """The file's keys with their digests, parsed again only when the file changed."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._signature, self._entries = None, ()
            return ()
        except OSError as exc:
            raise ConfigError(f"cannot read API keys file {self.path}: {exc.strerror or exc}") from None
        if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._signature:
            signature, keys = self._read()
            self._entries = tuple((key, bytes.fromhex(key.secret_sha256)) for key in keys)
            self._signature = signature  # set last: a failed parse is retried on the next check
        return self._entries

    def _read(self) -> tuple[tuple[int, int, int] | None, _Keys]:
        """The file's signature (mtime, size, inode) and keys, validated; no file: no keys."""
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                raw = handle.read()
        except FileNotFoundError:
            return None, []
        except OSError as exc:
            raise ConfigError(f"cannot read API keys file {self.path}: {exc.strerror or exc}") from None
        try:
            keys = _KeysFile.model_validate_json(raw).keys
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "top level"
            raise ConfigError(f"API keys file {self.path} is corrupt ({where}: {first.get('msg')}); fix it, "
                              f"or move it away and create keys again with `recengine keys create`") from None
        ids = [key.key_id for key in keys]
        if len(set(ids)) != len(ids):
            twice = sorted({key_id for key_id in ids if ids.count(key_id) > 1})
            raise ConfigError(f"API keys file {self.path} is corrupt: key id(s) {', '.join(twice)} appear twice")
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino), keys

    def list(self, domain: str | None = None) -> list[KeyInfo]:
        """Every key (of ``domain``, when given), oldest first, revoked ones included."""
        return [key.info() for key, _ in self._current() if domain is None or key.domain == domain]

    def has_keys(self, domain: str) -> bool:
        """Whether ``domain`` has a key that is not revoked (with none, every check fails)."""
        return any(key.domain == domain and not key.revoked for key, _ in self._current())

    def check(self, secret: str | None, domain: str) -> KeyCheck:
        """Whether ``secret`` may write to ``domain``: compared, in constant time, with every key."""
        if not secret:
            return KeyCheck(KeyStatus.MISSING)
        entries = self._current()
        if len(secret) > MAX_SECRET_CHARS:
            return KeyCheck(KeyStatus.INVALID)
        digest = _digest(secret)
        found: _StoredKey | None = None
        for key, stored in entries:  # no early exit: the time taken does not tell which key matched
            if hmac.compare_digest(stored, digest):
                found = key
        if found is None:
            return KeyCheck(KeyStatus.INVALID)
        if found.revoked:
            return KeyCheck(KeyStatus.REVOKED, found.key_id)
        if found.domain != domain:
            return KeyCheck(KeyStatus.OTHER_DOMAIN, found.key_id)
        return KeyCheck(KeyStatus.OK, found.key_id)

    # -- writing ---------------------------------------------------------------------------
    def create(self, domain: str, name: str | None = None) -> tuple[KeyInfo, str]:
        """A new key for ``domain`` and its secret, which is shown this once and never stored."""
        if not _DOMAIN_NAME.fullmatch(domain):
            raise ConfigError(f"domain {domain!r} cannot name an API key: use letters, digits, '_', '.' or '-'")
        with self._editing() as keys:
            taken = {key.key_id for key in keys}
            key_id = f"k_{secrets.token_hex(4)}"
            while key_id in taken:
                key_id = f"k_{secrets.token_hex(4)}"
            secret = f"rk_{domain}_{secrets.token_urlsafe(32)}"
            stored = _StoredKey(key_id=key_id, domain=domain, name=name or None, created_at=_now(),
                                secret_sha256=_digest(secret).hex())
            keys.append(stored)
        return stored.info(), secret

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke ``key_id`` (revoking a revoked key changes nothing); unknown ids are a ``NotFoundError``."""
        with self._editing() as keys:
            for index, key in enumerate(keys):
                if key.key_id == key_id:
                    if not key.revoked:
                        keys[index] = key.model_copy(update={"revoked_at": _now()})
                    return keys[index].info()
            known = ", ".join(key.key_id for key in keys) or "none"
            raise NotFoundError(f"unknown API key {key_id!r} in {self.path}; known keys: {known}")

    @contextmanager
    def _editing(self) -> Iterator[_Keys]:
        """The file's keys, to change in place; written back atomically unless the block raises.
        A lock on the project directory keeps two concurrent edits from losing one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(directory, fcntl.LOCK_EX)
            _, keys = self._read()
            yield keys
            self._write(keys, directory)
        finally:
            os.close(directory)  # releases the lock

    def _write(self, keys: _Keys, directory: int) -> None:
        """Temp file in the same directory, mode 0600, fsync, ``os.replace``, fsync the directory."""
        text = json.dumps(_KeysFile(keys=keys).model_dump(mode="json"), indent=2) + "\n"
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        os.fsync(directory)


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API key sent (`Authorization: Bearer <key>`)."},
    403: {"model": ErrorBody, "description": "The API key is wrong, revoked or of another domain."},
}
"""The 401 and 403 answers of a route that requires a key, to document (FastAPI ``responses=``)."""


_BEARER = HTTPBearer(auto_error=False, description="An API key of the domain, from `recengine keys create`.")


def require_key(keys: ApiKeys | Callable[[], ApiKeys | None], domain: str) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency that lets a request through only with ``Authorization: Bearer <secret>``
    of a live key of ``domain``, and gives the route that key's id. No key sent: 401 (with
    ``WWW-Authenticate: Bearer``); a wrong, revoked or other domain's key: 403. ``keys`` may be
    a callable, called per request; when it returns ``None`` (no key store), every request is refused."""

    async def api_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> str:
        secret = credentials.credentials if credentials is not None else None
        store = keys() if callable(keys) else keys
        if store is not None:
            check = store.check(secret, domain)
        else:
            check = KeyCheck(KeyStatus.INVALID if secret else KeyStatus.MISSING)
        return check.raise_unless_ok(domain)

    return api_key

