"""`porter`: serve, doctor, migrate, tasks, replay. The only module that reads os.environ."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from porter.app_credentials import overlay, stored_app_in_file
from porter.cli_tasks import cmd_tasks_list, cmd_tasks_show
from porter.errors import ConfigError, PorterError
from porter.runners.sandbox import UNSANDBOXED_WARNING
from porter.settings import SETTINGS, Settings, masked, parse_dotenv
from porter.settings.database import DatabaseUrl, parse_database, without_password
from porter.store import Store
from porter.webhooks import sign

if TYPE_CHECKING:
    from porter.check import Check

log = logging.getLogger("porter")


def load_settings(env_file: str | None, environ: Mapping[str, str]) -> Settings:
    """Environment first, then the .env file for names the environment leaves unset."""
    values: dict[str, str] = {}
    path = Path(env_file) if env_file else Path(".env")
    if path.is_file():
        values.update(parse_dotenv(path.read_text(encoding="utf-8")))
    elif env_file:
        raise ConfigError(f"--env-file {env_file}: no such file")
    values.update({k: v for k, v in environ.items() if k.startswith("PORTER_")})
    return Settings.from_mapping(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        settings = load_settings(args.env_file, os.environ)
    except ConfigError as exc:
        for line in exc.message.splitlines():
            print(f"porter: {line}", file=sys.stderr)
        return 2
    try:
        result: int = args.handler(settings, args)
        return result
    except PorterError as exc:
        print(f"porter: {exc.message}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:  # PostgreSQL unreachable, or refusing the login
        problem = " ".join(str(exc).split())
        if isinstance(settings.database, DatabaseUrl):
            problem = settings.database.redact(problem)
        print(f"porter: database {settings.database}: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="porter", description=__doc__)
    parser.add_argument("--env-file", help="settings file to read (default: ./.env if present)")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=cmd_serve)

    doctor = commands.add_parser("doctor", help="print settings and what is missing")
    doctor.set_defaults(handler=cmd_doctor)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=cmd_migrate)

    tasks = commands.add_parser("tasks", help="list or show tasks")
    tasks_cmds = tasks.add_subparsers(dest="tasks_command", required=True)
    listing = tasks_cmds.add_parser("list")
    for name in ("repo", "state", "agent", "requester"):
        listing.add_argument(f"--{name}")
    listing.add_argument("--issue", type=int)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_tasks_list)
    show = tasks_cmds.add_parser("show")
    show.add_argument("task_id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_tasks_show)

    rotate = commands.add_parser(
        "rotate-keys", help="re-seal every stored secret under the newest key of the key ring")
    rotate.add_argument(
        "--new-key", action="store_true",
        help="first put a fresh key in front of the generated key file (only when "
             "PORTER_SECRET_KEYS is unset)")
    rotate.set_defaults(handler=cmd_rotate_keys)

    backup = commands.add_parser(
        "backup", help="copy the database to PATH, consistently, while Porter serves")
    backup.add_argument("path", type=Path)
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.add_argument("--with-keys", action="store_true",
                        help="also copy the generated key file to PATH.keys")
    backup.set_defaults(handler=cmd_backup)

    move = commands.add_parser(
        "migrate-store", help="copy a SQLite database into an empty PostgreSQL database")
    move.add_argument("--from", dest="source", required=True, metavar="PATH",
                      help="the SQLite database: a path or sqlite:PATH (stop Porter first)")
    move.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="the PostgreSQL database: postgresql://USER:PASSWORD@HOST/NAME")
    move.set_defaults(handler=cmd_migrate_store)

    deliveries = commands.add_parser(
        "deliveries", help="the App's recent webhook deliveries and what became of each")
    deliveries.add_argument("--limit", type=int, default=30)
    deliveries.add_argument("--redeliver", action="store_true",
                            help="first ask GitHub to redeliver the lost ones (one pass)")
    deliveries.set_defaults(handler=cmd_deliveries)

    replay = commands.add_parser("replay", help="sign a payload file and post it as a delivery")
    replay.add_argument("file", type=Path)
    replay.add_argument("--event", required=True, help="X-GitHub-Event, e.g. issue_comment")
    replay.add_argument("--url", help="webhook URL (default: PORTER_PUBLIC_URL/webhooks/github)")
    replay.add_argument("--delivery", help="X-GitHub-Delivery (default: a new GUID)")
    replay.set_defaults(handler=cmd_replay)
    return parser


# -- serve ------------------------------------------------------------------------------------


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from porter.app import create_app
    from porter.runtime import check_config, check_key_ring

    problems = check_config(settings)
    for problem in problems:
        print(f"porter: {problem}", file=sys.stderr)
    if problems:
        return 2
    host = args.host or settings.host
    port = args.port or settings.port
    listener = _configure_logging(settings)
    for line in settings.suggestions():
        log.warning(line)
    try:  # refused here rather than in the app's startup: one line, no traceback
        refused = asyncio.run(check_key_ring(settings))
    except BaseException:
        listener.stop()
        raise
    if refused:
        listener.stop()
        print(f"porter: {refused}", file=sys.stderr)
        return 2
    # The app learns where it listens: the webhook relay posts to that address.
    config = uvicorn.Config(
        create_app(replace(settings, host=host, port=port)), host=host, port=port,
        loop="uvloop", http="httptools", access_log=False, log_level="warning", lifespan="on",
        log_config=None,  # uvicorn's loggers keep no handler of their own: they reach ours
        # Live pages hold server-sent-event streams open; a stop must not wait on them.
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    print(_ready_line(settings, host, port), flush=True)
    if warning := _sandbox_warning(settings):
        print(warning, file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        listener.stop()
    return 0


def _ready_line(settings: Settings, host: str, port: int) -> str:
    where = f"Porter listening on http://{host}:{port} (database {settings.database}, " \
            f"{settings.effective_runner} runner)"
    settings = overlay(settings, stored_app_in_file(settings))
    missing = settings.missing()
    if missing["github"] and missing["webhooks"]:
        # The address just bound: /setup trusts a browser on this host before the App exists.
        return f"{where}; to register the GitHub App open http://{host}:{port}/setup, " \
               f"or set {', '.join(missing['webhooks'] + missing['github'])}"
    if missing["webhooks"]:
        return f"{where}; to accept webhooks it still needs {', '.join(missing['webhooks'])}"
    if missing["github"]:
        return f"{where}; accepting webhooks, and to act on them it still needs " \
               f"{' and '.join(missing['github'])}"
    return f"{where}; accepting webhooks"


def _configure_logging(settings: Settings) -> logging.handlers.QueueListener:
    """JSON or text lines on stderr, with the work's ids and without secrets (porter/logs.py);
    formatted and written on a thread, off the event loop."""
    from porter.logs import configure

    return configure(settings)


# -- doctor -----------------------------------------------------------------------------------


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from porter.diagnostics import diagnose

    width = max(len(s.name) for s in SETTINGS)
    print("Settings:")
    for setting in SETTINGS:
        value = settings.value_of(setting)
        default = "" if value != setting.default else "  (default)"
        print(f"  {setting.name:<{width}}  {masked(setting, value)}{default}")
    for name, argv in sorted(settings.agent_commands.items()):
        print(f"  PORTER_AGENT_{name.upper().replace('-', '_')}_COMMAND  {' '.join(argv)}")
    checks = asyncio.run(diagnose(overlay(settings, stored_app_in_file(settings))))
    for title, of_settings in (("Capabilities", True), ("Checks", False)):
        print(f"\n{title}:")
        for check in checks:
            if (check.area == "settings") is of_settings:
                _print_check(check)
    if any(check.blocks for check in checks):
        print("\nPorter cannot do its job until each 'fix:' above is done.")
        return 1
    print("\nPorter has what it needs.")
    return 0


def _print_check(check: Check) -> None:
    """`name  detail`, then what to do: `fix:` for a failure that blocks, else `warning:`."""
    print(f"  {check.name:<28} {check.detail}")
    if check.next_action:
        mark = "next" if check.ok is not False else "fix" if check.blocking else "warning"
        print(f"  {'':<28} {mark}: {check.next_action}")


def _sandbox_warning(settings: Settings) -> str | None:
    """The startup line's warning about the sandbox, if any."""
    if settings.effective_runner != "local":
        return None
    if settings.local_runner_unsandboxed:
        return f"WARNING: {UNSANDBOXED_WARNING}"
    from porter.diagnostics import sandbox_problem

    if problem := sandbox_problem(settings):
        return f"WARNING: no agent will run until the sandbox works: {problem}"
    return None


