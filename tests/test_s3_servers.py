"""The real S3 servers tests use, and the boto3 settings that work against both (quirks in s3_servers' docstring)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from tests.support.s3_servers import MULTIPART, make_client, remove_seaweed_sockets
from tests.support.waiting import wait_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def error_code(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def test_put_and_head_object_keep_metadata_but_not_its_case(s3_server):
    client = s3_server.client()
    s3_server.make_bucket("copies")
    client.put_object(Bucket="copies", Key="a/b.zst.age", Body=b"hello", Metadata={"sha256": SHA, "plain-size": "5"})

    head = client.head_object(Bucket="copies", Key="a/b.zst.age")
    assert head["ContentLength"] == 5
    assert head["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    # rclone answers Go's canonical header case; SeaweedFS lower case: compare case-insensitively.
    expected = {"rclone": {"Sha256": SHA, "Plain-Size": "5"}, "seaweedfs": {"sha256": SHA, "plain-size": "5"}}
    assert head["Metadata"] == expected[s3_server.name]


def test_upload_file_goes_multipart_above_the_threshold(s3_server, tmp_path):
    client = s3_server.client()
    s3_server.make_bucket("copies")
    big = tmp_path / "big"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    client.upload_file(str(big), "copies", "big", Config=MULTIPART, ExtraArgs={"Metadata": {"sha256": SHA}})

    head = client.head_object(Bucket="copies", Key="big")
    assert head["ContentLength"] == 20 * 1024 * 1024
    assert {key.lower(): value for key, value in head["Metadata"].items()} == {"sha256": SHA}
    data = big.read_bytes()
    part_md5s = b"".join(hashlib.md5(data[at : at + 8 * 1024 * 1024]).digest() for at in range(0, len(data), 8 << 20))
    # SeaweedFS gives AWS's multipart ETag (MD5 of the part MD5s, "-parts"); rclone the MD5 of the whole object.
    expected = {"rclone": hashlib.md5(data).hexdigest(), "seaweedfs": f"{hashlib.md5(part_md5s).hexdigest()}-3"}
    assert head["ETag"] == f'"{expected[s3_server.name]}"'


def test_list_get_and_delete_objects(s3_server):
    client = s3_server.client()
    s3_server.make_bucket("copies")
    body = os.urandom(3 * 1024 * 1024)
    for key in ("app/one.zst.age", "app/two.zst.age", "other/three"):
        client.put_object(Bucket="copies", Key=key, Body=body)

    listed = client.list_objects_v2(Bucket="copies", Prefix="app/")["Contents"]
    assert [(item["Key"], item["Size"]) for item in listed] == [
        ("app/one.zst.age", len(body)),
        ("app/two.zst.age", len(body)),
    ]

    streamed = hashlib.sha256()
    for chunk in client.get_object(Bucket="copies", Key="app/one.zst.age")["Body"].iter_chunks(64 * 1024):
        streamed.update(chunk)
    assert streamed.hexdigest() == hashlib.sha256(body).hexdigest()

    client.delete_object(Bucket="copies", Key="app/one.zst.age")
    assert error_code(lambda: client.head_object(Bucket="copies", Key="app/one.zst.age")) == "404"
    assert [item["Key"] for item in client.list_objects_v2(Bucket="copies", Prefix="app/")["Contents"]] == [
        "app/two.zst.age"
    ]


def test_missing_bucket_and_wrong_keys_give_these_error_codes(s3_server):
    s3_server.make_bucket("copies")
    client = s3_server.client()
    assert error_code(lambda: client.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")) == "NoSuchBucket"
    assert error_code(lambda: client.list_objects_v2(Bucket="no-such-bucket")) == "NoSuchBucket"
    assert error_code(lambda: client.head_bucket(Bucket="no-such-bucket")) == "404"  # HEAD answers have no body

    wrong_secret = make_client(s3_server.endpoint, s3_server.access_key, s3_server.secret_key[:-1] + "!")
    assert error_code(lambda: wrong_secret.put_object(Bucket="copies", Key="k", Body=b"x")) == "SignatureDoesNotMatch"
    unknown_key = make_client(s3_server.endpoint, "AKNOSUCHKEY000000000", s3_server.secret_key)
    assert error_code(lambda: unknown_key.list_objects_v2(Bucket="copies")) == "InvalidAccessKeyId"


def test_virtual_host_addressing_falls_back_to_path_style_on_an_ip_address(s3_server):
    s3_server.make_bucket("copies")
    client = make_client(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3={"addressing_style": "virtual"}
    )
    client.put_object(Bucket="copies", Key="k", Body=b"x")
    # botocore cannot put a bucket in front of an IP address, so it quietly keeps path style.
    assert client.list_objects_v2(Bucket="copies")["KeyCount"] == 1


def test_paused_server_times_out_and_answers_again_when_resumed(s3_server):
    s3_server.make_bucket("copies")
    impatient = s3_server.client(retries={"max_attempts": 1}, read_timeout=0.5)
    s3_server.pause()
    with pytest.raises(ReadTimeoutError):
        impatient.list_objects_v2(Bucket="copies")
    s3_server.resume()
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket="copies")


def test_an_empty_listing_may_have_no_key_count(s3_server):
    s3_server.make_bucket("copies")
    listing = s3_server.client().list_objects_v2(Bucket="copies")
    assert "Contents" not in listing
    # rclone leaves KeyCount out when it is 0: count Contents, never read KeyCount.
    assert listing.get("KeyCount") == {"rclone": None, "seaweedfs": 0}[s3_server.name]


@pytest.mark.parametrize("stop", ["kill", "stop"])
def test_restarted_server_keeps_its_objects_but_rclone_forgets_their_metadata(s3_server, stop):
    s3_server.make_bucket("copies")
    s3_server.client().put_object(Bucket="copies", Key="k", Body=b"kept", Metadata={"sha256": SHA})
    getattr(s3_server, stop)()
    # A clean stop: SeaweedFS exits 0, rclone 143 (128 + SIGTERM, its own exit).
    expected_exit = {"kill": {-signal.SIGKILL}, "stop": {0, 128 + signal.SIGTERM}}[stop]
    assert s3_server.process.returncode in expected_exit

    s3_server.start()
    head = s3_server.client().head_object(Bucket="copies", Key="k")
    assert head["ContentLength"] == 4
    assert s3_server.client().get_object(Bucket="copies", Key="k")["Body"].read() == b"kept"
    # `rclone serve s3` keeps user metadata in memory only (its --help says so).
    expected = {"rclone": {}, "seaweedfs": {"sha256": SHA}}
    assert {key.lower(): value for key, value in head["Metadata"].items()} == expected[s3_server.name]


def test_clean_stop_frees_the_port_and_leaves_nothing_outside_its_folder(s3_server):
    ports = s3_server.ports
    s3_server.stop()
    assert s3_server.process.returncode is not None
    assert not [path for port in ports for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]
    with pytest.raises(Exception, match="Could not connect"):
        s3_server.client(retries={"max_attempts": 1}).list_buckets()


ORPHAN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tests.support.s3_servers import SERVERS
    server = SERVERS[sys.argv[1]](Path(sys.argv[2])).start()
    print(server.process.pid, *server.ports, flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("name", ["rclone", "seaweedfs"])
def test_server_dies_with_a_killed_test_process(tmp_path, name):
    test_process = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, name, str(tmp_path / "server")], cwd=PROJECT_ROOT, stdout=subprocess.PIPE
    )
    server_pid, *ports = map(int, test_process.stdout.readline().split())
    test_process.kill()
    test_process.wait(10)

    def gone() -> bool:
        try:
            state = Path(f"/proc/{server_pid}/stat").read_text().split(") ")[1][0]
        except FileNotFoundError:
            return True
        return state == "Z"  # dead, waiting to be reaped by init

    wait_for(gone, 10, message=f"{name} server {server_pid} outlived the process that started it")
    remove_seaweed_sockets(ports)  # what the dead server's stop() would have done
