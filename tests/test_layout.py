"""The shape of the code that keeps it readable: one owner of Redis state, Lua scripts that
name their keys in the order Python binds them, a front door that loads no wing, short
functions."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cdn_refresh.store import scripts

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("cdn_refresh", "worker", "producer", "emulator", "api", "sandbox")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
_KEY_LINE = re.compile(r"^local (\w+) = KEYS\[(\d+)\]", re.MULTILINE)


def _source_files() -> list[Path]:
    return [p for pkg in SOURCE_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("spec", scripts.ALL, ids=lambda s: s.file)
def test_each_script_names_its_keys_in_the_order_python_binds_them(
    spec: scripts.ScriptSpec,
) -> None:
    text = scripts.source(spec)
    named = _KEY_LINE.findall(text)
    assert [int(n) for _, n in named] == list(range(1, len(spec.keys) + 1))
    # The Lua name is the Python name, or says which key it is (``quota_window_key``); a key
    # of the other object type says which type it reads (``file_records``, ``dir_pending``).
    for (lua_name, _), py_name in zip(named, spec.keys, strict=True):
        field = py_name.removeprefix("other.")
        allowed = (
            (f"file_{field}", f"dir_{field}")
            if py_name.startswith("other.")
            else (py_name, f"{py_name}_key", "target")
        )
        assert lua_name in allowed, (lua_name, py_name)
    # Past the header, no script indexes KEYS by number.
    body = _KEY_LINE.sub("", text)
    assert "KEYS[" not in body


def test_the_prelude_reads_no_key_and_every_script_file_has_a_spec_or_is_a_part_of_one() -> None:
    assert "KEYS[" not in scripts.prelude()
    files = {p.name for p in (ROOT / "cdn_refresh" / "store" / "lua").glob("*.lua")}
    parts = {part for s in scripts.ALL for part in s.parts}
    assert files == {s.file for s in scripts.ALL} | parts | set(scripts.PRELUDES)


def test_only_the_store_builds_keys_or_runs_scripts() -> None:
    offenders = []
    for path in _source_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("cdn_refresh/store/"):
            continue
        text = path.read_text(encoding="utf-8")
        for needle in (
            "register_script",
            "cdn_refresh.store.keys",
            "cdn_refresh.store.scripts",
            "cdn_refresh.store.context",
            ".keys.of(",
            "hgetall(",
            "zrangebyscore(",
        ):
            if needle in text:
                offenders.append(f"{rel}: {needle}")
    assert offenders == []


def test_no_function_outside_tests_and_bench_is_longer_than_60_lines() -> None:
    long = []
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length})")
    assert long == []


def test_no_module_in_the_source_packages_is_longer_than_400_lines() -> None:
    long = []
    for path in _source_files():
        length = len(path.read_text(encoding="utf-8").splitlines())
        if length > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)} ({length})")
    assert long == []


def test_the_producer_keeps_its_store_to_itself() -> None:
    from producer.producer import Producer

    # Callers ask the producer named questions; none reaches through it to Redis.
    assert not hasattr(Producer, "store")
    public = [name for name in vars(Producer) if not name.startswith("_")]
    assert "store" not in public


# What each package may import besides itself: the layers, read the same way as the
# import-linter contract in pyproject.toml, so the rule holds where the tool is not installed.
MAY_IMPORT = {
    "cdn_refresh": set(),
    "producer": {"cdn_refresh"},
    "worker": {"cdn_refresh"},
    "api": {"cdn_refresh", "producer", "worker", "emulator", "sandbox"},
    "emulator": {"cdn_refresh", "producer", "worker", "api", "sandbox"},
    "sandbox": {"cdn_refresh", "producer", "worker", "api", "emulator"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages of this project that a module imports, at any depth (an import
    inside a function counts: it runs all the same)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(MAY_IMPORT)


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_imports_point_down_the_layers_only(package: str) -> None:
    above = set(MAY_IMPORT) - MAY_IMPORT[package] - {package}
    offenders = [
        f"{path.relative_to(ROOT)} imports {sorted(imported_packages(path) & above)}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported_packages(path) & above
    ]
    assert offenders == []


def test_the_layer_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from producer.producer import Producer\n", encoding="utf-8")
    assert imported_packages(module) == {"producer"}


def test_the_layers_are_the_ones_the_import_linter_contract_names() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    linter = config["tool"]["importlinter"]
    assert set(linter["root_packages"]) == set(MAY_IMPORT)
    (contract,) = linter["contracts"]
    layers = [re.split(r"\s*[:|]\s*", layer) for layer in contract["layers"]]
    for depth, layer in enumerate(layers):
        below = {p for lower in layers[depth + 1 :] for p in lower}
        for package in layer:
            assert below <= MAY_IMPORT[package]
            assert not MAY_IMPORT[package] - below - set(layer), package


def test_importing_the_cli_loads_no_wing() -> None:
    code = (
        "import sys, cdn_refresh.cli\n"
        "wings = ('emulator', 'worker', 'producer', 'sandbox', 'celery', 'api', 'fastapi',"
        " 'uvicorn', 'prometheus_client')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in wings))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_emulator_command_still_answers_through_the_front_door() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cdn_refresh", "emulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--url-quota" in out.stdout


def test_the_license_is_an_spdx_string() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["project"]["license"] == "MIT"


def test_bench_does_not_import_the_tests() -> None:
    for path in sorted((ROOT / "bench").glob("*.py")):
        assert "from tests" not in path.read_text(encoding="utf-8"), path.name


def test_every_command_the_front_door_names_loads_from_its_package_under_that_name() -> None:
    import click

    from cdn_refresh import cli

    ctx = click.Context(cli.main)
    for name, target in cli.COMMANDS.items():
        command = cli.main.get_command(ctx, name)
        assert command is not None and command.name == name, target
        assert target.split(".")[0] != "cdn_refresh", f"{name} lives on the floor"
