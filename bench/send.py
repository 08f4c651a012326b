"""The end-to-end send path: `digest send` processes against a loopback SMTP sink, vs smtplib.

    python bench/send.py [--subscribers 500] [--workers 1,2,4] [--databases sqlite,postgresql]
                         [--delay-ms 0,20] [--repeat 3] [--baseline-messages 500] [--code DIR]

Targets: one `digest send` process at least 0.5x the rate of smtplib pushing one pre-built
~52 KB digest over one connection to the same sink; at 20 ms per message, 4 worker processes
at least 3x one, and `smtp.connections: 8` at least 5x `connections: 1`; nothing lost or sent
twice (messages at the sink = digests the ledger says `sent`, one per recipient).

What runs: a fast SMTP sink of our own (bench/smtp_sink.py, in its own process) per delay;
a configuration of N subscribers (2-4 topics each, keywords drawn from ~70 real ML terms, a
few with max_papers or trending) reading the real samples shipped in digest/samples/, its
state fetched once per database (not timed) and copied for every measured run (SQLite: the
file; PostgreSQL: CREATE DATABASE … TEMPLATE), so every run starts from the same fetched state
with no digest sent. A run starts W `python -m digest send` at the same instant and waits
for all: digests/s = messages accepted by the sink / wall time (process start-up, loading
the configuration, matching, rendering, SMTP and the ledger all included). The configuration
is read once before each run, not timed, as on every run after the file's first: each run has
a new file (its port and database differ), and its first read, a YAML parse of every
subscriber, is a cost of editing the file, printed on its own. Also printed:
peak RSS of each process, database transactions per digest (PostgreSQL: pg_stat_database),
and the split by stage when `digest send --timings` exists. Medians of --repeat runs.
PostgreSQL is the tests' own private server (tests/postgres.py), started only when asked
for and psycopg is importable. --code measures another checkout's `digest` package (such as
`git archive HEAD | tar -x -C /tmp/head`) with this benchmark.

Default run (500 subscribers, 3 repeats, both databases): about 3 minutes on 2 cores once
the targets are met, most of it the 20 ms relay's own floor (N x 20 ms per run at one
connection); about 9 minutes at the rates of commit e81417a. `--subscribers 1000,10000` for
the large sizes (10,000: an estimated hour per repeat at those rates).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_sink import query as sink_query  # noqa: E402

SAMPLES = ROOT / "digest" / "samples"
CODE = ROOT  # the checkout whose `digest` package is measured (--code)
SINK = Path(__file__).resolve().parent / "smtp_sink.py"
FROM = "digest@example.org"
STAGES = ("plan", "match", "render", "smtp", "ledger")

SOURCES = [
    {"name": "arxiv", "type": "arxiv", "format": "atom", "warn_stale": False,
     "url": str(SAMPLES / "arxiv-atom-2025-08-20.xml")},
    {"name": "hf-trending", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers-2026-06-12.json")},
    {"name": "daily-papers-pages", "type": "feed", "url": str(SAMPLES / "daily-papers-pages.atom.xml")},
]

# Topics people follow, with the terms they write for them (~70 real ML terms in all).
THEMES = {
    "Efficient inference": ["KV cache", "speculative decoding", "quantization", "pruning", "sparse attention",
                            "distillation", "efficient inference"],
    "Reasoning": ["reasoning", "chain of thought", "test-time scaling", "mathematical reasoning", "theorem proving"],
    "Agents": ["agents", "LLM agent", "tool use", "web agent", "planning"],
    "Alignment": ["alignment", "RLHF", "preference optimization", "reward model", "safety", "jailbreak"],
    "Reinforcement learning": ["reinforcement learning", "policy optimization", "GRPO", "reward shaping"],
    "Retrieval": ["retrieval", "retrieval augmented generation", "RAG", "embedding", "reranking"],
    "Generative vision": ["diffusion", "image generation", "video generation", "text-to-image", "image editing"],
    "Multimodal": ["vision-language model", "multimodal", "visual question answering", "OCR"],
    "Speech": ["speech recognition", "text-to-speech", "audio", "spoken language"],
    "Long context": ["long context", "context window", "state space model", "linear attention"],
    "Training": ["scaling law", "pretraining", "data selection", "synthetic data", "mixture of experts", "LoRA",
                 "fine-tuning"],
    "Evaluation": ["benchmark", "evaluation", "hallucination", "interpretability"],
    "Code": ["code generation", "program synthesis", "software engineering"],
    "Robotics": ["robot manipulation", "embodied", "world model", "vision-language-action"],
    "3D": ["3D reconstruction", "Gaussian splatting", "novel view synthesis"],
}
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Shanghai", "Asia/Tokyo", "Europe/London"]


# ---------------------------------------------------------------- workload


def make_subscribers(count: int, seed: int = 42) -> list[dict]:
    rng = random.Random(seed)
    themes = list(THEMES)
    people = []
    for n in range(count):
        topics = []
        for name in rng.sample(themes, rng.randint(2, 4)):
            topic: dict = {"name": name, "keywords": rng.sample(THEMES[name], rng.randint(1, 3))}
            if rng.random() < 0.15:
                topic["exclude"] = ["survey"]
            topics.append(topic)
        person: dict = {"email": f"reader{n:05d}@example.org", "name": f"Reader {n}",
                        "timezone": rng.choice(ZONES), "topics": topics}
        if rng.random() < 0.1:
            person["max_papers"] = rng.choice([5, 10, 15])
        if rng.random() < 0.1:
            person["trending"] = 3
        people.append(person)
    return people


def write_config(folder: Path, state: str, port: int, subscribers: list[dict], connections: int = 1,
                 name: str = "subscribers.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    lines = [
        'sender: {from: "Paper Digest <digest@example.org>", reply_to: admin@example.org}',
        f"smtp: {{host: 127.0.0.1, port: {port}, security: none, connections: {connections}}}",
        f"state: {json.dumps(state)}",
        "base_url: https://digest.example.org",
        "defaults: {schedule: daily 07:30, timezone: UTC}",
        "sources:", *(f"  - {json.dumps(s)}" for s in SOURCES),
        "subscribers:", *(f"  - {json.dumps(s)}" for s in subscribers),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def digest_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DIGEST_CONFIG", "DIGEST_SECRET")}
    env["PYTHONPATH"] = str(CODE) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def digest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digest", *args], cwd=cwd, env=digest_env(),
                          capture_output=True, text=True, check=False)


def warm_parse(config: Path) -> float:
    """Load the configuration once, not timed, so the measured run finds it parsed (the cache
    beside the file, valid while its text is unchanged) and its subscribers in the database
    (synced once per change of the file), as every run after an edit does: a new file per
    measured run would otherwise put the first-read YAML parse and the sync into every run.
    Returns the seconds that first read took (printed once per size)."""
    code = (f"import time; from datetime import UTC, datetime; from digest.config import load_config; "
            f"from digest.deliver import roster; from digest.store.database import Store; "
            f"from digest.store.directory import Directory; t = time.perf_counter(); "
            f"c = load_config({str(config)!r}); read = time.perf_counter() - t; "
            f"roster.sync(c, Directory(Store(c.database_url())), datetime.now(UTC)); print(read)")
    done = subprocess.run([sys.executable, "-c", code], cwd=config.parent, env=digest_env(),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"loading {config} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def fetch(config: Path) -> int:
    """`digest fetch` (not timed); the number of papers it stored."""
    done = digest("fetch", "-c", str(config), cwd=config.parent)
    if done.returncode != 0:
        sys.exit(f"digest fetch failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    found = re.search(r"(\d+) new papers", done.stdout)
    return int(found.group(1)) if found else -1


# ---------------------------------------------------------------- the sink


class Sink:
    """bench/smtp_sink.py in its own process, on a port it binds itself."""

    def __init__(self, delay_ms: float) -> None:
        self.delay_ms = delay_ms
        self.proc = subprocess.Popen([sys.executable, str(SINK), "--delay", str(delay_ms / 1000)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("listening"):
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.port = int(line.split()[2])

    def count(self) -> dict[str, int]:
        return sink_query(self.port)

    def reset(self) -> None:
        sink_query(self.port, "XRESET")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def baseline_message(work: Path, port: int) -> tuple[bytes, int, int]:
    """A real digest (28 papers, ~52 KB of HTML) as `digest preview --format eml` makes it."""
    import email
    import email.policy

    folder = work / "baseline"
    person: dict = {"email": "baseline@example.org", "name": "Baseline", "max_papers": 28,
              "topics": [{"name": "Language models", "keywords": ["language model", "LLM", "reasoning"]},
                         {"name": "Generative vision", "keywords": ["diffusion", "video generation"]},
                         {"name": "Agents", "keywords": ["agents", "benchmark"]}]}
    config = write_config(folder, "sqlite:///state.db", port, [person])
    papers = fetch(config)
    shown = digest("preview", "baseline@example.org", "--format", "eml", "-c", str(config), cwd=folder)
    if shown.returncode != 0 or not shown.stdout:
        sys.exit(f"digest preview failed ({shown.returncode}): {shown.stderr}")
    raw = re.sub(rb"\r?\n", b"\r\n", shown.stdout.encode("utf-8"))  # as on the wire
    html = email.message_from_bytes(raw, policy=email.policy.default).get_body(("html",))
    return raw, len(html.get_content().encode()) if html is not None else 0, papers


def smtplib_rate(sink: Sink, message: bytes, count: int) -> tuple[float, float]:
    """smtplib pushing `message` `count` times over one connection: (messages/s, sink CPU µs/message)."""
    sink.reset()
    cpu = sink.cpu_seconds()
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as client:
        client.ehlo()
        start = time.perf_counter()
        for n in range(count):
            client.sendmail(FROM, [f"baseline{n}@example.org"], message)
        seconds = time.perf_counter() - start
    got = sink.count()
    if got["messages"] != count:
        sys.exit(f"the sink accepted {got['messages']} of {count} baseline messages")
    return count / seconds, (sink.cpu_seconds() - cpu) / count * 1e6


# ---------------------------------------------------------------- state databases


class SqliteState:
    name = "sqlite"

    def __init__(self, work: Path) -> None:
        self.work = work

    def fetched(self, folder: Path) -> str:
        self.source = folder / "state.db"
        return "sqlite:///state.db"

    def new_run(self, folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.source) as src, sqlite3.connect(folder / "state.db") as dst:
            src.backup(dst)
        return "sqlite:///state.db"

    def ledger(self, folder: Path, _url: str) -> dict[str, int]:
        with sqlite3.connect(folder / "state.db") as conn:
            return dict(conn.execute("SELECT state, count(*) FROM digests GROUP BY state").fetchall())

    def transactions(self, _url: str) -> int | None:
        return None

    def drop(self, _url: str) -> None:
        pass

    def close(self) -> None:
        pass


class PostgresState:
    name = "postgresql"

    def __init__(self) -> None:
        from tests.postgres import Postgres

        self.server = Postgres().start()
        self.admin = f"host=127.0.0.1 port={self.server.port} user=postgres dbname=postgres"

    def fetched(self, _folder: Path) -> str:
        url = self.server.create_database()
        self.template = url.rsplit("/", 1)[1]
        return url

    def new_run(self, _folder: Path) -> str:
        import psycopg

        for _ in range(50):  # the fetch's backend may still be exiting: the template is in use
            try:
                return self.server.create_database(template=self.template)
            except psycopg.errors.ObjectInUse:
                time.sleep(0.1)
        raise RuntimeError(f"template database {self.template} stays in use")

    def _connect(self, url: str | None = None):  # type: ignore[no-untyped-def]
        import psycopg

        target = self.admin if url is None else self.admin.replace("dbname=postgres", f"dbname={url.rsplit('/', 1)[1]}")
        return psycopg.connect(target, autocommit=True)

    def ledger(self, _folder: Path, url: str) -> dict[str, int]:
        with self._connect(url) as conn:
            return dict(conn.execute("SELECT state, count(*) FROM digests GROUP BY state").fetchall())

    def transactions(self, url: str) -> int | None:
        """xact_commit + xact_rollback of the run's database, read from another database (so the
        reading adds none), once the numbers stop moving: backends report at exit, and the
        cumulative statistics system takes a moment."""
        name = url.rsplit("/", 1)[1]
        last = None
        with self._connect() as conn:
            for _ in range(30):
                conn.execute("SELECT pg_stat_clear_snapshot()")
                row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                                   (name,)).fetchone()
                value = int(row[0]) if row and row[0] is not None else 0
                if value == last:
                    return value
                last = value
                time.sleep(0.4)
        return last

    def drop(self, url: str) -> None:
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def close(self) -> None:
        self.server.stop()


def postgres_missing() -> str | None:
    from tests.postgres import available

    return available()


# ---------------------------------------------------------------- one measured run


@dataclass
class Run:
    seconds: float
    accepted: int
    distinct: int
    bytes: int
    ledger: dict[str, int]
    exit_codes: list[int]
    rss_mib: list[float]
    transactions: int | None
    timings: dict[str, float] | None
    per_process_sent: list[int]
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    @property
    def sent_rows(self) -> int:
        return self.ledger.get("sent", 0)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.timings: bool | None = None  # does `digest send --timings` exist?
        self.runs = 0
        self.first_parse: dict[int, float] = {}  # subscribers -> seconds of a first (uncached) read

    def probe_timings(self) -> bool:
        shown = digest("send", "--help", cwd=self.work)
        return "--timings" in shown.stdout

    def measure(self, state, subscribers: list[dict], sink: Sink, workers: int, connections: int) -> Run:  # type: ignore[no-untyped-def]
        self.runs += 1
        folder = self.work / f"run-{self.runs:03d}-{state.name}-{len(subscribers)}-w{workers}-c{connections}-d{sink.delay_ms:g}"
        url = state.new_run(folder)
        config = write_config(folder, url, sink.port, subscribers, connections)
        self.first_parse.setdefault(len(subscribers), warm_parse(config))
        run = self._launch(state, folder, url, config, sink, workers)
        if run is None:  # --timings refused: the same run without it, on a fresh copy
            state.drop(url)
            url = state.new_run(folder)
            config = write_config(folder, url, sink.port, subscribers, connections)
            warm_parse(config)
            run = self._launch(state, folder, url, config, sink, workers)
        state.drop(url)
        if run is None:
            raise RuntimeError("unreachable: --timings refused twice")
        shutil.rmtree(folder, ignore_errors=True)
        return run

    def _launch(self, state, folder: Path, url: str, config: Path, sink: Sink, workers: int) -> Run | None:  # type: ignore[no-untyped-def]
        command = [sys.executable, "-m", "digest", "send", "-c", str(config)] + (["--timings"] if self.timings else [])
        before = state.transactions(url)
        sink.reset()
        env = digest_env()
        outs = [(open(folder / f"out-{i}.txt", "wb"), open(folder / f"err-{i}.txt", "wb")) for i in range(workers)]
        start = time.perf_counter()
        procs = [subprocess.Popen(command, cwd=folder, env=env, stdout=o, stderr=e) for o, e in outs]
        rss, codes = [], []
        for proc in procs:  # wait4: each process's own peak RSS
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            codes.append(proc.returncode)
            rss.append(usage.ru_maxrss / 1024)
        seconds = time.perf_counter() - start
        for o, e in outs:
            o.close()
            e.close()
        errs = [(folder / f"err-{i}.txt").read_text(errors="replace") for i in range(workers)]
        if self.timings and any(c == 2 and "No such option" in e for c, e in zip(codes, errs)):
            self.timings = False
            return None
        got = sink.count()
        ledger = state.ledger(folder, url)
        after = state.transactions(url)
        timings = self._timings(errs) if self.timings else None
        sent = []
        for i in range(workers):
            text = (folder / f"out-{i}.txt").read_text(errors="replace")
            match = re.search(r"(\d+) sent, (\d+) empty", text)
            sent.append(int(match.group(1)) if match else -1)
        problems = [f"process {i}: exit {c}: " + (e.strip().splitlines() or ["(no message)"])[-1][:200]
                    for i, (c, e) in enumerate(zip(codes, errs)) if c != 0]
        return Run(seconds, got["messages"], got["distinct"], got["bytes"], ledger, codes, rss,
                   None if before is None or after is None else after - before, timings, sent, problems)

    @staticmethod
    def _timings(errs: list[str]) -> dict[str, float] | None:
        total: dict[str, float] = {}
        found = False
        for text in errs:
            at = text.rfind("timings {")
            if at < 0:
                continue
            try:  # one line, unless a console folded it: the JSON has no spaces that matter
                values, _ = json.JSONDecoder().raw_decode(text[at + len("timings "):].replace("\n", ""))
            except json.JSONDecodeError:
                continue
            if not isinstance(values, dict):
                continue
            found = True
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    total[key] = total.get(key, 0.0) + value
        return total if found else None


# ---------------------------------------------------------------- reporting


@dataclass
class Row:
    subscribers: int
    database: str
    delay_ms: float
    workers: int
    connections: int
    runs: list[Run]

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.runs)

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    def check(self) -> str:
        """Sink vs ledger over every repeat: lost (sent per the ledger, never at the sink) and
        duplicates (messages beyond one per recipient)."""
        lost = sum(max(0, r.sent_rows - r.distinct) for r in self.runs)
        dup = sum(r.accepted - r.distinct for r in self.runs)
        unrecorded = sum(max(0, r.distinct - r.sent_rows) for r in self.runs)
        text = f"lost {lost} dup {dup}"
        return text + (f" unrecorded {unrecorded}" if unrecorded else "")

    def accepted(self) -> str:
        """The last repeat: messages at the sink, the ledger's rows by state, subscribers with no row."""
        r = self.runs[-1]
        other = {k: v for k, v in r.ledger.items() if k not in ("sent", "empty")}
        text = f"sink {r.accepted} sent {r.sent_rows} empty {r.ledger.get('empty', 0)}"
        text += "".join(f" {k} {v}" for k, v in sorted(other.items()))
        missing = self.subscribers - sum(r.ledger.values())
        text += f" no-row {missing}" if missing else ""
        return text + (f" ({r.bytes / r.accepted / 1000:.0f} kB/msg)" if r.accepted else "")

    def rss(self) -> float:
        return max(max(r.rss_mib) for r in self.runs)

    def xacts(self) -> str:
        values = [r.transactions / r.accepted for r in self.runs if r.transactions is not None and r.accepted]
        return f"{statistics.median(values):.1f}" if values else "n/a"

    def split(self) -> str:
        """Per digest, summed over the processes: ms of matching, rendering (and MIME), SMTP
        (with the ledger's `sending` mark inside it), the ledger's other work; and the calls to
        the ledger per digest (each one statement or one transaction; marks made at once by
        several connections share one)."""
        timings = [r.timings for r in self.runs if r.timings]
        if not timings:
            return "n/a"
        shown = []
        for key in ("match", "render", "smtp", "ledger"):
            values = [t.get(key, 0.0) * 1000 / max(1, t.get("digests", 0)) for t in timings]
            shown.append(f"{key} {statistics.median(values):.2f}")
        calls = [t.get("ledger_calls", 0) / max(1, t.get("digests", 0)) for t in timings]
        return " ".join(shown) + f" ms/digest; {statistics.median(calls):.2f} ledger calls/digest"


def ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}x" if b else "-"


def share(a: float, b: float) -> float:
    return a / b if b else 0.0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="500", help="comma-separated counts, e.g. 1000,10000")
    parser.add_argument("--workers", default="1,2,4", help="processes started at once")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--delay-ms", default="0,20", help="the sink's delay before accepting each message")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8,
                        help="also one process with this many SMTP connections, against the 20 ms sink (0: skip)")
    parser.add_argument("--baseline-messages", type=int, default=500,
                        help="smtplib baseline: messages per measurement (at most N)")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout whose digest package is measured (e.g. a `git archive HEAD` copy)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    global CODE
    CODE = args.code.resolve()
    if not (CODE / "digest" / "__main__.py").exists():
        sys.exit(f"--code {CODE}: no digest package there")
    counts = [int(x) for x in args.subscribers.split(",") if x]
    workers_list = [int(x) for x in args.workers.split(",") if x]
    databases = [x.strip() for x in args.databases.split(",") if x.strip()]
    delays = [float(x) for x in args.delay_ms.split(",") if x]
    slow = 20.0
    for name in databases:
        if name not in ("sqlite", "postgresql"):
            sys.exit(f"unknown database {name!r}: sqlite or postgresql")
    if "postgresql" in databases:
        missing = postgres_missing()
        if missing:
            print(f"postgresql skipped: {missing}")
            databases.remove("postgresql")

    work = Path(tempfile.mkdtemp(prefix="digest-bench-send-"))
    sinks: dict[float, Sink] = {}
    states: dict[str, object] = {}
    started = time.perf_counter()
    try:
        for delay in sorted(set(delays) | ({slow} if args.connections else set())):
            sinks[delay] = Sink(delay)
        bench = Bench(args, work)
        bench.timings = bench.probe_timings()
        message, html_bytes, papers = baseline_message(work, sinks[delays[0]].port)
        print(f"workload: subscribers {counts}, 2-4 topics each from {sum(map(len, THEMES.values()))} terms; "
              f"{papers} sample papers; workers {workers_list}; databases {databases}; sink delay {delays} ms; "
              f"repeat {args.repeat}; {os.cpu_count()} cores")
        print(f"baseline message: {len(message):,} bytes ({html_bytes:,} B of HTML, 28 papers), "
              f"`digest send --timings`: {'yes' if bench.timings else 'not available (split n/a)'}")

        # 1. the sink alone, through smtplib: one connection, one pre-built message, N times
        baseline: dict[tuple[int, float], float] = {}
        for n in counts:
            for delay in sorted(sinks):
                m = min(n, args.baseline_messages)
                results = [smtplib_rate(sinks[delay], message, m) for _ in range(args.repeat)]
                baseline[n, delay] = statistics.median(r for r, _ in results)
                print(f"smtplib baseline  N={n:<6} delay {delay:>3g} ms: {baseline[n, delay]:8.1f} msg/s "
                      f"({m} messages, one connection; sink CPU {statistics.median(c for _, c in results):.0f} "
                      f"µs/message)", flush=True)

        for name in databases:
            states[name] = SqliteState(work) if name == "sqlite" else PostgresState()

        rows: list[Row] = []
        for n in counts:
            people = make_subscribers(n)
            for name in databases:
                state = states[name]
                folder = work / f"fetched-{name}-{n}"
                config = write_config(folder, state.fetched(folder), sinks[delays[0]].port, people)  # type: ignore[attr-defined]
                fetch(config)
                plan = [(delay, w, 1) for delay in delays for w in workers_list]
                if args.connections:
                    plan.append((slow, 1, args.connections))
                    if (slow, 1, 1) not in plan:
                        plan.append((slow, 1, 1))
                for delay, w, conns in plan:
                    runs = [bench.measure(state, people, sinks[delay], w, conns) for _ in range(args.repeat)]
                    row = Row(n, name, delay, w, conns, runs)
                    rows.append(row)
                    errors = sorted({e for r in runs for e in r.errors})
                    spread = (f" [{min(r.rate for r in runs):.1f}-{max(r.rate for r in runs):.1f}]"
                              if len(runs) > 1 else "")
                    print(f"{name:<10} N={n:<6} delay {delay:>3g} ms  workers {w} conn {conns}: "
                          f"{row.rate:7.1f} digests/s{spread} ({row.seconds:6.2f} s)  {row.accepted()}  "
                          f"{row.check()}  per process sent {runs[-1].per_process_sent}  "
                          f"rss {row.rss():.0f} MiB  xacts/digest {row.xacts()}  split {row.split()}", flush=True)
                    for error in errors:
                        print(f"    {error}")
        print_table(rows, baseline, args.connections, slow)
        for n, seconds in sorted(bench.first_parse.items()):
            print(f"configuration of {n} subscribers: first read {seconds:.2f} s (YAML, once per edit of the "
                  "file; the measured runs find it parsed)")
        print(f"({time.perf_counter() - started:.0f} s in all)")
    finally:
        for sink in sinks.values():
            sink.stop()
        for state in states.values():
            state.close()  # type: ignore[attr-defined]
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list[Row], baseline: dict[tuple[int, float], float], connections: int, slow: float) -> None:
    def find(n: int, db: str, delay: float, w: int, c: int) -> Row | None:
        return next((r for r in rows if (r.subscribers, r.database, r.delay_ms, r.workers, r.connections)
                     == (n, db, delay, w, c)), None)

    print()
    header = (f"{'N':>6} {'db':<10} {'delay':>5} {'W':>2} {'conn':>4} {'digests/s':>10} {'vs smtplib':>10} "
              f"{'vs 1x1':>7} {'lost/dup':>14} {'RSS MiB':>8} {'xact/dig':>8}  split")
    print(header)
    print("-" * len(header))
    for r in rows:
        one = find(r.subscribers, r.database, r.delay_ms, 1, 1)
        versus = ratio(r.rate, one.rate) if one is not None and r is not one else ""
        print(f"{r.subscribers:>6} {r.database:<10} {r.delay_ms:>3g}ms {r.workers:>2} {r.connections:>4} "
              f"{r.rate:>10.1f} {ratio(r.rate, baseline.get((r.subscribers, r.delay_ms))):>10} {versus:>7} "
              f"{r.check():>14} {r.rss():>8.0f} {r.xacts():>8}  {r.split()}")
    print()
    for r in rows:
        if r.workers == 1 and r.connections == 1:
            base = baseline.get((r.subscribers, r.delay_ms))
            if base:
                print(f"target  N={r.subscribers} {r.database} {r.delay_ms:g} ms: one process >= 0.5x smtplib: "
                      f"{share(r.rate, base):.2f}x {verdict(share(r.rate, base) >= 0.5)}")
    for n in sorted({r.subscribers for r in rows}):
        for db in dict.fromkeys(r.database for r in rows):
            one = find(n, db, slow, 1, 1)
            four = find(n, db, slow, 4, 1)
            many = find(n, db, slow, 1, connections) if connections else None
            if one and four:
                print(f"target  N={n} {db} {slow:g} ms: 4 workers >= 3x one: {share(four.rate, one.rate):.2f}x "
                      f"{verdict(share(four.rate, one.rate) >= 3)}")
            if one and many and many is not one:
                print(f"target  N={n} {db} {slow:g} ms: connections {connections} >= 5x connections 1: "
                      f"{share(many.rate, one.rate):.2f}x {verdict(share(many.rate, one.rate) >= 5)}")
    exact = all(r.accepted == r.distinct == r.sent_rows for row in rows for r in row.runs)
    print(f"target  nothing lost or sent twice (sink = ledger 'sent', one per recipient): {verdict(exact)}")
    failed = sum(1 for row in rows for r in row.runs if any(r.exit_codes))
    if failed:
        print(f"warning: {failed} runs had a `digest send` process exit non-zero (see the lines above)")


if __name__ == "__main__":
    main()
