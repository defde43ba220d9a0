"""The live-intensity provider registry: built-ins, third-party providers through the
`energy_tracker.carbon_providers` entry point (a real dist-info on sys.path, not a mock) used by a
tracked run against a local HTTP server, unknown names, and plugins that break."""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tracker import ConfigError, track
from tracker.carbon import PROVIDERS, make_live_intensity, resolve_factor
from tracker.carbon import providers as registry
from tracker.carbon.providers import BaseProvider, Reading, plausible

TOKEN = "acme-secret-key-81d0"   # a fake key that must never reach disk
GROUP = "energy_tracker.carbon_providers"

# A made-up grid operator's API: GET {base}/now/{zone}?unit=g with an X-Key header.
PLUGIN = '''
"""A test package's live provider: Acme Grid, zones A1..A9, one JSON value per request."""
from tracker.carbon.providers import BaseProvider, Reading, plausible
from tracker.errors import ConfigError


class AcmeGrid(BaseProvider):
    name = "acmegrid"
    default_base_url = "https://api.acmegrid.invalid"
    base_url_env = "ACMEGRID_URL"
    needs_token = True
    token_env = "ACMEGRID_KEY"
    token_url = "https://acmegrid.invalid/keys"
    source = "Acme Grid operator, 5-minute intensity"
    licence = "test data"
    url = "https://acmegrid.invalid"

    def normalise_zone(self, zone):
        z = (zone or "").strip().upper()
        if not (len(z) == 2 and z[0] == "A" and z[1] in "123456789"):
            raise ConfigError(f"acmegrid zone must be A1..A9, got {zone!r}.")
        return z

    def request(self, base_url, zone, token):
        return f"{base_url}/now/{zone}", {"unit": "g"}, {"X-Key": token or ""}

    def parse(self, payload, zone):
        now = payload["now"]
        return Reading(plausible(now["g_per_kwh"]), str(now["at"]))


PROVIDER = AcmeGrid()
'''
ACME_ANSWER = {"now": {"g_per_kwh": 42.5, "at": "2026-11-23T10:05Z"}}


