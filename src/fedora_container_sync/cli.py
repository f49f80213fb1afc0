"""``fedora-container-sync``: the command line.

``replay [--config FILE] [--dry-run] [--allow-drop ARCH]... [--force] [--announce] MESSAGE_FILE``
runs saved bus messages through the same code path as the consumer. Exit codes: 0 everything
published, 3 finished but a tag was not moved (held by the gate, or stale: the rollback guard),
1 something could not be published, 2 bad usage, config or message file. Every failure is one
line on stderr; the summary goes to stdout. stderr gets one line per finished step too, or, when
it is a terminal, a live display of the run (:mod:`.publish.terminal`).

``dead-letters [--config FILE] [--queue NAME] [--limit N] OUTPUT`` moves messages from the
consumer's dead-letter queue into OUTPUT, a message file for ``replay``. Exit codes: 0 done
(also when the queue is empty), 1 the broker failed, 2 bad usage or config.

``audit [--config FILE] [--max-age HOURS] [--json] [--html PATH] [--no-messages]`` reads every
configured registry and reports held, missing, carried and diverged tags; ``--html`` also writes
them as a status page. With ``publish_amqp_messages`` it also sends one message per finding to
the bus and says so on stderr; ``--no-messages`` (ad-hoc and monitoring runs) does not. Exit
codes: 0 clean, 3 findings, 1 a registry could not be read (or the findings could not be sent
to the bus, or the page could not be written), 2 bad usage or config.

SIGTERM (what systemd and OpenShift send) and SIGINT stop either command at once: skopeo
children are ended, auth files and run directories removed on the way out, one line says so,
and the exit code is 143 (SIGTERM) or 130 (SIGINT).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

# httpx's own command line (httpx._main) imports click, pygments and rich when they are
# installed: a tenth of a second of every run's start for code this program never calls.
# Marked as absent before httpx is first imported, httpx falls back to a stub (its __init__
# catches the ImportError); nothing else of httpx changes.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

# On the way out the interpreter runs one last garbage collection over every object the imports
# made (pydantic's schemas, httpx, productmd): a tenth of a second of every run, after its work
# is done and its files are closed. Frozen objects are not walked by it (nothing else changes:
# exit handlers still run, memory goes back to the system with the process).
atexit.register(gc.freeze)

from . import __version__, shown_logs, shutdown  # noqa: E402
from .errors import SyncError, UsageError  # noqa: E402
from .publish.progress import STEPS  # noqa: E402
from .publish.report import EXIT_FAILED, EXIT_HELD, EXIT_OK, EXIT_USAGE, ComposeReport, render  # noqa: E402
from .shown import shown, shown_lines  # noqa: E402

if TYPE_CHECKING:
    from .bus.notify import BusPublisher
    from .compose.message import Envelope
    from .publish.terminal import Terminal

PROG = "fedora-container-sync"
#: What ``--help`` says first (plain text: the module docstring is reStructuredText).
DESCRIPTION = (
    "Publish the container images of finished Fedora composes to container registries, "
    "behind a manifest gate that never lets an index tag lose an architecture. Each command's "
    "--help lists its options and exit codes."
)
#: 128 + the signal's number, as a shell reports a process the signal ended
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
_log = logging.getLogger(__name__)


#: set when SIGTERM or SIGINT stopped this run
_signalled = threading.Event()


class Terminated(BaseException):
    """SIGTERM, raised in the main thread. Like KeyboardInterrupt it is no Exception: no
    ``except Exception`` on the way stops it, and every ``with`` block cleans up."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    replay = commands.add_parser(
        "replay",
        help="publish the composes named by saved fedora-messaging messages",
        description="Handle saved messages (one JSON object per line, as written by "
        "'fedora-messaging record'; also one such message pretty-printed, a bare Pungi body or "
        "datagrepper's JSON) in order, exactly as the consumer would. Exit codes: 0 everything "
        "published (or nothing to do), 3 finished but a tag was not moved (held by the gate, or "
        "stale), 1 something could not be published, 2 bad usage, config or message file "
        "(nothing was done), 143/130 stopped by SIGTERM/SIGINT.",
    )
    replay.add_argument(
        "--config",
        metavar="FILE",
        help="fedora-messaging TOML config (default: $FEDORA_MESSAGING_CONF, "
        "then /etc/fedora-messaging/config.toml)",
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="read the compose's metadata and the registries and print the plan: downloads "
        "no image and writes nothing (needs no writable work dir, nor skopeo)",
    )
    replay.add_argument(
        "--allow-drop",
        action="append",
        default=[],
        metavar="ARCH",
        help="let index tags lose ARCH in this run, on purpose (repeatable)",
    )
    replay.add_argument(
        "--force",
        action="store_true",
        help="move tags even when they hold a newer compose (turns the rollback guard off)",
    )
    replay.add_argument(
        "--announce",
        action="store_true",
        help="send the published message also for tags that already served the compose, under "
        "the ids of their moves (by default only the tags this run moved are announced)",
    )
    replay.add_argument("-v", "--verbose", action="store_true", help="log every step")
    replay.add_argument("message_file", metavar="MESSAGE_FILE", help="message file, or - for stdin")

    audit = commands.add_parser(
        "audit",
        help="report held, missing, carried and diverged tags in the registries",
        description="Read every configured registry and repository (GET requests only) and "
        "report, per index tag, per-arch builds the index does not serve (held), arches it "
        "lacks (missing), entries from older composes (carried) and registries that disagree "
        "(diverged). With publish_amqp_messages in the config it also sends one message per "
        "finding to the bus (and says so on stderr); --no-messages does not. "
        "Exit codes: 0 clean, 3 findings, 1 a registry could not be read (or the findings "
        "could not be sent, or the page could not be written), 2 bad usage.",
    )
    audit.add_argument(
        "--config",
        metavar="FILE",
        help="fedora-messaging TOML config (default: $FEDORA_MESSAGING_CONF, "
        "then /etc/fedora-messaging/config.toml)",
    )
    audit.add_argument(
        "--max-age",
        metavar="HOURS",
        type=_hours,
        help="count only findings older than HOURS (ages come from compose dates)",
    )
    audit.add_argument("--json", action="store_true", help="print the findings as a JSON document")
    audit.add_argument(
        "--html",
        metavar="PATH",
        type=Path,
        help="also write the findings as a self-contained HTML status page to PATH "
        "(replaced atomically, mode 0644, for a web server to serve)",
    )
    audit.add_argument(
        "--no-messages",
        action="store_true",
        help="send no finding messages to the bus, whatever publish_amqp_messages says (for "
        "ad-hoc and monitoring runs; no broker needed)",
    )
    audit.add_argument("-v", "--verbose", action="store_true", help="log every step")

    dead = commands.add_parser(
        "dead-letters",
        help="move messages from the dead-letter queue to a file for replay",
        description="Take up to --limit messages off the consumer's dead-letter queue and "
        "write them, with their original topics, to OUTPUT (a new file) in the format replay "
        "reads; they are removed from the queue only once the file is written. Then: "
        "fedora-container-sync replay OUTPUT.",
    )
    dead.add_argument(
        "--config",
        metavar="FILE",
        help="fedora-messaging TOML config (default: $FEDORA_MESSAGING_CONF, "
        "then /etc/fedora-messaging/config.toml)",
    )
    dead.add_argument(
        "--queue",
        metavar="NAME",
        help="the dead-letter queue (default: named like the x-dead-letter-exchange of the "
        "config's queue)",
    )
    dead.add_argument(
        "--limit", metavar="N", type=_count, default=100, help="at most N messages (100)"
    )
    dead.add_argument("output", metavar="OUTPUT", help="the file to write (must not exist)")
    return parser


