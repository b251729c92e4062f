"""The ``chatbus`` command: ``up``, ``chat``, ``agents``, ``usage``, ``keys``.

``./dev <command>`` runs it from the project's environment (no uv on the PATH needed). Settings
come from the environment and ``.env`` (read once here, the same way every service reads them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any


def _gateway() -> str:
    return os.environ.get("CHATBUS_URL", "http://127.0.0.1:8080").rstrip("/")


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if key := os.environ.get("CHATBUS_API_KEY"):
        headers["authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(_gateway() + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, {"error": e.reason}
    except OSError as e:
        raise SystemExit(f"cannot reach the gateway at {_gateway()}: {e}") from e


def cmd_agents(args: argparse.Namespace) -> int:
    status, body = _call("GET", "/api/agents")
    if status != 200:
        print(f"error {status}: {body}")
        return 1
    agents = body.get("agents", body) if isinstance(body, dict) else body
    if not agents:
        print("no agents running")
    for a in agents:
        print(
            f"{a['id']:<12} {a.get('instances', '?')} instance(s)  {a.get('label', '')}"
            f" — {a.get('description', '')}"
        )
    return 0


def _lines() -> Any:
    if not sys.stdin.isatty():
        yield from sys.stdin
        return
    while True:
        try:
            yield input("you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return


def cmd_chat(args: argparse.Namespace) -> int:
    session = args.session or f"cli-{uuid.uuid4().hex[:8]}"
    print(f"chatting with {args.agent} (session {session}); Ctrl-D to quit")
    agent = args.agent
    for line in _lines():
        message = line.strip()
        if not message:
            continue
        status, body = _call(
            "POST",
            f"/api/chat/{agent}",
            {
                "message": message,
                "session_id": session,
                **({"user_id": args.user} if args.user else {}),
            },
        )
        if status != 200:
            print(f"[{status}] {body.get('error') if isinstance(body, dict) else body}")
            continue
        who = body.get("agent", agent)
        note = f" (handed over from {body['handoff_from']})" if body.get("handoff_from") else ""
        print(f"{who}{note}> {body['reply']}")
        agent = who  # the session continues with whoever answered
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from chatbus_dev.local import up

    only = [s.strip() for s in args.services.split(",") if s.strip()] if args.services else None
    return up(
        Path(args.data_dir),
        base_port=args.port,
        only=only,
        traces=args.traces,
        cluster=args.cluster,
    )


def run_usage(argv: list[str]) -> int:
    from chatbus_dev.usage_cli import main

    return int(main(argv) or 0)


def run_keys(argv: list[str]) -> int:
    from chatbus_gateway.keys_cli import main  # API keys are the gateway's: its own command

    return int(main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatbus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="run the whole system locally")
    p_up.add_argument("--data-dir", default=os.environ.get("DATA_DIR", ".data"))
    p_up.add_argument(
        "--port", type=int, default=8080, help="the gateway's port; the others follow (8081 ...)"
    )
    p_up.add_argument(
        "--services", help="start only these, comma-separated (e.g. cost,memory); default all"
    )
    p_up.add_argument(
        "--traces",
        action="store_true",
        help="also run a trace viewer (Arize Phoenix, installed on first use) on :6006",
    )
    p_up.add_argument(
        "--cluster",
        action="store_true",
        help="the clustered topology: 3 NATS nodes, Redis under Sentinel, 2 gateways"
        " (:8080 and :8090), every agent twice",
    )
    p_up.set_defaults(fn=cmd_up)
    p_chat = sub.add_parser("chat", help="chat with an agent through the gateway")
    p_chat.add_argument("agent")
    p_chat.add_argument("--session")
    p_chat.add_argument(
        "--user",
        default=os.environ.get("CHATBUS_USER", "demo-user"),
        help="your user id (default demo-user, who owns the demo orders in development)",
    )
    p_chat.set_defaults(fn=cmd_chat)
    sub.add_parser("agents", help="list the agents running now").set_defaults(fn=cmd_agents)
    sub.add_parser("usage", help="daily usage and cost, with a month-end forecast", add_help=False)
    sub.add_parser("keys", help="create, list and revoke API keys", add_help=False)
    return parser


# commands with their own argument parsers, handed the rest of the command line
DELEGATED = {"usage": run_usage, "keys": run_keys}


def main(argv: list[str] | None = None) -> int:
    from chatbus.settings import load_env_file

    load_env_file()  # once, before anything reads a setting
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
