"""age v1 (https://age-encryption.org/v1) passphrase mode, streamed: scrypt stanza, header MAC, STREAM payload.

pyrage encrypts passphrase files only as one byte string in memory, and backups can be
many GB, so this module writes and reads the format itself, 64 KiB at a time. It also
parses any age header, so that a caller can tell "not age at all", "made with a
passphrase" and "made for a key" apart before choosing how to decrypt.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

VERSION_LINE = b"age-encryption.org/v1\n"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
DEFAULT_WORK_FACTOR = 18  # age's own default: 2^18 scrypt iterations, 256 MiB for about a second
# age itself refuses more than 2^22 (4 GiB of memory): a file must not be able to make us spend that.
MAX_WORK_FACTOR = 22
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
NONCE_SIZE = 16
FILE_KEY_SIZE = 16
# Real headers are a few hundred bytes; a bound keeps a stray binary file from being read whole.
MAX_HEADER_SIZE = 64 * 1024
_ZERO_NONCE = bytes(12)
_DECIMAL = re.compile(rb"[1-9][0-9]*\Z")


class AgeError(Exception):
    """The file cannot be decrypted; the message says why in plain words."""


class NotAgeFile(AgeError):
    def __init__(self) -> None:
        super().__init__("This is not an age-encrypted file.")


class WrongPassphrase(AgeError):
    def __init__(self) -> None:
        super().__init__("The passphrase does not open this copy.")


class Damaged(AgeError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"The copy is damaged: {detail}.")


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: its arguments (the first is its type) and its decoded body."""

    args: tuple[bytes, ...]
    body: bytes


@dataclass(frozen=True)
class Header:
    """A parsed age v1 header; ``raw`` is its exact bytes, to replay them to another decoder."""

    raw: bytes
    stanzas: tuple[Stanza, ...]
    mac: bytes

    @property
    def is_passphrase(self) -> bool:
        return any(stanza.args[0] == b"scrypt" for stanza in self.stanzas)


def encode_base64(data: bytes) -> bytes:
    """age's base64: standard alphabet, no padding."""
    return base64.b64encode(data).rstrip(b"=")