def _count(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 10000:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 1 to 10000")
    return int(value)


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hours") from None
    if not 0 <= hours < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hours >= 0")
    return hours


def main(argv: Sequence[str] | None = None) -> int:
    _signalled.clear()
    code = _main(argv)
    if _signalled.is_set() and threading.active_count() > 1:
        # Stopped by a signal, and cleaned up: a worker thread still blocked on a network read
        # would hold the interpreter's exit until its timeout. Leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    terminal = None
    try:
        with _stop_on_signals():
            args = build_parser().parse_args(argv)
            terminal = _setup_logging(verbose=getattr(args, "verbose", False))
            try:
                if args.command == "audit":
                    return _audit(args)
                if args.command == "dead-letters":
                    return _dead_letters(args)
                return _replay(args, terminal)
            finally:
                if terminal is not None:  # gone before the last line is printed
                    terminal.end()
    except UsageError as error:
        print(f"{PROG}: error: {shown(error)}", file=sys.stderr)
        return EXIT_USAGE
    except SyncError as error:
        print(f"{PROG}: error: {shown(error)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{PROG}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as error:  # a bug: still one line, never a traceback
        print(f"{PROG}: internal error: {type(error).__name__}: {shown(error)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if terminal is not None:  # again: a signal may have cut the first stop short
            terminal.end()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT: end the skopeo children and start no more work, then raise
    :class:`Terminated` or KeyboardInterrupt in the main thread, so that the ``with`` blocks
    remove auth files and run directories as the exception passes. A systemd or OpenShift stop
    signals our PID only: the children would otherwise run on. Further signals are ignored
    until the way out is done; the stop stays requested (worker threads still blocked on the
    network must not retry) until the process exits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(number: int, _frame: FrameType | None) -> None:
        for each in (signal.SIGTERM, signal.SIGINT):
            signal.signal(each, signal.SIG_IGN)
        _signalled.set()
        shutdown.request()
        raise Terminated() if number == signal.SIGTERM else KeyboardInterrupt()

    previous = {each: signal.signal(each, stop) for each in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def _replay(args: argparse.Namespace, terminal: Terminal | None) -> int:
    from .compose.message import (
        TOPIC_SUFFIX,
        looks_like_pungi,
        needs_work,
        parse_compose_message,
        read_message_file,
    )
    from .config.load import check_credentials, config_path, load_settings
    from .oci.platforms import FEDORA_PLATFORMS
    from .publish.context import PublishOptions
    from .publish.pipeline import handle_envelope, prepare_work_dir
    from .signing.setup import check_signing

    unknown = [arch for arch in args.allow_drop if arch not in FEDORA_PLATFORMS]
    if unknown:
        raise UsageError(
            f"--allow-drop {unknown[0]}: not a Fedora arch ({', '.join(FEDORA_PLATFORMS)})"
        )
    options = PublishOptions(allow_drop=frozenset(args.allow_drop), force=args.force)

    path = config_path(args.config)
    settings = load_settings(path)
    check_credentials(settings)
    check_signing(settings)
    source = "<stdin>" if args.message_file == "-" else args.message_file
    envelopes = read_message_file(_read_text(args.message_file), source=source)
    # Check every message before doing anything: a bad file does no partial work.
    for envelope in envelopes:
        where = envelope.where or source
        if envelope.is_compose_status and envelope.status is None:
            raise UsageError(f"{where}: {envelope.label}: body.status is missing or not a string")
        if not envelope.is_compose_status and looks_like_pungi(envelope.body):
            raise UsageError(
                f"{where}: {envelope.label}: topic {envelope.topic!r} does not end in "
                f"{TOPIC_SUFFIX!r}, though the body is a Pungi status change (misspelled?)"
            )
        if needs_work(envelope):
            try:
                parse_compose_message(envelope.body, settings.compose_url_allowlist)
            except SyncError as error:
                raise UsageError(f"{where}: {error}") from None
    if not args.dry_run:  # a dry run writes nothing: no work dir, no skopeo
        prepare_work_dir(settings)
        if shutil.which(settings.skopeo) is None:
            raise UsageError(f"skopeo not found ({settings.skopeo}); install skopeo")

    if options.force:
        _log.warning("--force: the rollback guard is off; tags may move to older composes")
    if options.allow_drop:
        _log.warning(
            "--allow-drop: index tags may lose %s in this run",
            ", ".join(sorted(options.allow_drop)),
        )
    publisher = None
    if settings.publish_amqp_messages and not args.dry_run:
        from .bus.deadletters import read_bus_config
        from .bus.notify import BusPublisher
        from .bus.reach import DEFAULT_URL, check_broker

        amqp_url = read_bus_config(path).get("amqp_url", DEFAULT_URL)
        check_broker(
            amqp_url if isinstance(amqp_url, str) else "",
            needed_for="publish_amqp_messages is on, so replay sends result messages; start "
            "the broker or set publish_amqp_messages = false (--dry-run needs none)",
        )
        publisher = BusPublisher(path)
    reports: list[ComposeReport] = []
    for envelope in envelopes:
        report = handle_envelope(
            envelope, settings, dry_run=args.dry_run, options=options, view=terminal
        )
        if report is None:
            print(shown(f"ignored {envelope.label}: {ignored_because(envelope)}"))
            continue
        if publisher is not None:
            _announce(report, publisher, unchanged=args.announce)
        reports.append(report)
        print(shown_lines(render([report])), flush=True)
    codes = {report.exit_code for report in reports}
    if EXIT_FAILED in codes:
        return EXIT_FAILED
    if EXIT_HELD in codes:
        return EXIT_HELD
    return EXIT_OK


def ignored_because(envelope: Envelope) -> str:
    """Why a message of a replayed file asks for no work, in words."""
    from .compose.message import ACTIONABLE_STATUSES, TOPIC_SUFFIX

    if not envelope.is_compose_status:
        return f"topic {envelope.topic} is not a {TOPIC_SUFFIX}"
    wanted = " or ".join(sorted(ACTIONABLE_STATUSES))
    return f"status {envelope.status or 'none'}: only {wanted} composes are published"


def _audit(args: argparse.Namespace) -> int:
    from .audit.report import render_json, render_table
    from .audit.run import audit_registries, check_page_path, deliver
    from .config.load import check_credentials, config_path, load_settings

    if args.html is not None:
        check_page_path(args.html)
    path = config_path(args.config)
    settings = load_settings(path)
    check_credentials(settings)
    messages = settings.publish_amqp_messages and not args.no_messages
    if messages:
        from .bus.notify import load_bus_config

        load_bus_config(path)
    result, states = audit_registries(settings, max_age_hours=args.max_age)
    print(render_json(result) if args.json else shown_lines(render_table(result)), flush=True)
    sent = deliver(result, states, settings, html=args.html, messages=messages)
    if sent:
        print(
            f"{PROG}: sent {sent} finding message{'s' if sent != 1 else ''} to the bus "
            "(publish_amqp_messages; --no-messages sends none)",
            file=sys.stderr,
        )
    return result.exit_code


def _dead_letters(args: argparse.Namespace) -> int:
    from .bus.deadletters import queue_name, read_bus_config, take, undecodable_path
    from .config.load import config_path

    document = read_bus_config(config_path(args.config))
    queue = args.queue or queue_name(document)
    output = Path(args.output)
    taken = take(document, queue, output, limit=args.limit)
    rejects = undecodable_path(output)
    for letter in taken:
        if letter.undecodable is None:
            print(shown(f"took {letter.label}: {letter.reason}"))
        else:
            print(
                shown(
                    f"took {letter.label}: {letter.reason}; UNDECODABLE, saved as is to {rejects}"
                )
            )
    if not taken:
        print(f"{queue}: no dead letters")
        return EXIT_OK
    good = sum(1 for letter in taken if letter.undecodable is None)
    if good:
        print(
            f"{good} message{'s' if good != 1 else ''} from {queue} written to "
            f"{output}; replay with: {replay_command(args.config, output)}"
        )
    if len(taken) > good:
        bad = len(taken) - good
        print(
            f"{bad} undecodable message{'s' if bad != 1 else ''} from {queue} written to "
            f"{rejects} (body in base64; not replayable)"
        )
    return EXIT_OK


def replay_command(config: str | None, messages: Path) -> str:
    """The command that replays ``messages`` with the config this command was given."""
    argv = [PROG, "replay", *(["--config", config] if config else []), str(messages)]
    return shlex.join(argv)


def _announce(report: ComposeReport, publisher: BusPublisher, *, unchanged: bool) -> None:
    """Send the run's result messages, as the consumer does; a failure is one more error."""
    from .bus.notify import announce
    from .errors import about_compose

    try:
        announce(report, publisher, unchanged=unchanged)
    except SyncError as error:
        _log.error("compose %s: %s", report.compose_id, about_compose(report.compose_id, error))
        report.errors.append(error)


def _read_text(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"message file {name}: not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"message file {name}: unreadable: {error}") from None


def _setup_logging(*, verbose: bool) -> Terminal | None:
    """Warnings and errors (every step too with ``-v``) on stderr; one line per finished step
    always, or, on a terminal, a live display of the run (returned) with the other lines above
    it."""
    handler: logging.Handler
    terminal = None
    shown_logs.install()  # every line redacted and escaped
    if sys.stderr.isatty():
        from .publish.terminal import Terminal

        handler = terminal = Terminal(sys.stderr)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger(STEPS).setLevel(logging.INFO)
    # Libraries below us log at INFO per request; keep them quiet unless something is wrong.
    for noisy in ("httpx", "httpcore", "fedora_messaging"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return terminal


if __name__ == "__main__":
    sys.exit(main())
