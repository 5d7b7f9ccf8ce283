"""Every operation the provider offers, served by the emulator over loopback HTTP with signed
requests: the four ObjectTypes of RefreshObjectCaches (each on its own daily counter, with its
own per-call limit, Force recorded), refresh by cache tag, and preload (its own counter, its
queue, its tasks), DescribeRefreshQuota's fields, the admin view of it all, and the CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from alibabacloud_cdn20180510 import models
from alibabacloud_cdn20180510.client import Client
from alibabacloud_tea_openapi.models import Config
from click.testing import CliRunner

from cdn_refresh.constants import API_VERSION
from cdn_refresh.signature import common_params, sign
from emulator import EmulatorConfig, EmulatorServer
from emulator.cli import emulator_command
from emulator.quota import COUNTERS

KEY_ID, SECRET = "testid", "testsecret"
TAG_ACTION, PRELOAD_ACTION = "RefreshObjectCacheByCacheTag", "PushObjectCache"


class Rig:
    """The emulator on a free port, a client of it and a clock the test moves."""

    def __init__(self, **config: Any) -> None:
        self.offset_s = 0.0
        settings = EmulatorConfig(**{"complete_after_s": 60.0, **config})
        self.server = EmulatorServer(settings, clock=lambda: time.time() + self.offset_s)

    def __enter__(self) -> Rig:
        self.server.start()
        self.http = httpx.Client(base_url=self.server.url, timeout=5.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.server.stop()

    def post(self, action: str, **extra: str) -> httpx.Response:
        """One call, signed the way our client signs."""
        params = common_params(KEY_ID, API_VERSION)
        params.update(Action=action, **extra)
        params["Signature"] = sign("POST", params, SECRET)
        return self.http.post("/", data=params)

    def refresh(self, paths: list[str], object_type: str, **extra: str) -> httpx.Response:
        return self.post(
            "RefreshObjectCaches", ObjectPath="\n".join(paths), ObjectType=object_type, **extra
        )

    def preload(self, paths: list[str], **extra: str) -> httpx.Response:
        return self.post(PRELOAD_ACTION, ObjectPath="\n".join(paths), **extra)

    def quota(self) -> dict[str, str]:
        body: dict[str, str] = self.post("DescribeRefreshQuota").json()
        return body

    def used(self) -> dict[str, Any]:
        return dict(self.server.state.stats()["quota"])

    def tasks(self, task_ids: str) -> list[dict[str, str]]:
        body = self.post("DescribeRefreshTaskById", TaskId=task_ids).json()
        return list(body["Tasks"])


@pytest.fixture
def rig() -> Iterator[Rig]:
    with Rig() as running:
        yield running


def code_of(response: httpx.Response) -> str:
    return str(response.json().get("Code", "Success"))


# (ObjectType, its counter, its DescribeRefreshQuota field prefix, paths of one call)
TYPES = [
    ("File", "url", "Url", ["a.com/1.png", "a.com/2.png", "b.com/3.png"]),
    ("Directory", "dir", "Dir", ["a.com/d/", "b.com/e/"]),
    ("Regex", "regex", "Regex", [r"a.com/img/.*\.png"]),
    ("IgnoreParams", "ignore_params", "IgnoreParams", ["a.com/p.js", "a.com/q.js"]),
]


# -- RefreshObjectCaches: every ObjectType -----------------------------------------------------


@pytest.mark.parametrize(("object_type", "kind", "field", "paths"), TYPES)
def test_each_object_type_is_accepted_and_counted_in_its_own_quota(
    rig: Rig, object_type: str, kind: str, field: str, paths: list[str]
) -> None:
    before = rig.quota()
    response = rig.refresh(paths, object_type)

    assert response.status_code == 200, response.json()
    assert all(t.isdigit() for t in response.json()["RefreshTaskId"].split(","))
    used = rig.used()
    assert used[f"{kind}_used"] == len(paths)
    assert all(used[f"{k}_used"] == 0 for k in COUNTERS if k != kind)
    after = rig.quota()
    assert int(after[f"{field}Remain"]) == int(before[f"{field}Remain"]) - len(paths)
    others = {k: v for k, v in after.items() if k.endswith("Remain") and k != f"{field}Remain"}
    assert others == {k: before[k] for k in others}
    [call] = rig.server.state.calls()
    assert (call["object_type"], call["paths"]) == (object_type, paths)
    tasks = rig.tasks(response.json()["RefreshTaskId"])
    assert {t["ObjectType"] for t in tasks} == {object_type.lower()}


@pytest.mark.parametrize(
    ("object_type", "limit", "path"),
    [
        ("File", 1000, "a.com/f{}.png"),
        ("Directory", 100, "a.com/d{}/"),
        ("Regex", 1, r"a.com/r{}/.*"),
        ("IgnoreParams", 1000, "a.com/i{}.js"),
    ],
)
def test_each_object_type_has_its_per_call_limit(object_type: str, limit: int, path: str) -> None:
    # Quotas out of the way: IgnoreParams allows 1,000 a call but only 100 a day by default.
    with Rig(**{counter.quota: 10_000 for counter in COUNTERS.values()}) as rig:
        over = rig.refresh([path.format(i) for i in range(limit + 1)], object_type)
        assert (over.status_code, code_of(over)) == (400, "InvalidObjectPath.Size.Malformed")
        assert rig.server.state.calls() == []
        at = rig.refresh([path.format(i) for i in range(limit)], object_type)
        assert at.status_code == 200, at.json()


def test_a_regex_call_carries_one_expression_and_spends_one_of_twenty(rig: Rig) -> None:
    two = rig.refresh([r"a.com/x/.*", r"a.com/y/.*"], "Regex")
    assert code_of(two) == "InvalidObjectPath.Size.Malformed"
    for n in range(20):
        assert rig.refresh([rf"a.com/{n}/.*\.png"], "Regex").status_code == 200
    spent = rig.refresh([r"a.com/more/.*"], "Regex")
    assert (spent.status_code, code_of(spent)) == (400, "QuotaExceeded.Refresh")
    assert rig.quota()["RegexRemain"] == "0"
    # The other counters are untouched.
    assert rig.refresh(["a.com/still.png"], "File").status_code == 200


def test_a_regex_must_name_a_host_the_account_serves() -> None:
    with Rig(known_domains={"a.com"}, offline_domains={"off.com"}) as rig:
        assert rig.refresh([r"a.com/.*\.png"], "Regex").status_code == 200
        unknown = rig.refresh([r"b.com/.*\.png"], "Regex")
        assert (unknown.status_code, code_of(unknown)) == (404, "InvalidDomain.NotFound")
        wildcard = rig.refresh([r"*.a.com/.*"], "Regex")
        assert code_of(wildcard) == "InvalidExtensiveDomain.ValueNotSupported"
        offline = rig.refresh([r"http://off.com/.*"], "Regex")
        assert (offline.status_code, code_of(offline)) == (404, "InvalidDomain.Offline")


def test_ignore_params_calls_name_at_most_ten_domains(rig: Rig) -> None:
    eleven = rig.refresh([f"d{i}.com/x.js" for i in range(11)], "IgnoreParams")
    assert (eleven.status_code, code_of(eleven)) == (400, "SingleRequest.OverLimit")
    ten = rig.refresh([f"d{i}.com/x.js" for i in range(10)], "IgnoreParams")
    assert len(ten.json()["RefreshTaskId"].split(",")) == 10


def test_each_daily_quota_is_configurable_and_spent_apart() -> None:
    with Rig(ignore_params_quota=2, regex_quota=1, ignore_params_spent_elsewhere=1) as rig:
        quota = rig.quota()
        assert (quota["IgnoreParamsQuota"], quota["IgnoreParamsRemain"]) == ("2", "1")
        two = rig.refresh(["a.com/1.js", "a.com/2.js"], "IgnoreParams")
        assert code_of(two) == "QuotaExceeded.Refresh"
        assert rig.refresh(["a.com/1.js"], "IgnoreParams").status_code == 200
        assert rig.quota()["IgnoreParamsRemain"] == "0"
        assert rig.quota()["RegexRemain"] == "1"


@pytest.mark.parametrize("object_type", ["ExQuery", "Tag", "Preload", "regex", "Files"])
def test_an_unknown_object_type_is_refused(rig: Rig, object_type: str) -> None:
    response = rig.refresh(["a.com/x/"], object_type)
    assert (response.status_code, code_of(response)) == (400, "InvalidObjectType.Malformed")
    assert rig.server.state.calls() == []


@pytest.mark.parametrize(
    ("object_type", "path", "applied"),
    [
        ("File", "a.com/x.png", False),  # accepted, and ignored: Force applies to other types
        ("Directory", "a.com/d/", True),
        ("Regex", r"a.com/.*", True),
        ("IgnoreParams", "a.com/x.js", True),
    ],
)
def test_force_is_accepted_for_every_type_and_recorded(
    rig: Rig, object_type: str, path: str, applied: bool
) -> None:
    assert rig.refresh([path], object_type, Force="true").status_code == 200
    assert rig.refresh([path], object_type).status_code == 200
    forced, plain = rig.server.state.calls()
    assert (forced["force"], forced["force_applied"]) == (True, applied)
    assert (plain["force"], plain["force_applied"]) == (False, False)
    bad = rig.refresh([path], object_type, Force="yes")
    assert code_of(bad) == "InvalidParameter"


def test_what_a_regex_or_ignore_params_refresh_reaches(rig: Rig) -> None:
    assert rig.refresh([r"a.com/img/.*\.png"], "Regex").status_code == 200
    assert rig.refresh(["a.com/app.js"], "IgnoreParams").status_code == 200
    asked = ["a.com/img/x/y.png", "a.com/img/y.jpg", "b.com/img/y.png", "a.com/app.js?v=2"]
    answers = {a["path"]: a for a in rig.server.state.refreshed(asked)}
    assert answers["a.com/img/x/y.png"]["how"] == "regex"
    assert answers["a.com/img/x/y.png"]["by"] == r"a.com/img/.*\.png"
    assert not answers["a.com/img/y.jpg"]["refreshed"]
    assert not answers["b.com/img/y.png"]["refreshed"]
    assert answers["a.com/app.js?v=2"]["how"] == "ignore_params"


# -- RefreshObjectCacheByCacheTag ----------------------------------------------------------------


def test_a_tag_refresh_answers_a_task_and_spends_the_tag_quota(rig: Rig) -> None:
    response = rig.post(TAG_ACTION, DomainName="A.com", CacheTag="news, sports", Force="true")
    assert response.status_code == 200, response.json()
    task_id = response.json()["RefreshTaskId"]
    assert task_id.isdigit()
    assert rig.used()["tag_used"] == 2 and rig.used()["url_used"] == 0
    [call] = rig.server.state.calls(TAG_ACTION)
    assert (call["domain"], call["tags"], call["force"]) == ("a.com", ["news", "sports"], True)
    assert call["task_ids"] == [task_id]
    assert rig.server.state.calls() == []  # the default view stays RefreshObjectCaches
    assert {(t["ObjectPath"], t["ObjectType"]) for t in rig.tasks(task_id)} == {
        ("news", "tag"),
        ("sports", "tag"),
    }


def test_a_tag_refresh_checks_its_parameters_domain_and_quota() -> None:
    with Rig(tag_quota=3, known_domains={"a.com"}) as rig:
        assert code_of(rig.post(TAG_ACTION, DomainName="a.com")) == "MissingParameter"
        assert code_of(rig.post(TAG_ACTION, CacheTag="x")) == "MissingParameter"
        assert code_of(rig.post(TAG_ACTION, DomainName="a.com", CacheTag="x,,y")) == (
            "InvalidParameter"
        )
        unknown = rig.post(TAG_ACTION, DomainName="b.com", CacheTag="x")
        assert (unknown.status_code, code_of(unknown)) == (404, "InvalidDomain.NotFound")
        assert rig.post(TAG_ACTION, DomainName="a.com", CacheTag="x,y").status_code == 200
        spent = rig.post(TAG_ACTION, DomainName="a.com", CacheTag="z,w")
        assert (spent.status_code, code_of(spent)) == (400, "QuotaExceeded.Refresh")
        assert rig.used()["tag_used"] == 2


# -- PushObjectCache (preload) -------------------------------------------------------------------


def test_preload_is_counted_apart_from_refresh_and_records_its_options(rig: Rig) -> None:
    response = rig.preload(
        ["a.com/1.png", "a.com/2.png", "b.com/3.png"],
        Area="overseas",
        L2Preload="true",
        WithHeader='{"Origin": "https://x.com"}',
    )
    assert response.status_code == 200, response.json()
    assert len(response.json()["PushTaskId"].split(",")) == 2
    assert rig.refresh(["a.com/1.png"], "File").status_code == 200
    quota = rig.quota()
    assert (quota["PreloadQuota"], quota["PreloadRemain"]) == ("1000", "997")
    assert quota["UrlRemain"] == str(EmulatorConfig().url_quota - 1)
    assert (rig.used()["preload_used"], rig.used()["url_used"]) == (3, 1)
    [call] = rig.server.state.calls(PRELOAD_ACTION)
    assert call["paths"] == ["a.com/1.png", "a.com/2.png", "b.com/3.png"]
    assert (call["area"], call["l2_preload"]) == ("overseas", True)
    assert call["with_header"] == '{"Origin": "https://x.com"}'
    stats = rig.server.state.stats()
    assert stats["calls_by_action"] == {PRELOAD_ACTION: 1, "RefreshObjectCaches": 1}
    assert stats["preload_queued"] == 3


def test_preload_refuses_what_the_provider_refuses(rig: Rig) -> None:
    over = rig.preload([f"a.com/{i}" for i in range(101)])
    assert (over.status_code, code_of(over)) == (400, "InvalidObjectPath.Size.Malformed")
    long_path = rig.preload(["a.com/" + "x" * 1020])
    assert code_of(long_path) == "InvalidObjectPath.Malformed"
    assert rig.preload(["a.com/" + "x" * 1018]).status_code == 200  # 1,024 characters
    assert code_of(rig.preload(["a.com/x"], Area="mars")) == "InvalidParameter"
    assert code_of(rig.preload(["a.com/x"], WithHeader="not json")) == "InvalidParameter"
    assert code_of(rig.preload(["a.com/x"], L2Preload="maybe")) == "InvalidParameter"
    assert code_of(rig.preload([f"d{i}.com/x" for i in range(11)])) == "SingleRequest.OverLimit"


def test_a_spent_preload_quota_is_quota_exceeded_preload() -> None:
    with Rig(preload_quota=3) as rig:
        assert rig.preload(["a.com/1", "a.com/2"]).status_code == 200
        spent = rig.preload(["a.com/3", "a.com/4"])
        assert (spent.status_code, code_of(spent)) == (400, "QuotaExceeded.Preload")
        assert rig.quota()["PreloadRemain"] == "1"
        # Refresh has its own counter.
        assert rig.refresh(["a.com/3", "a.com/4"], "File").status_code == 200


def test_a_full_preload_queue_is_403_preload_queue_full_until_tasks_finish() -> None:
    with Rig(preload_queue_limit=3, complete_after_s=10.0) as rig:
        assert rig.preload(["a.com/1", "a.com/2"]).status_code == 200
        full = rig.preload(["a.com/3", "a.com/4"])
        assert (full.status_code, code_of(full)) == (403, "PreloadQueueFull")
        assert rig.used()["preload_used"] == 2  # a refused call spends nothing
        assert rig.preload(["a.com/3"]).status_code == 200
        assert rig.server.state.stats()["preload_queued"] == 3
        rig.offset_s = 11.0  # the queued tasks are done
        assert rig.server.state.stats()["preload_queued"] == 0
        assert rig.preload(["a.com/4", "a.com/5"]).status_code == 200


@pytest.mark.parametrize(("failure_rate", "final"), [(0.0, "Complete"), (1.0, "Failed")])
def test_preload_tasks_move_like_refresh_tasks(failure_rate: float, final: str) -> None:
    with Rig(complete_after_s=5.0, task_failure_rate=failure_rate, seed=7) as rig:
        task_ids = rig.preload(["a.com/1", "b.com/2"]).json()["PushTaskId"]
        early = rig.tasks(task_ids)
        assert {(t["ObjectType"], t["Status"]) for t in early} == {("preload", "Refreshing")}
        rig.offset_s = 6.0
        late = rig.tasks(task_ids)
        assert [t["ObjectPath"] for t in late] == ["a.com/1", "b.com/2"]
        assert {(t["ObjectType"], t["Status"]) for t in late} == {("preload", final)}
        search = rig.post("DescribeRefreshTasks", ObjectType="preload").json()
        assert search["TotalCount"] == 2


# -- DescribeRefreshQuota, the SDK, admin and faults -------------------------------------------


def test_describe_refresh_quota_answers_every_field_as_a_string(rig: Rig) -> None:
    body = rig.quota()
    fields = {
        f"{name}{part}"
        for name in ("Url", "Dir", "Regex", "IgnoreParams", "Preload")
        for part in ("Quota", "Remain")
    }
    assert set(body) == fields | {"RequestId"}
    assert all(isinstance(value, str) for value in body.values())
    assert (body["RegexQuota"], body["IgnoreParamsQuota"], body["PreloadQuota"]) == (
        "20",
        "100",
        "1000",
    )


def test_the_official_sdk_refreshes_by_tag_preloads_and_reads_every_quota(rig: Rig) -> None:
    sdk = Client(
        Config(
            access_key_id=KEY_ID,
            access_key_secret=SECRET,
            signature_algorithm="v2",
            protocol="http",
            endpoint=rig.server.endpoint,
        )
    )
    tag = sdk.refresh_object_cache_by_cache_tag(
        models.RefreshObjectCacheByCacheTagRequest(domain_name="a.com", cache_tag="t1", force=True)
    )
    assert tag.body.refresh_task_id.isdigit()
    push = sdk.push_object_cache(
        models.PushObjectCacheRequest(object_path="a.com/x.png", area="domestic", l_2preload=True)
    )
    assert push.body.push_task_id.isdigit()
    regex = sdk.refresh_object_caches(
        models.RefreshObjectCachesRequest(object_path=r"a.com/.*", object_type="Regex", force=True)
    )
    assert regex.body.refresh_task_id.isdigit()
    quota = sdk.describe_refresh_quota(models.DescribeRefreshQuotaRequest()).body
    assert (quota.regex_remain, quota.preload_remain, quota.ignore_params_remain) == (
        "19",
        "999",
        "100",
    )
    [preload] = rig.server.state.calls(PRELOAD_ACTION)
    assert (preload["area"], preload["l2_preload"]) == ("domestic", True)
    assert rig.server.state.calls(TAG_ACTION)[0]["force"] is True


def test_every_call_is_listed_over_http_and_counted_in_the_stats(rig: Rig) -> None:
    rig.refresh(["a.com/x.png"], "File")
    rig.post(TAG_ACTION, DomainName="a.com", CacheTag="t")
    rig.preload(["a.com/y.png"])
    every = rig.http.get("/_emulator/calls", params={"action": "*"}).json()["calls"]
    assert [c["action"] for c in every] == ["RefreshObjectCaches", TAG_ACTION, PRELOAD_ACTION]
    assert [c["call"] for c in every] == [1, 2, 3]
    pushes = rig.http.get("/_emulator/calls", params={"action": PRELOAD_ACTION}).json()["calls"]
    assert [c["paths"] for c in pushes] == [["a.com/y.png"]]
    assert len(rig.http.get("/_emulator/calls").json()["calls"]) == 1
    stats = rig.http.get("/_emulator/stats").json()
    assert stats["calls"] == 1
    assert stats["quota"] | {"day": None} == {
        "day": None,
        "url_used": 1,
        "dir_used": 0,
        "regex_used": 0,
        "ignore_params_used": 0,
        "tag_used": 1,
        "preload_used": 1,
    }
    assert stats["by_action"][PRELOAD_ACTION] == {"Success": 1}
    rig.http.post("/_emulator/reset")
    assert rig.http.get("/_emulator/calls", params={"action": "*"}).json()["calls"] == []


def test_faults_can_target_the_new_actions() -> None:
    with Rig(internal_error_rate=1.0, fault_actions={PRELOAD_ACTION, TAG_ACTION}) as rig:
        preload = rig.preload(["a.com/x"])
        assert (preload.status_code, code_of(preload)) == (500, "InternalError")
        tag = rig.post(TAG_ACTION, DomainName="a.com", CacheTag="t")
        assert code_of(tag) == "InternalError"
        assert rig.refresh(["a.com/x"], "File").status_code == 200
        assert rig.used()["preload_used"] == 0


def test_the_cli_takes_every_new_quota_and_limit() -> None:
    args = [
        *("--regex-quota", "5", "--ignore-params-quota", "6", "--tag-quota", "7"),
        *("--preload-quota", "8", "--preload-queue-limit", "9", "--regexes-per-call", "2"),
        *("--preload-spent-elsewhere", "1", "--fault-action", PRELOAD_ACTION),
    ]
    context = emulator_command.make_context("emulator", args)
    params = context.params
    assert (params["regex_quota"], params["ignore_params_quota"], params["tag_quota"]) == (5, 6, 7)
    assert (params["preload_quota"], params["preload_queue_limit"]) == (8, 9)
    assert (params["regexes_per_call"], params["preload_spent_elsewhere"]) == (2, 1)
    assert params["fault_actions"] == (PRELOAD_ACTION,)
    refused = CliRunner().invoke(emulator_command, ["--fault-action", "PushObjectCaches"])
    assert refused.exit_code == 2
    fields = set(EmulatorConfig.model_fields)
    assert {k for k in params if k.endswith(("_quota", "_per_call", "_elsewhere"))} <= fields
