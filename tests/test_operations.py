"""The operations table is where every per-operation fact lives, and the code applies the rows:
a made-up row changes what the packer, the quota options and the provider count do. Keys
carry the account: the default account keeps every key name of today, another account's keys
share one Cluster slot."""

from __future__ import annotations

import ast
import json
import time
from dataclasses import astuple, fields, replace
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import redis
from click.testing import CliRunner
from redis.crc import key_slot

from cdn_refresh.operations import (
    DIRECTORY,
    FILE,
    OBJECT_TYPES,
    OPERATIONS,
    Coverage,
    ObjectType,
    Operation,
    counterpart,
    coverage,
    covered_by,
)
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from cdn_refresh.store import batches as batches_module
from cdn_refresh.store import keys as keys_module
from cdn_refresh.store.batches import claim_args
from cdn_refresh.store.keys import DEFAULT_ACCOUNT, Keys, account_name
from cdn_refresh.store.quota import LIMIT_OPTIONS, LIMIT_VARIABLES
from cdn_refresh.store.records import Batch
from emulator.config import EmulatorConfig
from emulator.operations import REFRESH_TYPES, SUPPORT, served
from producer.producer import Producer
from tests.conftest import make_settings
from worker import cli as worker_cli
from worker import client as client_module
from worker.client import CdnClient

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "upgrade_from_1628e5c.json"

# Today's key names, in full, for the default account and prefix "cdnr": a deployment that
# upgrades keeps its queue, its quota and its records under exactly these.
_SHARED_NAMES = [
    "batches",
    "covered",
    "leases",
    "batch_seq",
    "job_seq",
    "jobs",
    "jobs_by_time",
    "jobs_open",
    "job_counts",
    "job_tasks",
    "auth_hold",
    "auth_failures",
    "auth_error",
    "quota_window",
    "flush_requested",
    "write_probe",
    "promotion_lock",
    "quota_sync_gate",
    "tracking",
    "tracks",
    "task_status",
    "task_status_by_time",
    "tracking_lock",
    "metrics",
    "webhooks",
    "webhook_outbox",
    "webhook_deliveries",
    "heartbeats",
    "batch_owners",
    "flush_trailing",
    "webhook_created",
    "webhook_dead",
    "webhook_send_scheduled",
    "quota_window_noticed",
    "worker_schemas",
    "respelled",
    # Added with schema 3: waiters by digest (store/digesting.py).
    "digested",
    "digesting",
]
_TYPE_NAMES = [
    "pending",
    "pending_lex",
    "cooling",
    "cooling_rank",
    "last_sent",
    "provider_quota",
    "provider_noticed",
    "covering",
    "waiters",
    "pathinfo",
    "records",
    "records_by_time",
    "dead",
    "quota",
    "quota_total",
    "hold",
    "backoff",
    "flush_scheduled",
    "wait_noticed",
    "quota_limit",
]
TODAYS_KEYS = [
    *(f"{{cdnr}}:{name}" for name in _SHARED_NAMES),
    *(f"{{cdnr}}:file:{name}" for name in _TYPE_NAMES),
    *(f"{{cdnr}}:dir:{name}" for name in _TYPE_NAMES),
    *(f"{{cdnr}}:regex:{name}" for name in _TYPE_NAMES),
    *(f"{{cdnr}}:ignore_params:{name}" for name in _TYPE_NAMES),
    "{cdnr}:idempotency:D",
    "{cdnr}:stop_request:N",
    "{cdnr}:claim_token:T",
]


def _every_key(keys: Keys) -> list[str]:
    names = list(astuple(keys.shared))
    for kind in OBJECT_TYPES:
        names += astuple(keys.of(kind))
    return [*names, keys.idempotency("D"), keys.stop_request("N"), keys.claim_token("T")]


