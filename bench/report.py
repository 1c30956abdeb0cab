"""Targets, the printed table and the JSON results."""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KB = 1000  # as the app's file_size filter: 1 KB = 1000 B


HELD, MISSED, INCONCLUSIVE = "held", "missed", "inconclusive (noise > margin)"


@dataclass(frozen=True)
class Target:
    """One budget from the design brief and whether this run kept it.

    A paired-rounds ratio carries its spread (``low``-``high``): when the spread lies on
    both sides of the limit, the run cannot tell, and says so instead of a verdict.
    """

    name: str
    measured: float | None
    comparison: str  # "<=", "<" or "=="
    limit: float
    unit: str
    low: float | None = None
    high: float | None = None

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return MISSED
        compare = {"<=": operator.le, "<": operator.lt, "==": operator.eq}[self.comparison]
        spread = (self.low, self.high)
        if None not in spread and compare(self.low, self.limit) != compare(self.high, self.limit):
            return INCONCLUSIVE
        return HELD if compare(self.measured, self.limit) else MISSED

    @property
    def holds(self) -> bool:
        return self.verdict == HELD

    def as_dict(self) -> dict:
        return asdict(self) | {"holds": self.holds, "verdict": self.verdict}


def _paired(name: str, spread: dict, comparison: str, limit: float) -> Target:
    """A target on a median of paired rounds, with the rounds' spread."""
    return Target(name, spread["median"], comparison, limit, "x", spread["min"], spread["max"])


def targets(results: dict) -> list[Target]:
    """Every target of the measurements that ran (a failed measurement misses its targets)."""

    def section(key: str) -> dict | None:
        value = results.get(key)
        return value if value and "error" not in value else None

    found = []
    if cost := section("backup_cost"):
        found.append(_paired("backup copy alone / cp+fsync", cost["copy_ratio"], "<=", 2.0))
        found.append(_paired("backup with verification / cp+fsync", cost["backup_ratio"], "<=", 3.0))
    if restore := section("restore_cost"):
        found.append(_paired("restore copy phase / cp+fsync", restore["copy_ratio"], "<=", 3.0))
        found.append(_paired("whole restore / cp+fsync", restore["restore_ratio"], "<=", 8.0))
        writer = restore["writer_during_restore"]
        found.append(Target("'database is locked' during a restore", writer["lock_errors"], "==", 0, ""))
    if impact := section("impact"):
        found.append(Target("write p99 during backup", impact["write_backup"]["p99_ms"], "<=", 50, "ms"))
        found.append(_paired("write p99 during backup / idle p99", impact["write_p99_ratio"], "<=", 2.0))
        found.append(Target("'database is locked' errors", impact["lock_errors"], "==", 0, ""))
        found.append(_paired("HTTP p99 during backup / idle p99", impact["http_p99_ratio"], "<=", 1.5))
    if polling := section("polling"):
        found.append(Target("status poll p99 (50 browsers)", polling["latency"]["p99_ms"], "<=", 20, "ms"))
        found.append(Target("status poll errors", polling["errors"], "==", 0, ""))
        size = polling["body_bytes"]["max"]
        found.append(Target("status partial size (max)", None if size is None else size / KB, "<", 4, "KB"))
    if "scheduler" in results:
        scheduler = results["scheduler"]
        wanted = scheduler.get("fires_wanted")
        if wanted:
            delays = [fire["delay_ms"] for fire in scheduler.get("fires", []) if fire.get("delay_ms") is not None]
            worst = max(delays) / 1000 if len(delays) == wanted else None
            found.append(Target(f"scheduler delay, worst of {wanted} fires", worst, "<", 1, "s"))
        idle = scheduler.get("idle")
        found.append(Target("scheduler leader idle CPU", idle["percent_of_core"] if idle else None, "<", 1, "% core"))
    if weight := section("page_weight"):
        sent = weight.get("sent_bytes", weight["gzip_bytes"])  # results from before sent_bytes
        found.append(Target("Settings page + assets, bytes sent", sent / KB, "<", 60, "KB"))
    if notify := section("notify"):
        found.append(
            Target(
                "failed run's end to webhook, median of 5", notify["failure_to_receipt_median_ms"] / 1000, "<", 2, "s"
            )
        )
        found.append(
            Target("time a hanging receiver adds to a run", notify["hanging_receiver_added_ms_max"] / 1000, "<", 1, "s")
        )
    if offsite := section("offsite"):
        found.append(_paired("sealed upload / rclone copy of the plaintext", offsite["ratio"], "<=", 1.5))
        found.append(Target("peak memory of the uploading process", offsite["peak_rss_mb_max"], "<", 200, "MB"))
    if pg := section("pg_scheduler"):
        found.append(Target("fire delay across 3 hosts, median", _seconds(pg["delay_median_ms"]), "<", 1, "s"))
        once = all(count == 1 for count in pg["runs_per_fire"]) and len(pg["runs_per_fire"]) == pg["fires_wanted"]
        found.append(Target("fire times run exactly once, 3 hosts", int(once), "==", 1, ""))
    if dump := section("pg_dump_cost"):
        found.append(_paired("pg_dump + checks / bare pg_dump", dump["ratio"], "<=", 1.5))
    for key, value in results.items():
        if isinstance(value, dict) and "error" in value:
            found.append(Target(f"{key} ran", None, "==", 1, ""))
    return found


