"""`broker users add|list|disable` and `broker tokens create|list|revoke`."""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Callable

from broker.admin.accounts import (
    ROLES, add_user, create_token, disable_user, list_tokens, list_users,
    revoke_token,
)
from broker.config import Settings
from broker.store.runtime import change_store, open_store

CLI_ACTOR = "cli"


def register(add_parser: Callable[..., argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    """Add the `users` and `tokens` commands to the CLI."""
    users = add_parser("users", parents=[common], help="web UI accounts",
                       description="Add, list and disable accounts of the web UI.")
    sub = users.add_subparsers(title="commands", metavar="COMMAND")
    add = sub.add_parser("add", parents=[common], help="add an account (password from stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="viewer")
    add.set_defaults(run=_add)
    listing = sub.add_parser("list", parents=[common], help="list accounts")
    listing.set_defaults(run=_list)
    disable = sub.add_parser("disable", parents=[common], help="disable an account")
    disable.add_argument("name")
    disable.set_defaults(run=_disable)
    tokens = add_parser("tokens", parents=[common], help="API bearer tokens",
                        description="Create, list and revoke bearer tokens of the JSON API.")
    tsub = tokens.add_subparsers(title="commands", metavar="COMMAND")
    create = tsub.add_parser("create", parents=[common],
                             help="create a token; it is printed once, on the last line")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, default="viewer")
    create.set_defaults(run=_create_token)
    tlist = tsub.add_parser("list", parents=[common], help="list tokens (never their secrets)")
    tlist.set_defaults(run=_list_tokens)
    revoke = tsub.add_parser("revoke", parents=[common], help="refuse a token from now on")
    revoke.add_argument("name")
    revoke.set_defaults(run=_revoke_token)


def _read_password() -> str:
    # A terminal gets a prompt without echo; a pipe gives its first line.
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


def _add(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password()
    if change_store(settings, lambda session: add_user(session, args.name, password, args.role,
                                                       CLI_ACTOR)) is None:
        return 1
    print(f"user {args.name} added ({args.role})")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store, store.sessions() as session:
        for user in list_users(session):
            state = "disabled" if user.disabled else "active"
            print(f"{user.username:<24} {user.role:<8} {state}")
    return 0


def _disable(args: argparse.Namespace, settings: Settings) -> int:
    if change_store(settings, lambda session: disable_user(session, args.name, CLI_ACTOR)) is None:
        return 1
    print(f"user {args.name} disabled")
    return 0


def _create_token(args: argparse.Namespace, settings: Settings) -> int:
    token = change_store(settings, lambda session: create_token(session, args.name, args.role,
                                                                CLI_ACTOR))
    if token is None:
        return 1
    print(f"token {args.name} ({args.role}) created; it is shown only this once:")
    print(token)
    return 0


def _list_tokens(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store, store.sessions() as session:
        for token in list_tokens(session):
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            print(f"{token.name:<24} {token.role:<8} {state:<24} last used {used}")
    return 0


def _revoke_token(args: argparse.Namespace, settings: Settings) -> int:
    if change_store(settings, lambda session: revoke_token(session, args.name, CLI_ACTOR)) is None:
        return 1
    print(f"token {args.name} revoked")
    return 0