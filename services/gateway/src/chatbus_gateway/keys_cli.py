"""``chatbus keys create --tenant T | revoke KEY_ID | list``: manage gateway API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from chatbus.redis_link import RedisLink
from chatbus_gateway.auth.keys import KeyStore
from chatbus_gateway.settings import GatewaySettings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatbus keys", description="Manage gateway API keys")
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key for a tenant (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="")
    revoke = sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    sub.add_parser("list", help="list keys (ids and tenants, never the keys)")
    return p


async def run(args: argparse.Namespace, settings: GatewaySettings) -> int:
    client = RedisLink(settings.redis_url)
    try:
        store = KeyStore(client, settings.redis_prefix)
        if args.command == "create":
            key, record = await store.create(args.tenant, args.name)
            sys.stdout.write(f"key_id: {record.key_id}\ntenant: {record.tenant}\nkey:    {key}\n")
            sys.stderr.write("Store the key now: it is not kept and cannot be shown again.\n")
            return 0
        if args.command == "revoke":
            if await store.revoke(args.key_id):
                sys.stdout.write(f"revoked {args.key_id}\n")
                return 0
            sys.stderr.write(f"no key with id {args.key_id}\n")
            return 1
        for k in await store.list():
            created = datetime.fromtimestamp(k.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            sys.stdout.write(f"{k.key_id}  {k.tenant:<20} {created}  {k.name}\n")
        return 0
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return asyncio.run(run(args, GatewaySettings()))


if __name__ == "__main__":
    raise SystemExit(main())
