"""A job's URL: https only, public hosts only, unless ``[files]`` says otherwise. The same
function answers at submit and in the worker (``producers.files.uri_problem``); no DNS is needed
here except for ``localhost`` and a name that must not resolve. Which addresses are public is one
judgement (``producers.addresses``) for a job's ``uri`` and a webhook's ``callback_url``: the
matrix below goes through both checkers."""

from __future__ import annotations

import ipaddress

import pytest

from producers.addresses import address_kind
from producers.client import Ferry
from producers.config import FerryConfig, NotificationsConfig, parse_config
from producers.errors import SubmitError
from producers.files import uri_problem
from producers.notifications import CallbackRefused, check_url

STRICT = FerryConfig()
HTTP_ALLOWED = FerryConfig(allow_http_uris=True)
PRIVATE_ALLOWED = FerryConfig(allow_private_uris=True)


INNER_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("0.0.0.0", "loopback"),  # reaches this host
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.10", "private"),
    ("100.64.0.1", "private"),  # carrier-grade NAT
    ("224.0.0.1", "private"),  # multicast
    ("169.254.1.1", "link-local"),
    ("169.254.169.254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("::1", "loopback"),
    ("::", "loopback"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"),
    ("fd00:ec2::254", "metadata"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::a9fe:a9fe", "metadata"),  # 169.254.169.254 through NAT64
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("64:ff9b::127.0.0.1", "loopback"),  # NAT64, well-known prefix
    ("64:ff9b::10.0.0.1", "private"),
    ("64:ff9b:1::a9fe:a9fe", "metadata"),  # NAT64, local-use prefix
    ("64:ff9b:1::8.8.8.8", "private"),  # local use: the operator's own translator, never public
    ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
    ("2002:c0a8:1::", "private"),  # 6to4 of 192.168.0.1
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("::169.254.169.254", "metadata"),
    ("::10.0.0.1", "private"),
    ("::ffff:0:127.0.0.1", "loopback"),  # IPv4-translated (SIIT)
]
PUBLIC_ADDRESSES = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8",
                    "2002:808:808::1", "::8.8.8.8"]


def literal(address: str) -> str:
    """The address as a URL's host."""
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize(("address", "kind"), INNER_ADDRESSES)
def test_addresses_a_job_url_or_a_callback_may_not_reach(address: str, kind: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind
    assert f"a {kind} address" in str(uri_problem(f"https://{literal(address)}/app.jar", STRICT))
    with pytest.raises(CallbackRefused, match=f"a {kind} address .*allow_private"):
        check_url("https://hooks.example.com/in", NotificationsConfig(), lambda host, port: [address])


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass(address: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) is None
    assert uri_problem(f"https://{literal(address)}/app.jar", STRICT) is None
    assert check_url("https://hooks.example.com/in", NotificationsConfig(),
                     lambda host, port: [address]).addresses == (address,)


def test_https_to_a_public_host_is_accepted() -> None:
    assert uri_problem("https://93.184.216.34/app-1.0.jar", STRICT) is None
    assert uri_problem("https://[2606:4700:4700::1111]:8443/app.jar", STRICT) is None


@pytest.mark.parametrize("uri", ["http://93.184.216.34/app.jar", "ftp://93.184.216.34/app.jar",
                                 "file:///etc/passwd", "https:///app.jar", "app.jar"])
def test_only_https_by_default(uri: str) -> None:
    assert "must be an https:// URL" in str(uri_problem(uri, STRICT))


def test_plain_http_only_with_allow_http_uris() -> None:
    assert "allow_http_uris" in str(uri_problem("http://93.184.216.34/app.jar", STRICT))
    assert uri_problem("http://93.184.216.34/app.jar", HTTP_ALLOWED) is None
    assert "loopback" in str(uri_problem("http://127.0.0.1/app.jar", HTTP_ALLOWED))


@pytest.mark.parametrize(("uri", "kind"), [
    ("https://127.0.0.1:8443/app.jar", "loopback"),
    ("https://localhost/app.jar", "loopback"),  # a name is judged by what it resolves to
    ("https://2130706433/app.jar", "loopback"),  # 127.0.0.1 spelt as one number
    ("https://10.0.0.7/app.jar", "private"),
    ("https://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://[::1]/app.jar", "loopback"),
    ("https://[fe80::1]/app.jar", "link-local"),
    ("https://[::ffff:192.168.0.1]/app.jar", "private"),
])
def test_private_hosts_are_refused_unless_allowed(uri: str, kind: str) -> None:
    problem = str(uri_problem(uri, STRICT))
    assert f"a {kind} address" in problem and "allow_private_uris = true" in problem
    assert uri_problem(uri, FerryConfig(allow_http_uris=True, allow_private_uris=True)) is None
    assert uri_problem(uri, PRIVATE_ALLOWED) is None


def test_a_host_that_does_not_resolve_is_for_the_caller_to_judge() -> None:
    with pytest.raises(OSError):
        uri_problem("https://nothing.invalid/app.jar", STRICT)


def test_the_allowances_are_keys_of_the_files_table() -> None:
    config = parse_config({"files": {"roots": ["/data"], "allow_http_uris": True,
                                     "allow_private_uris": True}})
    assert config.file_roots == ("/data",) and config.allow_http_uris and config.allow_private_uris
    assert not FerryConfig().allow_http_uris and not FerryConfig().allow_private_uris


# ---- at submit ---------------------------------------------------------------------------------
MARKETPLACE = {"connections": {"marketplace": {
    "service": "marketplace", "base_url": "https://mp.example", "email": "a@example.com", "token_env": "X"}}}


def submit_problems(uri: str, files: dict[str, object] | None = None) -> list[tuple[str, str]]:
    # Redis is never contacted by validate(); the URL only has to parse.
    ferry = Ferry("redis://127.0.0.1:1/0", config=parse_config({**MARKETPLACE, "files": files or {}}))
    try:
        ferry.validate("marketplace-artifact", connection="marketplace", uri=uri)
    except SubmitError as exc:
        return [(p.field, p.message) for p in exc.problems]
    return []


def test_submit_refuses_a_private_or_plain_http_uri_on_the_uri_field() -> None:
    [(field, message)] = submit_problems("https://127.0.0.1/app.jar")
    assert field == "uri" and "loopback" in message
    [(field, message)] = submit_problems("http://93.184.216.34/app.jar")
    assert field == "uri" and "allow_http_uris" in message


def test_submit_takes_what_the_config_allows_and_names_it_cannot_resolve() -> None:
    assert submit_problems("http://127.0.0.1:8080/app.jar",
                           {"allow_http_uris": True, "allow_private_uris": True}) == []
    # Not resolvable from here (no DNS, or not yet): the worker checks again before any use.
    assert submit_problems("https://files.example.invalid/app.jar") == []