# -- migrate ----------------------------------------------------------------------------------


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> int:
        store = await Store.open(settings.store_location, migrate=False)
        try:
            applied = await store.migrate()
        finally:
            await store.close()
        if applied:
            for migration in applied:
                print(f"applied {migration.version:04d} {migration.name}")
        else:
            print("database is up to date")
        return 0

    return asyncio.run(run())


# -- rotate-keys ------------------------------------------------------------------------------


def cmd_rotate_keys(settings: Settings, args: argparse.Namespace) -> int:
    from porter.rotation import report, rotate_keys

    rotation = asyncio.run(rotate_keys(settings, new_key=args.new_key))
    for line in report(rotation):
        print(line)
    return 0 if rotation.complete else 1


# -- backup -----------------------------------------------------------------------------------


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from porter.backup import key_note, take_backup

    done = take_backup(settings, args.path, force=args.force, with_keys=args.with_keys)
    print(done.summary())
    print(f"porter: {key_note(settings, done)}", file=sys.stderr)
    return 0


# -- migrate-store ----------------------------------------------------------------------------


def cmd_migrate_store(settings: Settings, args: argparse.Namespace) -> int:
    from porter.store.transfer import after_move, transfer

    source = _database_argument("--from", args.source)
    target = _database_argument("--to", args.target)
    if not isinstance(source, Path):
        raise ConfigError(f"--from {source}: a SQLite file (a path, or sqlite:PATH)")
    if not isinstance(target, DatabaseUrl):
        raise ConfigError(f"--to {target}: a postgresql:// or postgres:// URL")
    done = transfer(source, target)
    for line in done.summary():
        print(line)
    for line in after_move(settings, source, target):
        print(f"porter: {line}", file=sys.stderr)
    return 0


def _database_argument(option: str, raw: str) -> Path | DatabaseUrl:
    try:
        return parse_database(raw)
    except ValueError as exc:
        raise ConfigError(f"{option} {without_password(raw)}: not {exc}") from None


# -- deliveries -------------------------------------------------------------------------------


def cmd_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    from porter.delivery_report import run

    return run(settings, limit=args.limit, redeliver=args.redeliver)


# -- replay -----------------------------------------------------------------------------------


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    if settings.github_webhook_secret is None:
        raise ConfigError("replay signs with PORTER_GITHUB_WEBHOOK_SECRET, which is not set")
    try:
        body = args.file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
    url = args.url or f"{settings.public_url}/webhooks/github"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "porter-replay",
        "X-GitHub-Event": args.event,
        "X-GitHub-Delivery": args.delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret=settings.github_webhook_secret.get().encode()),
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise PorterError(f"could not post to {url}: {exc}") from None
    print(f"{response.status_code} {response.text}")
    return 0 if response.is_success else 1


if __name__ == "__main__":
    raise SystemExit(main())
