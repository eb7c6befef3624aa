"""Provider tables (one module per provider): the reasons big receivers and filtering gateways
document for their own replies, chosen by the remote host that answered or, when that names no
provider, by the recipient's domain (a filtering service in front of a provider answers with the
provider's words, and a report may name no remote host at all).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import import_module

from ._base import Provider, Rule

_MODULES = (
    "google", "microsoft", "yahoo", "apple", "comcast", "cox", "spectrum", "gmx", "orange", "free", "yandex",
    "mailru", "tencent", "mimecast", "proofpoint", "barracuda", "ironport", "trendmicro", "messagelabs",
    "godaddy", "iua", "kddi", "docomo",
)  # fmt: skip
PROVIDERS: dict[str, Provider] = {m: import_module(f"{__name__}.{m}").PROVIDER for m in _MODULES}

_BY_HOST: dict[str, Provider] = {suffix: p for p in PROVIDERS.values() for suffix in p.hosts}
_BY_DOMAIN: dict[str, Provider] = {domain: p for p in PROVIDERS.values() for domain in p.domains}


@lru_cache(maxsize=4096)  # remote hosts repeat from bounce to bounce
def by_host(host: str) -> Provider | None:
    """The provider whose host names end `host` ("mx1.mail.icloud.com" -> apple)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    while host:
        found = _BY_HOST.get(host)
        if found is not None:
            return found
        _, dot, host = host.partition(".")
        if not dot:
            return None
    return None


@lru_cache(maxsize=4096)
def by_domain(domain: str) -> Provider | None:
    return _BY_DOMAIN.get(domain.strip().rstrip(".").lower())


def choose(remote_mta: str, recipient: str) -> list[Provider]:
    """The providers to ask, in order: the remote host's, then the recipient domain's."""
    out: list[Provider] = []
    host = by_host(remote_mta) if remote_mta else None
    if host is not None:
        out.append(host)
    domain = by_domain(recipient.rpartition("@")[2]) if "@" in recipient else None
    if domain is not None and domain is not host:
        out.append(domain)
    return out


__all__ = ["PROVIDERS", "Provider", "Rule", "by_domain", "by_host", "choose"]
