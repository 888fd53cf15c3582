"""The CLI's errors: one style (`error: ...` on stderr, with the fix), one exit status per kind
of failure, help for every flag. Run at 80 columns with output to a pipe, as a script sees it."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from layer_core import GenerationCall, ImageOutput, ProviderUnavailable
from layer_core.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, cli, exit_status

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "plugins.toml")


def run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "80", **env})


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[GenerationCall]:
    """Every call the local provider gets (it still draws the images)."""
    from layer_core.builtin.local import LocalProvider

    seen: list[GenerationCall] = []
    original = LocalProvider.generate

    async def generate(self: LocalProvider, call: GenerationCall) -> list[ImageOutput]:
        seen.append(call)
        return await original(self, call)

    monkeypatch.setattr(LocalProvider, "generate", generate)
    return seen


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "plugins.toml"
    path.write_text("ledger = false\n" + text)
    return str(path)


def assert_error(result: Result, status: int, *fragments: str) -> None:
    """Exit `status`, nothing on stdout, and on stderr one `error: ...` saying `fragments`."""
    assert result.exit_code == status, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    flat = " ".join(result.stderr.split())  # as a person reads it, however it wrapped
    for fragment in fragments:
        assert fragment in flat, result.stderr


# --- a gate naming an unknown model ---------------------------------------------------------

TYPO = '[gates.default]\nmodel = "flux-shnell"\nfallback_models = ["local"]\n'


def test_check_reports_a_typo_in_a_gate_with_the_right_name(tmp_path: Path) -> None:
    result = run("check", config(tmp_path, TYPO))
    assert_error(
        result,
        EXIT_BAD_INPUT,
        "[gates.default] model: unknown model 'flux-shnell'; did you mean 'flux-schnell'?",
    )


def test_image_refuses_a_config_with_a_typo_instead_of_falling_to_local(
    tmp_path: Path, calls: list[GenerationCall]
) -> None:
    result = run("-c", config(tmp_path, TYPO), "image", "a fox", "-o", str(tmp_path / "out"))
    assert_error(result, EXIT_BAD_INPUT, "did you mean 'flux-schnell'?")
    assert calls == []
    assert not (tmp_path / "out").exists()


def test_check_notes_a_model_whose_plugin_is_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(
        tmp_path, '[gates.default]\nmodel = "flux-schnell"\nfallback_models = ["local"]\n'
    )
    result = run("check", path, LAYER_PLUGINS="local")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert (
        "note: [gates.default] flux-schnell: plugin 'replicate' is disabled "
        "(not in LAYER_PLUGINS)" in out
    )
    assert "not installed" not in out
    assert "0 error(s), 0 warning(s)" in out  # the config is fine; this machine lacks the plugin


# --- plugins -------------------------------------------------------------------------------


def test_an_unknown_plugin_in_layer_plugins_is_reported() -> None:
    result = run("plugins", "--json", LAYER_PLUGINS="local,opnai")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["opnai"]["status"] == "failed"
    assert "did you mean 'openai'?" in rows["opnai"]["error"]
    checked = run("check", DEMO, LAYER_PLUGINS="local,opnai")
    flat = " ".join(checked.output.split())
    assert (
        "warning: plugin 'opnai' failed to load: named in LAYER_PLUGINS, but no installed" in flat
    )


def test_a_disabled_plugin_is_called_disabled_not_missing(
    tmp_path: Path, calls: list[GenerationCall]
) -> None:
    result = run("-c", DEMO, "image", "a fox", "-o", str(tmp_path / "out"), LAYER_PLUGINS="local")
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert "the other provider plugins are disabled" in flat
    assert "not in LAYER_PLUGINS" in flat
    assert "installed" not in flat
    explained = run("-c", DEMO, "explain", "a fox", LAYER_PLUGINS="local")
    assert "plugin 'openai' is disabled (not in LAYER_PLUGINS)" in explained.stdout
    assert "is its plugin installed" not in explained.stdout


def test_models_with_an_unknown_provider_says_which_exist() -> None:
    result = run("models", "--provider", "nope")
    assert_error(
        result,
        EXIT_BAD_INPUT,
        "--provider: no provider named 'nope'; "
        "providers: fal, google, local, openai, replicate, stability",
    )
    close = run("models", "--provider", "opnai")
    assert_error(close, EXIT_BAD_INPUT, "no provider named 'opnai'; did you mean 'openai'?")
    disabled = run("models", "--provider", "openai", LAYER_PLUGINS="local")
    assert_error(
        disabled,
        EXIT_BAD_INPUT,
        "provider 'openai' is not loaded: its plugin is disabled (not in LAYER_PLUGINS)",
    )


# --- metadata on the command line ----------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "says"),
    [
        (['{"team": "x"}'], "is JSON; give KEY=VALUE pairs, one --meta each"),
        (['{"team": "a=b"}'], "is JSON; give KEY=VALUE pairs"),
        (['team={"a": 1}'], "metadata values must be str, int, float, bool or null"),
        (["tags=[1, 2]"], "metadata values must be str, int, float, bool or null"),
        (["team=a", "team=b"], "key 'team' is given twice; give each key once"),
        (["team"], "'team' is not KEY=VALUE"),
    ],
)
@pytest.mark.parametrize("command", ["image", "explain"])
def test_bad_meta_is_refused(
    tmp_path: Path, calls: list[GenerationCall], command: str, meta: list[str], says: str
) -> None:
    args = [command, "a fox", *[a for m in meta for a in ("--meta", m)]]
    if command == "image":
        args += ["-o", str(tmp_path / "out")]
    result = run(*args)
    assert_error(result, EXIT_BAD_INPUT, "--meta", says)
    assert calls == []


def test_text_that_only_looks_like_json_is_a_fine_value(
    tmp_path: Path, calls: list[GenerationCall]
) -> None:
    result = run("image", "a fox", "--meta", "note=[draft", "--json", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metadata"] == {"note": "[draft"}


# --- one error style, documented exit statuses ---------------------------------------------


def test_a_bad_flag_is_reported_in_the_same_style(calls: list[GenerationCall]) -> None:
    result = run("image", "a fox", "--size", "1000x1000")
    assert_error(result, EXIT_BAD_INPUT, "Invalid value for '--size'", "(see 'layer image --help')")
    assert "Usage:" not in result.stderr
    assert_error(run("image", "a fox", "--bogus"), EXIT_BAD_INPUT, "No such option '--bogus'")
    assert_error(run("image"), EXIT_BAD_INPUT, "Missing argument 'PROMPT'")
    assert calls == []


def test_bad_input_exits_2_and_failed_generation_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[GenerationCall]
) -> None:
    assert_error(run("image", " "), EXIT_BAD_INPUT, "data.prompt", "describe the image")
    assert_error(run("image", "a fox", "--gate", "nope"), EXIT_BAD_INPUT, "no gate named 'nope'")
    assert_error(run("explain", "a fox", "--model", "dall-e-9"), EXIT_BAD_INPUT, "did you mean")
    assert calls == []

    from layer_core.builtin.local import LocalProvider

    async def outage(self: LocalProvider, call: GenerationCall) -> list[ImageOutput]:
        raise ProviderUnavailable("down for maintenance")

    monkeypatch.setattr(LocalProvider, "generate", outage)
    result = run("image", "a fox", "-o", str(tmp_path / "out"))
    assert_error(result, EXIT_FAILED, "every candidate failed", "down for maintenance")


def test_exit_statuses_come_from_one_mapping() -> None:
    from layer_core import AllAttemptsFailed, ConfigError, NoEligibleModel, UnknownModel

    assert exit_status(click.UsageError("x")) == EXIT_BAD_INPUT == 2
    assert exit_status(ConfigError("x")) == exit_status(UnknownModel("m", [])) == 2
    assert exit_status(AllAttemptsFailed("g", [])) == EXIT_FAILED == 1
    assert exit_status(NoEligibleModel("g", [])) == 1
    assert exit_status(KeyboardInterrupt()) == EXIT_INTERRUPTED == 130


def test_help_lists_the_exit_statuses_within_80_columns() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    flat = " ".join(result.stdout.split())
    assert "Exit status: 0 done; 1 failed" in flat
    assert "2 bad input" in flat
    assert "130 interrupted (Ctrl-C)" in flat


def _commands() -> list[click.Command]:
    assert isinstance(cli, click.Group)
    return [cli, *cli.commands.values()]


@pytest.mark.parametrize("command", _commands(), ids=lambda c: c.name or "layer")
def test_every_flag_has_help(command: click.Command) -> None:
    missing = [
        param.opts[-1]
        for param in command.params
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    assert missing == [], f"layer {command.name}: flags without help text"


# --- layer check -----------------------------------------------------------------------------


def test_check_counts_the_files_own_gates(tmp_path: Path) -> None:
    result = run("check", config(tmp_path, '[gates.thumbs]\nmodel = "local"\n'))
    assert result.exit_code == 0, result.output
    assert "1 gate(s) and the built-in 'default', 0 error(s)" in " ".join(result.stdout.split())
    demo = run("check", DEMO)
    assert f"{DEMO}: 1 gate(s), 0 error(s)" in " ".join(demo.stdout.split())


def test_check_exits_2_when_the_config_has_an_error(tmp_path: Path) -> None:
    text = '[gates.default]\nmodel = "local"\nmax_cost_per_image = 0\n'
    path = config(tmp_path, '[plugins.local]\nprices = { local = { "*/*" = 0.01 } }\n' + text)
    result = run("check", path)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "max_cost_per_image $0 is below every model's cheapest price" in " ".join(
        result.output.split()
    )