# -- the rows -----------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPERATIONS.values(), ids=lambda op: op.label)
def test_every_operation_row_is_complete_and_names_settings_that_exist(op: Operation) -> None:
    for f in fields(Operation):
        value = getattr(op, f.name)
        assert (value is not None or f.name == "per_call_setting") and value != "", f.name
    assert op.paths_per_call > 0 and op.domains_per_call > 0 and op.default_daily_quota >= 0
    assert op.wire_type == op.name.value  # stored and wire spelling agree, as today
    assert op.name.label == op.label and ObjectType.parse(op.label) is op.name
    assert set(op.covers) <= set(OPERATIONS) and op.name not in op.covers
    quota_field = Settings.field_of(op.quota_setting)
    assert quota_field.default == op.default_daily_quota
    if op.per_call_setting is not None:
        assert Settings.field_of(op.per_call_setting).default == op.paths_per_call
    assert op.set_quota_option.startswith("--set-") and op.set_quota_option.endswith("-quota")


def test_labels_key_segments_and_options_are_unique_per_operation() -> None:
    for column in ("label", "key_segment", "wire_type", "quota_setting", "set_quota_option"):
        values = [getattr(op, column) for op in OPERATIONS.values()]
        assert len(set(values)) == len(values), column


def test_the_rows_keep_todays_spellings_limits_and_provider_fields() -> None:
    assert [(op.name.value, op.label, op.key_segment) for op in OPERATIONS.values()] == [
        ("File", "file", "file"),
        ("Directory", "directory", "dir"),
        ("Regex", "regex", "regex"),
        ("IgnoreParams", "ignore-params", "ignore_params"),
    ]
    assert (FILE.paths_per_call, DIRECTORY.paths_per_call) == (1000, 100)
    assert FILE.domains_per_call == DIRECTORY.domains_per_call == 10
    assert (FILE.quota_setting, FILE.default_daily_quota) == ("URL_DAILY_QUOTA", 2000)
    assert (DIRECTORY.quota_setting, DIRECTORY.default_daily_quota) == (
        "DIRECTORY_DAILY_QUOTA",
        100,
    )
    assert (FILE.provider_remain_field, FILE.provider_quota_field) == ("UrlRemain", "UrlQuota")
    assert (DIRECTORY.provider_remain_field, DIRECTORY.provider_quota_field) == (
        "DirRemain",
        "DirQuota",
    )
    assert FILE.action == DIRECTORY.action == "RefreshObjectCaches"
    assert FILE.tracked and DIRECTORY.tracked


def test_regex_and_ignore_params_rows_carry_the_providers_limits_and_fields() -> None:
    regex, ignore = OPERATIONS[ObjectType.REGEX], OPERATIONS[ObjectType.IGNORE_PARAMS]
    assert (regex.paths_per_call, ignore.paths_per_call) == (1, 1000)
    assert regex.domains_per_call == ignore.domains_per_call == 10
    assert (regex.quota_setting, regex.default_daily_quota) == ("REGEX_DAILY_QUOTA", 20)
    assert (ignore.quota_setting, ignore.default_daily_quota) == ("IGNORE_PARAMS_DAILY_QUOTA", 100)
    assert (regex.set_quota_option, ignore.set_quota_option) == (
        "--set-regex-quota",
        "--set-ignore-params-quota",
    )
    assert (regex.provider_quota_field, regex.provider_remain_field) == (
        "RegexQuota",
        "RegexRemain",
    )
    assert (ignore.provider_quota_field, ignore.provider_remain_field) == (
        "IgnoreParamsQuota",
        "IgnoreParamsRemain",
    )
    for op in (regex, ignore):
        # Outside any coverage (IgnoreParams covering Files is not applied yet), tracked,
        # paths that name no prefix, Force honoured.
        assert op.covers == () and covered_by(op.name) == () and counterpart(op.name) is op.name
        assert op.tracked and not op.prefix_path and op.force_applies


