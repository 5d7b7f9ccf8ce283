"""The container files (compose.yaml, Dockerfile, .dockerignore, .env.example), read without
Docker: they parse, scale correctly, and every command and variable they name exists."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cdn_refresh import cli
from cdn_refresh.settings import ENV_PREFIX, ProviderSettings, Settings, env_names

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
PYPROJECT = ROOT / "pyproject.toml"

APP_SERVICES = ("worker", "scheduler", "emulator", "api")
# The settings by the name the environment gives them (``redis_url``), whatever their group.
FIELDS = {name.removeprefix(ENV_PREFIX).lower() for name in env_names()}
SECRET_FIELDS = {"access_key_secret", "security_token", "api_tokens", "webhook_secret"}
ENV_LINE = re.compile(r"^(#\s*)?(CDN_REFRESH_[A-Z0-9_]+)=(.*)$")
ENV_NAME = re.compile(r"CDN_REFRESH_[A-Z0-9_]+")
# A dummy environment for subprocesses: a Redis URL that is never connected to, nothing else.
DUMMY_REDIS_URL = "redis://redis:6379/0"


# --- helpers ---------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def argv_of(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def dockerfile_instructions(name: str) -> list[str]:
    """The arguments of every ``name`` instruction (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == name:
            found.append(rest.strip())
    return found


def dockerfile_cmd() -> list[str]:
    cmds = dockerfile_instructions("CMD")
    assert len(cmds) == 1, "one CMD"
    argv = json.loads(cmds[0])  # the exec form: SIGTERM reaches the program itself
    assert isinstance(argv, list)
    return [str(a) for a in argv]


def every_command() -> list[tuple[str, list[str]]]:
    """(where, argv) of each command that runs in the project's image."""
    found = [("Dockerfile CMD", dockerfile_cmd())]
    for name, svc in services().items():
        if "command" in svc and name != "redis":
            found.append((f"service {name}", argv_of(svc["command"])))
    return found


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["CDN_REFRESH_REDIS_URL"] = DUMMY_REDIS_URL
    return env


def console_scripts() -> dict[str, str]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]


def launcher(program: str) -> list[str]:
    """How to run ``program`` (a console script of this project, or celery) with this Python."""
    if program == "celery":
        return [sys.executable, "-m", "celery"]
    scripts = console_scripts()
    assert program in scripts, f"{program} is not a console script of the project"
    module, _, attr = scripts[program].partition(":")
    code = f"import sys; from {module} import {attr} as f; sys.exit(f(prog_name={program!r}))"
    return [sys.executable, "-c", code]


def env_example() -> list[tuple[str, str, bool, str]]:
    """(name, value, commented_out, comment above) of each variable line of .env.example."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        m = ENV_LINE.match(line)
        if m:
            above = lines[i - 1] if i else ""
            found.append((m.group(2), m.group(3), m.group(1) is not None, above))
    return found


def field_of(variable: str) -> str:
    assert variable.startswith(ENV_PREFIX)
    return variable[len(ENV_PREFIX) :].lower()


def seconds(duration: str) -> float:
    """A compose duration such as ``60s``, ``1m30s`` or ``90`` in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    if re.fullmatch(r"\d+(\.\d+)?", duration):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


# --- compose.yaml ----------------------------------------------------------------------------


def test_compose_parses_with_the_expected_services() -> None:
    data = load_compose()
    assert "version" not in data  # the Compose specification has no version key
    assert {"redis", "worker", "scheduler", "emulator", "api"} <= set(data["services"])


def test_only_the_emulator_is_behind_a_profile() -> None:
    svcs = services()
    assert "emulator" in svcs["emulator"].get("profiles", [])
    for name in ("redis", "worker", "scheduler", "api"):
        assert not svcs[name].get("profiles"), f"{name} must start by default"


@pytest.mark.parametrize("name", ["worker", "scheduler"])
def test_app_services_can_be_scaled_without_clashes(name: str) -> None:
    svc = services()[name]
    assert "container_name" not in svc
    assert "hostname" not in svc  # Celery node names come from distinct container hostnames
    assert not svc.get("ports"), "no host port binding"
    assert not svc.get("network_mode")


def test_no_service_publishes_a_host_port() -> None:
    for name, svc in services().items():
        assert not svc.get("ports"), f"{name} publishes a host port"


