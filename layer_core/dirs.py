"""Where layer keeps its files: the user config dir (`plugins.toml`) and the user data dir (the
default SQLite ledger, `ledger.sqlite`, and the spool of records waiting for a database).

Both are the platform's own, from platformdirs: on Linux `$XDG_CONFIG_HOME/layer` (else
`~/.config/layer`) and `$XDG_DATA_HOME/layer` (else `~/.local/share/layer`); on macOS
`~/Library/Application Support/layer` for both; on Windows `%LOCALAPPDATA%\\layer` for both.
(On macOS the XDG variables win too, when set.) Versions before this one used the Linux places on
every platform. So that nothing they left behind is lost, the earlier place is kept while it holds
layer's files and the platform's place holds none: a `plugins.toml` for the config dir; a ledger or
spooled records for the data dir. Moving the files to the platform's place ends that. On Linux the
two places are the same, so nothing changes there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

APP = "layer"
CONFIG_FILE = "plugins.toml"
LEDGER_FILE = "ledger.sqlite"
SPOOL_DIR = "spool"

log = logging.getLogger("layer")
_told: set[Path] = set()


def user_config_dir() -> Path:
    """The folder of the user's `plugins.toml` (see the module's doc for where it is)."""
    import platformdirs

    here = platformdirs.user_config_path(APP, appauthor=False)
    return _kept(here, _earlier("XDG_CONFIG_HOME", ".config"), (CONFIG_FILE,))


def user_data_dir() -> Path:
    """The folder of the default ledger and the spool (see the module's doc for where it is)."""
    import platformdirs

    here = platformdirs.user_data_path(APP, appauthor=False)
    return _kept(here, _earlier("XDG_DATA_HOME", ".local/share"), (LEDGER_FILE, SPOOL_DIR))


def isolated_environ(root: Path) -> dict[str, str]:
    """Environment variables that put both dirs under `root` on every platform (for tests):
    the XDG variables (Linux, macOS, and the earlier places) and platformdirs' Windows override."""
    return {
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_DATA_HOME": str(root / "data"),
        "WIN_PD_OVERRIDE_LOCAL_APPDATA": str(root / "appdata"),
    }


def _earlier(variable: str, default: str) -> Path:
    """Where versions before this one put the folder, on every platform."""
    base = os.environ.get(variable) or os.path.join(os.path.expanduser("~"), default)
    return Path(base) / APP


def _kept(here: Path, earlier: Path, names: tuple[str, ...]) -> Path:
    """`earlier` while it holds any of `names` and `here` holds none of them; else `here`."""
    if here == earlier or any((here / name).exists() for name in names):
        return here
    if not any((earlier / name).exists() for name in names):
        return here
    if earlier not in _told:  # once per process: it is no error, only worth knowing
        _told.add(earlier)
        log.info(
            "using %s, where an earlier layer kept its files (this platform's is %s)", earlier, here
        )
    return earlier
