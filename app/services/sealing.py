"""Seal a backup for off-site storage (zstd, then age) and open it again, streamed with bounded memory.

A sealed copy is a standard age v1 file whose plaintext is one zstd frame, so that the
owner can always restore by hand: ``age -d -i key.txt copy.zst.age | zstd -d > backup.sqlite3``.
It is encrypted either to an X25519 public key (``age1...``, through pyrage), so that
this server can write copies it cannot read, or with a passphrase (age's scrypt mode,
``app.services.age_passphrase``).
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyrage

from app.services import age_passphrase
from app.services.backups import fsync_path

if sys.version_info >= (3, 14):
    from compression.zstd import CompressionParameter, ZstdCompressor, ZstdDecompressor, ZstdError
else:
    from backports.zstd import CompressionParameter, ZstdCompressor, ZstdDecompressor, ZstdError

SEALED_SUFFIX = ".zst.age"
DEFAULT_LEVEL = 3
READ_SIZE = 1024 * 1024
PROGRESS_EVERY = 8 * 1024 * 1024
# One zstd worker thread compresses while the main thread reads, hashes and encrypts.
COMPRESSION_WORKERS = 1
# Bounds what one decompression call may return: a few KB of zstd can expand to GBs.
DECOMPRESSED_PIECE = 4 * 1024 * 1024
TEMP_PREFIX = ".unseal-"
TEMP_SUFFIX = ".tmp"
_LONGEST_KEY = 200  # an X25519 age key is 62 characters (recipient) or 74 (identity)


class SealError(Exception):
    """Sealing or unsealing failed; the message is fit to show a user."""


@dataclass(frozen=True)
class Sealed:
    """What ``seal()`` measured while streaming."""

    plain_sha256: str
    plain_size: int
    sealed_sha256: str
    sealed_size: int


def _shown(text: str) -> str:
    """A pasted value as an error message may quote it: its first line, shortened."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"“{first[:24]}…”" if len(first) > 24 else f"“{first}”"


def check_recipient(text: str) -> str:
    """The age X25519 public key in ``text``, normalised (``age1...``, lower case); else ``SealError``."""
    key = text.strip()
    if not key or len(key) > _LONGEST_KEY or not key.lower().startswith("age1"):
        raise SealError(f"{_shown(text)} is not an age public key (age1...).")
    try:
        return str(pyrage.x25519.Recipient.from_str(key))
    except pyrage.RecipientError:
        raise SealError(f"{_shown(text)} is not an age public key (age1...): it is mistyped or cut short.") from None


def check_identity(text: str) -> str:
    """The one age X25519 private key in ``text`` (a key file's comments and blank lines allowed); else ``SealError``.

    Error messages never quote the text: it may be a secret.
    """
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if len(keys) > 1:
        raise SealError("Paste one age private key (AGE-SECRET-KEY-1...), not several lines.")
    key = keys[0] if keys else ""
    if key.lower().startswith("age1"):
        raise SealError("That is a public key: opening a copy needs the private key (AGE-SECRET-KEY-1...).")
    if not key.upper().startswith("AGE-SECRET-KEY-1") or len(key) > _LONGEST_KEY:
        raise SealError("That is not an age private key (AGE-SECRET-KEY-1...).")
    try:
        pyrage.x25519.Identity.from_str(key.upper())
    except pyrage.IdentityError:
        raise SealError("That is not an age private key (AGE-SECRET-KEY-1...): it is mistyped or cut short.") from None
    return key.upper()


def _compressor(level: int) -> ZstdCompressor:
    return ZstdCompressor(
        options={
            CompressionParameter.compression_level: level,
            CompressionParameter.checksum_flag: 1,  # `zstd -d` checks the plaintext even without age
            CompressionParameter.nb_workers: COMPRESSION_WORKERS,
        }
    )


def compressed_chunks(
    source: BinaryIO, level: int = DEFAULT_LEVEL, on_read: Callable[[bytes], None] | None = None
) -> Iterator[bytes]:
    """Yield the zstd frame of ``source`` piece by piece; ``on_read`` sees each block of plaintext read."""
    compressor = _compressor(level)
    while True:
        try:
            block = source.read(READ_SIZE)
        except OSError as error:
            raise SealError(f"The backup could not be read: {error.strerror or error}.") from error
        if not block:
            break
        if on_read:
            on_read(block)
        if piece := compressor.compress(block):
            yield piece
    yield compressor.flush()


class _IteratorReader(io.RawIOBase):
    """A readable stream over an iterator of byte strings (pyrage pulls its input)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._rest = memoryview(piece)
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


class _HashingWriter:
    """Writes through to ``out``, counting and hashing what passes."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


class _Progress:
    """Counts plaintext bytes and reports them every ``PROGRESS_EVERY`` bytes, and once at the end."""

    def __init__(self, callback: Callable[[int], None] | None) -> None:
        self._callback = callback
        self._reported = 0
        self.size = 0
        self.sha256 = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        if self._callback and self.size - self._reported >= PROGRESS_EVERY:
            self._reported = self.size
            self._callback(self.size)

    def finish(self) -> None:
        if self._callback and self._reported != self.size:
            self._callback(self.size)


def _exactly_one(key: str | None, passphrase: str | None, key_name: str) -> None:
    if (key is None) == (passphrase is None):
        raise ValueError(f"give exactly one of {key_name} or passphrase")
    if passphrase is not None and not passphrase:
        raise SealError("The passphrase is empty.")


