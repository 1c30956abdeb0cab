"""Sealing (zstd, then age) and unsealing, checked against the real ``age``, ``age-keygen`` and ``zstd`` tools."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pyrage
import pytest

from app.services import age_passphrase, sealing
from app.services.sealing import SealError, check_identity, check_recipient, seal, unseal
from tests.support.age_tty import run_age_with_passphrase

if sys.version_info >= (3, 14):
    from compression.zstd import compress as zstd_compress
    from compression.zstd import decompress as zstd_decompress
else:
    from backports.zstd import compress as zstd_compress
    from backports.zstd import decompress as zstd_decompress

PASSPHRASE = "correct horse battery staple"
FAST = 10  # scrypt work factor for tests: 2^10 instead of age's 2^18


@pytest.fixture
def key_file(tmp_path) -> Path:
    """A key file made by the real age-keygen (comments, public key line, private key)."""
    path = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
    return path


def public_key(key_file: Path) -> str:
    return next(line.split(": ")[1] for line in key_file.read_text().splitlines() if "public key" in line)


@pytest.fixture
def backup(tmp_path) -> Path:
    """A real SQLite file of a few MB: text that compresses, blobs that do not."""
    path = tmp_path / "backup.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT, payload BLOB)")
        connection.executemany(
            "INSERT INTO items (title, payload) VALUES (?, ?)",
            ((f"item {n} backup schedule", os.urandom(n % 3000)) for n in range(2000)),
        )
    connection.close()
    return path


def sha256_file(path: Path) -> str:
    return subprocess.run(["sha256sum", path], check=True, capture_output=True, text=True).stdout.split()[0]


def stat_size(path: Path) -> int:
    return int(subprocess.run(["stat", "-c", "%s", path], check=True, capture_output=True, text=True).stdout)


def seal_to(path: Path, source: Path, **options) -> sealing.Sealed:
    with path.open("wb") as out:
        return seal(source, out, **options)


def age_decrypt_with_key(sealed: Path, key_file: Path) -> bytes:
    """``age -d -i key.txt sealed | zstd -d``, the owner's manual restore."""
    command = f"age -d -i '{key_file}' '{sealed}' | zstd -d"
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, capture_output=True).stdout


def age_decrypt_with_passphrase(sealed: Path, passphrase: str) -> bytes:
    """``age -d`` answering its passphrase prompt on a terminal, then ``zstd -d``."""
    compressed = sealed.with_name(sealed.name + ".zst")
    code, transcript = run_age_with_passphrase(["-d", "-o", compressed, sealed], passphrase)
    assert code == 0, transcript
    return subprocess.run(["zstd", "-d", "-c", compressed], check=True, capture_output=True).stdout


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith(sealing.TEMP_PREFIX))


# Sealing: the standard tools read what we write


def test_x25519_copy_opens_with_age_and_zstd_and_reports_true_hashes(tmp_path, backup, key_file):
    sealed_path = tmp_path / f"backup.sqlite3{sealing.SEALED_SUFFIX}"
    sealed = seal_to(sealed_path, backup, recipient=public_key(key_file))

    assert age_decrypt_with_key(sealed_path, key_file) == backup.read_bytes()
    assert (sealed.plain_sha256, sealed.plain_size) == (sha256_file(backup), stat_size(backup))
    assert (sealed.sealed_sha256, sealed.sealed_size) == (sha256_file(sealed_path), stat_size(sealed_path))
    assert sealed.sealed_size < sealed.plain_size  # compressed before encryption


def test_passphrase_copy_opens_with_age_on_a_terminal_and_with_pyrage(tmp_path, backup):
    sealed_path = tmp_path / "backup.zst.age"
    sealed = seal_to(sealed_path, backup, passphrase=PASSPHRASE, work_factor=FAST)

    assert age_decrypt_with_passphrase(sealed_path, PASSPHRASE) == backup.read_bytes()
    compressed = pyrage.passphrase.decrypt(sealed_path.read_bytes(), PASSPHRASE)
    assert zstd_decompress(compressed) == backup.read_bytes()
    assert (sealed.plain_sha256, sealed.plain_size) == (sha256_file(backup), stat_size(backup))
    assert (sealed.sealed_sha256, sealed.sealed_size) == (sha256_file(sealed_path), stat_size(sealed_path))