def test_a_directory_covers_files_and_coverage_is_read_from_the_covers_column() -> None:
    assert DIRECTORY.covers == (ObjectType.FILE,) and FILE.covers == ()
    assert covered_by(ObjectType.FILE) == (ObjectType.DIRECTORY,)
    assert counterpart(ObjectType.FILE) is ObjectType.DIRECTORY
    assert counterpart(ObjectType.DIRECTORY) is ObjectType.FILE
    assert coverage() == Coverage(covering=ObjectType.DIRECTORY, covered=ObjectType.FILE)
    uncovered = {FILE.name: FILE, DIRECTORY.name: replace(DIRECTORY, covers=())}
    with pytest.raises(ValueError):
        coverage(uncovered)
    # An operation outside any coverage is its own pair: its scripts bind their own keys
    # where a covered operation binds its counterpart's, and read them only under coverage.
    assert counterpart(ObjectType.FILE, uncovered) is ObjectType.FILE
    both = {**uncovered, ObjectType.DIRECTORY: replace(DIRECTORY, covers=(ObjectType.FILE,))}
    third = replace(FILE, covers=(ObjectType.FILE,))
    with pytest.raises(ValueError):
        counterpart(ObjectType.FILE, {**both, ObjectType.FILE: third})


def test_an_operation_outside_any_coverage_binds_its_scripts_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uncovered = {FILE.name: FILE, DIRECTORY.name: replace(DIRECTORY, covers=())}
    monkeypatch.setattr(keys_module, "OPERATIONS", uncovered)
    keys = Keys("p")
    assert keys.bind(("pending", "other.pending"), ObjectType.FILE) == [
        "{p}:file:pending",
        "{p}:file:pending",
    ]


# -- the code applies the rows ------------------------------------------------------------


def test_claim_arguments_take_the_packing_limits_from_the_row() -> None:
    s = make_settings()
    made_up = replace(FILE, paths_per_call=7, domains_per_call=2)
    args = claim_args(s, made_up, 1.0, "w")
    assert (args["max_paths"], args["max_domains"]) == (7, 2)
    # A setting lowers the row's limit, never raises it.
    assert claim_args(make_settings(urls_per_call=5), made_up, 1.0, "w")["max_paths"] == 5
    assert claim_args(s, DIRECTORY, 1.0, "w")["max_paths"] == 100
    # Only a covered operation's claim waits for a covering path.
    assert claim_args(s, FILE, 1.0, "w")["file_claim"] == "1"
    assert claim_args(s, DIRECTORY, 1.0, "w")["file_claim"] == "0"


