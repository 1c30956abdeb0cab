"""Settings from the environment: validated with readable errors, defaults, the stored secret key."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from app.config import ConfigError, load_settings

# A fixed zone keeps tests from depending on the machine's local zone.
BASE_ENV = {"SCHEDULER_TIMEZONE": "UTC"}


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("SCHEDULER_ENABLED", "maybe", ["true", "false", "yes", "no", "1", "0"]),
        ("SCHEDULER_TIMEZONE", "Mars/Olympus", ["IANA time zone", "Europe/Berlin"]),
        ("SCHEDULER_TIMEZONE", "../../etc/passwd", ["IANA time zone"]),
        ("BACKUP_KEEP_LAST", "0", ["whole number from 1 to 10000"]),
        ("BACKUP_KEEP_LAST", "abc", ["whole number from 1 to 10000"]),
        ("BACKUP_KEEP_LAST", "2.5", ["whole number from 1 to 10000"]),
        ("SCHEDULER_MISFIRE_GRACE_SECONDS", "-5", ["whole number from 1 to 604800"]),
        ("BACKUP_BUSY_TIMEOUT_SECONDS", "0", ["whole number from 1 to 3600"]),
        ("SCHEDULER_TICK_SECONDS", "0", ["number of seconds from 0.05 to 60"]),
        ("SCHEDULER_TICK_SECONDS", "nan", ["number of seconds from 0.05 to 60"]),
        ("SCHEDULER_FOLLOWER_RETRY_SECONDS", "soon", ["number of seconds from 0.05 to 300"]),
        ("DATABASE_URL", "postgresql://x/y", ["SQLite file", "sqlite:////"]),
        ("DATABASE_URL", "sqlite://", ["SQLite file", "sqlite:////"]),
        ("DATABASE_URL", "sqlite:///:memory:", ["SQLite file", "sqlite:////"]),
        ("DATABASE_URL", "not a url", ["SQLite file", "sqlite:////"]),
    ],
)
def test_bad_value_raises_config_error_naming_variable_and_what_is_allowed(tmp_path, name, value, allowed):
    """Each bad value fails at start with a message naming the variable, the value and what is allowed."""
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE_ENV, "SECRET_KEY": "k", name: value}, tmp_path)

    message = str(caught.value)
    assert name in message
    assert value in message
    for fragment in allowed:
        assert fragment in message


def test_defaults_put_database_and_backups_under_the_instance_folder(tmp_path):
    """With nothing set, the database is instance/app.db and backups go to instance/backups."""
    settings = load_settings(dict(BASE_ENV), tmp_path / "instance")

    instance = (tmp_path / "instance").resolve()
    assert settings.instance_path == instance
    assert settings.database_path == instance / "app.db"
    assert settings.database_url == f"sqlite:///{instance / 'app.db'}"
    assert settings.backups_dir == instance / "backups"
    assert settings.scheduler_enabled is True
    assert settings.backup_keep_last == 14
    assert settings.misfire_grace_seconds == 12 * 3600
    assert settings.backup_busy_timeout_seconds == 30.0


def test_valid_values_are_parsed(tmp_path):
    """Allowed spellings are accepted and converted to their types."""
    database = tmp_path / "data" / "main.db"
    settings = load_settings(
        {
            "SCHEDULER_ENABLED": " Off ",
            "SCHEDULER_TIMEZONE": "Europe/Berlin",
            "BACKUP_KEEP_LAST": "3",
            "SCHEDULER_MISFIRE_GRACE_SECONDS": "60",
            "DATABASE_URL": f"sqlite:///{database}",
            "BACKUPS_DIR": str(tmp_path / "elsewhere"),
            "SECRET_KEY": "k",
        },
        tmp_path,
    )

    assert settings.scheduler_enabled is False
    assert settings.scheduler_timezone == "Europe/Berlin"
    assert settings.backup_keep_last == 3
    assert settings.misfire_grace_seconds == 60
    assert settings.database_path == database.resolve()
    assert settings.backups_dir == (tmp_path / "elsewhere").resolve()
    assert settings.as_flask_config()["BACKUPS_DIR"] == str((tmp_path / "elsewhere").resolve())


def test_unset_secret_key_is_generated_stored_private_and_reused(tmp_path):
    """Without SECRET_KEY a key is made once, kept in instance/secret_key (0600) and reused."""
    instance = tmp_path / "instance"

    first = load_settings(dict(BASE_ENV), instance).secret_key
    second = load_settings(dict(BASE_ENV), instance).secret_key

    key_file = instance / "secret_key"
    assert len(first) >= 32
    assert first == second == key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(path.name for path in instance.iterdir()) == ["secret_key"]


def test_secret_key_from_environment_is_used_as_is(tmp_path):
    """A SECRET_KEY given in the environment wins and no key file is written."""
    settings = load_settings({**BASE_ENV, "SECRET_KEY": " given key "}, tmp_path / "instance")

    assert settings.secret_key == " given key "
    assert settings.as_flask_config()["SECRET_KEY"] == " given key "
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_empty_stored_secret_key_is_a_config_error(tmp_path):
    """An empty instance/secret_key is refused rather than signing sessions with an empty key."""
    (tmp_path / "secret_key").write_text("\n")

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings(dict(BASE_ENV), tmp_path)


def load_keys_in_rounds(root: str, rounds: int, barrier, results) -> None:
    """Load settings on a fresh instance folder per round, all processes at once; report keys or the error."""
    keys = []
    try:
        for number in range(rounds):
            barrier.wait(10)
            keys.append(load_settings(dict(BASE_ENV), Path(root) / f"round-{number}").secret_key)
    except Exception as exc:
        barrier.abort()  # let the other processes stop waiting and report too
        results.put(f"round {len(keys)}: {exc!r}")
        return
    results.put(keys)


def test_processes_starting_together_share_one_secret_key(tmp_path):
    """Four processes loading settings on a fresh instance folder at the same moment get the same key."""
    # The window between "no key file yet" and "key file complete" is short: many rounds
    # are needed to catch a racy implementation (a plain write fails within ~50 rounds).
    rounds, workers = 200, 4
    mp = multiprocessing.get_context("fork")
    barrier, results = mp.Barrier(workers), mp.Queue()
    processes = [
        mp.Process(target=load_keys_in_rounds, args=(str(tmp_path), rounds, barrier, results)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    keys_per_process = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(10)

    assert [keys for keys in keys_per_process if isinstance(keys, str)] == []

    for number in range(rounds):
        instance = tmp_path / f"round-{number}"
        stored = (instance / "secret_key").read_text().strip()
        assert stored
        assert {keys[number] for keys in keys_per_process} == {stored}
        assert sorted(path.name for path in instance.iterdir()) == ["secret_key"]


def test_scheduler_timings_default_to_one_and_three_seconds_and_can_be_shortened(tmp_path):
    """Tests shorten the leader's tick and the followers' retry; production keeps the defaults."""
    default = load_settings({**BASE_ENV, "SECRET_KEY": "k"}, tmp_path).as_flask_config()
    assert (default["SCHEDULER_TICK_SECONDS"], default["SCHEDULER_FOLLOWER_RETRY_SECONDS"]) == (1.0, 3.0)
    env = {**BASE_ENV, "SECRET_KEY": "k", "SCHEDULER_TICK_SECONDS": "0.25", "SCHEDULER_FOLLOWER_RETRY_SECONDS": "0.5"}
    short = load_settings(env, tmp_path).as_flask_config()
    assert (short["SCHEDULER_TICK_SECONDS"], short["SCHEDULER_FOLLOWER_RETRY_SECONDS"]) == (0.25, 0.5)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:S3cretPw@db:5432/app",
        "postgres://app:S3cretPw@db:5432/app",
        "postgresql+psycopg2://app:S3cretPw@db:5432/app",
        "postgresql+psycopg://app@db/app?password=S3cretPw&sslmode=require",
        "mysql://app:S3cretPw@db/app",
    ],
)
def test_a_refused_database_url_is_shown_without_its_password(tmp_path, url):
    with pytest.raises(ConfigError) as refused:
        load_settings({"DATABASE_URL": url, "STATE_DATABASE_URL": url}, tmp_path)
    assert "S3cretPw" not in str(refused.value)


def test_a_lease_shorter_than_three_ticks_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"SCHEDULER_LEASE_SECONDS \(2\) must be at least three times"):
        load_settings({"SCHEDULER_LEASE_SECONDS": "2", "SCHEDULER_TICK_SECONDS": "1"}, tmp_path)
    assert load_settings({"SCHEDULER_LEASE_SECONDS": "3", "SCHEDULER_TICK_SECONDS": "1"}, tmp_path)
