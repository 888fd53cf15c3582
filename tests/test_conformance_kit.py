"""The plugin author's kit as an author uses it: in their own pytest run (a subprocess here).

The override rule of the conformance suite, and the opt-in pytest plugin's fixtures.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CONFTEST = """
pytest_plugins = ["layer_core.testing.pytest_plugin"]
"""

OVERRIDES = """
import pytest
from layer_core.testing.conformance import ProviderConformance, override_reason


class LocalSuite(ProviderConformance):
    entry_point = "local"
    distribution = "layer-core"
    remote_api = False


class TestQuietlyWeakened(LocalSuite):
    def test_model_ids_are_unique(self):
        pass

    @pytest.mark.xfail(reason="not strict: would pass silently once fixed")
    def test_model_specs_are_valid(self, model_id):
        super().test_model_specs_are_valid(model_id)

    test_same_seed_gives_the_same_image = None


class TestExplained(LocalSuite):
    @override_reason("local's ids are pinned by its own tests")
    def test_model_ids_are_unique(self):
        pass

    @pytest.mark.xfail(strict=True, reason="a known gap, tracked")
    def test_entry_point_is_installed(self):
        raise AssertionError("pretend this is broken for now")
"""

LEAKY = """
import asyncio
import threading
import time

from layer_core import Provider, hookimpl
from layer_core.testing import fake_images, make_spec


class LeakyProvider(Provider):
    \"\"\"Leaves a task and a thread behind when a call is cancelled.\"\"\"

    name = "leaky"

    def __init__(self):
        super().__init__()
        self.background = []

    def models(self):
        return [make_spec(m, "leaky", sizes=["256x256"]) for m in ("leaky-1", "leaky-2")]

    async def generate(self, call):
        self.background.append(asyncio.get_running_loop().create_task(asyncio.sleep(3600)))
        threading.Thread(target=time.sleep, args=(5,), name="leaky-worker", daemon=True).start()
        await asyncio.sleep(3600)
        return fake_images(call)


@hookimpl
def register_providers(register):
    register(LeakyProvider())
"""

LEAKY_SUITE = """
from layer_core.testing.conformance import ProviderConformance


class TestLeaky(ProviderConformance):
    entry_point = "leaky"
    distribution = "layer-leaky"
    remote_api = False
    grace = 0.5


class TestLeakyTwo(TestLeaky):
    models = ("leaky-2",)


class TestLeakyNine(TestLeaky):
    models = ("leaky-2", "leaky-9")
"""

FIXTURES = """
import threading

from layer_core import Layer
from layer_core.testing import Reply, ScriptedProvider, make_spec, wait_until
from layer_core.cli import main
import httpx


def test_fake_server_fixture(fake_server):
    fake_server.add("GET", "/ping", Reply(json={"pong": True}))
    assert httpx.get(f"{fake_server.url}/ping").json() == {"pong": True}


def test_install_plugin_makes_a_plugin_discoverable_for_one_test(
    install_plugin, layer_environment, capsys
):
    install_plugin(ScriptedProvider("inky", [make_spec("inky-1", "inky")]), name="inky")
    layer = Layer({"ledger": False})
    assert [m.id for m in layer.models() if m.provider == "inky"] == ["inky-1"]
    assert layer.image(data={"prompt": "p"}, model=None).images
    try:
        main(["plugins", "--json"])
    except SystemExit:
        pass
    assert '"distribution": "layer-test-inky"' in capsys.readouterr().out


def test_and_it_is_gone_in_the_next_test(layer_environment):
    assert "inky" not in Layer({"ledger": False}).providers


SYNC_THREADS = []


def test_layer_factory_builds_layers(layer_factory):
    before = set(threading.enumerate())
    inky = ScriptedProvider("inky", [make_spec("inky-1", "inky")])
    layer = layer_factory({"ledger": False}, plugins=[inky], load_entry_points=False, environ={})
    assert layer.image(data={"prompt": "p"}).images
    SYNC_THREADS.extend(t for t in threading.enumerate() if t not in before)
    assert [t.name for t in SYNC_THREADS] == ["layer-sync"]


