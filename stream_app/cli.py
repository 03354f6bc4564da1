"""`solstake`: the operator's command line. Each subcommand is one small function registered below."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence

from stream_app import ops, pipeline_cli
from stream_app.settings import Settings, load_or_exit

Handler = Callable[[argparse.Namespace, Settings], int]
Configure = Callable[[argparse.ArgumentParser], None]


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from migrations.__main__ import apply_pending

    return asyncio.run(apply_pending(settings, prog="solstake migrate"))


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from http_app.token_cli import print_tokens

    return print_tokens(args, settings)


def _token_arguments(parser: argparse.ArgumentParser) -> None:
    from http_app.token_cli import configure

    configure(parser)


COMMANDS: dict[str, tuple[Handler, str]] = {
    "token": (cmd_token, "print test access tokens, one per role (--role admin: just that one)"),
    "migrate": (cmd_migrate, "apply pending database migrations"),
    "run": (pipeline_cli.cmd_run, "start every Procfile process (embedded PostgreSQL/Redis when unset)"),
    "fetch": (pipeline_cli.cmd_fetch, "ask the leader worker for a fetch cycle (a scoring run) now"),
    "status": (pipeline_cli.cmd_status, "stream lengths, consumer lag, workers and the last runs"),
    "verify": (pipeline_cli.cmd_verify, "check the database: counts, orphans, run consistency"),
    **ops.COMMANDS,  # metrics summary|health|prometheus, stream monitor, score all, schedule, db verify
}


# Subcommands that take arguments say how to add them: name -> configure(its parser). Two-word commands
# (`metrics summary`) are one subcommand with a positional action.
ARGUMENTS: dict[str, Configure] = {
    "token": _token_arguments,
    "run": pipeline_cli.configure_run,
    "fetch": pipeline_cli.configure_fetch,
    **ops.ARGUMENTS,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="solstake", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_handler, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name in ARGUMENTS:
            ARGUMENTS[name](command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_or_exit()
    from stream_app.logs import configure_logging

    configure_logging(settings)
    handler, _help = COMMANDS[args.command]
    return handler(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