def test_passphrase_copy_uses_ages_default_work_factor_unless_told(tmp_path, backup):
    with (tmp_path / "default.age").open("wb") as out:
        seal(backup, out, passphrase=PASSPHRASE)
    with (tmp_path / "default.age").open("rb") as source:
        assert age_passphrase.read_header(source).stanzas[0].args[2] == b"18"
    seal_to(tmp_path / "fast.age", backup, passphrase=PASSPHRASE, work_factor=FAST)
    with (tmp_path / "fast.age").open("rb") as source:
        assert age_passphrase.read_header(source).stanzas[0].args[2] == b"10"


def test_empty_file_seals_and_opens_in_both_modes(tmp_path, key_file):
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    seal_to(tmp_path / "x.age", empty, recipient=public_key(key_file))
    seal_to(tmp_path / "p.age", empty, passphrase=PASSPHRASE, work_factor=FAST)

    assert age_decrypt_with_key(tmp_path / "x.age", key_file) == b""
    assert age_decrypt_with_passphrase(tmp_path / "p.age", PASSPHRASE) == b""
    with (tmp_path / "x.age").open("rb") as source:
        assert unseal(source, tmp_path / "x.out", identity=key_file.read_text()) == (hashlib.sha256().hexdigest(), 0)
    with (tmp_path / "p.age").open("rb") as source:
        assert unseal(source, tmp_path / "p.out", passphrase=PASSPHRASE) == (hashlib.sha256().hexdigest(), 0)


def plain_file_compressing_to(tmp_path: Path, compressed_size: int) -> Path:
    """Random bytes whose zstd frame, as seal() makes it, is exactly ``compressed_size`` bytes."""
    data = os.urandom(compressed_size)
    for size in range(compressed_size, compressed_size - 100, -1):
        if sum(len(piece) for piece in sealing.compressed_chunks(io.BytesIO(data[:size]))) == compressed_size:
            path = tmp_path / f"plain-{compressed_size}"
            path.write_bytes(data[:size])
            return path
    raise AssertionError(f"no plaintext compresses to {compressed_size} bytes")


@pytest.mark.parametrize(("compressed_size", "chunks"), [(64 * 1024, 1), (64 * 1024 + 1, 2)])
def test_payload_chunk_boundary_opens_with_age(tmp_path, key_file, compressed_size, chunks):
    plain = plain_file_compressing_to(tmp_path, compressed_size)
    sealed = seal_to(tmp_path / "p.age", plain, passphrase=PASSPHRASE, work_factor=FAST)
    seal_to(tmp_path / "x.age", plain, recipient=public_key(key_file))

    with (tmp_path / "p.age").open("rb") as source:
        header = age_passphrase.read_header(source)
    # One 16-byte tag per 64 KiB chunk: a full last chunk is not followed by an empty one.
    assert sealed.sealed_size == len(header.raw) + 16 + compressed_size + 16 * chunks
    assert age_decrypt_with_passphrase(tmp_path / "p.age", PASSPHRASE) == plain.read_bytes()
    assert age_decrypt_with_key(tmp_path / "x.age", key_file) == plain.read_bytes()
    for name, options in (("p.age", {"passphrase": PASSPHRASE}), ("x.age", {"identity": key_file.read_text()})):
        with (tmp_path / name).open("rb") as source:
            assert unseal(source, tmp_path / "out", **options) == (sha256_file(plain), stat_size(plain))