def test_and_closes_them_after_the_test():
    assert wait_until(lambda: not any(t.is_alive() for t in SYNC_THREADS), 10)
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """One pytest run over an author's test folder; (outcome, message) by test id."""
    folder = tmp_path_factory.mktemp("author")
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "test_overrides.py").write_text(textwrap.dedent(OVERRIDES))
    (folder / "test_fixtures.py").write_text(textwrap.dedent(FIXTURES))
    (folder / "test_leaky.py").write_text(LEAKY_SUITE)
    (folder / "layer_leaky.py").write_text(LEAKY)  # installed: rootdir is on sys.path
    info = folder / "layer_leaky-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: layer-leaky\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[layer]\nleaky = layer_leaky\n")
    report = folder / "report.xml"
    subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}",
            "-k", "overridden or ids_are_unique or entry_point_is_installed or test_fixtures"
            " or (TestLeaky and (cancelling or specs_are_valid or ids_are_unique))",
        ],
        cwd=folder,
        capture_output=True,
        check=False,
    )  # fmt: skip
    found = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        result, message = "passed", ""
        for child in case:
            result, message = child.tag, f"{child.get('message')}\n{child.text}"
        found[f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"] = (
            result,
            message,
        )
    return found


def test_overriding_a_standard_test_without_a_reason_fails_naming_it(
    outcomes: dict[str, tuple[str, str]],
) -> None:
    result, message = outcomes["TestQuietlyWeakened::test_overridden_standard_tests_carry_a_reason"]
    assert result == "failure"
    assert "test_model_ids_are_unique is overridden without a reason" in message
    assert "test_model_specs_are_valid is overridden without a reason" in message  # not strict
    assert "test_same_seed_gives_the_same_image is removed" in message
    assert '@override_reason("why")' in message


def test_an_override_with_a_reason_or_a_strict_xfail_is_accepted(
    outcomes: dict[str, tuple[str, str]],
) -> None:
    assert outcomes["TestExplained::test_overridden_standard_tests_carry_a_reason"][0] == "passed"
    assert outcomes["TestExplained::test_entry_point_is_installed"][0] == "skipped"  # xfailed
    assert outcomes["TestExplained::test_model_ids_are_unique"][0] == "passed"


def test_the_pytest_plugin_fixtures_work_once_opted_in(
    outcomes: dict[str, tuple[str, str]],
) -> None:
    for name in (
        "test_fake_server_fixture",
        "test_install_plugin_makes_a_plugin_discoverable_for_one_test",
        "test_and_it_is_gone_in_the_next_test",
        "test_layer_factory_builds_layers",
        "test_and_closes_them_after_the_test",
    ):
        assert outcomes[f"test_fixtures::{name}"] == ("passed", ""), outcomes[
            f"test_fixtures::{name}"
        ]


def test_a_call_that_leaves_a_task_or_a_thread_behind_fails_the_suite(
    outcomes: dict[str, tuple[str, str]],
) -> None:
    result, message = outcomes["TestLeaky::test_cancelling_a_call_leaves_nothing_running"]
    assert result == "failure"
    assert "leaky-1, cancelled mid-call:" in message
    assert "tasks still running after the cancel: <coroutine object sleep" in message
    assert "threads still running: ['leaky-worker']" in message


def test_models_narrows_the_tests_to_those_models_and_the_one_call_tests_use_the_first(
    outcomes: dict[str, tuple[str, str]],
) -> None:
    specs = sorted(k for k in outcomes if "TestLeaky" in k and "specs_are_valid" in k)
    assert specs == [
        "TestLeaky::test_model_specs_are_valid[leaky-1]",
        "TestLeaky::test_model_specs_are_valid[leaky-2]",
        "TestLeakyNine::test_model_specs_are_valid[no-models]",
        "TestLeakyTwo::test_model_specs_are_valid[leaky-2]",
    ]
    result, message = outcomes["TestLeakyTwo::test_cancelling_a_call_leaves_nothing_running"]
    assert result == "failure"
    assert "leaky-2, cancelled mid-call:" in message
    assert outcomes["TestLeakyTwo::test_model_ids_are_unique"][0] == "passed"


def test_models_naming_a_model_the_provider_lacks_fails_saying_so(
    outcomes: dict[str, tuple[str, str]],
) -> None:
    result, message = outcomes["TestLeakyNine::test_model_specs_are_valid[no-models]"]
    assert result == "failure"
    assert (
        "TestLeakyNine.models names ['leaky-9']; leaky declares ['leaky-1', 'leaky-2']" in message
    )
    assert outcomes["TestLeakyNine::test_model_ids_are_unique"][0] == "passed"


def test_the_pytest_plugin_is_never_loaded_without_opting_in() -> None:
    auto = [ep for ep in importlib.metadata.entry_points(group="pytest11") if "layer" in ep.value]
    assert auto == []
    assert Path(__file__).parent.joinpath("conftest.py").read_text().count("pytest_plugins") == 0