def _seconds(milliseconds: float | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _others(section: dict) -> str:
    machine = section.get("machine")
    if not machine:
        return ""
    load = section.get("synthetic_load")
    made = f"synthetic load {load['percent_of_core']} % of a core; " if load else "no synthetic load; "
    return f"  [{made}other processes: {machine['others_percent_of_core']} % of a core]"


def _spread(spread: dict) -> str:
    """A paired-rounds ratio as "median x (min-max)"."""
    if spread["median"] is None:
        return "-"
    return f"{spread['median']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f})"


def _backup_cost(cost: dict) -> list[str]:
    m = cost["median_seconds"]
    phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in cost["backup_phase_median_seconds"].items())
    cache = cost["page_cache"]
    return [
        f"1. Backup cost, {cost['repeats']} paired rounds: median seconds, median ratio to the paired cp "
        f"(min-max) (source in page cache: {cache['before']} before, {cache['after']} after){_others(cost)}",
        f"   cp + fsync                 {m['cp']:8.2f} s   1.00x",
        f"   backup API copy, one step  {m['copy']:8.2f} s   {_spread(cost['copy_ratio'])}   (SQLite's defaults)",
        f"     same, no journal or sync {m['copy_unjournaled']:8.2f} s   {_spread(cost['copy_unjournaled_ratio'])}"
        "   (the target settings of perform_sqlite_backup; not a target)",
        f"   perform_sqlite_backup()    {m['backup']:8.2f} s   {_spread(cost['backup_ratio'])}   ({phases} s)",
        f"     same, normal priority    {m['backup_normal_priority']:8.2f} s   "
        f"{_spread(cost['backup_normal_priority_ratio'])}   (as before issue 15; not a target)",
    ]


def _restore_cost(restore: dict) -> list[str]:
    m = restore["median_seconds"]
    phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in restore["restore_phase_median_seconds"].items())
    wal, rollback = restore["writer_during_restore"], restore["writer_during_rollback_journal_backup"]
    return [
        f"1b. Restore cost, {restore['repeats']} paired rounds: median seconds, median ratio to the paired cp "
        f"(min-max){_others(restore)}",
        f"   cp + fsync of the backup   {m['cp']:8.2f} s   1.00x",
        f"   copy into the live db      {m['copy']:8.2f} s   {_spread(restore['copy_ratio'])}",
        f"   whole restore              {m['restore']:8.2f} s   {_spread(restore['restore_ratio'])}   ({phases} s)",
        f"   writer every 10 ms during a restore copy of {wal['action_seconds']} s: longest stall "
        f"{wal['longest_stall_ms']} ms, {wal['lock_errors']} 'locked' errors in {wal['commits']} commits",
        f"   writer every 10 ms during a backup of a rollback-journal db ({rollback['action_seconds']} s): "
        f"longest stall {rollback['longest_stall_ms']} ms, {rollback['lock_errors']} 'locked' errors",
    ]


def _impact(impact: dict) -> list[str]:
    durations = ", ".join(str(backup["seconds"]) for backup in impact["backups"])
    lines = [
        f"2. Impact of a backup (backups run by the app: {durations} s){_others(impact)}",
        "                   idle p50 / p99 ms   during backup p50 / p99 ms   2 s after p99   samples idle/during",
    ]
    for kind, label in (("write", "write commit"), ("http", "HTTP")):
        idle, busy, after = impact[f"{kind}_idle"], impact[f"{kind}_backup"], impact[f"{kind}_after"]
        lines.append(
            f"   {label:14} {_fmt(idle['p50_ms']):>7} / {_fmt(idle['p99_ms']):<9}"
            f"  {_fmt(busy['p50_ms']):>7} / {_fmt(busy['p99_ms']):<17}"
            f"  {_fmt(after['p99_ms']):>12}    {idle['count']}/{busy['count']}"
        )
    lines.append(
        f"   p99 during / idle p99, median of {impact['http_p99_ratio']['rounds']} paired rounds (min-max): "
        f"HTTP {_spread(impact['http_p99_ratio'])}, write commit {_spread(impact['write_p99_ratio'])}; "
        f"pooled over all rounds: HTTP {_fmt(impact['http_p99_ratio_pooled'])}x, "
        f"write {_fmt(impact['write_p99_ratio_pooled'])}x"
    )
    lines.append(
        f"   lock errors {impact['lock_errors']}, other write errors {impact['write_errors'] or 'none'}, "
        f"HTTP errors {impact['http_error_count']}"
    )
    return lines


def _polling(polling: dict) -> list[str]:
    latency = polling["latency"]
    return [
        f"3. Status polling, {polling['browsers']} browsers every {polling['period_seconds']:g} s "
        f"for {polling['duration_seconds']} s{_others(polling)}",
        f"   {polling['requests']} requests, {polling['errors']} errors, p50 {_fmt(latency['p50_ms'])} ms, "
        f"p99 {_fmt(latency['p99_ms'])} ms, max {_fmt(latency['max_ms'])} ms",
        f"   partial {polling['body_bytes']['max']} B body ({polling['wire_bytes']['max']} B with headers), "
        f"server CPU {polling['server_cpu_percent_of_core']} % of one core",
    ]