def test_progress_reports_plain_bytes_every_few_mb_and_at_the_end(tmp_path, key_file):
    plain = tmp_path / "big"
    plain.write_bytes(os.urandom(1024 * 1024) * 20)
    seen: list[int] = []
    seal_to(tmp_path / "big.age", plain, recipient=public_key(key_file), progress=seen.append)

    assert seen == sorted(seen) and seen[-1] == 20 * 1024 * 1024
    assert 2 <= len(seen) <= 4  # every 8 MB, not every read


# Unsealing: round trips, and files made by other age implementations


@pytest.mark.parametrize("mode", ["x25519", "passphrase"])
def test_round_trip_writes_the_original_bytes_privately_and_atomically(tmp_path, backup, key_file, mode):
    options = {"recipient": public_key(key_file)} if mode == "x25519" else {"passphrase": PASSPHRASE}
    sealed = seal_to(tmp_path / "copy.age", backup, work_factor=FAST, **options)
    dest = tmp_path / "restored" / "backup.sqlite3"
    dest.parent.mkdir()
    reported: list[int] = []
    opener = {"identity": key_file.read_text()} if mode == "x25519" else {"passphrase": PASSPHRASE}
    with (tmp_path / "copy.age").open("rb") as source:
        result = unseal(source, dest, progress=reported.append, **opener)

    assert result == (sealed.plain_sha256, sealed.plain_size)
    assert dest.read_bytes() == backup.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o600
    assert reported[-1] == sealed.plain_size
    assert os.listdir(dest.parent) == ["backup.sqlite3"]


def test_opens_a_passphrase_file_made_by_age_p_on_a_terminal(tmp_path, backup):
    compressed = tmp_path / "backup.zst"
    subprocess.run(["zstd", "-q", "-o", compressed, backup], check=True)
    code, transcript = run_age_with_passphrase(["-p", "-o", tmp_path / "by-age.age", compressed], PASSPHRASE)
    assert code == 0, transcript

    with (tmp_path / "by-age.age").open("rb") as source:
        result = unseal(source, tmp_path / "out.sqlite3", passphrase=PASSPHRASE)
    assert result == (sha256_file(backup), stat_size(backup))


@pytest.mark.slow  # pyrage's passphrase mode picks a work factor of about a second, several here
def test_opens_files_made_by_pyrage_in_both_modes(tmp_path, backup, key_file):
    compressed = zstd_compress(backup.read_bytes())
    by_passphrase = pyrage.passphrase.encrypt(compressed, PASSPHRASE)
    by_key = pyrage.encrypt(compressed, [pyrage.x25519.Recipient.from_str(public_key(key_file))])

    assert unseal(io.BytesIO(by_passphrase), tmp_path / "a", passphrase=PASSPHRASE)[0] == sha256_file(backup)
    assert unseal(io.BytesIO(by_key), tmp_path / "b", identity=key_file.read_text())[0] == sha256_file(backup)


# Unsealing: every refusal is a readable SealError and leaves nothing behind


@pytest.fixture
def sealed_pair(tmp_path, backup, key_file) -> dict[str, bytes]:
    seal_to(tmp_path / "x.age", backup, recipient=public_key(key_file))
    seal_to(tmp_path / "p.age", backup, passphrase=PASSPHRASE, work_factor=FAST)
    return {"x25519": (tmp_path / "x.age").read_bytes(), "passphrase": (tmp_path / "p.age").read_bytes()}


def opener(mode: str, key_file: Path) -> dict[str, str]:
    return {"identity": key_file.read_text()} if mode == "x25519" else {"passphrase": PASSPHRASE}


def refused(data: bytes, tmp_path: Path, **options) -> str:
    """Unseal ``data`` expecting a SealError; check that nothing was left behind; return the message."""
    dest = tmp_path / "out" / "restored.sqlite3"
    dest.parent.mkdir(exist_ok=True)
    with pytest.raises(SealError) as caught:
        unseal(io.BytesIO(data), dest, **options)
    assert os.listdir(dest.parent) == []
    return str(caught.value)


