"""Ctrl-C: one always ends a command, with status 130 and a line saying how far it got, and
nothing already done (images saved, requests paid for) is lost from the ledger.

The command-line tests run the real `layer` script of this environment on the embedded default
(`local`), in a fresh HOME, so the SQLite ledger is used. They find the moment to interrupt from
what the script imports (PYTHONPROFILEIMPORTTIME): the first import after the script's own
module (its handler is in place), and the first Pillow import (the local provider has started
drawing). Before the script's first line the interpreter is still starting: a SIGINT then is the
kernel's or the interpreter's own business (the process dies of it, which a shell reports as 130
too, or site.py fails), which no program can change.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from layer_core.ledger import Ledger, LedgerRecord, ledger_url
from layer_core.provider import GenerationCall
from layer_core.schema import ImageOutput
from layer_core.testing import OK, ScriptedProvider, fake_images, make_spec
from tests.helpers import layer_with

LAYER = Path(sys.executable).with_name("layer")  # the console script of this environment
#: A Ctrl-C must end any command within this many seconds.
PROMPT_EXIT = 5.0
#: Subprocesses at once: enough to finish soon, few enough for two busy cores.
AT_ONCE = 3

Anchor = Callable[[str], bool]


@pytest.fixture
def sigint_is_python_s() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here, and children start with the default action (a test
    runner may ignore SIGINT, and a child inherits that)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


# --- the sync API: a Ctrl-C cancels the request and waits for it ----------------------------


def interrupt_main_when(*events: threading.Event) -> threading.Thread:
    """Send SIGINT to the main thread as each event is set, in turn."""
    main = threading.main_thread().ident
    assert main is not None

    def send() -> None:
        for event in events:
            assert event.wait(30)
            signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_ctrl_c_in_layer_image_cancels_the_request_and_records_the_images_paid_for(
    sigint_is_python_s: None,
) -> None:
    """Two of three one-image calls delivered, the third in flight: the cancelled request is
    recorded with the two images (and their cost) before `image()` raises."""
    started = threading.Event()
    cancelled: list[str] = []

    async def third(call: GenerationCall) -> list[ImageOutput]:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(call.prompt)
            raise
        return fake_images(call)

    spec = make_spec("one-each", "acme", price="0.04", max_images_per_call=1)
    acme = ScriptedProvider("acme", [spec], {"one-each": [OK, OK, third]})
    with layer_with(acme, gates={"g": {"model": "one-each"}}, ledger="memory") as layer:
        sender = interrupt_main_when(started)
        with pytest.raises(KeyboardInterrupt):
            layer.image("g", {"prompt": "three foxes", "count": 3})
        sender.join()
        assert cancelled == ["three foxes"]  # the call in flight ended before image() raised
        assert layer.ledger is not None
        (record,) = layer.ledger.records()

    assert (record.status, record.error) == ("failed", "CancelledError")
    assert (record.requested, record.delivered) == (3, 2)
    assert record.cost == Decimal("0.08")


def test_a_call_given_up_on_is_cancelled_and_recorded_when_the_layer_closes(
    sigint_is_python_s: None, tmp_path: Path
) -> None:
    """A second Ctrl-C stops waiting for a request that is slow to end; closing the `Layer`
    then cancels it again and waits, so its record is written instead of lost at exit."""
    started, stubborn = threading.Event(), threading.Event()

    async def slow_to_stop(call: GenerationCall) -> list[ImageOutput]:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stubborn.set()
            await asyncio.sleep(60)  # ignores the first cancellation; the next one ends it
        return fake_images(call)

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    acme = ScriptedProvider("acme", [make_spec("slow", "acme")], {"slow": [slow_to_stop]})
    layer = layer_with(acme, gates={"g": {"model": "slow"}}, ledger=url)
    sender = interrupt_main_when(started, stubborn)
    with pytest.raises(KeyboardInterrupt):
        layer.image("g", {"prompt": "p"})
    sender.join()
    layer.close()

    ledger = Ledger(url)
    (record,) = ledger.records()
    ledger.close()
    assert (record.status, record.error) == ("failed", "CancelledError")


FINALIZING = """
import gc, sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from layer_core.ledger import Ledger, LedgerRecord

