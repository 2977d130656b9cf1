"""Which network addresses Ferry may connect to on a producer's say-so: one judgement for a job's
``uri`` (``producers.files.uri_problem``) and a webhook's ``callback_url``
(``producers.notifications.check_url``), at submit and again in the worker.

An address is off limits when it is cloud metadata, loopback, link-local or otherwise not public
(RFC 1918, fc00::/7, carrier-grade NAT, multicast, reserved). An IPv6 address that carries an IPv4
one is judged as the IPv4 address it reaches: IPv4-mapped ``::ffff:a.b.c.d``, IPv4-translated
``::ffff:0:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d`` (and the
local-use ``64:ff9b:1::/48``, which is never public: the operator's own translator) and 6to4
``2002:aabb:ccdd::``. On a host with a NAT64 gateway, ``64:ff9b::a9fe:a9fe`` is 169.254.169.254.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata services answer a request from the instance with its credentials:
# AWS, GCP, Azure, OpenStack (169.254.169.254), AWS over IPv6 (fd00:ec2::254), Alibaba Cloud
# (100.100.100.200). Named apart so a refusal says what the address is.
METADATA_ADDRESSES = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254",
                                                          "100.100.100.200")))
# IPv6 prefixes whose last 32 bits are an IPv4 address (6to4 is read by ``sixtofour``).
_CARRYING_LOW_32 = tuple(map(ipaddress.ip_network, (
    "64:ff9b::/96",  # NAT64, the well-known prefix (RFC 6052)
    "64:ff9b:1::/48",  # NAT64, local use (RFC 8215); its IPv4 is in the last 32 bits with a /96
    "::ffff:0:0/96",  # IPv4-mapped
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "::/96",  # IPv4-compatible (deprecated), apart from :: and ::1
)))
NAT64_LOCAL = _CARRYING_LOW_32[1]


def parse(text: str) -> IPAddress:
    """An address as a resolver or a URL spells it (an IPv6 zone ``%eth0`` dropped); ValueError
    when it is none."""
    return ipaddress.ip_address(text.split("%")[0])


def address_kind(address: IPAddress) -> str | None:
    """What puts ``address`` off limits ("metadata", "loopback", "link-local", "private"), or
    None for a public address."""
    inner = carried_ipv4(address)
    if inner is not None:
        reached = address_kind(inner)
        return reached or ("private" if address in NAT64_LOCAL else None)
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_loopback or address.is_unspecified:  # 0.0.0.0 and :: reach this host
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast or not address.is_global:  # RFC 1918, fc00::/7, CGNAT, reserved…
        return "private"
    return None


def carried_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (see the module's list), or None."""
    if isinstance(address, ipaddress.IPv4Address) or int(address) <= 1:  # ::, ::1 are themselves
        return None
    if any(address in prefix for prefix in _CARRYING_LOW_32):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