def install_plugin(site: Path, module: str, source: str, entry: str, name: str) -> None:
    """A minimal installed distribution: the module and a dist-info with its entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{name} = {entry}\n")


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """Install plugins into a fresh site directory; the registry looks as if in a new process
    (plugins not yet looked up), and forgets them afterwards."""
    site = tmp_path / "site"
    registry.reload_plugins()   # no plugin and no note left from elsewhere
    monkeypatch.setattr(registry, "_plugins_looked_up", False)

    def add(module: str, source: str, entry: str, name: str) -> None:
        install_plugin(site, module, source, entry, name)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module, raising=False)

    yield add
    monkeypatch.undo()
    for m in [m for m in sys.modules if m.startswith("plug_")]:
        del sys.modules[m]
    registry.reload_plugins()
    assert registry.names() == ["electricitymaps", "energidataservice", "uk"]


# -- built-ins --------------------------------------------------------------------------------
def test_builtin_providers_are_registered_with_their_sources():
    assert registry.names() == ["electricitymaps", "energidataservice", "uk"]
    assert sorted(PROVIDERS) == registry.names() and len(PROVIDERS) == 3
    assert PROVIDERS["uk"] is registry.get("uk")
    assert "nope" not in PROVIDERS
    with pytest.raises(TypeError):
        PROVIDERS["x"] = PROVIDERS["uk"]  # type: ignore[index]   # read-only
    for name in registry.names():
        d = registry.describe(name)
        assert d["registered_by"] == "built-in"
        assert d["source"] and d["licence"] and d["url"].startswith("https://")
        assert isinstance(registry.get(name), registry.Provider)
    assert registry.describe("electricitymaps")["token_env"] == "ELECTRICITYMAPS_TOKEN"
    assert registry.describe("uk")["token_env"] is None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import in a file (level 0: absolute)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            out += [(0, alias.name) for alias in node.names]
    return out


def test_carbon_modules_use_one_import_style_and_factor_and_mix_are_independent():
    root = Path(registry.__file__).resolve().parent.parent
    imports = {p.relative_to(root).as_posix(): _imports(p) for p in root.rglob("*.py")}
    assert {"providers/uk.py", "gridfactor.py", "factor.py", "mix.py"} <= set(imports)
    absolute = sorted(f"{name}: {module}" for name, found in imports.items()
                      for level, module in found if level == 0 and module.startswith("tracker"))
    assert absolute == []
    assert (1, "factor") not in imports["mix.py"]
    assert (1, "mix") in imports["factor.py"]


def test_unknown_provider_names_the_known_ones_and_a_close_match():
    gb = resolve_factor("GB")
    with pytest.raises(ConfigError) as err:
        make_live_intensity("electricitymap:DE", gb)
    message = str(err.value)
    assert "Unknown live intensity provider 'electricitymap'" in message
    assert "Known: electricitymaps, energidataservice, uk." in message
    assert "Did you mean 'electricitymaps'?" in message
    with pytest.raises(ConfigError) as err:
        registry.get("zzzz")
    assert "Known: electricitymaps, energidataservice, uk." in str(err.value)
    assert "Did you mean" not in str(err.value)


def test_register_checks_the_provider():
    class Half(BaseProvider):   # no request()/parse() of its own, but has the members
        name = "half"

    class Missing:
        name = "missing"

    class Upper(BaseProvider):
        name = "Upper"

    with pytest.raises(ConfigError, match="lacks default_base_url"):
        registry.register(Missing())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not a lower-case word"):
        registry.register(Upper())
    with pytest.raises(ConfigError, match="is a class"):
        registry.register(Half)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(type("Uk", (BaseProvider,), {"name": "uk"})())
    assert "half" not in PROVIDERS
    half = registry.register(Half())
    try:
        assert registry.get("half") is half and registry.describe("half")["registered_by"] == (
            "register()")
    finally:
        assert registry.unregister("half") is half
    assert "half" not in registry.names()


# -- a plugin provider in a tracked run -----------------------------------------------------------
def test_a_plugin_provider_is_used_by_a_tracked_run(plugin_site, fake_h100, httpserver_ipv4,
                                                    tmp_path, monkeypatch):
    plugin_site("plug_acme", PLUGIN, "plug_acme:PROVIDER", name="acmegrid")
    monkeypatch.setenv("ACMEGRID_KEY", TOKEN)   # the provider's own token variable
    httpserver_ipv4.expect_request(
        "/now/A3", query_string={"unit": "g"}, headers={"X-Key": TOKEN}
    ).respond_with_json(ACME_ANSWER)
    base = httpserver_ipv4.url_for("")
    assert base.startswith("http://127.0.0.1:")
    with track("acme", region="DE", live_intensity="acmegrid:a3", intensity_base_url=base,
               output_dir=tmp_path / "runs", cpu=False, ram=False, rate_hz=50) as run:
        time.sleep(0.8)
    summary = run.summary

    assert len(httpserver_ipv4.log) >= 1
    live = summary.carbon["live"]
    assert (live["provider"], live["zone"], live["ok_count"]) == ("acmegrid", "A3", 1)
    assert live["fallback_used"] is False and live["last_gco2_per_kwh"] == 42.5
    assert live["last_observed"] == "2026-11-23T10:05Z"
    assert summary.gco2_per_kwh == pytest.approx(42.5)
    assert summary.emissions_kg == pytest.approx(summary.facility_energy_kwh * 42.5 / 1000.0,
                                                 rel=1e-6)
    parts = summary.carbon["parts"]
    assert parts and all((p["provider"], p["zone"], p["fallback"]) == ("acmegrid", "A3", False)
                         for p in parts)
    d = registry.describe("acmegrid")
    assert d["registered_by"] == "entry point 'acmegrid' (plug_acme:PROVIDER)"
    assert (d["source"], d["licence"]) == ("Acme Grid operator, 5-minute intensity", "test data")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path
    assert TOKEN not in json.dumps(summary.to_dict())


def test_a_plugin_provider_keeps_the_common_rules(plugin_site, monkeypatch):
    """Zone check, token, spec and note wording come from LiveIntensity for a plugin too."""
    plugin_site("plug_acme", PLUGIN, "plug_acme:PROVIDER", name="acmegrid")
    monkeypatch.delenv("ACMEGRID_KEY", raising=False)
    de = resolve_factor("DE")
    with pytest.raises(ConfigError, match=r"acmegrid zone must be A1\.\.A9"):
        make_live_intensity("acmegrid:B7", de, token=TOKEN)
    with pytest.raises(ConfigError, match=r"acmegrid needs an API token: pass token= or set the "
                                          r"ACMEGRID_KEY environment variable \(get one at "
                                          r"https://acmegrid.invalid/keys\)\."):
        make_live_intensity("acmegrid:A1", de)
    monkeypatch.setenv("ACMEGRID_URL", "http://127.0.0.1:9/")
    live = make_live_intensity("acmegrid:a1", de, token=TOKEN)
    assert live is not None
    assert (live.spec, live.base_url) == ("acmegrid:A1", "http://127.0.0.1:9")
    assert TOKEN not in repr(live)


def test_a_plugin_provider_that_raises_while_parsing_falls_back(plugin_site, fake_h100,
                                                                httpserver_ipv4, tmp_path):
    source = PLUGIN.replace(
        "        now = payload[\"now\"]\n",
        "        raise RuntimeError('provider bug')\n")
    plugin_site("plug_acme_buggy", source, "plug_acme_buggy:PROVIDER", name="acmegrid")
    httpserver_ipv4.expect_request("/now/A1").respond_with_json(ACME_ANSWER)
    with track("buggy", region="DE", live_intensity="acmegrid:A1", intensity_token=TOKEN,
               intensity_base_url=httpserver_ipv4.url_for(""), output_dir=tmp_path,
               cpu=False, ram=False, rate_hz=50) as run:
        time.sleep(0.5)
    live = run.summary.carbon["live"]
    assert run.summary.status == "finished"
    assert live["fallback_used"] is True and live["ok_count"] == 0
    assert live["last_error"] == "internal error (RuntimeError)"
    assert run.summary.gco2_per_kwh == pytest.approx(run.factor.gco2_per_kwh)


def test_an_unknown_name_with_plugins_suggests_the_plugin(plugin_site):
    plugin_site("plug_acme", PLUGIN, "plug_acme:PROVIDER", name="acmegrid")
    with pytest.raises(ConfigError) as err:
        make_live_intensity("acmegird:A1", resolve_factor("DE"), token=TOKEN)
    assert "Known: acmegrid, electricitymaps, energidataservice, uk." in str(err.value)
    assert "Did you mean 'acmegrid'?" in str(err.value)


def test_a_plugin_installed_after_the_first_lookup_is_found(plugin_site):
    assert "acmegrid" not in registry.names()   # the first lookup: no plugin yet
    plugin_site("plug_acme_late", PLUGIN, "plug_acme_late:PROVIDER", name="acmegrid")
    assert registry.get("acmegrid").name == "acmegrid"   # a miss looks at entry points again
    assert "acmegrid" in PROVIDERS


# -- plugins that break -----------------------------------------------------------------------
@pytest.mark.parametrize(("source", "entry", "says"), [
    ("import plug_missing_dependency_xyz\n", "plug_broken:PROVIDER",
     "ModuleNotFoundError: No module named 'plug_missing_dependency_xyz'"),
    ("x = 1\n", "plug_broken:PROVIDER", "AttributeError"),
    ("PROVIDER = 42\n", "plug_broken:PROVIDER", "its name None is not a lower-case word"),
    ("def PROVIDER():\n    raise RuntimeError('no key file')\n", "plug_broken:PROVIDER",
     "RuntimeError: no key file"),
    (PLUGIN.replace('name = "acmegrid"', 'name = "uk"'), "plug_broken:PROVIDER",
     "a provider named 'uk' is already registered (built-in)"),
])
def test_a_plugin_that_cannot_load_is_a_note_not_an_exception(
        plugin_site, fake_h100, httpserver_ipv4, tmp_path, caplog, source, entry, says):
    plugin_site("plug_broken", source, entry, name="broken")
    httpserver_ipv4.expect_request("/intensity").respond_with_json(
        {"data": [{"from": "2026-11-23T10:00Z", "to": "2026-11-23T10:30Z",
                   "intensity": {"forecast": 120, "actual": 100, "index": "low"}}]})
    caplog.set_level(logging.WARNING, logger="tracker.carbon.providers")
    # the first lookup of any provider loads the plugins: the broken one must not stop the run
    with track("uk", region="GB", live_intensity="uk",
               intensity_base_url=httpserver_ipv4.url_for(""), output_dir=tmp_path,
               cpu=False, ram=False, rate_hz=50) as run:
        time.sleep(0.5)
    assert run.summary.gco2_per_kwh == pytest.approx(100.0)
    assert registry.get("uk").name == "uk"   # a plugin named "uk" does not replace the built-in
    (note,) = registry.plugin_notes()
    assert note.startswith(f"carbon provider plugin entry point 'broken' ({entry}) not used: ")
    assert says in note
    assert note in [r.getMessage() for r in caplog.records]
    # asking for it by name says why it is missing
    with pytest.raises(ConfigError, match="Not loaded: carbon provider plugin entry point"):
        registry.get("broken")


def test_plugins_are_loaded_on_first_lookup_only(tmp_path):
    """A fresh interpreter: importing the package does not import the plugin; a lookup does."""
    site = tmp_path / "site"
    install_plugin(site, "plug_acme_lazy", PLUGIN, "plug_acme_lazy:PROVIDER", "acmegrid")
    code = (
        "import sys, tracker.carbon\n"
        "from tracker.carbon import providers\n"
        "assert 'plug_acme_lazy' not in sys.modules, 'plugin imported at import time'\n"
        "assert providers.names() == ['acmegrid', 'electricitymaps', 'energidataservice', 'uk']\n"
        "assert 'plug_acme_lazy' in sys.modules\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_reading_values_are_checked():
    assert plausible(120) == 120.0 and isinstance(plausible(120), float)
    for bad in (True, "120", None):
        with pytest.raises(TypeError):
            plausible(bad)
    for bad in (-1.0, 2000.5, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            plausible(bad)
    assert Reading(1.0, "t") == Reading(1.0, "t")