def record_when_closed(ledger, record):
    try:
        yield
    finally:
        ledger.record(record)

class Cycle:
    pass

gc.disable()  # the cycle is left to the interpreter's last collection, at exit
cycle = Cycle()
cycle.cycle = cycle
cycle.pending = record_when_closed(
    Ledger(sys.argv[1], spool_dir=Path(sys.argv[2])),
    LedgerRecord(id="late", created=datetime.now(UTC), gate_id="g", model_requested="m",
        model_used=None, provider=None, requested=1, delivered=0, cost=Decimal(0), latency=1.0,
        status="failed", error="CancelledError"),
)
next(cycle.pending)
del cycle
"""


def test_a_record_made_while_the_interpreter_exits_does_not_hang_the_exit(tmp_path: Path) -> None:
    """What hung `layer image` after Ctrl-C: a coroutine closed by the last garbage collection
    recorded its request, and starting the ledger's writer thread then never returned."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    done = subprocess.run(
        [sys.executable, "-c", FINALIZING, url, str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "came while the interpreter was exiting" in done.stderr


# --- the script's entry point, with a command line that gets Ctrl-C where Python drops it ------

STAND_IN = """
import os, signal, sys, time, types

def ctrl_c_here():
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):  # bytecodes: the handler runs among them, raising here
        pass

def in_del(argv):
    class Dropped:
        def __del__(self):
            ctrl_c_here()
    Dropped()
    time.sleep(30)

def in_set_name(argv):
    class Named:
        def __set_name__(self, owner, name):
            ctrl_c_here()
    class Owner:
        attribute = Named()
    time.sleep(30)

def unawaited(argv):
    async def work():
        pass
    pending = work()
    ctrl_c_here()

def half_made(argv):
    class Half:
        def __init__(self):
            ctrl_c_here()
            self.ready = True
        def __del__(self):
            assert self.ready
    Half()

cli = types.ModuleType("layer_core.cli")  # the command line, replaced for this test
cli.main = {
    "del": in_del, "set_name": in_set_name, "unawaited": unawaited, "half_made": half_made
}[sys.argv[1]]
sys.modules["layer_core.cli"] = cli
from layer_core.script import main
main([])
"""


@pytest.mark.parametrize("where", ["del", "set_name", "unawaited", "half_made"])
def test_a_ctrl_c_python_drops_or_converts_still_ends_the_command(
    where: str, sigint_is_python_s: None
) -> None:
    """A Ctrl-C raised in a `__del__` is dropped by Python (printed as "Exception ignored"),
    one raised in a `__set_name__` becomes a RuntimeError (3.11), and what it cuts short makes
    Python complain (a coroutine never awaited, a `__del__` failing on a half-made object):
    none may leave the command running, print a traceback or a warning, or end it with
    anything but 130 and one line."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", STAND_IN, where], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (130, "interrupted\n")
    assert time.monotonic() - started < 10  # not the sleep, nor the clean-up deadline


# --- the `layer` script ----------------------------------------------------------------------


def import_name(line: str) -> str | None:
    """The module an import-time line reports, or None for another line."""
    if not line.startswith("import time:"):
        return None
    return line.rsplit("|", 1)[1].strip()


def nth_import(count: int) -> Anchor:
    """The `count`-th import after the script's own module (from 0: the handler is in place by
    then). A point in a run's progress, whatever the load on the machine."""
    seen: int | None = None

    def anchor(line: str) -> bool:
        nonlocal seen
        name = import_name(line)
        if name is None:
            return False
        if seen is None:
            if name == "layer_core.script":
                seen = 0
            return False
        seen += 1
        return seen > count

    return anchor


def drawing(line: str) -> bool:
    """Pillow's first import: the local provider has started drawing."""
    name = import_name(line)
    return name is not None and name.split(".")[0] == "PIL"