def _scheduler(scheduler: dict) -> list[str]:
    lines = ["4. Scheduler"]
    if idle := scheduler.get("idle"):
        lines.append(
            f"   leader idle CPU {idle['percent_of_core']} % of a core ({idle['cpu_seconds']} s over "
            f"{idle['seconds']} s){_others(idle)}"
        )
    for fire in scheduler.get("fires", []):
        lines.append(
            f"   fire due {fire['scheduled_for']}: started +{fire['delay_ms']} ms, ran {fire['run_ms']} ms, "
            f"{fire['status']} (beside: {', '.join(fire.get('during', []))})"
        )
    return lines


def _page_weight(weight: dict) -> list[str]:
    lines = ["5. Page weight (bytes sent, as a browser asks: Accept-Encoding br, gzip)"]
    for item in weight["items"]:
        if "error" in item:
            lines.append(f"   {item['path']:40} {item['error']}")
        else:
            sent = f"{item.get('sent_bytes', item['gzip_bytes']):8} B sent ({item.get('encoding', 'gzip')})"
            lines.append(f"   {item['path']:40} {item['raw_bytes']:8} B raw {sent}")
    total_sent = weight.get("sent_bytes", weight["gzip_bytes"])
    lines.append(f"   {'total':40} {weight['raw_bytes']:8} B raw {total_sent:8} B sent")
    return lines


def _notify(notify: dict) -> list[str]:
    samples = ", ".join(f"{value:.0f}" for value in notify["failure_to_receipt_ms"])
    return [
        f"6. Notifications{_others(notify)}",
        f"   failed run's end to webhook receipt: median {notify['failure_to_receipt_median_ms']:.0f} ms "
        f"({samples} ms)",
        f"   manual backup {notify['backup_ms_median']:.0f} ms; with a hanging receiver "
        f"{notify['backup_with_hanging_receiver_ms_median']:.0f} ms "
        f"(slowest adds {notify['hanging_receiver_added_ms_max']:.0f} ms)",
    ]


def _offsite(offsite: dict) -> list[str]:
    lines = [f"8. Off-site upload (1 target, local rclone serve s3){_others(offsite)}"]
    for number, item in enumerate(offsite["rounds"], 1):
        lines.append(
            f"   round {number}: rclone copy {item['rclone_copy_s']:.2f} s, sealed upload {item['upload_s']:.2f} s "
            f"({item['ratio']:.2f}x), peak {item['peak_rss_mb']} MB"
        )
    lines.append(
        f"   sealed upload / rclone copy: {_spread(offsite['ratio'])}; bytes stored off-site / local backup "
        f"{offsite['stored_over_local']:.3f} (synthetic data)"
    )
    return lines


SECTIONS = (
    ("backup_cost", _backup_cost),
    ("restore_cost", _restore_cost),
    ("impact", _impact),
    ("polling", _polling),
    ("scheduler", _scheduler),
    ("page_weight", _page_weight),
    ("notify", _notify),
    ("offsite", _offsite),
)


def table(results: dict) -> str:
    """The human-readable report."""
    meta = results["meta"]
    data = meta["dataset"]
    origin = "cached" if data["cached"] else f"built in {data['build_seconds']} s"
    lines = [
        f"bench: {data['bytes'] / 2**20:.0f} MiB database ({data['rows']} rows, {origin}), "
        f"SQLite {meta['sqlite_version']}, {meta['cpus']} CPUs, wall {meta['wall_seconds']:.0f} s"
    ]
    load = (
        "on (25 % of a core during the impact and cost measurements)"
        if meta["arguments"].get("synthetic_load")
        else "off"
    )
    lines.append(f"synthetic load {load}" + (", --quick" if meta["arguments"].get("quick") else ""))
    if quiet := meta.get("before_start"):
        lines.append(f"before the start, other processes used {quiet['others_percent_of_core']} % of a core")
    for key, render in SECTIONS:
        section = results.get(key)
        if section is None:
            continue
        lines.append("")
        if "error" in section:
            lines.append(f"{key} FAILED: {section['error']}")
        else:
            lines += render(section)
    if "pg_scheduler" in results or "pg_dump_cost" in results:
        from bench.several_hosts import render as render_several_hosts

        lines += ["", *render_several_hosts(results)]
    lines += ["", "Targets"]
    for target in results["targets"]:
        spread = f"({_fmt(target['low'])}-{_fmt(target['high'])})" if target.get("low") is not None else ""
        lines.append(
            f"   {target['name']:42} {_fmt(target['measured']):>8} {spread:13} {target['unit']:7} "
            f"{target['comparison']} {_fmt(target['limit'], 1):>5}   {target['verdict']}"
        )
    return "\n".join(lines)


def write_json(results: dict, path: Path) -> None:
    """Write the results (bench/results/ is git-ignored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
