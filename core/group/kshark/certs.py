"""What a broker's certificate says about itself, and whether that fits the address the client dialled.

Python's `ssl` stops at the first problem (and no longer exposes its hostname matcher), while a person fixing
TLS wants all of it at once: whom the certificate is for, who issued it, when it expires. So the certificate is
parsed here with `cryptography` and judged on its own: names against the host (RFC 6125: one wildcard label,
IP addresses only against IP entries), then expiry (fail once expired, warn under `EXPIRY_WARN_DAYS`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.group.kshark.report import Status

EXPIRY_WARN_DAYS = 14
RENEW_HINT = "Ask the cluster's admin to renew the broker's certificate."


@dataclass(frozen=True)
class Certificate:
    subject: str
    issuer: str
    common_name: str
    dns_names: tuple[str, ...]
    ip_names: tuple[str, ...]
    not_before: datetime
    not_after: datetime

    @property
    def names(self) -> list[str]:
        """The names a client may use: the SAN entries, plus the subject's CN when no SAN names a host (OpenSSL
        checks the CN then)."""
        cn = [self.common_name] if self.common_name and not self.dns_names else []
        return [*self.dns_names, *cn, *self.ip_names]

    def days_left(self, now: datetime | None = None) -> int:
        return int((self.not_after - (now or datetime.now(UTC))).total_seconds() // 86400)

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "names": self.names,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left(now),
        }


def parse(der: bytes) -> Certificate:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=str(cns[0].value) if cns else "",
        dns_names=dns,
        ip_names=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _dns_match(pattern: str, host: str) -> bool:
    """Case-insensitive; a `*` only as the whole leftmost label, matching exactly one label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern.startswith("*."):
        return pattern == host
    _, _, rest = host.partition(".")
    return bool(rest) and rest == pattern[2:] and "." in pattern[2:]


def matches(cert: Certificate, host: str) -> bool:
    """Whether a client dialling `host` accepts this certificate's names (what ssl's hostname check does)."""
    address = _ip(host)
    if address is not None:
        return any(_ip(name) == address for name in cert.ip_names)
    if cert.dns_names:
        return any(_dns_match(name, host) for name in cert.dns_names)
    return bool(cert.common_name) and _dns_match(cert.common_name, host)


def describe(cert: Certificate, now: datetime | None = None) -> str:
    days = cert.days_left(now)
    when = f"expires in {days} days" if days >= 0 else f"expired {-days} days ago"
    return f"subject {cert.subject}, names {', '.join(cert.names) or '(none)'}, {when} ({cert.not_after:%Y-%m-%d})"


def judge(cert: Certificate, host: str, *, check_hostname: bool, now: datetime | None = None) -> tuple[Status, str]:
    """(status, hint) for a certificate the handshake got: expiry first (it stops every client), then names."""
    moment = now or datetime.now(UTC)
    if cert.not_after <= moment:
        return "fail", f"The certificate expired on {cert.not_after:%Y-%m-%d}. {RENEW_HINT}"
    if cert.not_before > moment:
        return "fail", f"The certificate is only valid from {cert.not_before:%Y-%m-%d}: check the clocks."
    if not matches(cert, host):
        listed = ", ".join(cert.names) or "no names"
        if check_hostname:
            return "fail", f"The certificate is not for {host}: dial a name it lists ({listed}), or get one for {host}."
        return "warn", (
            f"The certificate names {listed}, not {host}: accepted only because group.ssl_check_hostname is off. "
            f"Dial a listed name, or ask for a certificate that names {host}, then turn the check back on."
        )
    if cert.days_left(moment) < EXPIRY_WARN_DAYS:
        return "warn", f"The certificate expires soon. {RENEW_HINT}"
    return "ok", ""
