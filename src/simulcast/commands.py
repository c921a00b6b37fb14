"""The ``simulcast`` command line (typer): run the server and administer accounts, keys and
wallets. :func:`simulcast.cli.main` runs a plain ``serve`` without loading this module."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.session import create_engine, session_factory, upgrade_schema
from simulcast.control.services import auth, ledger, secrets
from simulcast.serve import ROLES, run_server
from simulcast.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    help="Simulcast: one RTMP ingest, many destinations, HLS, sats.", no_args_is_help=True
)
accounts_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
wallet_app = typer.Typer(help="Fund wallets.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(wallet_app, name="wallet")


def _run_in_db(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on the configured (upgraded) database."""

    async def main() -> T:
        settings = Settings()
        engine = create_engine(settings)
        try:
            await upgrade_schema(engine)
            async with session_factory(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _account_id(session_name: str) -> Callable[[AsyncSession], Awaitable[int]]:
    async def find(session: AsyncSession) -> int:
        account = await auth.account_by_name(session, session_name)
        if account is None:
            raise typer.BadParameter(f"no account named {session_name!r}", param_hint="--account")
        return account.id

    return find


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="HTTP bind address")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
    role: Annotated[
        str | None,
        typer.Option(help="all (one process, default), api or media (multi-node: see README)"),
    ] = None,
) -> None:
    """Run the server: by default HTTP API, RTMP ingest and every output, in one process."""
    if role is not None and role not in ROLES:
        raise typer.BadParameter("must be all, api or media", param_hint="--role")
    raise typer.Exit(run_server(role=role, host=host, port=port))


@app.command()
def migrate() -> None:
    """Apply pending database migrations (the server also does this on start)."""

    async def nothing(_session: AsyncSession) -> None:
        return None

    _run_in_db(nothing)
    typer.echo("database schema is up to date")


@app.command("reseal-secrets")
def reseal_secrets() -> None:
    """Re-seal every secret stored at rest with the first SIMULCAST_SECRET_KEY (after rotation)."""
    count = _run_in_db(secrets.reseal_all)
    typer.echo(f"re-sealed {count} values; keys after the first can now be removed")


@accounts_app.command("create")
def accounts_create(
    name: Annotated[str, typer.Argument(help="Account (login) name")],
    password: Annotated[str | None, typer.Option(help="Dashboard login password")] = None,
    admin: Annotated[bool, typer.Option(help="Operator account (may credit wallets)")] = False,
) -> None:
    """Create an account and print its first permanent (``sk_``) API key, once."""

    async def work(session: AsyncSession) -> tuple[int, str]:
        try:
            account = await auth.create_account(
                session, name=name, password=password, is_admin=admin
            )
        except auth.AccountExists:
            raise typer.BadParameter(f"account {name!r} already exists") from None
        key = await auth.create_api_key(session, account_id=account.id, kind="sk")
        return account.id, key

    account_id, key = _run_in_db(work)
    typer.echo(f"account {name!r} created (id {account_id})")
    typer.echo(f"permanent API key (shown once): {key}")


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option(help="Account name")],
) -> None:
    """Create a permanent (``sk_``) API key for an account and print it, once."""

    async def work(session: AsyncSession) -> str:
        account_id = await _account_id(account)(session)
        return await auth.create_api_key(session, account_id=account_id, kind="sk")

    typer.echo(_run_in_db(work))


@wallet_app.command("credit")
def wallet_credit(
    sats: Annotated[int, typer.Argument(min=1, help="Sats to add")],
    account: Annotated[str, typer.Option(help="Account name")],
    reason: Annotated[str, typer.Option(help="Memo kept with the posting")] = "operator credit",
    reference: Annotated[
        str | None, typer.Option(help="Idempotency reference: the same one never credits twice")
    ] = None,
) -> None:
    """Credit an account's wallet through the ledger and print the new balance."""

    async def work(session: AsyncSession) -> tuple[bool, int]:
        account_id = await _account_id(account)(session)
        posted = await ledger.OperatorCredit().fund(
            session,
            account_id=account_id,
            amount=sats,
            reference=reference or f"cli:{time.time_ns()}",
            memo=reason,
        )
        return posted, await ledger.balance(session, account_id=account_id)

    posted, balance = _run_in_db(work)
    if not posted:
        typer.echo("already credited with that reference; nothing changed")
    typer.echo(f"balance of {account!r}: {balance} sats")