def test_a_made_up_row_changes_what_the_packer_claims(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(url_daily_quota=1000)
    producer, store = Producer(Store(redis_client, settings)), Store(redis_client, settings)
    producer.enqueue([f"d{i % 5}.example.com/{i}" for i in range(40)])
    table = {**OPERATIONS, ObjectType.FILE: replace(FILE, paths_per_call=6, domains_per_call=2)}
    monkeypatch.setattr(batches_module, "OPERATIONS", table)
    seen: set[str] = set()
    while (claimed := store.batches.claim(ObjectType.FILE, time.time())) is not None:
        assert isinstance(claimed, Batch)
        assert len(claimed.paths) <= 6 and len(claimed.domains) <= 2
        seen.update(claimed.paths)
    assert len(seen) == 40


@pytest.mark.parametrize("tracked", [True, False])
def test_a_call_is_tracked_to_completion_only_when_its_row_says_so(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, tracked: bool
) -> None:
    settings = make_settings()
    producer, store = Producer(Store(redis_client, settings)), Store(redis_client, settings)
    producer.enqueue(["a.com/1"])
    table = {**OPERATIONS, ObjectType.FILE: replace(FILE, tracked=tracked)}
    monkeypatch.setattr(batches_module, "OPERATIONS", table)
    batch = store.batches.claim(ObjectType.FILE, time.time())
    assert isinstance(batch, Batch)
    store.batches.submit(batch, (), ("7",), "R1", time.time())
    assert redis_client.zcard(store.keys.shared.tracking) == (1 if tracked else 0)


def test_the_emulator_serves_every_operation_from_config_fields_that_exist() -> None:
    assert set(SUPPORT) == set(OPERATIONS)
    model = EmulatorConfig.model_fields
    for row in REFRESH_TYPES.values():
        counter = row.counter
        assert {row.per_call, counter.quota, counter.spent_elsewhere} <= set(model)
    for name, op in OPERATIONS.items():
        row = served(op.action, op.wire_type)
        assert row is not None and row == SUPPORT[name]
        assert (row.prefix_path, row.force_applies) == (op.prefix_path, op.force_applies)
        fields = (row.counter.quota_field, row.counter.remain_field)
        assert fields == (op.provider_quota_field, op.provider_remain_field)
    assert served("RefreshObjectCaches", "ExQuery") is None


def test_the_quota_options_and_limit_names_come_from_the_rows() -> None:
    assert {n: op.set_quota_option for n, op in OPERATIONS.items()} == LIMIT_OPTIONS
    assert {n: op.quota_setting for n, op in OPERATIONS.items()} == LIMIT_VARIABLES
    options = [p.opts[0] for p in worker_cli.quota.params if isinstance(p, click.Option)]
    assert [o for o in options if o.endswith("-quota")] == [
        op.set_quota_option for op in OPERATIONS.values()
    ]


def test_a_made_up_row_adds_its_quota_option(monkeypatch: pytest.MonkeyPatch) -> None:
    regex = replace(FILE, name=ObjectType.FILE, label="regex", set_quota_option="--set-regex-quota")
    monkeypatch.setattr(worker_cli, "OPERATIONS", {ObjectType.FILE: regex})
    got: dict[str, Any] = {}

    @click.command()
    @worker_cli._limit_options
    def probe(**limits: int | None) -> None:
        got.update(limits)

    result = CliRunner().invoke(probe, ["--set-regex-quota", "5"])
    assert result.exit_code == 0, result.output
    assert got == {"set_regex_quota": 5}


def test_the_provider_count_is_read_from_the_fields_the_rows_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = {"UrlQuota": "10", "UrlRemain": "4", "OddQuota": "7", "OddRemain": "3"}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**body, "RequestId": "r"})

    odd = replace(DIRECTORY, provider_quota_field="OddQuota", provider_remain_field="OddRemain")
    monkeypatch.setattr(client_module, "OPERATIONS", {**OPERATIONS, ObjectType.DIRECTORY: odd})
    with CdnClient(make_settings().provider, transport=httpx.MockTransport(handler)) as client:
        quota = client.describe_refresh_quota()
    assert (quota.of(ObjectType.FILE).quota, quota.of(ObjectType.FILE).remain) == (10, 4)
    assert (quota.of(ObjectType.DIRECTORY).quota, quota.of(ObjectType.DIRECTORY).remain) == (7, 3)


# Modules that once branched on File or Directory and now read the rows: none may name an
# operation again (the floor's table, the emulator's support and the defaults of a few
# public signatures are where operations are named).
_APPLY_ROWS = (
    "cdn_refresh/store/batches.py",
    "cdn_refresh/store/quota.py",
    "cdn_refresh/store/keys.py",
    "cdn_refresh/store/metrics.py",
    "cdn_refresh/store/promotion.py",
    "cdn_refresh/paths.py",
    "cdn_refresh/planning.py",
    "cdn_refresh/documents.py",
    "worker/cli.py",
    "worker/client.py",
    "worker/pipeline.py",
    "worker/promotion.py",
    "worker/provider_count.py",
    "producer/queue_cli.py",
    "emulator/describe.py",
    "emulator/actions.py",
    "emulator/refreshed.py",
)