def test_refuses_the_wrong_key_and_the_wrong_passphrase(tmp_path, sealed_pair, key_file):
    other = pyrage.x25519.Identity.generate()
    assert refused(sealed_pair["x25519"], tmp_path, identity=str(other)) == "The key does not open this copy."
    message = refused(sealed_pair["passphrase"], tmp_path, passphrase="not it")
    assert message == "The passphrase does not open this copy."


def test_refuses_a_file_that_is_not_age(tmp_path, backup):
    message = refused(backup.read_bytes(), tmp_path, passphrase=PASSPHRASE)
    assert message == "This is not an age-encrypted file."
    assert refused(b"", tmp_path, identity=str(pyrage.x25519.Identity.generate())) == message


@pytest.mark.parametrize("mode", ["x25519", "passphrase"])
def test_refuses_a_truncated_copy(tmp_path, sealed_pair, key_file, mode):
    data = sealed_pair[mode]
    for cut in (len(data) - 1, len(data) - 70_000, 300):
        assert refused(data[:cut], tmp_path, **opener(mode, key_file)).startswith("The copy is damaged: ")


def test_says_when_a_passphrase_copy_lost_whole_chunks(tmp_path, sealed_pair):
    data = sealed_pair["passphrase"]
    header = age_passphrase.read_header(io.BytesIO(data))
    cut = len(header.raw) + 16 + 65536 + 16  # just after the first chunk
    assert refused(data[:cut], tmp_path, passphrase=PASSPHRASE) == (
        "The copy is damaged: it was cut short (its end is missing)."
    )


