"""IPREV (RFC 8601 §3): forward-confirmed reverse DNS of the connecting client; policy keys iprev_*, replies
x.7.25 (RFC 7372)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import authres

from ..dns import DNSTempError
from ..headers import comment, pvalue
from ..sanitise import clean
from .base import Check, CheckResult, DnsContext, Subject

MAX_NAMES = 10  # RFC 7208 §4.6.4 bound, which RFC 8601 iprev implementations share


@dataclass(frozen=True)
class IprevResult(CheckResult):
    ip: str = ""
    names: tuple[str, ...] = ()  # the PTR names that map back to the IP (pass), else every PTR name seen

    def resinfo(self) -> str:
        """`iprev=pass (reason) policy.iprev=IP (the name that maps back)`."""
        return str(
            authres.IPRevAuthenticationResult(
                result=self.result,
                result_comment=comment(self.reason),
                policy_iprev=pvalue(clean(self.ip, 64)),
                policy_iprev_comment=comment(self.names[0]) if self.result == "pass" else None,
            )
        )


class IprevCheck(Check[IprevResult]):
    name = "iprev"
    stage = "connect"
    policy = "iprev"
    replies = {
        "fail": ("7.25", "reverse DNS validation failed"),
        "temperror": ("7.25", "reverse DNS validation error"),
        "permerror": ("7.25", "reverse DNS validation failed"),
    }
    report_key = ("iprev",)

    def report(self, result: IprevResult) -> dict:
        return {"result": result.result, "names": list(result.names)}

    def summary(self, result: IprevResult) -> str:
        return f"iprev: {result.result} {' '.join(result.names)}".rstrip()

    def failed(self, subject: Subject, reason: str) -> IprevResult:
        return IprevResult("iprev", "temperror", reason, ip=subject.ip)

    def run(self, subject: Subject, dns: DnsContext) -> IprevResult:
        ip = subject.ip

        def result(word: str, reason: str, names: tuple[str, ...] = ()) -> IprevResult:
            return IprevResult("iprev", word, reason, ip=ip, names=names)

        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return result("permerror", "client address is not an IP address")
        try:
            ptr = dns.lookup(addr.reverse_pointer, "PTR")
        except DNSTempError as exc:
            return result("temperror", f"PTR lookup failed: {exc}")
        names = tuple(dict.fromkeys(str(v) for v in ptr.values()))
        if not names:
            return result("permerror", "no PTR record" if not ptr.nxdomain else "PTR lookup: NXDOMAIN")
        rdtype = "A" if addr.version == 4 else "AAAA"
        confirmed: list[str] = []
        errors: list[str] = []
        for name in names[:MAX_NAMES]:
            try:
                forward = dns.lookup(name, rdtype).values()
            except DNSTempError as exc:
                errors.append(str(exc))
                continue
            if any(ipaddress.ip_address(str(v)) == addr for v in forward):
                confirmed.append(name)
        if confirmed:
            return result("pass", f"{confirmed[0]} maps back to {ip}", tuple(confirmed))
        if errors:
            return result("temperror", f"forward lookup failed: {errors[0]}", names)
        return result("fail", f"no PTR name of {ip} maps back to it", names)
