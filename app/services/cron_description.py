"""Plain English for a crontab line: cron-descriptor's words, never describing other runs than cron's.

cron-descriptor reads ``*/24`` hours as "every 24 hours", ``0,7`` as "Sunday and Sunday",
and always ORs the day fields; so it gets a canonical line, and the day rule is ours.
"""

from __future__ import annotations

from cron_descriptor import ExpressionDescriptor, Options

from app.services.crontab import FIELDS, Crontab, item_values


def describe_crontab(crontab: Crontab) -> str:
    """Plain English for a parsed line; the day rule (AND or OR) is always visible."""
    fields = crontab.text.split()
    canonical = [_single_values(spec, text) for spec, text in zip(FIELDS[:4], fields, strict=False)]
    canonical.append(_weekday_list(crontab.weekdays))
    dom_restricted, dow_restricted = crontab.day_fields_restricted
    if not crontab.days_and and not (dom_restricted and dow_restricted):
        canonical[2] = canonical[4] = "*"  # OR with a field matching every day: every day
    if not (dom_restricted and dow_restricted):
        if not dom_restricted:
            canonical[2] = "*"
        return _descriptor(" ".join(canonical))
    days = _weekday_phrase(crontab.weekdays)
    base = _descriptor(" ".join([*canonical[:4], "*"]))
    if crontab.days_and:
        return f"{base}, but only those days that fall on {days}"
    return f"{base}, and also on {days} (either day rule is enough)"


def _descriptor(expression: str) -> str:
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    return ExpressionDescriptor(expression, options).get_description()


def _single_values(spec, text: str) -> str:
    """The field with each stepped item that matches one value written as that value."""
    items = []
    for item in text.split(","):
        values = item_values(spec, text, item)
        items.append(str(values[0]) if "/" in item and len(values) == 1 else item)
    return ",".join(items)


def _weekday_runs(weekdays: frozenset[int]) -> list[tuple[int, int]]:
    """Runs of consecutive weekdays, Monday (1) to Sunday (7): ``{0, 5, 6}`` -> ``[(5, 7)]``."""
    runs: list[tuple[int, int]] = []
    for day in sorted(day or 7 for day in weekdays):
        if runs and runs[-1][1] == day - 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _weekday_list(weekdays: frozenset[int]) -> str:
    if len(weekdays) == 7:
        return "*"
    items = []
    for first, last in _weekday_runs(weekdays):
        items.extend([f"{first}-{last}"] if last - first >= 2 else map(str, range(first, last + 1)))
    return ",".join(items)


WEEKDAY_WORDS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _weekday_phrase(weekdays: frozenset[int]) -> str:
    """``{1, 2, 3, 4, 5}`` -> "Monday to Friday"; ``{1, 3}`` -> "Monday or Wednesday"."""
    parts = []
    for first, last in _weekday_runs(weekdays):
        if last - first >= 2:
            parts.append(f"{WEEKDAY_WORDS[first]} to {WEEKDAY_WORDS[last]}")
        else:
            parts.extend(WEEKDAY_WORDS[day] for day in range(first, last + 1))
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
