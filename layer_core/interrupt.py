"""How the `layer` script handles Ctrl-C (`layer_core.script` installs it from its first line).

One Ctrl-C stops any command. The work in flight is cancelled where the command waits for it,
what was already done is kept (images saved, `results.jsonl`, every request in the cost ledger),
one line says how far the command got, and the exit status is 130 (128 + SIGINT, what a shell
reports for a program that Ctrl-C ended). A second Ctrl-C, or a clean-up that takes more than
`DEADLINE` seconds, ends the process at once: ledger records not yet written then go to the
ledger's spool, which the next command that uses the ledger writes. A Ctrl-C while a command
prints its result lets the result finish (the exit status is 130 all the same), so the output
never says both "finished" and "interrupted".

This module imports only `signal` (and nothing of layer_core but its empty package), so the
handler is in place before the command line's own imports, which take a good part of a second.
A SIGINT ignored by the parent (a background job) stays ignored.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False  # `typing` itself costs milliseconds at start-up, before the handler is in
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

#: Seconds the clean-up after a Ctrl-C may take before the process ends without it.
DEADLINE = 3.0
#: The exit status after Ctrl-C.
INTERRUPTED = 130

_WRITER = "layer_core.ledger.writer"

#: "off" (not the script: no handler), "running", "stopping" (after the first Ctrl-C),
#: "finishing" (the command prints its result), "exiting" (the command has ended).
_stage = "off"
_presses = 0
_done = ""
_again = False


class Interrupted(SystemExit):
    """The first Ctrl-C, raised in the main thread.

    A `SystemExit` with status 130: click lets it through (it would turn a KeyboardInterrupt
    into "Aborted!" and status 1), and no `except Exception` takes it for an error.
    """

    def __init__(self) -> None:
        super().__init__(INTERRUPTED)


def done(what: str) -> None:
    """What the running command has done so far: said after "interrupted: " if Ctrl-C stops it."""
    global _done
    _done = what


def stopping() -> bool:
    """Whether a Ctrl-C is stopping the command."""
    return _stage == "stopping"


def ended() -> None:
    """The command has returned (or unwound): after a Ctrl-C, finish and exit with 130 here."""
    global _stage
    if _stage == "stopping":  # a Ctrl-C stopped the command, however it unwound
        _stop(say=True)
    _stage = "exiting"
    if _presses:  # a Ctrl-C while the result was printed: it is complete, nothing more to say
        _stop(say=False)


def finishing() -> None:
    """The command has done its work and now prints the result: a Ctrl-C from here on lets the
    output finish instead of cutting it short (the exit status is 130 all the same)."""
    global _stage
    if _stage == "running":
        _stage = "finishing"


def install() -> None:
    """Take over SIGINT (unless the parent ignores it): the first thing the script does."""
    global _stage
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # ignored by the parent (a background job), or not the interpreter's default
    _stage = "running"
    try:
        if hasattr(signal, "setitimer"):  # first: the Ctrl-C handler arms it
            signal.signal(signal.SIGALRM, _on_deadline)
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread (a test calling `main`): leave signals alone
        _stage = "off"
        return
    sys.unraisablehook = _unraisable


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """`Interrupted` raised where Python cannot pass it on (a `__del__`, a callback) is dropped
    there: raise it again in a moment, from the deadline's handler, to unwind the command."""
    global _again
    if isinstance(unraisable.exc_value, Interrupted) and hasattr(signal, "setitimer"):
        _again = True
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        return
    if _stage == "stopping":  # an object the interrupt left half-made, collected: not news
        return
    sys.__unraisablehook__(unraisable)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _presses, _stage
    _presses += 1
    if _presses > 1:  # again: no more waiting
        _exit_now(say=True)
    if _stage == "exiting":  # the command has ended and said so: only the exit is left
        _exit_now(say=False)
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, DEADLINE)
    if _stage == "running":
        _stage = "stopping"
        _quiet()
        raise Interrupted


def _quiet() -> None:
    """No warnings once stopping: they would be about what the interrupt cut short (a
    coroutine made but never awaited, say), not about a fault."""
    if "warnings" not in sys.modules:  # then nothing is importing it either: import it now
        import warnings  # noqa: F401
    # still being imported (by the code the interrupt came in): not there yet, no warnings yet
    simplefilter = getattr(sys.modules["warnings"], "simplefilter", None)
    if simplefilter is not None:
        simplefilter("ignore")


def _on_deadline(signum: int, frame: FrameType | None) -> None:
    global _again
    if _again:
        _again = False
        signal.setitimer(signal.ITIMER_REAL, DEADLINE)
        raise Interrupted
    _exit_now(say=_stage == "stopping")  # not after a result: it says what happened


def _stop(*, say: bool) -> NoReturn:
    """After a Ctrl-C, once the command has unwound (its requests cancelled, its `Layer`
    closed): finish writing the ledger, say how far the command got, and exit.

    The wait for the ledger is bounded by the deadline the handler armed. The exit does not wait
    for the threads of the work that was cancelled (a render a provider cannot stop, say).
    """
    if _WRITER in sys.modules:
        from layer_core.ledger.writer import stop_all

        stop_all()
    _exit_now(say=say)


def _exit_now(*, say: bool) -> NoReturn:
    """Exit without waiting: what the ledger has not written yet goes to its spool first."""
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
    parts = [f"interrupted: {_done}" if _done else "interrupted"] if say else []
    if _WRITER in sys.modules:
        from layer_core.ledger.writer import recorded, spool_all

        spooled = spool_all()
        if spooled:
            parts.append(
                f"{spooled} ledger record(s) not yet written wait in the ledger's spool:"
                " the next command that uses the ledger writes them"
            )
        elif say and recorded():
            parts.append("recorded in the ledger")
    _exit("; ".join(parts))


def _exit(message: str) -> NoReturn:
    from contextlib import suppress

    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    if message:
        with suppress(OSError, ValueError):
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
    os._exit(INTERRUPTED)
