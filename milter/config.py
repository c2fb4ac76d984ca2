"""The one TOML configuration file: global defaults, per-recipient-domain policy overrides.

Loading is all-or-nothing: every problem (unknown key, wrong type, bad network, bad domain, bad action) is
collected with the key and the line it is on, and `ConfigError` lists them all, so that the daemon never
starts (or reloads into) a half-understood configuration.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from socket import getfqdn
from types import MappingProxyType
from typing import Any

from .checks import registered
from .checks.arc import Sealer
from .sinks import sink_problems
from .suppression import SuppressionRules
from .upstreams import Upstream, parse_nameservers, tls_ca_problem

ACTIONS = ("accept", "reject", "defer")
MTAS = ("postfix", "sendmail")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("kv", "json")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?$")
_SOCKET = re.compile(r"^(unix|local):/.+$|^inet6?:\d{1,5}(@.+)?$")


def policy_keys() -> tuple[str, ...]:
    """Every action key of a [policy] table: "<prefix>_<result>" for each result a registered check can act on."""
    return tuple(key for check in registered() for key in check.policy_keys())


def policy_options() -> dict[str, bool]:
    """Every true/false key of a [policy] table (dmarc_enforce, ...), with its default."""
    return {key: default for check in registered() for key, default in check.options.items()}


def unix_path(spec: str) -> str | None:
    """The file system path of a unix:/local: socket spec, None for inet sockets."""
    kind, _, rest = spec.partition(":")
    return rest if kind in ("unix", "local") else None


class ConfigError(ValueError):
    """A configuration that must not be used; str() lists every problem with its key and line."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class DnsConfig:
    nameservers: tuple[Upstream, ...] = ()  # plain and tls:// upstreams, asked in order; empty: the system resolver
    tls_ca_file: str = ""  # a private CA for tls:// upstreams, in addition to the system store
    timeout: float = 2.0  # seconds per query
    budget: float = 10.0  # seconds of DNS per message (and per connection for iprev)
    cache_size: int = 10000


@dataclass(frozen=True)
class BounceConfig:
    enabled: bool = True
    model: str = ""  # "" = the model shipped in the package
    # A recipient labelled with less confidence becomes "other" and is kept for review. 0.3: grouped
    # cross-validation loses 0.005 of label accuracy there (0.036 at 0.5) and sends ~10 % of recipients to review.
    review_below: float = 0.3


@dataclass(frozen=True)
class EventsConfig:
    store: str = "/var/lib/mailwarden/events.sqlite"  # SQLite file (the unit's StateDirectory); "" = off
    retention_days: int = 90  # events older than this are deleted once every sink has taken them
    amqp_url: str = ""  # RabbitMQ, amqp:// or amqps://; "" = no publishing
    amqp_exchange: str = "mailwarden"
    webhook_url: str = ""  # https:// (http:// only to loopback); "" = none
    webhook_secret: str = ""  # HMAC-SHA256 key for the X-Mailwarden-Signature header; "" = unsigned
    webhook_ca_file: str = ""  # a private CA for the webhook, in addition to the system store


@dataclass(frozen=True)
class ArcConfig:
    # A DMARC fail is not enforced when the ARC chain passes, its last sealer is one of these domains and
    # that sealer's ARC-Authentication-Results says dmarc=pass.
    trusted_sealers: frozenset[str] = frozenset()
    sealer: Sealer | None = None  # sign = true: the domain, selector and key we seal with (key read at load)


@dataclass(frozen=True)
class MetricsConfig:
    address: str = ""  # "host:port" to serve Prometheus metrics; "" = off