def environment(home: Path) -> dict[str, str]:
    """A fresh user: no config, no keys, the ledger in `home`; imports reported on stderr."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "LANG": "C.UTF-8",
        "PYTHONPROFILEIMPORTTIME": "1",
    }


@dataclass
class Outcome:
    returncode: int
    seconds: float
    """From the signal to the exit."""
    stdout: str
    stderr: str
    """Without the import-time lines."""
    home: Path


class Child:
    """`layer ARGS` in `home`; its stderr is read as it comes, and `anchored` is set at the
    first line `anchor` accepts (or at the end)."""

    def __init__(self, home: Path, args: list[str], anchor: Anchor) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.lines: list[str] = []
        self.times: list[float] = []
        self.anchored = threading.Event()
        self.anchor = anchor
        with (home / "stdout.txt").open("w") as stdout:
            self.proc = subprocess.Popen(
                [str(LAYER), *args],
                cwd=home,
                env=environment(home),
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self.times.append(time.monotonic())
            if not self.anchored.is_set() and self.anchor(line):
                self.anchored.set()
        self.anchored.set()

    def interrupt(self, delay: float = 0.0) -> Outcome | None:
        """SIGINT `delay` seconds after the anchor; None when the run ended before that."""
        try:
            assert self.anchored.wait(120), "no anchor in two minutes"
            time.sleep(delay)
            if self.proc.poll() is not None:
                return None
            self.proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            self.proc.wait(timeout=60)
            seconds = time.monotonic() - sent
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=60)
        stdout = (self.home / "stdout.txt").read_text()
        return Outcome(self.proc.returncode, seconds, stdout, self.stderr(), self.home)

    def stderr(self) -> str:
        return "".join(line for line in self.lines if import_name(line) is None)


def records(home: Path, monkeypatch: pytest.MonkeyPatch) -> list[LedgerRecord]:
    """What the ledger of a run in `home` holds (its spool replayed first, as any command does)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    url = ledger_url("sqlite")
    assert url is not None
    ledger = Ledger.for_url(url)
    try:
        return ledger.records()
    finally:
        ledger.close()


def assert_interrupted(outcome: Outcome, *statuses: int) -> None:
    where = f"in {outcome.home}:\n{outcome.stderr}"
    assert outcome.returncode in (130, *statuses), where
    assert outcome.seconds < PROMPT_EXIT, where
    assert "Traceback" not in outcome.stderr, where
    assert "Aborted!" not in outcome.stderr, where


IMAGE = ["image", "a fox", "--count", "10"]


