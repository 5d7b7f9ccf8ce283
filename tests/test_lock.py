"""Reproducible installs: every install takes exact, hashed versions from the lock files.

The venv the tests run in must hold exactly what ``requirements/dev.lock`` pins (no more, no
other version); the Docker image must install from ``requirements/runtime.lock`` the same way;
and the runtime lock must agree with the dev lock, so the image runs what the tests ran.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DEV_LOCK = ROOT / "requirements" / "dev.lock"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
# A pin starts a line: ``name==version`` and an optional ``; marker``, then the hashes.
PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;\\]+)\s*(;[^\\]*)?\\?$")
# What a fresh venv brings of its own, and the project itself (installed editable, not locked).
NOT_LOCKED = {"pip", "cdn-refresh"}


@dataclass(frozen=True)
class Pin:
    """One locked package: its name, version, environment marker and hashes."""

    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version

    def applies_here(self) -> bool:
        marker = self.requirement.marker
        return marker is None or marker.evaluate()


def read_lock(path: Path) -> list[Pin]:
    pins: list[Pin] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        match = PIN_LINE.match(line)
        if not match:
            continue
        hashes = []
        for follow in lines[number + 1 :]:
            stripped = follow.strip()
            if not stripped.startswith("--hash="):
                break
            hashes.append(stripped.removeprefix("--hash=").rstrip(" \\"))
        requirement = Requirement(match.group(1) + (match.group(2) or ""))
        pins.append(Pin(requirement, tuple(hashes)))
    return pins


def test_every_pin_is_exact_and_hashed() -> None:
    for path in (DEV_LOCK, RUNTIME_LOCK):
        pins = read_lock(path)
        assert len(pins) > 20, f"{path.name}: the pin pattern no longer matches the lock"
        for pin in pins:
            assert pin.hashes, f"{path.name}: {pin.name} has no hash"
            assert all(h.startswith("sha256:") for h in pin.hashes), pin.name


def test_the_runtime_lock_is_the_dev_lock_less_the_test_tools() -> None:
    dev = {pin.name: pin.version for pin in read_lock(DEV_LOCK)}
    runtime = {pin.name: pin.version for pin in read_lock(RUNTIME_LOCK)}
    assert set(runtime) < set(dev)
    assert {name: dev[name] for name in runtime} == runtime
    for tool in ("pytest", "mypy", "ruff", "fakeredis"):
        assert tool not in runtime, f"{tool} would ship in the image"


def test_every_declared_dependency_is_locked() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    locks = {
        "runtime": {pin.name: pin for pin in read_lock(RUNTIME_LOCK)},
        "dev": {pin.name: pin for pin in read_lock(DEV_LOCK)},
    }
    declared = [("runtime", d) for d in project["dependencies"]] + [
        ("dev", d) for extra in project["optional-dependencies"].values() for d in extra
    ]
    for lock_name, text in declared:
        requirement = Requirement(text)
        pin = locks[lock_name].get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement.name} is not in the {lock_name} lock"
        assert requirement.specifier.contains(pin.version), f"{pin.name}=={pin.version}"


@pytest.mark.locked_install
def test_the_venv_holds_exactly_the_locked_versions() -> None:
    locked = {pin.name: pin.version for pin in read_lock(DEV_LOCK) if pin.applies_here()}
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    wrong = {
        name: (installed.get(name), version)
        for name, version in locked.items()
        if installed.get(name) != version
    }
    assert not wrong, f"installed vs locked: {wrong}"
    unlocked = set(installed) - set(locked) - NOT_LOCKED
    assert not unlocked, f"installed but not in the lock: {sorted(unlocked)}"


def test_the_image_installs_from_the_runtime_lock_with_hashes() -> None:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    installs = [
        segment.strip()
        for run in re.findall(r"^RUN (.*)$", text, flags=re.MULTILINE)
        for segment in run.split("&&")
        if "pip install" in segment
    ]
    assert len(installs) == 2, installs
    locked, project = installs
    assert "--require-hashes" in locked and "-r /src/requirements/runtime.lock" in locked
    # The project goes in without resolving anything the lock did not already decide.
    assert "--no-deps" in project and "--no-build-isolation" in project
    assert project.endswith("/src")


def test_the_makefile_installs_only_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    install = re.search(r"^\$\(VENV\)/\.installed:.*?\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert install, "the install rule moved"
    commands = [line.strip() for line in install.group(1).splitlines()]
    pip_installs = [c for c in commands if "pip install" in c]
    assert pip_installs[0].endswith("--require-hashes -r $(DEV_LOCK)")
    assert all("--no-deps" in c for c in pip_installs[1:])