@dataclass(frozen=True)
class Config:
    socket: str = "inet:8894@127.0.0.1"
    socket_mode: int = 0o660
    mta: str = "postfix"  # how the MTA writes milter commands, which decides the TCP protocol (protocols.py)
    authserv_id: str = field(default_factory=getfqdn)
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    skip_authenticated: bool = True
    skip_sender_domains: frozenset[str] = frozenset()
    log_level: str = "info"
    log_format: str = "kv"
    milter_timeout: int = 600  # seconds libmilter waits for the MTA
    dns: DnsConfig = DnsConfig()
    bounce: BounceConfig = BounceConfig()
    events: EventsConfig = EventsConfig()
    metrics: MetricsConfig = MetricsConfig()
    arc: ArcConfig = ArcConfig()
    policy: MappingProxyType[str, str | bool] = field(
        default_factory=lambda: MappingProxyType({**dict.fromkeys(policy_keys(), "accept"), **policy_options()})
    )
    domains: MappingProxyType[str, MappingProxyType[str, str | bool]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    suppression: SuppressionRules = SuppressionRules()
    domain_suppression: MappingProxyType[str, SuppressionRules] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "<built-in defaults>"

    def suppression_for(self, domain: str) -> SuppressionRules:
        """The suppression rules of a recipient domain: its own overrides on top of the defaults."""
        return self.domain_suppression.get(domain.lower().rstrip("."), self.suppression)

    def policy_for(self, domain: str) -> MappingProxyType[str, str | bool]:
        """The policy of a recipient domain: its own overrides on top of the defaults."""
        return self.domains.get(domain.lower().rstrip("."), self.policy)

    def is_trusted(self, ip: str) -> bool:
        if not self.trusted_networks:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted_networks)


def load(path: str | Path) -> Config:
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot read: {exc}"]) from exc
    return parse(text, path)