def test_one_ctrl_c_always_ends_layer_image_with_130(
    tmp_path: Path, sigint_is_python_s: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 runs, each interrupted once: 20 at imports spread from the first of the command
    line's to the ledger's (loading plugins, planning, starting to draw on the way), 10 spread
    over drawing the ten images."""
    whole = Child(tmp_path / "whole", IMAGE, lambda line: False)
    assert whole.proc.wait(timeout=300) == 0, whole.stderr()
    whole.reader.join()
    names = [import_name(line) for line in whole.lines]
    imports = [name for name in names if name is not None]
    mine = imports[imports.index("layer_core.script") + 1 :]
    printing = next(i for i, name in enumerate(mine) if name.split(".")[0] == "rich")
    first_pil = names.index(next(n for n in imports if n.split(".")[0] == "PIL"))
    drawn = next(  # the next import that is not Pillow's: the ledger opening, once drawn
        i for i, name in enumerate(names) if i > first_pil and name and name[:3] != "PIL"
    )
    draw_seconds = whole.times[drawn] - whole.times[first_pil]

    moments: list[tuple[Anchor, float]] = [(nth_import(printing * i // 20), 0.0) for i in range(20)]
    moments += [(drawing, draw_seconds * i / 10) for i in range(10)]

    def interrupted(index: int) -> Outcome:
        anchor, delay = moments[index]
        for attempt in range(6):  # a run faster than the calibration: the same, a bit earlier
            home = tmp_path / f"run{index}-{attempt}"
            outcome = Child(home, IMAGE, anchor).interrupt(delay / 2**attempt)
            if outcome is not None:
                return outcome
        raise AssertionError(f"moment {index}: every run ended before the signal")

    with ThreadPoolExecutor(AT_ONCE) as pool:
        outcomes = list(pool.map(interrupted, range(len(moments))))

    for outcome, (anchor, _) in zip(outcomes, moments, strict=True):
        assert_interrupted(outcome)
        (said,) = [line for line in outcome.stderr.splitlines() if "interrupted" in line]
        assert said.startswith("interrupted"), said
        saved = sorted((outcome.home / "images").glob("*.png"))
        if said == "interrupted" or "no image was saved" in said:
            assert not saved, said
        if "image(s) saved in" in said:
            assert f"{len(saved)} image(s) saved in" in said
        made = records(outcome.home, monkeypatch)
        assert len(made) <= 1
        if anchor is drawing:  # the request was made: it is recorded, however it ended
            assert made, said
            assert "recorded in the ledger" in said or "spool" in said
        if saved:  # paid for (and saved): the response's record is there
            assert [(r.status, r.delivered) for r in made] == [("ok", 10)]


PROMPTS = 16


def test_one_ctrl_c_always_ends_layer_batch_with_130_and_keeps_every_line_done(
    tmp_path: Path, sigint_is_python_s: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted while starting, midway and at the very end: status 130, never "finished"
    and "interrupted" both, whole lines only, and every line done is in the ledger."""
    args = ["batch", "prompts.txt", "-o", "out", "-j", "4"]
    # at an import, or once results.jsonl has that many lines; after the last line only the
    # ledger, the gallery and the summary are left, over so soon that the run may end first
    moments = [("import", 0), ("import", 120), ("lines", 1), ("lines", 5), ("lines", 9)]
    moments += [("lines", PROMPTS - 1), ("lines", PROMPTS), ("lines", PROMPTS)]

    def interrupted(index: int) -> Outcome | None:
        home = tmp_path / f"run{index}"
        home.mkdir()
        (home / "prompts.txt").write_text("".join(f"season {i}\n" for i in range(PROMPTS)))
        kind, count = moments[index]
        if kind == "import":
            return Child(home, args, nth_import(count)).interrupt()
        child = Child(home, args, lambda line: False)
        results = home / "out" / "results.jsonl"
        while child.proc.poll() is None:
            if results.exists() and len(results.read_text().splitlines()) >= count:
                child.anchored.set()
                break
            time.sleep(0.002)
        return child.interrupt()

    with ThreadPoolExecutor(AT_ONCE) as pool:
        outcomes = list(pool.map(interrupted, range(len(moments))))

    assert all(outcomes[: len(moments) - 2]), "only the last moments may come after the end"
    for outcome in filter(None, outcomes):
        text = outcome.stdout + outcome.stderr
        assert not ("finished" in text and "interrupted" in text), text
        if "interrupted" in outcome.stderr:
            assert_interrupted(outcome)
        else:  # the Ctrl-C came once the summary was being printed: it is printed whole
            assert "batch into out: finished" in outcome.stdout
            assert "gallery: out/index.html" in outcome.stdout
            # in the interpreter's last milliseconds its default action is back: the process
            # dies of the signal, which a shell reports as 130 as well
            assert_interrupted(outcome, -signal.SIGINT)
        results = outcome.home / "out" / "results.jsonl"
        lines = []
        if results.exists():
            lines = [json.loads(line) for line in results.read_text().splitlines()]
        for line in lines:  # whole lines, each with its files
            assert all((outcome.home / "out" / name).is_file() for name in line["files"])
        made = {r.id: r for r in records(outcome.home, monkeypatch)}
        for line in lines:
            if line["status"] == "ok":  # paid for and saved: in the ledger
                record = made[line["response_id"]]
                assert (record.status, record.delivered) == ("ok", len(line["files"]))


def test_a_ledger_that_cannot_take_the_record_does_not_hold_up_ctrl_c(
    tmp_path: Path, sigint_is_python_s: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the ledger's write lock (SQLite waits up to 30 s for it): the
    process still ends within seconds, and the record waits in the spool for the next command."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = ledger_url("sqlite")
    assert url is not None
    Ledger.for_url(url).store().close()  # the database and its tables exist
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        outcome = Child(tmp_path, IMAGE, drawing).interrupt()
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert outcome is not None
    assert_interrupted(outcome)
    assert "1 ledger record(s) not yet written wait in the ledger's spool" in outcome.stderr
    (record,) = records(tmp_path, monkeypatch)
    assert record.requested == 10
