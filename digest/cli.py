"""The `digest` command: parse arguments, call the core, print, choose the exit code.

Exit codes: 0 success; 1 the work failed (every source failed, nothing could be sent);
2 the user must fix something (configuration, arguments).
"""

from __future__ import annotations

import json
import logging
import shlex
import signal
import sys
import tempfile
import threading
import webbrowser
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import (
    BadArgument,
    ConfigError,
    DigestError,
    TemplateError,
    UnknownSubscriber,
    UnusableTarget,
)

if TYPE_CHECKING:  # each command imports the stages it runs: `digest --help` or `init` loads none
    from .config import Config
    from .models import Paper, SourceReport
    from .store.database import Store

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class App:
    """What every command needs: the config path, loaded lazily so `--help` never reads it."""

    def __init__(self, config_path: str | None, debug: bool, verbose: int = 0) -> None:
        self.config_path = config_path
        self.debug = debug
        self.verbose = verbose
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from .config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> Store:
        from .store.database import open_store

        return open_store(self.config)


def _config_after_command(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(App).config_path = value


class DigestCommand(click.Command):
    """Every command also takes -c/--config after its name (`digest validate -c x.yaml`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(
            ["-c", "--config"], metavar="PATH", expose_value=False, callback=_config_after_command,
            help="Configuration file (also accepted before the command)."))


class DigestGroup(click.Group):
    """Turns errors into one clear line and an exit code; a traceback only with --debug."""

    command_class = DigestCommand

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                err.print(f"[red]error:[/] {escape(str(problem))}", highlight=False)
            if exc.summary or len(exc.problems) > 1:
                err.print(exc.summary or f"{len(exc.problems)} problems in the configuration", highlight=False)
            sys.exit(2)
        except (UnknownSubscriber, BadArgument, TemplateError) as exc:  # a wrong argument, a template: the user's to fix
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            sys.exit(2)
        except DigestError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)
        except Exception as exc:
            if (ctx.obj and ctx.obj.debug) or "--debug" in sys.argv:
                raise
            err.print(f"[red]internal error:[/] {exc.__class__.__name__}: {escape(str(exc))} "
                      "(this is a bug; run again with --debug for the traceback)", highlight=False)
            sys.exit(1)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", metavar="PATH", envvar="DIGEST_CONFIG",
              help="Configuration file [default: ./subscribers.yaml, or $DIGEST_CONFIG].")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int, debug: bool) -> None:
    """Personalised e-mail digests of new research papers."""
    level = logging.DEBUG if debug else logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    # Per-source warnings are shown in the fetch summary; keep the log for -v. Libraries'
    # own chatter (urllib3's retries and pool notes) only with --debug or -vv: the one-line
    # errors we print say what happened.
    if not verbose and not debug:
        logging.getLogger("digest").setLevel(logging.CRITICAL)
    if not debug and verbose < 2:
        logging.getLogger("urllib3").setLevel(logging.CRITICAL)
    ctx.obj = App(config_path, debug, verbose)


STARTER = Path(__file__).resolve().parent / "starter" / "subscribers.yaml"


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing subscribers.yaml.")
def init(directory: str, force: bool) -> None:
    """Write a commented, working subscribers.yaml into DIRECTORY (default: here) to start from.

    Example: digest init ~/paper-digest && cd ~/paper-digest && digest validate
    """
    target = Path(directory) / "subscribers.yaml"
    if target.exists() and not force:
        err.print(f"[red]error:[/] {escape(str(target))} exists; keeping it (--force to overwrite)", highlight=False)
        sys.exit(2)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(STARTER.read_text(encoding="utf-8"), encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write {escape(str(target))}: {escape(exc.strerror or str(exc))} "
                  "(pick a folder you can write to)", highlight=False)
        sys.exit(1)
    here = target.parent.resolve() == Path.cwd().resolve()
    then = "" if here else f"cd {shlex.quote(str(target.parent))} (or give each command -c {shlex.quote(str(target))}); "
    out.print(f"wrote {target}\nnext: edit sender, smtp and subscribers in it; export DIGEST_SMTP_PASSWORD=…; "
              f"{then}then `digest validate`, `digest fetch`, `digest preview EMAIL`", highlight=False)


@cli.command()
@click.pass_obj
def validate(app: App) -> None:
    """Check the configuration and report every problem at once.

    Example: digest -c subscribers.yaml validate
    """
    from .checks import check_setup
    from .config import load_config

    config = load_config(app.config_path, locate=True)  # every finding with its line
    findings = check_setup(config)
    for finding in findings:
        label = "[red]error:[/]" if finding.fatal else "[yellow]warning:[/]"
        err.print(f"{label} {escape(str(finding))}", highlight=False)
    errors = sum(f.fatal for f in findings)
    if errors:
        err.print(f"{errors} problem{'s' * (errors > 1)} to fix before `digest send` or `digest run` can work",
                  highlight=False)
        sys.exit(2)
    out.print(f"{config.path}: OK — {_count(len(config.sources), 'source')}, "
              f"{_count(len(config.subscribers), 'subscriber')}, "
              f"{_count(sum(len(s.topics) for s in config.subscribers), 'topic')}"
              + (f", {len(findings)} warning{'s' * (len(findings) > 1)}" if findings else ""), highlight=False)


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--strict", is_flag=True, help="Exit 1 if any source failed (for cron), not only if all did.")
@click.pass_obj
def fetch(app: App, sources: tuple[str, ...], strict: bool) -> None:
    """Fetch the sources (all, or those named) and store new papers.

    Exits 0 when some sources failed (they are listed, and the others were stored), 1 when
    all did, or with --strict when any did. Example: digest fetch arxiv-ml hf-trending
    """
    from .gather.collect import gather, select_sources

    config = app.config
    selected = select_sources(config, sources)
    store = app.store()
    reports: list[SourceReport] = _with_progress("fetching", len(selected), lambda report: report.source,
                             lambda on_report: gather(config, store, names=[s.name for s in selected],
                                                      on_report=on_report))
    _print_reports(reports)
    failed = sum(not r.ok for r in reports)
    if failed and (strict or failed == len(reports)):
        sys.exit(1)


def _print_reports(reports: list[SourceReport]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("source", "fetched", "new", "merged", "status"):
        table.add_column(column, justify="right" if column in ("fetched", "new", "merged") else "left")
    for r in reports:
        status = "[red]error[/]" if not r.ok else ("not modified" if r.not_modified else "ok")
        if r.ok and r.warnings:
            status += f" [yellow]({len(r.warnings)} warning{'s' * (len(r.warnings) > 1)})[/]"
        table.add_row(r.source, str(r.fetched), str(r.new), str(r.merged), status)
    out.print(table)
    for r in reports:
        if r.error:
            err.print(f"[red]error:[/] {escape(r.source)}: {escape(r.error)}", highlight=False)
        for warning in r.warnings:
            err.print(f"[yellow]warning:[/] {escape(r.source)}: {escape(warning)}", highlight=False)
    failed = sum(1 for r in reports if not r.ok)
    out.print(f"{sum(r.new for r in reports)} new papers from {len(reports) - failed} of {len(reports)} sources",
              highlight=False)
    if failed:
        err.print(f"{failed} of {len(reports)} sources failed", highlight=False)
    if failed == len(reports) and all(r.error and "cannot reach" in r.error for r in reports):
        err.print("no source could be reached: is this machine offline, or behind a proxy (set https_proxy)? "
                  "`digest demo` runs on the samples shipped with the package, and a source's url may be a "
                  "local file (examples/demo.yaml reads them so)", highlight=False)


@cli.command()
@click.option("--since", metavar="AGE", help="Only papers first seen within AGE (30m, 12h, 1d, 2w) or since a date.")
@click.option("--source", metavar="NAME", help="Only papers seen in this source.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many papers (newest first).")
@click.pass_obj
def papers(app: App, since: str | None, source: str | None, fmt: str, limit: int | None) -> None:
    """List stored papers, newest first.

    Example: digest papers --since 1d --format json
    """
    threshold = _since(since) if since else None
    found = app.store().papers(since=threshold, source=source)
    if source and not found and source not in (configured := [s.name for s in app.config.sources]):
        # a typo, not a quiet source (or one since removed)
        err.print(f"note: no source {source!r} in the configuration (its sources: {', '.join(configured) or 'none'})",
                  highlight=False)
    if limit is not None:
        found = found[:limit]
    if fmt == "json":
        click.echo(json.dumps([paper_json(p) for p in found], ensure_ascii=False, indent=2))
        return
    columns = [Column("id", max_width=16), Column("title", wrap=True, min_width=20), Column("first seen"),
               Column("▲", right=True), Column("categories", max_width=10), Column("sources", max_width=10)]
    seen_format = "%m-%d %H:%M" if out.is_terminal else "%Y-%m-%d %H:%M"  # a terminal's 80 columns are few
    rows = [[p.id, p.title, _local(p.first_seen_at, seen_format), "" if p.upvotes is None else str(p.upvotes),
             " ".join(p.categories) or "unknown", ", ".join(p.sources)] for p in found]
    print_table(columns, rows)
    unknown = sum(not p.categories for p in found)
    out.print(f"{len(found)} paper{'s' * (len(found) != 1)}" + (f" ({unknown} with categories unknown)" if unknown else ""),
              highlight=False)


@cli.command()
@click.argument("email", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html", "eml"]), default="text", show_default=True,
              help="text: the e-mail's text part; json: the digest as data; html: the HTML part; eml: the whole message.")
@click.option("--since", metavar="AGE", help="Window override: papers first seen within AGE (1d, 12h) or since a date.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of the terminal.")
@click.option("--open", "open_browser", is_flag=True, help="Open the result in a browser (html, or any format with --out).")
@click.option("--serve", is_flag=True, help="Serve every subscriber's preview on 127.0.0.1, re-rendered on changes.")
@click.option("--port", type=int, default=8025, show_default=True, help="Port for --serve (0: any free port).")
@click.pass_obj
def preview(app: App, email: str | None, fmt: str, since: str | None, out_file: str | None, open_browser: bool,
            serve: bool, port: int) -> None:
    """Show the digest a subscriber would receive now, without sending or recording anything.

    Examples: digest preview alice@example.org --format json --since 2d;
    digest preview alice@example.org --format html --out alice.html --open;
    digest preview --serve
    """
    if serve:
        from .web.preview import serve as make_server

        server = make_server(app.config_path, port)
        host, bound = server.server_address[:2]
        err.print(f"previews at http://{host}:{bound}/ (Ctrl-C to stop)", highlight=False)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        return
    if not email:
        raise click.UsageError("give a subscriber's EMAIL, or --serve")
    from .deliver.roster import subscriber as roster_subscriber
    from .deliver.schedule import receiving
    from .render.compose import Composer
    from .render.preview import preview_digest
    from .store import Ledger

    window = _since(since) if since else None  # a mistyped --since says so before any work
    if out_file and not Path(out_file).parent.is_dir():  # and a folder that is not there
        raise click.BadParameter(f"no folder {str(Path(out_file).parent)!r} to write it in", param_hint="'--out'")
    config, store = app.config, app.store()
    now = datetime.now(UTC)
    listed = _find_listed(config, store, email, now)
    subscriber = roster_subscriber(listed)
    _learn_examples(config, store, now, [subscriber])
    shown = preview_digest(config, store, subscriber, now, window)
    state = Ledger(store).state(subscriber.email).status(receiving(config, subscriber, now))
    if state != "active":  # what they would get: said, as nothing is sent to them now
        err.print(f"note: {subscriber.email} is {state}: nothing is sent to them now (`digest status` says why)",
                  highlight=False)
    zone = subscriber.timezone or config.defaults.timezone
    if shown.digest.is_empty and not config.setting(subscriber, "send_empty") and fmt != "json":
        err.print(f"nothing new for {subscriber.email} since {_local(shown.digest.since)}: no e-mail would be "
                  "sent (send_empty is false; `--format json` shows the empty digest, "
                  f"{'a longer --since' if since else '`--since 7d`'} looks further back)",
                  highlight=False)
        if not shown.stored:
            err.print("note: no papers stored in this window; run `digest fetch` first", highlight=False)
        return
    if fmt == "json":
        from .render.present import digest_json

        data: str | bytes = json.dumps(digest_json(shown.digest, zone, config.sender.list_name), ensure_ascii=False, indent=2) + "\n"
    else:
        composed = Composer(config, secret=store.signing_secret()).email(
            shown.digest, subscriber, manage_generation=listed.manage_generation)
        data = {"text": composed.text, "html": composed.html, "eml": composed.wire}[fmt]
    payload = data if isinstance(data, bytes) else data.encode("utf-8")
    if out_file or open_browser:
        suffix = {"text": ".txt", "json": ".json", "html": ".html", "eml": ".eml"}[fmt]
        target = Path(out_file) if out_file else Path(tempfile.mkstemp(prefix="digest-preview-", suffix=suffix)[1])
        try:
            target.write_bytes(payload)
        except OSError as exc:
            raise DigestError(f"cannot write {target}: {exc.strerror or exc}") from None
        err.print(f"wrote {target} ({len(payload):,} bytes)", highlight=False)
        if open_browser and not webbrowser.open(target.resolve().as_uri()):
            err.print(f"note: no web browser found here to open it; open {target.resolve().as_uri()} in yours "
                      "(or `digest preview --serve`, from another machine's browser)", highlight=False)
    else:
        click.echo(payload.decode("utf-8"), nl=False)
    if not shown.stored:
        err.print("note: no papers stored in this window; run `digest fetch` first, or widen --since",
                  highlight=False)


@cli.command()
@click.argument("emails", nargs=-1, metavar="[EMAIL]...")
@click.option("--dry-run", is_flag=True, help="Match and render everything, send and record nothing.")
@click.option("--to", "to", metavar="ADDRESS", help="Send the digests to ADDRESS instead (testing); nothing is recorded.")
@click.option("--fresh-state", is_flag=True,
              help="Send although the state database is new and this configuration has sent before.")
@click.option("--timings", is_flag=True, help="Print where the time went (plan, match, render, SMTP, ledger) on stderr.")
@click.pass_obj
def send(app: App, emails: tuple[str, ...], dry_run: bool, to: str | None, fresh_state: bool, timings: bool) -> None:
    """Send the due digests now (all subscribers, or those named).

    Each subscriber gets at most one digest per scheduled slot: running it again sends
    only what is still due. Examples: digest send; digest send alice@example.org --to me@example.org
    """
    from .config import load_config
    from .deliver import roster
    from .deliver.send_run import Delivery, summary
    from .store.database import open_store

    if to is not None:
        to = _address(to, "--to")  # before any work: an MTA would refuse it for every digest
    # Everyone due: the subscribers come from the database, so a large file's are read (and
    # synced) only when it changed; named ones, a dry run or --to read the file's.
    lean = not (emails or dry_run or to)
    config = load_config(app.config_path, subscribers=False) if lean else app.config
    store = open_store(config)
    stop = threading.Event()
    delivery = Delivery(config, store, stop=stop)
    if config.subscribers_read:
        total = len(delivery.select(emails))
    else:
        roster.sync(config, delivery.directory, delivery.clock())
        total = delivery.directory.count()
    _learn_examples(config, store, delivery.clock(), delivery.select(emails) if emails else None)
    told: list[Any] = []  # what the run said before an error that ends it: printed above the error

    def telling(bar: Callable[[Any], None] | None) -> Callable[[Any], None]:
        def each(outcome: Any) -> None:
            told.append(outcome)
            if bar is not None:
                bar(outcome)
        return each

    with _stop_on_signals(stop):
        try:
            outcomes = _with_progress("sending", total, lambda outcome: outcome.subscriber,
                                      lambda bar: delivery.run(emails, dry_run=dry_run, to=to, progress=telling(bar),
                                                               fresh_state=fresh_state))
        except DigestError:
            if told:
                _print_outcomes(told)
            raise
    _print_outcomes(outcomes)
    if timings:
        click.echo("timings " + json.dumps(delivery.timings.report(summary(outcomes).get("sent", 0))), err=True)
    if stop.is_set():
        err.print("stopped by a signal: the message in flight was finished; the rest waits for the next run",
                  highlight=False)
    counts = summary(outcomes)
    sent = counts.get("sent", 0) + counts.get("test", 0)
    out.print(f"{sent} sent, {counts.get('empty', 0)} empty (not sent), {counts.get('skipped', 0)} skipped, "
              f"{counts.get('deferred', 0)} deferred, {counts.get('failed', 0)} failed"
              + (f", {counts['uncertain']} uncertain (no reply after the end of the message)"
                 if "uncertain" in counts else "")
              + (f", {counts['dry-run']} rendered (dry run)" if "dry-run" in counts else ""), highlight=False)
    if (counts.get("failed", 0) or counts.get("deferred", 0)) and not sent:
        sys.exit(1)


def _learn_examples(config: Config, store: Store, now: datetime, subscribers: list[Any] | None) -> None:
    """The topics whose examples changed, retrained before matching (these subscribers', or
    with None everyone's); what a person should know on stderr."""
    from .gather.http import Fetcher
    from .subscribe.examples import Asking, refresh, refresh_everyone

    fetcher = Fetcher(retries=1)  # a command waits: offline, it says so soon
    asking = Asking(config.arxiv_api, fetcher)
    try:
        done = (refresh(store, subscribers, now, asking) if subscribers is not None
                else refresh_everyone(config, store, now, asking))
    finally:
        fetcher.close()
    for line in done.warnings():
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


@cli.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.pass_obj
def backup(app: App, file: str | None) -> None:
    """Copy the state database, safely, even while `digest run` is writing to it.

    Default: backups/digest-YYYYmmdd-HHMMSS.db beside the config (`backups.folder`). To
    restore, stop everything and copy the backup over the database. PostgreSQL: use pg_dump.
    Example: digest backup /mnt/safe/digest.db
    """
    from .store.files import backup_name

    target = Path(file) if file else app.config.backup_folder() / backup_name(datetime.now(UTC))
    if file and not target.parent.is_dir():  # backups/ is made when first needed; a folder named here is not
        raise click.BadParameter(f"no folder {str(target.parent)!r} to write it in", param_hint="'FILE'")
    store = app.store()
    if store.file is None:  # the command cannot do this: the user's to change (exit 2), not a failure
        shown = app.config.state.rsplit("@", 1)[-1]  # host and database, no user
        raise BadArgument(f"`digest backup` copies SQLite databases; the state database is PostgreSQL ({shown})",
                          hint="back PostgreSQL up with pg_dump (e.g. pg_dump -Fc DBNAME > digest.dump)")
    try:
        size = store.backup(target)
    except UnusableTarget as exc:  # a wrong argument: exit 2, as for every other one
        raise click.BadParameter(str(exc), param_hint="'FILE'") from None
    key = store.key_file
    out.print(f"backed up {store.file} to {target} ({size:,} bytes)"
              + (f"; its signing key beside it, {target.parent / key.name} (restore both together)"
                 if key is not None and key.is_file() and (target.parent / key.name).resolve() != key.resolve() else ""),
              highlight=False)


@dataclass(frozen=True)
class Column:
    name: str
    wrap: bool = False  # may take several lines (titles); others stay on one
    whole: bool = False  # never shortened (addresses): folds onto the next line if it must
    right: bool = False
    max_width: int | None = None
    min_width: int | None = None


def print_table(columns: list[Column], rows: list[list[str]]) -> None:
    """A table that fits the terminal (80 columns included); in a pipe, plain tab-separated
    lines with a header, nothing shortened, for scripts and `cut`/`sort`."""
    if not out.is_terminal:
        clean = [[" ".join(str(v).split()) for v in row] for row in rows]
        click.echo("\n".join("\t".join(r) for r in [[c.name for c in columns], *clean]))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c.name, justify="right" if c.right else "left", no_wrap=not c.wrap,
                         overflow="fold" if c.whole or c.wrap else "ellipsis",
                         max_width=c.max_width, min_width=c.min_width)
    for row in rows:
        table.add_row(*(escape(v) for v in row))
    out.print(table)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM or Ctrl-C: finish the message in flight, record, summarise, exit (a second one
    stops at once)."""

    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print(f"{signal.Signals(signum).name}: finishing the message in flight…", highlight=False)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _count(number: int, thing: str) -> str:
    """"1 subscriber", "2 subscribers"."""
    return f"{number:,} {thing}{'s' * (number != 1)}"


def _with_progress(label: str, total: int, name: Callable[[Any], str], work: Callable[[Any], Any]) -> Any:
    """Run `work(on_item)` with a progress bar on a terminal (`on_item` is None elsewhere)."""
    if not err.is_terminal:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  console=err, transient=True) as progress:
        task = progress.add_task("", total=total)
        return work(lambda item: progress.update(task, advance=1, description=name(item)))


def _print_outcomes(outcomes) -> None:  # type: ignore[no-untyped-def]
    """One line per subscriber, never wrapped (scripts and logs read it)."""
    if not outcomes:
        out.print("nothing due", highlight=False)
        return
    width = max(len(o.subscriber) for o in outcomes)
    if not out.is_terminal:  # a log or a pipe: the same lines, without colour (rich costs ~0.1 ms a line)
        out.file.write("".join(f"{o.subscriber:<{width}}  {o.status:<9} {o.papers:>3} papers  {o.detail}\n"
                               for o in outcomes))
        out.file.flush()
        return
    colours = {"sent": "green", "test": "green", "failed": "red", "deferred": "yellow", "uncertain": "yellow",
               "suspended": "red"}
    for o in outcomes:
        colour = colours.get(o.status, "default")
        out.print(f"{escape(o.subscriber):<{width}}  [{colour}]{o.status:<9}[/] {o.papers:>3} papers  {escape(o.detail)}",
                  highlight=False, soft_wrap=True)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def status(app: App, fmt: str) -> None:
    """Per subscriber: the last digest, the next one due, papers waiting, failures."""
    from .deliver.status import subscriber_status

    rows = subscriber_status(app.config, app.store(), datetime.now(UTC))
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    columns = [Column("subscriber", whole=True), Column("status"), Column("last digest", wrap=True),
               Column("next due", wrap=True), Column("waiting", right=True), Column("failures", right=True)]
    print_table(columns, [[r["subscriber"], r["status"], _last_digest(r),
                           r["next_due_local"] if r["status"] == "active" else "",
                           str(r["papers_waiting"]), str(r["hard_failures"])] for r in rows])
    for r in rows:  # on stderr: the table on stdout stays tab-separated rows for scripts
        if r["last_error"]:
            err.print(f"{escape(r['subscriber'])}: {escape(r['last_error'])}", highlight=False)
    if rows:  # the whole at a glance (thousands of rows): is the last slot done?
        err.print(_status_summary(rows), highlight=False)


def _status_summary(rows: list[dict[str, Any]]) -> str:
    """"3,003 subscribers: 3,000 active, 3 unsubscribed; their latest digests: 2,990 sent, 13 pending"."""
    def counted(values: list[str]) -> str:
        return ", ".join(f"{n:,} {value}" for value, n in Counter(values).most_common())

    latest = [r["last_state"] for r in rows if r["last_state"]]
    return (f"{_count(len(rows), 'subscriber')}: {counted([r['status'] for r in rows])}"
            + (f"; their latest digests: {counted(latest)}" if latest else "; no digest yet"))


def _last_digest(row: dict[str, Any]) -> str:
    """When the last digest went out; one not sent (yet) by its slot and its state."""
    if row["last_state"] is None:
        return "never"
    if row["last_sent_local"] is not None:
        return str(row["last_sent_local"])
    return f"{row['last_digest_local']} ({row['last_state']})"


@cli.command()
@click.option("--out", "folder", type=click.Path(file_okay=False), help="Folder for the received messages.")
def demo(folder: str | None) -> None:
    """The whole cycle, offline: sample feeds, demo subscribers, a local capture SMTP server.

    Fetches the samples shipped in the package, matches, renders and sends to a capture
    server on 127.0.0.1, then writes each received message as .eml and .html.
    """
    from .demo import run_demo

    result = run_demo(Path(folder) if folder else None)
    out.print(f"fetched {result.fetched} sample papers; sent to a capture SMTP server on 127.0.0.1:", highlight=False)
    for outcome in result.outcomes:
        out.print(f"  {outcome.subscriber}: {outcome.status}, {outcome.papers} papers — {escape(outcome.detail)}",
                  highlight=False)
    out.print(f"{len(result.files) // 2} messages written to {result.folder}/ (open the .html files in a browser)",
              highlight=False)


@cli.command()
@click.option("--tick", type=float, default=60.0, show_default=True, hidden=True,
              help="Seconds between checks for due digests.")
@click.option("--no-initial-fetch", is_flag=True, help="Wait for the fetch schedule instead of fetching at start.")
@click.option("--role", type=click.Choice(["all", "scheduler", "worker", "web"]), default="all", show_default=True,
              help="scheduler: fetch and plan; worker: send what is planned; web: answer the links; all: everything.")
@click.pass_obj
def run(app: App, tick: float, no_initial_fetch: bool, role: str) -> None:
    """Run the scheduler: fetch on the `fetch` schedule, send each digest when it is due.

    Stops cleanly on SIGTERM or Ctrl-C (the message in flight is finished); reloads the
    configuration on SIGHUP or when the file changes. Several processes (on several
    machines, with one PostgreSQL database) divide the work: one or more `--role scheduler`,
    any number of `--role worker`.
    """
    from .daemon import Daemon

    debug = app.debug or app.verbose >= 2  # the log at debug level: the libraries' own lines too
    logging.basicConfig(force=True, level=logging.DEBUG if debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if debug
                        else "%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("digest").setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    Daemon(app.config_path, tick=tick, fetch_first=not no_initial_fetch, role=role).serve()


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Answer the links in the digests on `listen:`, alone (as `digest run --role web`).

    For a deployment that runs the web side apart from the scheduler and the workers; put
    it behind the web server that answers for `base_url`. Stops on SIGTERM or Ctrl-C.
    """
    ctx.invoke(run, tick=60.0, no_initial_fetch=True, role="web")


@cli.command()
@click.argument("email")
@click.option("--undo", is_flag=True, help="Subscribe again (also lifts a suspension).")
@click.pass_obj
def unsubscribe(app: App, email: str, undo: bool) -> None:
    """Stop (or with --undo, resume) sending digests to EMAIL, as its unsubscribe link does."""
    from .store.ledger import Ledger

    store = app.store()
    subscriber = _find(app.config, store, email, datetime.now(UTC))
    ledger = Ledger(store)
    if undo:
        ledger.resume(subscriber.email)
        out.print(f"{subscriber.email} gets digests again", highlight=False)
    else:
        ledger.unsubscribe(subscriber.email, datetime.now(UTC))
        out.print(f"{subscriber.email} unsubscribed", highlight=False)


@cli.group(cls=DigestGroup)
def subscribers() -> None:
    """List and manage the subscribers in the database (subscribers.yaml's included).

    Those added here (origin `admin`) live in the database only; those in subscribers.yaml
    (origin `config`) are changed in the file. Examples: digest subscribers list;
    digest subscribers import people.csv; digest subscribers export --format json > all.json
    """


@subscribers.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_obj
def subscribers_list(app: App, fmt: str) -> None:
    """Every subscriber: topics, schedule, origin (config or admin), state, next digest due."""
    admin = _admin(app)
    rows = list(admin.listing())
    shadowed = admin.shadowed()
    if shadowed:
        err.print(f"note: {len(shadowed)} subscribers listed in {app.config.path} are managed in the database "
                  f"(added or imported there); the file's entries for them are ignored: {', '.join(shadowed[:10])}"
                  + (" …" if len(shadowed) > 10 else ""), highlight=False)
    if fmt != "table":
        _print_subscribers(rows, fmt)
        return
    columns = [Column("email", whole=True), Column("name", max_width=20), Column("topics", wrap=True, min_width=16),
               Column("schedule"), Column("origin"), Column("state")]
    print_table(columns, [[r["email"], r["name"], _topic_names(r), r["effective_schedule"], r["origin"],
                           r["state"]] for r in rows])
    out.print(f"{len(rows)} subscribers", highlight=False)


@subscribers.command("add")
@click.argument("email")
@click.option("--name", help="How the digest greets them.")
@click.option("--topic", "topics", multiple=True, metavar="TOPIC",
              help='A keyword, or "Name: keyword, keyword" (repeat for several topics); or topics as JSON, '
                   'as in subscribers.yaml, for a description and more: '
                   '\'[{"name": "Speech", "description": "Speech recognition and synthesis."}]\'.')
@click.option("--schedule", help="e.g. 'daily 07:30', 'weekly mon 08:00' [default: the configuration's].")
@click.option("--timezone", help="An IANA name such as Europe/Berlin [default: the configuration's].")
@click.option("--max-papers", type=int)
@click.option("--trending", type=int, help="A section with the N most upvoted new papers no topic took.")
@click.pass_obj
def subscribers_add(app: App, email: str, name: str | None, topics: tuple[str, ...], schedule: str | None,
                    timezone: str | None, max_papers: int | None, trending: int | None) -> None:
    """Add a subscriber to the database (origin `admin`).

    Example: digest subscribers add ada@example.org --name Ada --topic "KV cache" --topic "Agents: tool use, web agent"
    """
    from .subscribe.csv_rows import parse_topics, validated

    settings = {"email": email, "name": name, "topics": parse_topics(";".join(topics)), "schedule": schedule,
                "timezone": timezone, "max_papers": max_papers, "trending": trending}
    subscriber = validated({k: v for k, v in settings.items() if v is not None and v != []}, "digest subscribers add")
    _admin(app).add(subscriber)
    count = len(subscriber.topics)
    out.print(f"{subscriber.email} added ({count} topic{'s' * (count != 1)})", highlight=False)


@subscribers.command("remove")
@click.argument("emails", nargs=-1, required=True, metavar="EMAIL...")
@click.pass_obj
def subscribers_remove(app: App, emails: tuple[str, ...]) -> None:
    """Remove subscribers added with `add` or `import` (their digests' history stays)."""
    removed = _admin(app).remove(list(emails))
    out.print(f"{removed} removed", highlight=False)


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def subscribers_import(app: App, file: str) -> None:
    """Add or update subscribers from a CSV file (origin `admin`); nothing changes unless every row is valid.

    Columns: email (required), name, topics, schedule, timezone, max_papers, trending. topics:
    topics separated by ";", each a keyword or "Name: keyword, keyword". Example: digest
    subscribers import people.csv (see examples/subscribers.csv)
    """
    from .readfile import read_regular
    from .subscribe.csv_rows import read_subscribers

    try:
        text = read_regular(Path(file)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadArgument(f"{file} is not UTF-8 text (byte {exc.start})",
                          hint="save it as CSV UTF-8 from your spreadsheet") from None
    except OSError as exc:
        raise BadArgument(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        rows, theirs = read_subscribers(text, file)
        added, changed, own = _admin(app).import_rows(rows, file)
    except ConfigError as exc:
        exc.summary = f"{_count(len(exc.problems), 'problem')} in {file}: nothing was imported (correct them and import again)"
        raise
    out.print(f"{len(rows)} row{'s' * (len(rows) != 1)}: {added} added, {changed} updated, "
              f"{len(rows) - added - changed - own} unchanged"
              + (f"; {own} of people who signed up on the web left as they are (they change their own settings)"
                 if own else "")
              + (f"; {theirs} rows of origin config skipped (they belong to a subscribers.yaml)" if theirs else ""),
              highlight=False)


@subscribers.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: the import's columns (topics with more than keywords: json); json: every setting.")
@click.pass_obj
def subscribers_export(app: App, fmt: str) -> None:
    """Write every subscriber to standard output (origin and state included)."""
    _print_subscribers(list(_admin(app).listing()), fmt)


def _topic_names(row: dict[str, Any]) -> str:
    """A table's topics: the cell, or for topics written as JSON (more than keywords) their names."""
    cell: str = row["topics"]
    return ", ".join(t["name"] for t in row["settings"].get("topics", [])) if cell.startswith("[") else cell


def _find(config: Config, store: Store, email: str, now: datetime) -> Any:
    """A subscriber of any origin (subscribers.yaml or the database) by address."""
    from .deliver import roster

    return roster.subscriber(_find_listed(config, store, email, now))


def _find_listed(config: Config, store: Store, email: str, now: datetime) -> Any:
    """As `_find`, the subscriber's directory row."""
    from .deliver import roster
    from .store.directory import Directory

    return roster.find_listed(config, Directory(store), [email], now)[0]


def _admin(app: App):  # type: ignore[no-untyped-def]
    from .subscribe.admin import SubscriberAdmin

    return SubscriberAdmin(app.config, app.store())


def _print_subscribers(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from .subscribe.csv_rows import write_subscribers

    click.echo(write_subscribers({k: v for k, v in r.items() if k not in ("settings", "next_due", "effective_schedule")}
                                 for r in rows),
               nl=False)


def paper_json(paper: Paper) -> dict[str, Any]:
    """The JSON shape of a stored paper: scripts read these field names."""
    return {
        "id": paper.id,
        "title": paper.title,
        "authors": list(paper.authors),
        "abstract": paper.abstract,
        "categories": list(paper.categories),
        "url": paper.url,
        "pdf_url": paper.pdf_url,
        "hf_url": paper.hf_url,
        "code_url": paper.code_url,
        "published": _iso(paper.published),
        "first_seen_at": _iso(paper.first_seen_at),
        "sources": list(paper.sources),
        "upvotes": paper.upvotes,
        "comments": paper.comments,
        "ai_summary": paper.ai_summary,
        "ai_keywords": list(paper.ai_keywords),
        "license": paper.license,
        "doi": paper.doi,
        "version": paper.version,
    }


def _address(value: str, option: str) -> str:
    """An e-mail address given on the command line, checked as subscribers.yaml's are."""
    from .config import email_address

    try:
        return email_address(value)
    except ValueError as exc:  # pydantic's errors are ValueErrors; the message says what is wrong
        raise click.BadParameter(str(exc).split("\n")[0], param_hint=option) from None


def _since(value: str) -> datetime:
    from .config import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an age such as 12h, 1d, 2w or a date such as 2026-11-20, not {value!r}",
                                 param_hint="--since") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment > datetime.now(UTC):
        raise click.BadParameter(f"{value} is in the future: nothing was seen since (give a day before today)",
                                 param_hint="--since")
    return moment


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _local(moment: datetime | None, form: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone().strftime(form) if moment else ""


def main() -> None:
    cli(prog_name="digest")