@pytest.mark.parametrize("relative", _APPLY_ROWS)
def test_code_that_applies_the_rows_names_no_operation(relative: str) -> None:
    tree = ast.parse((ROOT / relative).read_text())
    # A parameter's default (``object_type=ObjectType.FILE``) chooses, it does not branch.
    defaults = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.arguments)
        for default in (*node.defaults, *node.kw_defaults)
        if default is not None
        for sub in ast.walk(default)
    }
    named = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in ("FILE", "DIRECTORY", "other")
        and id(node) not in defaults
    ]
    # Stored field names the Lua scripts read are data, not a branch: only compared strings
    # and call arguments are looked at.
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        for side in (node.left, *node.comparators)
        if isinstance(side, ast.Constant) and side.value in ("File", "Directory")
    ]
    assert named == [] and literals == [], (named, literals)


# -- keys carry the account ---------------------------------------------------------------


def test_the_default_account_keeps_every_key_name_of_today() -> None:
    assert _every_key(Keys("cdnr")) == TODAYS_KEYS
    assert _every_key(Keys("cdnr", DEFAULT_ACCOUNT)) == TODAYS_KEYS
    # And every key the release before accounts wrote is one of them.
    stored = {entry["key"] for entry in json.loads(DATA.read_text())["keys"]}
    # Only the families named by a value of their own (an idempotency key's digest, a
    # claim token, a node) may differ from the fixed names.
    variable = ("{cdnr}:idempotency:", "{cdnr}:claim_token:", "{cdnr}:stop_request:")
    for key in stored:
        assert key in TODAYS_KEYS or key.startswith(variable), key


def test_no_accounts_tag_is_another_deployments_default_tag() -> None:
    # A prefix may hold ``:`` (KEY_PREFIX), so a tag joined with it could meet another
    # deployment's: prefix ``cdnr:shop`` beside account ``shop`` of ``cdnr``.
    assert Keys("cdnr", "shop").shared.jobs != Keys("cdnr:shop").shared.jobs
    assert Keys("cdnr", "shop").shared.jobs == "{cdnr@shop}:jobs"
    with pytest.raises(ValueError):
        Keys("cdnr", "a@b")


def test_every_key_of_an_account_lives_under_its_own_tag_in_one_cluster_slot() -> None:
    keys = Keys("cdnr", "shop-2")
    names = _every_key(keys)
    assert all(name.startswith("{cdnr@shop-2}:") for name in names)
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert [n.removeprefix("{cdnr@shop-2}") for n in names] == [
        n.removeprefix("{cdnr}") for n in TODAYS_KEYS
    ]
    assert set(names).isdisjoint(TODAYS_KEYS)
    # Script binding (the coverage keys of the paired operation) stays in the account too.
    bound = keys.bind(("pending", "other.pending", "batches"), ObjectType.FILE)
    assert bound == ["{cdnr@shop-2}:file:pending", "{cdnr@shop-2}:dir:pending", keys.shared.batches]


@pytest.mark.parametrize("bad", ["", "a b", "x:y", "{t}", "é", "a" * 33, "a/b"])
def test_an_account_name_is_short_and_plain(bad: str) -> None:
    with pytest.raises(ValueError):
        account_name(bad)
    with pytest.raises(ValueError):
        Keys("cdnr", bad)


def test_a_store_can_be_made_for_another_account(redis_client: redis.Redis) -> None:
    settings = make_settings()
    default, other = Store(redis_client, settings), Store(redis_client, settings, account="b")
    Producer(other).enqueue(["a.com/x"])
    assert other.quota.pending_count(ObjectType.FILE) == 1
    assert default.quota.pending_count(ObjectType.FILE) == 0
    assert other.keys.of(ObjectType.FILE).pending == "{cdnr@b}:file:pending"


def test_an_operations_keys_are_named_by_its_rows_key_segment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = {op.name: replace(op, key_segment=op.key_segment + "x") for op in OPERATIONS.values()}
    monkeypatch.setattr(keys_module, "OPERATIONS", table)
    keys = Keys("p")
    assert keys.of(ObjectType.FILE).pending == "{p}:filex:pending"
    assert keys.of(ObjectType.DIRECTORY).quota_limit == "{p}:dirx:quota_limit"
