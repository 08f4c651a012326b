"""`digest validate` beyond the file itself: what would make a later command fail in this
environment (an unset password variable, a custom template that does not compile, a local
feed file that is not there). Each finding is located in the configuration file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import Problem
from .gather.collect import source_location
from .gather.http import is_local, local_path
from .render.compose import probe_values
from .render.notice import NoticeRenderer
from .render.notice import probe_values as notice_probes
from .render.renderer import CompiledRenderer, TemplateError


@dataclass(frozen=True)
class Finding:
    problem: Problem
    fatal: bool  # an error (the setup cannot work) or a warning (part of it will not)

    def __str__(self) -> str:
        return str(self.problem)


def check_setup(config: Config) -> list[Finding]:
    """Every finding, errors first, each in file order."""
    shown = str(config.path)
    findings: list[Finding] = []

    def add(fatal: bool, path: tuple[str | int, ...], message: str) -> None:
        dotted = ""
        for part in path:
            dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else str(part))
        findings.append(Finding(Problem(shown, config.line_of(*path), dotted, message), fatal))

    smtp = config.smtp
    if smtp.username and smtp.password_env and os.environ.get(smtp.password_env) is None:
        add(True, ("smtp", "password_env"),
            f"${smtp.password_env} is not set in this environment, so the SMTP login would fail: "
            f"`export {smtp.password_env}=…` (or put it in the service's EnvironmentFile)")
    if smtp.ca_file and not Path(config.resolve_local(smtp.ca_file)).is_file():
        add(True, ("smtp", "ca_file"), f"no such file: {config.resolve_local(smtp.ca_file)}")

    if config.templates:
        folder = Path(config.resolve_local(config.templates))
        if not folder.is_dir():
            add(True, ("templates",), f"no such folder: {folder} (copy the built-in templates/ folder there)")
        else:
            probes = probe_values()
            try:
                renderer = CompiledRenderer(folder, probes=probes)
                for values in probes:  # every branch, through the chain digests will take
                    renderer.html(values)
                    renderer.text(values)
            except TemplateError as exc:
                add(True, ("templates",), str(exc))
            else:
                if renderer.fallback_reason:
                    add(False, ("templates",), f"renders with the slower full chain: {renderer.fallback_reason}")
            if any((folder / name).is_file() for name in (NoticeRenderer.html_name, NoticeRenderer.text_name)):
                try:  # the subscription centre's notices, when the folder has its own
                    notices = NoticeRenderer(folder, probes=notice_probes())
                    for values in notice_probes():
                        notices.html(values)
                        notices.text(values)
                except TemplateError as exc:
                    add(True, ("templates",), str(exc))

    if (state := state_problem(config)) is not None:
        add(True, ("state",), state)

    if config.signups.open and not config.base_url:
        add(True, ("signups", "open"), "sign-ups need `base_url`: the confirmation e-mails link to it "
                                       "(e.g. base_url: https://papers.example.org)")
    elif config.signups.open and not config.listen:
        add(False, ("signups", "open"), "nothing serves the sign-up page: set `listen:` (e.g. 127.0.0.1:8081) for "
                                        "`digest run` or `digest serve`, behind your web server")

    for index, source in enumerate(config.sources):
        if not source.enabled:
            continue
        location = source_location(config, source)
        if is_local(location):
            path = local_path(location)
            if not path.is_file():
                add(False, ("sources", index, "url"),
                    f"no such file: {path} (source {source.name!r} will fail; the others are still fetched)")

    return sorted(findings, key=lambda f: (not f.fatal, f.problem.line or 0))


def state_problem(config: Config) -> str | None:
    """Why the state database could not be opened from here, if it could not (store/database.py)."""
    from .store.database import cannot_open

    return cannot_open(config.database_url())
