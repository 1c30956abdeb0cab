"""Sealing cost: seal and unseal the bench database (zstd, then age), each in a fresh process.

``python -m bench.sealing [--size-mb 1024]`` prints, per mode (X25519 key, passphrase) and
direction: wall time, throughput of plaintext, CPU time, and the process's peak resident
memory (VmHWM; the interpreter with its imports is about 60 MB of it), and the sealed
size over the plain size. Not yet one of ``python -m bench``'s measurements.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.data import ensure_dataset

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Runs in the child: one seal or unseal, then its own figures as JSON.
CHILD = """
import json, os, sys, time
from pathlib import Path
from app.services import sealing
action, mode, plain, sealed, secret = sys.argv[1:6]
options = {"recipient" if action == "seal" else "identity": secret} if mode == "x25519" else {"passphrase": secret}
started, cpu = time.monotonic(), os.times()
if action == "seal":
    with open(sealed, "wb") as out:
        sealing.seal(Path(plain), out, **options)
else:
    with open(sealed, "rb") as source:
        sealing.unseal(source, Path(plain), **options)
wall, after = time.monotonic() - started, os.times()
peak_kb = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"wall_s": round(wall, 2), "cpu_s": round(after.user + after.system - cpu.user - cpu.system, 2),
                  "peak_rss_mb": int(peak_kb) // 1024}))
"""


def _run(action: str, mode: str, plain: Path, sealed: Path, secret: str) -> dict:
    command = [sys.executable, "-c", CHILD, action, mode, str(plain), str(sealed), secret]
    answer = subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
    return json.loads(answer.stdout)


def measure_sealing(source: Path) -> dict:
    """Seal ``source`` with a key and with a passphrase, unseal each; figures by mode and direction."""
    import pyrage

    key = pyrage.x25519.Identity.generate()
    secrets = {"x25519": (str(key.to_public()), str(key)), "passphrase": ("bench passphrase",) * 2}
    plain_size = source.stat().st_size
    results: dict = {"plain_bytes": plain_size}
    with tempfile.TemporaryDirectory(prefix="bench-sealing-") as folder:
        for mode, (seal_secret, open_secret) in secrets.items():
            sealed, restored = Path(folder) / f"{mode}.zst.age", Path(folder) / f"{mode}.sqlite3"
            seal = _run("seal", mode, source, sealed, seal_secret)
            unseal = _run("unseal", mode, restored, sealed, open_secret)
            if restored.stat().st_size != plain_size:
                raise RuntimeError(f"{mode}: the unsealed copy has {restored.stat().st_size} bytes, not {plain_size}")
            for figures in (seal, unseal):
                figures["plain_mb_per_s"] = round(plain_size / 2**20 / figures["wall_s"])
            results[mode] = {
                "seal": seal,
                "unseal": unseal,
                "sealed_over_plain": round(sealed.stat().st_size / plain_size, 3),
            }
            restored.unlink()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sealing", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="bench database size in MiB (default 1024)")
    args = parser.parse_args(argv)
    dataset = ensure_dataset(args.size_mb, log=lambda message: print(message, file=sys.stderr))
    print(json.dumps(measure_sealing(dataset.path), indent=2))


if __name__ == "__main__":
    main()