def decode_base64(text: bytes) -> bytes:
    """Decode age's base64, refusing padding and non-canonical encodings, as the spec requires."""
    if b"=" in text or len(text) % 4 == 1:
        raise Damaged("its header is not valid base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise Damaged("its header is not valid base64") from None
    if encode_base64(data) != text:
        raise Damaged("its header is not canonical base64")
    return data


def _derive(key: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=salt, info=info).derive(key)


def _header_mac(file_key: bytes, header_up_to_dashes: bytes) -> bytes:
    return hmac.digest(_derive(file_key, None, b"header"), header_up_to_dashes, "sha256")


def _scrypt_key(passphrase: str, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(passphrase.encode("utf-8"))


def _read_line(source: BinaryIO, budget: int) -> bytes:
    """One header line, newline included; byte by byte so that the payload stays unread."""
    line = bytearray()
    while not line.endswith(b"\n"):
        if len(line) >= budget:
            raise Damaged("its header is too long")
        byte = source.read(1)
        if not byte:
            raise Damaged("it ends inside its header")
        line += byte
    return bytes(line)


def read_header(source: BinaryIO) -> Header:
    """Read and parse an age v1 header, leaving ``source`` at the first payload byte."""
    first = source.read(len(VERSION_LINE))
    if first != VERSION_LINE:
        raise NotAgeFile()
    raw = bytearray(first)
    stanzas: list[Stanza] = []
    line = _read_line(source, MAX_HEADER_SIZE - len(raw))
    while line.startswith(b"-> "):
        raw += line
        args = tuple(line[3:-1].split(b" "))
        if not all(args):
            raise Damaged("its header has an empty stanza argument")
        body = bytearray()
        while True:
            body_line = _read_line(source, MAX_HEADER_SIZE - len(raw))
            raw += body_line
            text = body_line[:-1]
            if len(text) > 64:
                raise Damaged("its header has an over-long line")
            body += text
            if len(text) < 64:
                break
        stanzas.append(Stanza(args, decode_base64(bytes(body))))
        line = _read_line(source, MAX_HEADER_SIZE - len(raw))
    if not stanzas or not line.startswith(b"--- "):
        raise Damaged("its header is malformed")
    raw += line
    mac = decode_base64(line[4:-1])
    if len(mac) != 32:
        raise Damaged("its header is malformed")
    return Header(bytes(raw), tuple(stanzas), mac)


class PassphraseWriter:
    """A write-only stream that age-encrypts what it is given to ``out``; ``close()`` ends the file."""

    def __init__(self, out: BinaryIO, passphrase: str, *, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        if not 1 <= work_factor <= MAX_WORK_FACTOR:
            raise ValueError(f"work factor must be 1..{MAX_WORK_FACTOR}")
        file_key = os.urandom(FILE_KEY_SIZE)
        salt = os.urandom(16)
        wrapped = ChaCha20Poly1305(_scrypt_key(passphrase, salt, work_factor)).encrypt(_ZERO_NONCE, file_key, None)
        header = (
            VERSION_LINE
            + b"-> scrypt "
            + encode_base64(salt)
            + b" %d\n" % work_factor
            + encode_base64(wrapped)
            + b"\n---"
        )
        nonce = os.urandom(NONCE_SIZE)
        out.write(header + b" " + encode_base64(_header_mac(file_key, header)) + b"\n" + nonce)
        self._out = out
        self._aead = ChaCha20Poly1305(_derive(file_key, nonce, b"payload"))
        self._counter = 0
        self._pending = bytearray()
        self.closed = False

    def _seal_chunk(self, chunk: bytes | bytearray, *, last: bool) -> None:
        nonce = self._counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        self._out.write(self._aead.encrypt(nonce, bytes(chunk), None))
        self._counter += 1

    def write(self, data: bytes) -> int:
        self._pending += data
        # A full chunk is sealed only once more data follows: the last chunk carries its own flag.
        while len(self._pending) > CHUNK_SIZE:
            self._seal_chunk(self._pending[:CHUNK_SIZE], last=False)
            del self._pending[:CHUNK_SIZE]
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._seal_chunk(self._pending, last=True)
            self._pending.clear()
            self.closed = True


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of ``source`` (network streams return short reads)."""
    parts = []
    while size:
        part = source.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def unwrap_file_key(header: Header, passphrase: str) -> bytes:
    """The file key from the header's scrypt stanza, once the header MAC proves the passphrase and header."""
    if len(header.stanzas) != 1 or header.stanzas[0].args[0] != b"scrypt":
        raise Damaged("a passphrase stanza must be the only one in its header")
    stanza = header.stanzas[0]
    if len(stanza.args) != 3 or not _DECIMAL.match(stanza.args[2]):
        raise Damaged("its passphrase stanza is malformed")
    salt = decode_base64(stanza.args[1])
    work_factor = int(stanza.args[2])
    if len(salt) != 16 or len(stanza.body) != 32:
        raise Damaged("its passphrase stanza is malformed")
    if work_factor > MAX_WORK_FACTOR:
        raise AgeError(
            f"This copy asks for a passphrase work factor of 2^{work_factor}, above the limit of "
            f"2^{MAX_WORK_FACTOR}: it would take too much time and memory to open, so it was refused."
        )
    key = _scrypt_key(passphrase, salt, work_factor)
    try:
        file_key = ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, stanza.body, None)
    except InvalidTag:
        raise WrongPassphrase() from None
    dashes = header.raw[: header.raw.rindex(b"\n---") + 4]
    if not hmac.compare_digest(_header_mac(file_key, dashes), header.mac):
        raise Damaged("its header was changed")
    return file_key


def decrypt_payload(source: BinaryIO, file_key: bytes) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk; raise ``Damaged`` at the first chunk that does not authenticate."""
    nonce = _read_full(source, NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise Damaged("it ends before its data")
    aead = ChaCha20Poly1305(_derive(file_key, nonce, b"payload"))
    sealed_size = CHUNK_SIZE + TAG_SIZE
    counter = 0
    current = _read_full(source, sealed_size)
    if not current:
        raise Damaged("it ends before its data")
    while True:
        following = _read_full(source, sealed_size)
        last = not following
        prefix = counter.to_bytes(11, "big")
        try:
            chunk = aead.decrypt(prefix + (b"\x01" if last else b"\x00"), current, None)
        except InvalidTag:
            raise Damaged(_chunk_failure(aead, prefix, current, last=last, offset=counter * CHUNK_SIZE)) from None
        if last and not chunk and counter:
            raise Damaged("it ends with an empty chunk")
        yield chunk
        if last:
            return
        counter += 1
        current = following


def _chunk_failure(aead: ChaCha20Poly1305, prefix: bytes, sealed: bytes, *, last: bool, offset: int) -> str:
    """Why a chunk did not authenticate, as precisely as the format allows."""
    if last and len(sealed) == CHUNK_SIZE + TAG_SIZE:
        # A full chunk that opens as "not last" proves that the real end was cut off.
        try:
            aead.decrypt(prefix + b"\x00", sealed, None)
        except InvalidTag:
            pass
        else:
            return "it was cut short (its end is missing)"
    if last:
        return f"it was cut short, or changed after byte {offset:,} of its compressed data"
    return f"it was changed at byte {offset:,} of its compressed data"
