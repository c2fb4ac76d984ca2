"""The `mailwarden` command: run the daemon, check a client by hand, validate a configuration."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import sys
from pathlib import Path

from .classifier.cli import register as register_bounce_commands
from .config import Config, load
from .engine import Engine
from .events_cli import register as register_event_commands
from .store import ReviewItem, Store, StoreError, problems
from .upstreams import parse_nameservers
from .version import __version__

DEFAULT_CONFIG = Path("/etc/mailwarden/mailwarden.toml")


def config_path(given: str | None) -> str | None:
    """The file given, else the system file if there is one, else None (built-in defaults)."""
    if given:
        return given
    return str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None


def load_config(given: str | None) -> Config:
    path = config_path(given)
    return load(path) if path else Config()


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import run

    path = config_path(args.config)
    return run(load(path) if path else Config(), path)


def check_report(engine: Engine, ip: str, helo: str, sender: str, message: bytes | None = None) -> dict:
    """The JSON object of `mailwarden check --json`: each check's report where it says (`Check.report_key`),
    then the header fields the milter would write."""
    session, envelope = engine.check(ip, helo, sender, message)
    report: dict = {}
    for check, result in engine.results(session, envelope):
        *outer, last = check.report_key
        place = report
        for key in outer:
            place = place.setdefault(key, {})
        place[last] = check.report(result)
    report["headers"] = dict(engine.result_headers(session, envelope))
    return report


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    dns = config.dns
    if args.dns:
        dns = dataclasses.replace(dns, nameservers=parse_nameservers(args.dns))
    if args.timeout:
        dns = dataclasses.replace(dns, timeout=args.timeout)
    # `check` examines the client it is given, even one that the daemon would trust and skip.
    config = dataclasses.replace(config, dns=dns, trusted_networks=(), skip_sender_domains=frozenset())
    engine = Engine.from_config(config, bounces=False)
    message = args.message.read_bytes() if args.message else None
    if args.json:
        print(json.dumps(check_report(engine, args.ip, args.helo, args.sender, message)))
        return 0
    session, envelope = engine.check(args.ip, args.helo, args.sender, message)
    for check, result in engine.results(session, envelope):
        print(check.summary(result))
    for name, value in engine.result_headers(session, envelope):
        print(f"{name}: {value}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    if path is None:
        print(f"{DEFAULT_CONFIG} does not exist: the built-in defaults are in use")
        return 0
    config = load(path)
    if config.events.store and (found := problems(config.events.store)):
        if Path(config.events.store).exists():
            print(f"{path}: [events] store cannot be used:\n" + "\n".join(f"  {p}" for p in found), file=sys.stderr)
            return 2
        # The daemon creates it; under systemd the unit's StateDirectory makes the directory.
        print(f"{path}: note: {found[0]} (yet)", file=sys.stderr)
    print(f"{path}: OK (socket {config.socket}, authserv-id {config.authserv_id}, {len(config.domains)} domain(s))")
    return 0


def review_json(item: ReviewItem) -> str:
    """One line of `bounces review --json`: the item with an empty "category" for the administrator to fill in."""
    return json.dumps({"id": item.id, **dataclasses.asdict(item), "category": ""}, ensure_ascii=False)


def review_text(item: ReviewItem) -> str:
    """An item for people: where it came from and what the model thought, then the text it could not place."""
    stated = " ".join(f"{name}={getattr(item, name) or 'none'}" for name in ("status", "reply_code", "stage",
                                                                             "remote_mta"))  # fmt: skip
    return (f"#{item.id} {item.time} queue_id={item.queue_id or '-'} seen={item.seen} guess={item.guess} "
            f"confidence={item.confidence:.2f} model={item.model} {stated}\n    {item.text}")


def labelled_items(path: Path) -> list[tuple[int, str]]:
    """The id and text of each line of a reviewed JSONL file that has a category."""
    labelled = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("id"), int) or "text" not in record:
            raise ValueError(f"{path}:{number}: not a line of `mailwarden bounces review --json`")
        if record.get("category"):
            labelled.append((record["id"], record["text"]))
    return labelled


def cmd_bounces_review(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not config.events.store:
        print('mailwarden: [events] store is "": nothing is kept for review', file=sys.stderr)
        return 2
    try:
        store = Store(config.events.store, create=False)  # the daemon creates it, owned by its user and 0640
        try:
            if args.forget_labelled:
                forgotten = store.forget_review(labelled_items(args.forget_labelled))
                print(f"{forgotten} reviewed bounce(s) forgotten")
                return 0
            for item in store.review_items():
                print(review_json(item) if args.json else review_text(item))
        finally:
            store.close()
    except (StoreError, sqlite3.Error) as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailwarden",
        description="Milter for Postfix and Sendmail: IPREV, SPF, DKIM and DMARC with Received-SPF and "
        "Authentication-Results headers, per-domain policy, and bounce classification.",
    )
    parser.add_argument("--version", action="version", version=f"mailwarden {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the milter daemon in the foreground, logging to stderr")
    run.add_argument("--config", metavar="PATH", help=f"TOML configuration (default: {DEFAULT_CONFIG} if it "
                     "exists, else built-in defaults)")  # fmt: skip
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="run the checks on a client (and a message) without an MTA")
    check.add_argument("--ip", required=True, help="the client IP address")
    check.add_argument("--helo", default="", help="the HELO/EHLO name")
    check.add_argument("--sender", default="", help="the MAIL FROM address; empty = null sender (postmaster@HELO)")
    check.add_argument("--message", type=Path, metavar="FILE.eml", help="a message to run DKIM and DMARC on, "
                       "as if it came in this session")  # fmt: skip
    check.add_argument("--dns", action="append", metavar="SERVER", help="nameserver to ask, in order (repeatable): "
                       "ADDRESS[:PORT], tls://ADDRESS[:PORT]#AUTH-NAME or a preset such as quad9-tls")  # fmt: skip
    check.add_argument("--timeout", type=float, metavar="SECONDS", help="per-query DNS timeout")
    check.add_argument("--config", metavar="PATH", help="take authserv-id and DNS settings from this file")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=cmd_check)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_check = config_sub.add_parser("check", help="validate a configuration file and report every problem")
    config_check.add_argument("--config", metavar="PATH", help=f"file to check (default: {DEFAULT_CONFIG})")
    config_check.set_defaults(func=cmd_config_check)

    bounces = sub.add_parser("bounces", help="what the milter keeps about bounces")
    bounces_sub = bounces.add_subparsers(dest="bounces_command", required=True, metavar="ACTION")
    review = bounces_sub.add_parser("review", help="list the bounce recipients the model could not place, "
                                    "oldest first (addresses redacted)")  # fmt: skip
    review.add_argument("--config", metavar="PATH", help=f"read [events] store from this file (default: "
                        f"{DEFAULT_CONFIG})")  # fmt: skip
    review.add_argument("--json", action="store_true", help='one object per line, with an empty "category" to '
                        "fill in for `mailwarden train --add`")  # fmt: skip
    review.add_argument("--forget-labelled", type=Path, metavar="FILE.jsonl",
                        help="instead of listing: forget the items that have a category in this file")
    review.set_defaults(func=cmd_bounces_review)
    register_event_commands(bounces_sub, load_config, f"read [events] store from this file (default: {DEFAULT_CONFIG})")

    register_bounce_commands(sub)  # classify, train, eval
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # bad config, address or model file: a clear message, no traceback
        print(f"mailwarden: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