def seal(
    source: Path,
    out: BinaryIO,
    *,
    recipient: str | None = None,
    passphrase: str | None = None,
    level: int = DEFAULT_LEVEL,
    work_factor: int = age_passphrase.DEFAULT_WORK_FACTOR,
    progress: Callable[[int], None] | None = None,
) -> Sealed:
    """Write ``source`` compressed with zstd and encrypted with age to ``out``; exactly one of recipient/passphrase.

    ``progress`` receives the plaintext bytes read so far, every few MB and at the end.
    """
    _exactly_one(recipient, passphrase, "recipient")
    recipients = [pyrage.x25519.Recipient.from_str(check_recipient(recipient))] if recipient is not None else []
    read = _Progress(progress)
    written = _HashingWriter(out)
    try:
        file = source.open("rb")
    except OSError as error:
        raise SealError(f"The backup could not be read: {error.strerror or error}.") from error
    with file:
        pieces = compressed_chunks(file, level, read.add)
        if recipients:
            pyrage.encrypt_io(_IteratorReader(pieces), written, recipients)
        else:
            encrypted = age_passphrase.PassphraseWriter(written, passphrase, work_factor=work_factor)
            for piece in pieces:
                encrypted.write(piece)
            encrypted.close()
    written.flush()
    read.finish()
    return Sealed(read.sha256.hexdigest(), read.size, written.sha256.hexdigest(), written.size)


class _ReplayReader(io.RawIOBase):
    """``prefix`` (a header already read), then the rest of ``source``."""

    def __init__(self, prefix: bytes, source: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            size = min(len(buffer), len(self._prefix))
            buffer[:size] = self._prefix[:size]
            self._prefix = self._prefix[size:]
            return size
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _DecompressingWriter:
    """Decompresses zstd frames written to it into ``file``, hashing the plaintext, in bounded pieces."""

    def __init__(self, file: BinaryIO, progress: _Progress, limit: int | None = None) -> None:
        self._file = file
        self._progress = progress
        self._limit = limit
        self._decompressor = ZstdDecompressor()
        self.write_error: OSError | None = None
        self.too_large = False

    @property
    def limit_mb(self) -> int:
        return (self._limit or 0) // 2**20

    def write(self, data: bytes) -> int:
        pending = bytes(data)
        while True:
            if self._decompressor.eof:
                pending = self._decompressor.unused_data + pending
                if not pending:
                    return len(data)
                self._decompressor = ZstdDecompressor()
            try:
                plain = self._decompressor.decompress(pending, max_length=DECOMPRESSED_PIECE)
            except ZstdError:
                raise SealError("The decrypted copy is not zstd data.") from None
            pending = b""
            if plain:
                self._save(plain)
            if not self._decompressor.eof and self._decompressor.needs_input:
                return len(data)

    def _save(self, plain: bytes) -> None:
        if self._limit is not None and self._progress.size + len(plain) > self._limit:
            self.too_large = True
            raise SealError(f"The opened copy is larger than {self.limit_mb} MB; it was not kept.")
        try:
            self._file.write(plain)
        except OSError as error:
            self.write_error = error  # pyrage reports our exceptions as its own OSError
            raise
        self._progress.add(plain)

    def finish(self) -> None:
        if not self._decompressor.eof:
            raise SealError("The decrypted copy is not zstd data (it ends inside a frame).")


def _decrypt_to(source: BinaryIO, writer: _DecompressingWriter, identity: str | None, passphrase: str | None) -> None:
    header = age_passphrase.read_header(source)
    if header.is_passphrase:
        if passphrase is None:
            raise SealError("This copy was sealed with a passphrase: enter the passphrase, not a key.")
        file_key = age_passphrase.unwrap_file_key(header, passphrase)
        for chunk in age_passphrase.decrypt_payload(source, file_key):
            writer.write(chunk)
        return
    if identity is None:
        raise SealError("This copy was sealed to an age key: opening it needs the private key, not a passphrase.")
    key = pyrage.x25519.Identity.from_str(check_identity(identity))
    try:
        pyrage.decrypt_io(_ReplayReader(header.raw, source), writer, [key])
    except pyrage.DecryptError as error:
        if "no matching keys" in str(error).lower():
            raise SealError("The key does not open this copy.") from None
        raise SealError(f"The copy is damaged: {error}.") from None
    except OSError:
        if writer.too_large:  # our refusal, reported by rage as its own OSError
            raise SealError(f"The opened copy is larger than {writer.limit_mb} MB; it was not kept.") from None
        if writer.write_error is not None:
            raise
        # rage reports any chunk that fails to authenticate, cut or changed, as "decryption error".
        raise SealError("The copy is damaged: it was cut short or changed after it was sealed.") from None


def unseal(
    source: BinaryIO,
    dest: Path,
    *,
    identity: str | None = None,
    passphrase: str | None = None,
    progress: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> tuple[str, int]:
    """Decrypt and decompress ``source`` into ``dest``; return the plaintext's (sha256, size).

    ``limit``: the most plaintext bytes to write (a copy that opens larger is refused).

    ``dest`` appears complete or not at all: written to a temporary file in its folder,
    fsynced, then renamed. On any error what was written is removed and ``SealError`` raised.
    """
    _exactly_one(identity, passphrase, "identity")
    written = _Progress(progress)
    temp = dest.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            writer = _DecompressingWriter(file, written, limit)
            _decrypt_to(source, writer, identity, passphrase)
            writer.finish()
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, dest)
    except BaseException as error:
        temp.unlink(missing_ok=True)
        if isinstance(error, age_passphrase.AgeError):
            raise SealError(str(error)) from None
        if isinstance(error, OSError):
            raise SealError(f"The copy could not be unsealed into {dest.name}: {error.strerror or error}.") from error
        raise
    fsync_path(dest.parent)  # make the rename durable
    written.finish()
    return written.sha256.hexdigest(), written.size
