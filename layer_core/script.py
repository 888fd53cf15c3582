"""The `layer` script: Ctrl-C is handled from its first line, then the command line runs.

`layer_core.interrupt` says what one Ctrl-C does; this module only installs it before the command
line's own imports (click, pydantic, rich: most of the start-up) and runs the command line.
"""

from __future__ import annotations

import sys

from layer_core import interrupt

TYPE_CHECKING = False  # `typing` itself costs milliseconds at start-up, before the handler is in
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the `layer` script and of `python -m layer_core`."""
    code: str | int | None = 0
    try:
        interrupt.install()
        from layer_core.cli import main as run

        run(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        # Python 3.11 turns an exception raised in a `__set_name__` (while a class is being
        # made, at import) into a RuntimeError: an interrupted command may end in anything
        if not interrupt.stopping():
            raise
    interrupt.ended()
    sys.exit(code)