def test_worker_runs_workers_only_and_the_scheduler_runs_beat_once() -> None:
    svcs = services()
    worker = argv_of(svcs["worker"]["command"])
    scheduler = argv_of(svcs["scheduler"]["command"])
    assert worker[:4] == ["celery", "-A", "worker", "worker"]
    assert not {"--beat", "-B"} & set(worker), "beat must run only in the scheduler"
    assert not any(re.fullmatch(r"-[A-Za-z]*B[A-Za-z]*", a) for a in worker[4:])
    assert scheduler[:4] == ["celery", "-A", "worker", "beat"]
    assert svcs["scheduler"].get("deploy", {}).get("replicas", 1) == 1


def test_worker_restarts_and_stops_gracefully() -> None:
    svc = services()["worker"]
    assert svc["restart"] == "unless-stopped"
    grace = seconds(str(svc["stop_grace_period"]))
    defaults = ProviderSettings.model_fields
    call_s = defaults["http_connect_timeout_s"].default + defaults["http_read_timeout_s"].default
    assert grace >= call_s, "long enough for a call in flight to finish"


@pytest.mark.parametrize("name", ["worker", "scheduler", "api"])
def test_app_services_wait_for_redis_and_read_the_env_file(name: str) -> None:
    svc = services()[name]
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    env_files = svc["env_file"]
    paths = [e if isinstance(e, str) else e["path"] for e in env_files]
    assert ".env" in paths
    redis_url = svc["environment"]["CDN_REFRESH_REDIS_URL"]
    m = re.fullmatch(r"\$\{CDN_REFRESH_REDIS_URL:-(.+)\}", redis_url)
    assert m, "the Redis URL can be overridden from .env or the shell"
    assert m.group(1) == "redis://redis:6379/0"
    Settings(_env_file=None, redis_url=m.group(1))  # a valid URL