def parse(text: str, path: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from exc
    return _Builder(text, path).build(data)


class _Builder:
    """Turns parsed TOML into a Config, collecting every problem with its line."""

    def __init__(self, text: str, path: str) -> None:
        self.lines = text.splitlines()
        self.path = path
        self.problems: list[str] = []

    def problem(self, table: tuple[str, ...], key: str, message: str) -> None:
        dotted = ".".join((*table, key)) if key else ".".join(table)
        line = self.line_of(table, key)
        where = f"line {line}: " if line else ""
        self.problems.append(f"{where}{dotted}: {message}")

    def line_of(self, table: tuple[str, ...], key: str) -> int | None:
        """The line that sets `key` in `[table]` (or the table header itself when key is empty)."""
        current: tuple[str, ...] = ()
        for number, raw in enumerate(self.lines, 1):
            line = raw.strip()
            header = re.match(r"^\[\s*([^\[\]]+?)\s*\]$", line)
            if header:
                current = tuple(_split_dotted(header.group(1)))
                if not key and current == table:
                    return number
                continue
            if key and current == table:
                match = re.match(r'^("[^"]*"|[A-Za-z0-9_-]+)\s*=', line)
                if match and match.group(1).strip('"') == key:
                    return number
        return None

    def build(self, data: dict[str, Any]) -> Config:
        defaults = Config()
        known = {
            "socket", "socket_mode", "mta", "authserv_id", "trusted_networks", "skip_authenticated",
            "skip_sender_domains", "log_level", "log_format", "milter_timeout", "dns", "bounce", "events",
            "metrics", "policy", "domains", "suppression", "arc",
        }  # fmt: skip
        self.unknown((), data, known)
        sock = self.string((), data, "socket", defaults.socket)
        if not _SOCKET.match(sock):
            self.problem((), "socket", f"{sock!r} is not unix:/path, inet:port@host or inet6:port@host")
        mode = self.string((), data, "socket_mode", "0660")
        mode_ok = re.fullmatch(r"0?[0-7]{3}", mode) is not None
        if not mode_ok:
            self.problem((), "socket_mode", f'{mode!r} is not an octal mode like "0660"')
        authserv_id = self.string((), data, "authserv_id", defaults.authserv_id)
        if not _DOMAIN.match(authserv_id):
            self.problem((), "authserv_id", f"{authserv_id!r} is not a host name")
        networks = []
        for item in self.string_list((), data, "trusted_networks", None):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.problem((), "trusted_networks", f"{item!r} is not an IP network")
        skip_domains = self.domain_list((), data, "skip_sender_domains")
        log_level = self.choice((), data, "log_level", defaults.log_level, LOG_LEVELS)
        log_format = self.choice((), data, "log_format", defaults.log_format, LOG_FORMATS)
        config = Config(
            socket=sock,
            socket_mode=int(mode, 8) if mode_ok else defaults.socket_mode,
            mta=self.choice((), data, "mta", defaults.mta, MTAS),
            authserv_id=authserv_id,
            trusted_networks=tuple(networks) if "trusted_networks" in data else defaults.trusted_networks,
            skip_authenticated=self.boolean((), data, "skip_authenticated", defaults.skip_authenticated),
            skip_sender_domains=frozenset(skip_domains),
            log_level=log_level,
            log_format=log_format,
            milter_timeout=int(self.number((), data, "milter_timeout", defaults.milter_timeout, 1, 86400)),
            dns=self.dns(self.table((), data, "dns")),
            bounce=self.bounce(self.table((), data, "bounce")),
            events=self.events(self.table((), data, "events")),
            metrics=self.metrics(self.table((), data, "metrics")),
            arc=self.arc(self.table((), data, "arc")),
            policy=MappingProxyType(self.policy(("policy",), self.table((), data, "policy"), defaults.policy)),
            domains=MappingProxyType({}),
            suppression=self.suppression(("suppression",), self.table((), data, "suppression"), SuppressionRules()),
            source=self.path,
        )
        domains, suppression = {}, {}
        for name, table in self.table((), data, "domains").items():
            where = ("domains", name)
            if not isinstance(table, dict):
                self.problem(("domains",), name, 'must be a table like [domains."example.org".policy]')
                continue
            if not _DOMAIN.match(name):
                self.problem(where, "", f"{name!r} is not a domain name")
            self.unknown(where, table, {"policy", "suppression"})
            policy = self.policy((*where, "policy"), self.table(where, table, "policy"), config.policy)
            domains[name.lower().rstrip(".")] = MappingProxyType(policy)
            if "suppression" in table:
                rules = self.table(where, table, "suppression")
                suppression[name.lower().rstrip(".")] = self.suppression((*where, "suppression"), rules,
                                                                         config.suppression)  # fmt: skip
        if self.problems:
            raise ConfigError(self.path, self.problems)
        return replace(config, domains=MappingProxyType(domains), domain_suppression=MappingProxyType(suppression))

    def dns(self, data: dict[str, Any]) -> DnsConfig:
        table = ("dns",)
        self.unknown(table, data, {"nameservers", "tls_ca_file", "timeout", "budget", "cache_size"})
        servers: list[Upstream] = []
        for item in self.string_list(table, data, "nameservers", []):
            try:
                servers.extend(parse_nameservers([item]))
            except ValueError as exc:
                self.problem(table, "nameservers", str(exc))
        ca_file = self.string(table, data, "tls_ca_file", "")
        if ca_file and (problem := tls_ca_problem(ca_file)):
            self.problem(table, "tls_ca_file", problem)
        return DnsConfig(
            nameservers=tuple(servers),
            tls_ca_file=ca_file,
            timeout=self.number(table, data, "timeout", DnsConfig.timeout, 0.01, 60),
            budget=self.number(table, data, "budget", DnsConfig.budget, 0.01, 300),
            cache_size=int(self.number(table, data, "cache_size", DnsConfig.cache_size, 0, 10_000_000)),
        )

    def bounce(self, data: dict[str, Any]) -> BounceConfig:
        table = ("bounce",)
        self.unknown(table, data, {"enabled", "model", "review_below"})
        return BounceConfig(
            enabled=self.boolean(table, data, "enabled", True),
            model=self.string(table, data, "model", ""),
            review_below=self.number(table, data, "review_below", BounceConfig.review_below, 0, 1),
        )

    def events(self, data: dict[str, Any]) -> EventsConfig:
        table = ("events",)
        defaults = EventsConfig()
        self.unknown(table, data, {f.name for f in fields(EventsConfig)})
        strings = {f.name: self.string(table, data, f.name, f.default) for f in fields(EventsConfig) if f.type == "str"}
        for key, problem in sink_problems(strings).items():
            self.problem(table, key, problem)
            strings[key] = getattr(defaults, key)
        retention = self.number(table, data, "retention_days", defaults.retention_days, 1, 36500)
        return EventsConfig(**strings, retention_days=int(retention))

    def suppression(self, table: tuple[str, ...], data: dict[str, Any], base: SuppressionRules) -> SuppressionRules:
        self.unknown(table, data, {"threshold", "reset_days", "inactive_repeats"})
        return SuppressionRules(
            threshold=self.number(table, data, "threshold", base.threshold, 0.5, 1000),
            reset_days=int(self.number(table, data, "reset_days", base.reset_days, 1, 3650)),
            inactive_repeats=int(self.number(table, data, "inactive_repeats", base.inactive_repeats, 1, 1000)),
        )

    def arc(self, data: dict[str, Any]) -> ArcConfig:
        table = ("arc",)
        self.unknown(table, data, {"trusted_sealers", "sign", "domain", "selector", "key_file"})
        trusted = frozenset(self.domain_list(table, data, "trusted_sealers"))
        domain, selector = self.string(table, data, "domain", ""), self.string(table, data, "selector", "")
        key_file = self.string(table, data, "key_file", "")
        if not self.boolean(table, data, "sign", False):
            return ArcConfig(trusted)
        if not _DOMAIN.match(domain):
            self.problem(table, "domain", f"{domain!r} is not a domain name (sign = true needs one)")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*", selector):
            self.problem(table, "selector", f"{selector!r} is not a selector (sign = true needs one)")
        if not key_file:
            self.problem(table, "key_file", "sign = true needs the file of the private key to seal with")
            return ArcConfig(trusted)
        try:
            return ArcConfig(trusted, Sealer.load(domain, selector, key_file))
        except (OSError, ValueError) as exc:
            self.problem(table, "key_file", f"cannot seal with it: {exc}")
            return ArcConfig(trusted)

    def metrics(self, data: dict[str, Any]) -> MetricsConfig:
        table = ("metrics",)
        self.unknown(table, data, {"address"})
        address = self.string(table, data, "address", "")
        if address and not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}", address):
            self.problem(table, "address", f"{address!r} is not host:port")
        return MetricsConfig(address=address)

    def policy(self, table: tuple[str, ...], data: dict[str, Any], base: MappingProxyType[str, str | bool]) -> dict:
        keys, options = policy_keys(), policy_options()
        self.unknown(table, data, {*keys, *options})
        actions = {key: self.choice(table, data, key, str(base[key]), ACTIONS) for key in keys}
        return actions | {key: self.boolean(table, data, key, bool(base[key])) for key in options}

    # -- typed getters: each reports a wrong type and returns the default so that checking goes on --

    def unknown(self, table: tuple[str, ...], data: dict[str, Any], known: set[str]) -> None:
        for key in data:
            if key not in known:
                self.problem(table, key, f"unknown key (known: {', '.join(sorted(known))})")

    def table(self, table: tuple[str, ...], data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem(table, key, "must be a table")
            return {}
        return value

    def typed(self, table: tuple[str, ...], data: dict[str, Any], key: str, default: Any, kind: type, what: str) -> Any:
        """data[key] if it is a `kind` (default when absent); else the problem is noted and `default` returned."""
        value = data.get(key, default)
        if not isinstance(value, kind):
            self.problem(table, key, f"must be {what}, not {type(value).__name__}")
            return default
        return value

    def string(self, table: tuple[str, ...], data: dict[str, Any], key: str, default: str) -> str:
        return self.typed(table, data, key, default, str, "a string")

    def boolean(self, table: tuple[str, ...], data: dict[str, Any], key: str, default: bool) -> bool:
        return self.typed(table, data, key, default, bool, "true or false")

    def number(self, table: tuple[str, ...], data: dict, key: str, default: float, low: float, high: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(table, key, f"must be a number, not {type(value).__name__}")
            return default
        if not low <= value <= high:
            self.problem(table, key, f"{value} is out of range [{low}, {high}]")
            return default
        return float(value)

    def choice(self, table: tuple[str, ...], data: dict, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(table, data, key, default)
        if value not in choices:
            self.problem(table, key, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def string_list(self, table: tuple[str, ...], data: dict, key: str, default: list[str] | None) -> list[str]:
        value = data.get(key, default or [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(table, key, "must be a list of strings")
            return []
        return value

    def domain_list(self, table: tuple[str, ...], data: dict, key: str) -> list[str]:
        out = []
        for item in self.string_list(table, data, key, []):
            if _DOMAIN.match(item):
                out.append(item.lower().rstrip("."))
            else:
                self.problem(table, key, f"{item!r} is not a domain name")
        return out


def _split_dotted(header: str) -> list[str]:
    """Split a TOML table header like domains."example.org".policy into its keys."""
    return [a or b for a, b in re.findall(r'"([^"]*)"|([^."\s]+)', header)]
