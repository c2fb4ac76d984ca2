"""`mailwarden bounces list | suppressed | forget | export`: the stored events and the suppression list.

The store is read or changed here, never created (the daemon creates it, owned by its user and 0640): run these
as root or as the service user. Exit 2 when the store is off, missing or unreadable.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from .config import Config
from .events import FIELDS, Event
from .store import Store, StoreError
from .suppression import Standing

_AGO = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
SUPPRESSED_FIELDS = ("address", "reason", "since", "events")


def since_time(value: str) -> str:
    """An RFC 3339 time in UTC as the store writes it, from "7d" / "12h" / "30m" ago or a date or date-time."""
    if ago := _AGO.match(value):
        when = datetime.now(UTC) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    else:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not 7d, 12h, 30m, a date or an RFC 3339 time") from None
        when = when.replace(tzinfo=when.tzinfo or UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds")


def open_store(config: Config, what: str) -> Store:
    """The configured store, for reading or changing what the daemon keeps; raises StoreError."""
    if not config.events.store:
        raise StoreError(f'[events] store is "": {what}')
    return Store(config.events.store, create=False)


def event_text(event: Event) -> str:
    return (f"{event.time} {event.recipient} {event.category} {event.type} status={event.status or 'none'} "
            f"confidence={event.confidence:.2f} queue_id={event.queue_id or '-'} reporting_mta={event.reporting_mta} "
            f"id={event.id} {event.diagnostic}")  # fmt: skip


def suppressed_record(standing: Standing) -> dict:
    return {name: getattr(standing, name) for name in SUPPRESSED_FIELDS}


def filtered_events(store: Store, args: argparse.Namespace) -> list[Event]:
    return store.events(since=args.since or "", recipient=args.recipient or "", category=args.category or "")


def cmd_list(args: argparse.Namespace, store: Store) -> int:
    for event in filtered_events(store, args):
        print(event.json() if args.json else event_text(event))
    return 0


def cmd_suppressed(args: argparse.Namespace, store: Store) -> int:
    for standing in store.suppressed():
        record = suppressed_record(standing)
        print(json.dumps(record, ensure_ascii=False) if args.json else " ".join(map(str, record.values())))
    return 0


def cmd_forget(args: argparse.Namespace, store: Store) -> int:
    if store.forget(args.address):
        print(f"{args.address}: taken off the suppression list, its bounce score forgotten")
        return 0
    print(f"{args.address}: not on the suppression list and no score kept", file=sys.stderr)
    return 1


def cmd_export(args: argparse.Namespace, store: Store) -> int:
    if args.suppressed:
        names, records = SUPPRESSED_FIELDS, [suppressed_record(s) for s in store.suppressed()]
    else:
        names, records = FIELDS, [asdict(e) for e in filtered_events(store, args)]
    if args.format == "json":
        json.dump(records, sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    writer = csv.DictWriter(sys.stdout, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return 0


def with_store(command: Callable[[argparse.Namespace, Store], int], load_config: Callable[[str | None], Config],
               what: str) -> Callable[[argparse.Namespace], int]:  # fmt: skip
    """The command run on the configured store, closed after; a store that cannot be used is exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            store = open_store(load_config(args.config), what)
            try:
                return command(args, store)
            finally:
                store.close()
        except (StoreError, sqlite3.Error) as exc:
            print(f"mailwarden: {exc}", file=sys.stderr)
            return 2

    return run


def register(bounces: argparse._SubParsersAction, load_config: Callable[[str | None], Config],
             config_help: str) -> None:  # fmt: skip
    """Add list, suppressed, forget and export to `mailwarden bounces`."""

    def add(name: str, command: Callable, help_text: str, what: str) -> argparse.ArgumentParser:
        parser = bounces.add_parser(name, help=help_text)
        parser.add_argument("--config", metavar="PATH", help=config_help)
        parser.set_defaults(func=with_store(command, load_config, what))
        return parser

    def filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--since", type=since_time, metavar="WHEN",
                            help="only events from then on: 7d, 12h, 30m ago, or a date or RFC 3339 time")
        parser.add_argument("--recipient", metavar="ADDRESS", help="only this recipient's events (any case)")
        parser.add_argument("--category", metavar="CATEGORY", help="only this category, e.g. bad-mailbox")

    listing = add("list", cmd_list, "list the stored bounce events, oldest first", "no events are kept")
    filters(listing)
    listing.add_argument("--json", action="store_true", help="one event per line as JSON, as it is published")
    suppressed = add("suppressed", cmd_suppressed, "list the suppressed addresses, first suppressed first",
                     "no suppression list is kept")  # fmt: skip
    suppressed.add_argument("--json", action="store_true", help='one {"address", "reason", "since", "events"} '
                            "per line")  # fmt: skip
    forget = add("forget", cmd_forget, "take an address off the suppression list and forget its bounce score",
                 "no suppression list is kept")  # fmt: skip
    forget.add_argument("address", metavar="ADDRESS")
    export = add("export", cmd_export, "write the stored events (or the suppression list) as CSV or JSON",
                 "no events are kept")  # fmt: skip
    filters(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv", help="CSV with a header line, or one "
                        "JSON array (default: csv)")  # fmt: skip
    export.add_argument("--suppressed", action="store_true", help="the suppression list instead of the events")
