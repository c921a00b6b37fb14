"""The WordPress tests use the Lightning tests' relay and NIP-47 wallet services."""

from tests.support.lightning import relay, wallets

__all__ = ["relay", "wallets"]