@pytest.mark.parametrize("mode", ["x25519", "passphrase"])
def test_refuses_a_changed_chunk(tmp_path, sealed_pair, key_file, mode):
    data = bytearray(sealed_pair[mode])
    data[len(data) // 2] ^= 0x01
    message = refused(bytes(data), tmp_path, **opener(mode, key_file))
    assert message.startswith("The copy is damaged: ")


def test_refuses_a_changed_passphrase_header(tmp_path, sealed_pair):
    data = sealed_pair["passphrase"]
    header = age_passphrase.read_header(io.BytesIO(data))
    mac_at = header.raw.rindex(b"--- ") + 4
    changed = data[:mac_at] + (b"A" if data[mac_at : mac_at + 1] != b"A" else b"B") + data[mac_at + 1 :]
    assert refused(changed, tmp_path, passphrase=PASSPHRASE) == "The copy is damaged: its header was changed."


def test_refuses_an_excessive_work_factor_without_trying_it(tmp_path, sealed_pair):
    data = sealed_pair["passphrase"]
    header = age_passphrase.read_header(io.BytesIO(data))
    stanza_line = header.raw.split(b"\n")[1]
    changed = data.replace(stanza_line, stanza_line[: -len(b"10")] + b"30", 1)
    message = refused(changed, tmp_path, passphrase=PASSPHRASE)
    assert "work factor of 2^30" in message and "2^22" in message


def test_refuses_age_data_that_is_not_zstd(tmp_path, key_file):
    recipient = pyrage.x25519.Recipient.from_str(public_key(key_file))
    not_zstd = pyrage.encrypt(b"plain text, never compressed" * 100, [recipient])
    assert refused(not_zstd, tmp_path, identity=key_file.read_text()) == "The decrypted copy is not zstd data."
    cut_frame = io.BytesIO()
    writer = age_passphrase.PassphraseWriter(cut_frame, PASSPHRASE, work_factor=FAST)
    writer.write(zstd_compress(os.urandom(5000))[:-100])
    writer.close()
    message = refused(cut_frame.getvalue(), tmp_path, passphrase=PASSPHRASE)
    assert message == "The decrypted copy is not zstd data (it ends inside a frame)."


def test_says_which_secret_a_copy_needs(tmp_path, sealed_pair, key_file):
    assert "sealed with a passphrase" in refused(sealed_pair["passphrase"], tmp_path, identity=key_file.read_text())
    assert "needs the private key" in refused(sealed_pair["x25519"], tmp_path, passphrase=PASSPHRASE)


# Checking pasted keys


def test_accepts_a_public_key_and_normalises_it(key_file):
    key = public_key(key_file)
    assert check_recipient(f"  {key.upper()}\n") == key


VALID_RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"  # age's README example


def test_the_bad_checksum_example_differs_from_a_valid_key_by_one_character():
    assert check_recipient(VALID_RECIPIENT) == VALID_RECIPIENT


BAD_RECIPIENTS = {
    "bad checksum": VALID_RECIPIENT[:-1] + "q",
    "ssh key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@example",
    "10 KB of text": "age1" + "x" * 10_000,
    "empty": "   ",
    "cut short": VALID_RECIPIENT[:-8],
}


@pytest.mark.parametrize("text", BAD_RECIPIENTS.values(), ids=BAD_RECIPIENTS.keys())
def test_refuses_what_is_not_an_age_public_key(text):
    with pytest.raises(SealError, match=r"is not an age public key \(age1\.\.\.\)") as caught:
        check_recipient(text)
    assert len(str(caught.value)) < 120


def test_accepts_a_whole_key_file_as_identity(key_file):
    secret = key_file.read_text().strip().splitlines()[-1]
    assert check_identity(key_file.read_text()) == secret
    assert check_identity(f"\n\n  {secret.lower()}  \n") == secret


BAD_IDENTITIES = {
    "bad checksum": "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEQ",
    "public key": VALID_RECIPIENT,
    "ssh private key": textwrap.dedent("""\
        -----BEGIN OPENSSH PRIVATE KEY-----
        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
        -----END OPENSSH PRIVATE KEY-----"""),
    "10 KB of text": "AGE-SECRET-KEY-1" + "Q" * 10_000,
    "empty": "# only a comment\n\n",
}


@pytest.mark.parametrize("text", BAD_IDENTITIES.values(), ids=BAD_IDENTITIES.keys())
def test_refuses_what_is_not_one_age_private_key_without_quoting_it(text):
    with pytest.raises(SealError, match="AGE-SECRET-KEY-1") as caught:
        check_identity(text)
    assert text.strip()[:20] not in str(caught.value)


def test_refuses_two_keys_and_an_empty_passphrase(tmp_path, backup):
    one, two = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    with pytest.raises(SealError, match="not several"):
        check_identity(f"{one}\n{two}\n")
    with pytest.raises(SealError, match="The passphrase is empty"), (tmp_path / "x").open("wb") as out:
        seal(backup, out, passphrase="")
    with pytest.raises(ValueError), (tmp_path / "x").open("wb") as out:
        seal(backup, out, recipient=str(one.to_public()), passphrase=PASSPHRASE)


# Memory: sealing streams


# VmHWM, not getrusage's ru_maxrss: Linux carries the parent's peak over fork and exec into the latter.
MEASURE = """
import sys
from pathlib import Path
from app.services import sealing
import pyrage
key = pyrage.x25519.Identity.generate()
with open(sys.argv[2], "wb") as out:
    sealing.seal(Path(sys.argv[1]), out, recipient=str(key.to_public()))
with open(sys.argv[2], "rb") as source:
    sealing.unseal(source, Path(sys.argv[3]), identity=str(key))
peak_kb = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(peak_kb) // 1024)
"""


@pytest.mark.slow
def test_sealing_and_unsealing_300_mb_stays_far_below_its_size_in_memory(tmp_path):
    plain = tmp_path / "plain"
    with plain.open("wb") as file:
        for _ in range(300):
            file.write(os.urandom(1024 * 1024))
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, plain, tmp_path / "sealed", tmp_path / "restored"],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert int(result.stdout) < 200  # MiB of peak RSS, for 300 MiB in and out
    assert sha256_file(tmp_path / "restored") == sha256_file(plain)
