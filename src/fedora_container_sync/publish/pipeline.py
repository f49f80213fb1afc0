"""The publish pipeline: one compose message in, one :class:`~.report.ComposeReport` out.

1. Read (:mod:`.read`): the compose's metadata, its images and tags; then what every answering
   registry holds at each per-arch and index tag, once.
2. Decide (:mod:`.plan`, pure): what each image, per-arch tag and index tag gets.
3. Act (:mod:`.execute`): download and convert each image once (:mod:`.build`), push it
   (:mod:`.push`); gate each repository's index tags from the outcomes and write them
   (:mod:`.indexes`) as soon as its per-arch tags are settled. Tags move last; a failure
   anywhere leaves index tags as they were.
4. Verify (:mod:`.verify`): read back every tag the run moved.

A dry run reads the compose's metadata and the registries and plans, then shows what the tags
would get: it downloads no image, writes nothing and needs no work dir. Both runs record what
they did (:mod:`.outcomes`), and the report carries the plan they executed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from ..compose.fetch import ComposeFetcher
from ..compose.message import ComposeMessage, Envelope, needs_work, parse_compose_message
from ..config.settings import Settings
from ..errors import ConfigError, Interrupted
from ..net.httpclient import new_client
from ..net.tls import TlsContexts
from ..signing.tally import Tally
from .composelock import compose_lock
from .context import PublishOptions, RunContext
from .execute import execute
from .outcomes import Record
from .plan import make_plan
from .progress import RUN, Progress, View
from .read import connect, read_compose, read_registries
from .report import ComposeReport
from .verify import verify_moved_tags
from .workdir import run_directory, sweep_stale_runs
from .workpool import WorkPool


class StoppedRun(Interrupted):
    """A stop cut the run short (:class:`Interrupted`); ``report`` says what it did before,
    the index tags it moved included (the consumer announces them)."""

    def __init__(self, message: str, report: ComposeReport) -> None:
        super().__init__(message)
        self.report = report


def handle_envelope(
    envelope: Envelope,
    settings: Settings,
    *,
    dry_run: bool = False,
    options: PublishOptions | None = None,
    view: View | None = None,
) -> ComposeReport | None:
    """Do what one bus message asks for; None when it asks for nothing. ``view``: a live
    display of the run (on a terminal)."""
    if not needs_work(envelope):
        logging.getLogger(RUN).info(
            "ignoring %s: topic %s, status %s", envelope.label, envelope.topic, envelope.status
        )
        return None
    message = parse_compose_message(envelope.body, settings.compose_url_allowlist)
    return publish_compose(message, settings, dry_run=dry_run, options=options, view=view)


def prepare_work_dir(settings: Settings) -> None:
    """Create the work dir and check it is writable, or raise a ConfigError naming it; remove
    what runs killed outright (SIGKILL) left there, auth files included."""
    work_dir = settings.work_dir
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        # A probe of its own: two processes starting at once must not remove each other's.
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix=".write-test."):
            pass
    except OSError as error:
        raise ConfigError(f"work_dir {work_dir}: not usable: {error.strerror or error}") from None
    sweep_stale_runs(work_dir)


def publish_compose(
    message: ComposeMessage,
    settings: Settings,
    *,
    dry_run: bool = False,
    options: PublishOptions | None = None,
    view: View | None = None,
) -> ComposeReport:
    """Publish one finished compose to every configured registry: read, decide, act, verify."""
    started = time.monotonic()
    progress = Progress(message.compose_id, view)
    signed = Tally()  # the signatures the run writes and finds, counted on the workers
    record = Record(message.compose_id, dry_run=dry_run, listener=progress, signed=signed)
    progress.started(message.status, message.location, dry_run=dry_run)
    try:
        # A private directory per run: two runs (a redelivery and a manual replay, say) never
        # share files, and what a killed run left behind is swept, never built upon. One run
        # of a compose at a time: a second waits for the first (composelock).
        with (
            contextlib.nullcontext(_NO_WORK)
            if dry_run
            else _run_directory(settings.work_dir, message.compose_id) as work
        ):
            options = options or PublishOptions()
            ctx = RunContext(message.compose_id, settings, options, dry_run, work, signed=signed)
            _publish(ctx, message.location, record, progress)
    except Interrupted as stopped:
        registries = [registry.url for registry in settings.registries]
        partial = record.report(registries=registries, seconds=time.monotonic() - started)
        raise StoppedRun(str(stopped), partial) from None
    finally:
        progress.ended()
    report = record.report(
        registries=[registry.url for registry in settings.registries],
        seconds=time.monotonic() - started,
    )
    progress.finished(report)
    return report


#: A dry run's work directory: nothing can be written under it (a write fails, loudly).
_NO_WORK = Path(os.devnull)


@contextlib.contextmanager
def _run_directory(work_dir: Path, compose_id: str) -> Iterator[Path]:
    with compose_lock(work_dir, compose_id), run_directory(work_dir, compose_id) as work:
        yield work


def _publish(ctx: RunContext, location: str, record: Record, progress: Progress) -> None:
    tls = TlsContexts()
    with _session(ctx, tls) as (http, stack, pool):
        # 1. Read what the compose lists, and what every registry holds at its tags, once.
        fetcher = _fetcher(ctx, http, location)
        compose = read_compose(ctx, fetcher, http, record)
        if compose is None:
            return
        artifacts, tags = compose
        repositories = list(dict.fromkeys(artifact.repository for artifact in artifacts))
        registries = connect(ctx, pool, stack, record, tls, repositories)
        states = read_registries(pool, registries, artifacts, tags, record)
        # 2. Decide, purely, what every image, per-arch tag and index tag gets.
        record.plan = make_plan(
            ctx.compose_id, tags, artifacts, states, settings=ctx.settings, options=ctx.options
        )
        # 3. Act on the plan: build each image once, push it; gate and write each repository's
        #    index tags from the outcomes once its per-arch tags are settled.
        by_url = {registry.url: registry for registry in registries}
        execute(ctx, record.plan, by_url, fetcher, pool, record, progress)
        # 4. Verify: read back every tag this run moved.
        if not ctx.dry_run:
            verify_moved_tags(ctx, by_url, record, pool)


@contextlib.contextmanager
def _session(
    ctx: RunContext, tls: TlsContexts
) -> Iterator[tuple[httpx.Client, contextlib.ExitStack, WorkPool]]:
    """An HTTP client for the compose and Bodhi, a stack for the registry clients and auth
    files, and the pool of ``max_parallel`` workers; closed in the reverse order."""
    with (
        new_client(
            timeout=ctx.settings.http_timeout,
            verify=tls.get(None, verify=True),
            headers={"User-Agent": "fedora-container-sync"},
        ) as http,
        contextlib.ExitStack() as stack,
        WorkPool(ctx.settings.max_parallel) as pool,
    ):
        yield http, stack, pool


def _fetcher(ctx: RunContext, http: httpx.Client, location: str) -> ComposeFetcher:
    settings = ctx.settings
    return ComposeFetcher(
        http,
        location,
        compose_id=ctx.compose_id,
        allowlist=settings.compose_url_allowlist,
        retry=settings.retry,
        max_decompressed_ratio=settings.max_decompressed_ratio,
        max_decompressed_size=settings.max_decompressed_size,
        deadline=settings.http_deadline,
        max_metadata_bytes=settings.max_metadata_bytes,
        min_download_rate=settings.min_download_rate,
    )
