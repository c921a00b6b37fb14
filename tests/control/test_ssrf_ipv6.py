"""The webhook SSRF guard and IPv6 (issue 20): forms that embed an IPv4 address are judged by
it, site-local is refused. (Redirects are never followed and deliveries connect to the address
that was checked: see test_webhooks_dispatch.py.)"""

from __future__ import annotations

import ipaddress

import pytest

from simulcast.control.services import webhooks

REFUSED = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64 prefix
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible metadata
    "::ffff:7f00:1",  # IPv4-mapped 127.0.0.1
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
    "fec0::1",  # site-local
    "fd00:ec2::254",  # metadata (ULA)
    "::1",
    "::",
]
ALLOWED = [
    "2606:4700:4700::1111",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8: public
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", REFUSED)
async def test_ipv6_forms_of_private_addresses_are_refused_at_registration(address: str) -> None:
    assert webhooks.forbidden_address(ipaddress.IPv6Address(address))
    with pytest.raises(webhooks.WebhookError, match="private or reserved"):
        await webhooks.check_url(f"https://[{address}]/hook", allow_http=False, allow_private=False)


@pytest.mark.parametrize("address", ALLOWED)
async def test_public_ipv6_forms_pass(address: str) -> None:
    assert not webhooks.forbidden_address(ipaddress.IPv6Address(address))
    await webhooks.check_url(f"https://[{address}]/hook", allow_http=False, allow_private=False)