def test_app_services_share_one_image() -> None:
    svcs = services()
    images = {svcs[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1 and None not in images
    for name in APP_SERVICES:
        assert svcs[name]["build"]["context"] == "."


def test_redis_is_durable_and_has_a_healthcheck() -> None:
    data = load_compose()
    redis = data["services"]["redis"]
    assert str(redis["image"]).split(":")[0] == "redis"
    assert str(redis["image"]).split(":")[1].startswith("7")
    command = argv_of(redis["command"])
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data"
    assert volume in (data.get("volumes") or {}), "a named volume"
    test = redis["healthcheck"]["test"]
    text = " ".join(test) if isinstance(test, list) else test
    assert "redis-cli" in text and "ping" in text


def test_emulator_command_and_port() -> None:
    svc = services()["emulator"]
    argv = argv_of(svc["command"])
    assert argv[:2] == ["cdn-refresh", "emulator"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    port = argv[argv.index("--port") + 1]
    assert port in [str(p) for p in svc.get("expose", [])]
    assert "env_file" not in svc, "real credentials stay away from the emulator"
    assert f"CDN_REFRESH_ENDPOINT=http://emulator:{port}" in COMPOSE.read_text(encoding="utf-8")


def test_api_listens_on_its_exposed_port_and_checks_its_health() -> None:
    svc = services()["api"]
    argv = argv_of(svc["command"])
    assert argv[:2] == ["cdn-refresh", "api"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    port = argv[argv.index("--port") + 1]
    assert port in [str(p) for p in svc.get("expose", [])]
    test = " ".join(svc["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in test


def test_the_prometheus_example_scrapes_the_api_service() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "cdn-refresh"]
    assert job["metrics_path"] == "/metrics"
    port = argv_of(services()["api"]["command"])[-1]
    assert job["static_configs"][0]["targets"] == [f"api:{port}"]


# --- every command names something that exists ------------------------------------------------


def test_every_command_is_one_the_image_provides() -> None:
    for where, argv in every_command():
        assert argv[0] in ("celery", *console_scripts()), f"{where}: unknown program {argv[0]}"


@pytest.mark.parametrize(("where", "argv"), [pytest.param(w, a, id=w) for w, a in every_command()])
def test_command_parses_in_the_real_cli(where: str, argv: list[str], tmp_path: Path) -> None:
    """The real program with the same arguments plus ``--help``: it loads the Celery app named
    by ``-A`` (or the click group), rejects unknown options, and starts nothing."""
    result = subprocess.run(
        [*launcher(argv[0]), *argv[1:], "--help"],
        cwd=tmp_path,  # like the image's empty /app: no source tree, no .env
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{where}: {argv}\n{result.stdout}\n{result.stderr}"
    assert "Usage:" in result.stdout


def celery_app_names() -> set[str]:
    names = set()
    for _, argv in every_command():
        if argv[0] == "celery":
            a = argv.index("-A") if "-A" in argv else argv.index("--app")
            names.add(argv[a + 1])
    return names


@pytest.mark.parametrize("app_name", sorted(celery_app_names()))
def test_celery_app_resolves_with_its_tasks(app_name: str, tmp_path: Path) -> None:
    code = (
        "from celery.app.utils import find_app\n"
        f"app = find_app({app_name!r})\n"
        "app.loader.import_default_modules()\n"
        "print(' '.join(sorted(app.tasks)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    from cdn_refresh.constants import TASK_FLUSH, TASK_TICK

    assert {TASK_FLUSH, TASK_TICK} <= set(result.stdout.split())


def test_cdn_refresh_commands_and_options_exist() -> None:
    assert console_scripts()["cdn-refresh"] == "cdn_refresh.cli:main"
    for where, argv in every_command():
        if argv[0] != "cdn-refresh":
            continue
        group: click.Group = cli.main
        command = group.get_command(click.Context(group), argv[1])
        assert command is not None, f"{where}: no subcommand {argv[1]}"
        # Full parsing without invoking: unknown options and bad values raise UsageError.
        ctx = command.make_context(argv[1], list(argv[2:]))
        assert ctx.params


# --- variables ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE, DOCKERFILE, ENV_EXAMPLE], ids=lambda p: p.name)
def test_every_named_variable_is_a_setting(path: Path) -> None:
    for name in set(ENV_NAME.findall(path.read_text(encoding="utf-8"))):
        assert field_of(name) in FIELDS, f"{path.name} names {name}, which is no setting"


def test_env_example_lists_every_setting_once_with_a_comment() -> None:
    entries = env_example()
    names = [name for name, *_ in entries]
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert {field_of(n) for n in names} == FIELDS
    for name, _, _, above in entries:
        assert above.startswith("# ") and not ENV_LINE.match(above), f"{name} has no comment"


def test_env_example_holds_no_secret() -> None:
    for name, value, _, _ in env_example():
        if field_of(name) in SECRET_FIELDS:
            assert value == "", f"{name} must be blank"
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert re.search(r"^CDN_REFRESH_ACCESS_KEY_SECRET=\s*$", text, re.MULTILINE)


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    defaults = Settings(_env_file=None)
    for name, value, _, _ in env_example():
        if value:
            monkeypatch.setenv(name, value)
    listed = Settings(_env_file=None)
    for field in FIELDS:
        if field not in SECRET_FIELDS:
            group, name = env_names()[ENV_PREFIX + field.upper()]
            assert getattr(getattr(listed, group), name) == getattr(getattr(defaults, group), name)
    assert listed.redis.url.get_secret_value() == defaults.redis.url.get_secret_value()


# --- Dockerfile and .dockerignore --------------------------------------------------------------


def test_dockerfile_builds_a_small_non_root_image() -> None:
    (base,) = dockerfile_instructions("FROM")
    assert base.split()[0] == "python:3.11-slim"
    (user,) = dockerfile_instructions("USER")
    assert user not in ("root", "0")
    assert dockerfile_instructions("WORKDIR") == ["/app"]
    runs = " ".join(dockerfile_instructions("RUN"))
    assert "pip install" in runs and "--no-cache-dir" in runs
    assert "[test]" not in runs, "no test extras in the image"
    assert not dockerfile_instructions("ENTRYPOINT")
    assert dockerfile_cmd()[:4] == ["celery", "-A", "worker", "worker"]
    assert not {"--beat", "-B"} & set(dockerfile_cmd())


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for p in patterns:
            negate = p.startswith("!")
            p = p.lstrip("!").rstrip("/").removeprefix("**/")
            if fnmatch(path, p) or fnmatch(path.split("/")[0], p):
                result = not negate
        return result

    for path in (".env", ".git", ".venv", ".pytest_cache", ".hypothesis", "bench", "tests"):
        assert ignored(path), f"{path} is sent to the build"
    for path in ("pyproject.toml", "cdn_refresh", "worker", "producer", "emulator"):
        assert not ignored(path), f"{path} is needed by pip install ."


def test_installed_package_ships_every_lua_script() -> None:
    """The image installs the project (not editable): each ``<pkg>/lua/*.lua`` the code loads
    must be declared as package data, or the installed package lacks it."""
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"]["package-data"]
    scripts = sorted(ROOT.glob("*/**/lua/*.lua"))
    assert scripts, "no Lua script found: the glob is out of date"
    for script in scripts:
        parts = script.relative_to(ROOT).parts
        package, relative = parts[0], "/".join(parts[1:])
        globs = package_data.get(package, []) + package_data.get("*", [])
        assert any(fnmatch(relative, g) for g in globs), f"{package}/{relative} not package data"
