"""Emulator fidelity over loopback HTTP: DescribeRefreshTasks, task failures, call rate limits,
quota spent elsewhere on the account, and raw spaces in ObjectPath as the official SDK sends
them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alibabacloud_cdn20180510 import models

from emulator import EmulatorConfig, EmulatorServer, EmulatorState
from tests.test_emulator import code_of, refresh_params, sdk_client, signed


class Clock:
    """The emulator's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def now(self) -> datetime:
        """The emulator's "now", for a request timestamp it will find fresh."""
        return datetime.fromtimestamp(self(), UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(complete_after_s=0.5), clock=clock) as running:
        yield running


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        yield http


def refresh(client: httpx.Client, paths: list[str], object_type: str = "File") -> list[str]:
    response = client.post("/", data=refresh_params(paths, object_type))
    assert response.status_code == 200, response.text
    return str(response.json()["RefreshTaskId"]).split(",")


def describe_tasks(
    client: httpx.Client, now: datetime | None = None, **filters: str
) -> httpx.Response:
    return client.post("/", data=signed("DescribeRefreshTasks", now=now, **filters))


def listed(
    client: httpx.Client, now: datetime | None = None, **filters: str
) -> list[dict[str, Any]]:
    response = describe_tasks(client, now, **filters)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["Tasks"]["CDNTask"]
    return entries


# -- DescribeRefreshTasks ------------------------------------------------------------------------


def test_sdk_describe_refresh_tasks_lists_one_entry_per_task_and_path_newest_first(
    server: EmulatorServer, clock: Clock
) -> None:
    sdk = sdk_client(server)
    first = sdk.refresh_object_caches(
        models.RefreshObjectCachesRequest(object_path="a.example.com/1\na.example.com/2")
    ).body.refresh_task_id
    clock.offset_s = 2.0  # a later second, so "newest first" is not decided by the ID alone
    second = sdk.refresh_object_caches(
        models.RefreshObjectCachesRequest(object_path="b.example.com/d/", object_type="Directory")
    ).body.refresh_task_id
    clock.offset_s = 3.0  # both Complete

    body = sdk.describe_refresh_tasks(models.DescribeRefreshTasksRequest()).body
    assert (body.page_number, body.page_size, body.total_count) == (1, 20, 3)
    assert body.request_id
    rows = [
        (t.task_id, t.object_path, t.object_type, t.status, t.process, t.description)
        for t in body.tasks.cdntask
    ]
    assert rows == [
        (second, "b.example.com/d/", "directory", "Complete", "100%", ""),
        (first, "a.example.com/1", "file", "Complete", "100%", ""),
        (first, "a.example.com/2", "file", "Complete", "100%", ""),
    ]
    created = datetime.strptime(body.tasks.cdntask[0].creation_time, "%Y-%m-%dT%H:%M:%SZ")
    assert abs(created.replace(tzinfo=UTC).timestamp() - clock()) < 5


def test_describe_refresh_tasks_filters_by_id_path_domain_status_and_time(
    client: httpx.Client, clock: Clock
) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    [a_task] = refresh(client, ["a.example.com/x.png", "a.example.com/y.png"])
    clock.offset_s = 120.0
    [b_task] = refresh(client, ["B.example.com/x.png"])
    clock.offset_s = 120.2  # b's task is still Refreshing, a's long Complete

    assert [e["ObjectPath"] for e in listed(client, TaskId=a_task)] == [
        "a.example.com/x.png",
        "a.example.com/y.png",
    ]
    # ObjectPath is an exact match; TaskId and ObjectPath together are an AND.
    assert [e["TaskId"] for e in listed(client, ObjectPath="a.example.com/y.png")] == [a_task]
    assert listed(client, ObjectPath="a.example.com/y") == []
    assert listed(client, TaskId=b_task, ObjectPath="a.example.com/y.png") == []
    # Domains compare without case.
    assert [e["TaskId"] for e in listed(client, DomainName="b.EXAMPLE.com", ObjectType="file")] == [
        b_task
    ]
    assert listed(client, ObjectType="directory") == []
    assert [e["TaskId"] for e in listed(client, Status="Refreshing", ObjectType="file")] == [b_task]
    assert len(listed(client, Status="Complete", ObjectType="file")) == 2
    # The time range takes whole seconds, both ends included.
    window = {
        "StartTime": (start - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "EndTime": (start + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert {e["TaskId"] for e in listed(client, **window)} == {a_task}
    later = (start + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {e["TaskId"] for e in listed(client, StartTime=later)} == {b_task}


def test_describe_refresh_tasks_pages_default_20_at_most_100(client: httpx.Client) -> None:
    refresh(client, [f"a.example.com/{i}" for i in range(125)])

    default = describe_tasks(client).json()
    assert (default["PageNumber"], default["PageSize"], default["TotalCount"]) == (1, 20, 125)
    assert len(default["Tasks"]["CDNTask"]) == 20
    last = describe_tasks(client, PageSize="100", PageNumber="2").json()
    assert [e["ObjectPath"] for e in last["Tasks"]["CDNTask"]] == [
        f"a.example.com/{i}" for i in range(100, 125)
    ]
    assert describe_tasks(client, PageNumber="9").json()["Tasks"]["CDNTask"] == []
    for bad in ({"PageSize": "101"}, {"PageSize": "0"}, {"PageNumber": "0"}, {"PageSize": "x"}):
        refused = describe_tasks(client, **bad)
        assert (refused.status_code, code_of(refused)) == (400, "InvalidParameter"), bad


@pytest.mark.parametrize(
    ("filters", "code"),
    [
        ({"Status": "Complete"}, "MissingParameter"),
        ({"DomainName": "a.example.com"}, "MissingParameter"),
        ({"ObjectType": "File"}, "InvalidParameter"),
        ({"Status": "Done", "ObjectType": "file"}, "InvalidParameter"),
        # One task ID per call here; several are DescribeRefreshTaskById's job.
        ({"TaskId": "17000000001,17000000002"}, "InvalidTaskId.Malformed"),
        ({"StartTime": "2024-05-01 10:00:00"}, "InvalidStartTime.Malformed"),
        ({"EndTime": "yesterday"}, "InvalidEndTime.Malformed"),
        (
            {"StartTime": "2024-05-02T00:00:00Z", "EndTime": "2024-05-01T00:00:00Z"},
            "InvalidEndTime.Mismatch",
        ),
    ],
)
def test_describe_refresh_tasks_refuses_bad_filters(
    client: httpx.Client, filters: dict[str, str], code: str
) -> None:
    response = describe_tasks(client, **filters)
    assert (response.status_code, code_of(response)) == (400, code)


def test_tasks_older_than_three_days_are_not_found(client: httpx.Client, clock: Clock) -> None:
    [task_id] = refresh(client, ["a.example.com/x.png"])
    clock.offset_s = 3 * 24 * 3600 - 10
    assert len(listed(client, clock.now())) == 1
    clock.offset_s = 3 * 24 * 3600 + 10
    assert listed(client, clock.now()) == []
    assert listed(client, clock.now(), TaskId=task_id) == []
    by_id = client.post(
        "/", data=signed("DescribeRefreshTaskById", now=clock.now(), TaskId=task_id)
    ).json()
    assert (by_id["Tasks"], by_id["TotalCount"]) == ([], 0)


# -- task failures ---------------------------------------------------------------------------------


def failed_task_ids(seed: int, rate: float, count: int = 40) -> tuple[list[str], list[str]]:
    """Make ``count`` one-path tasks; answer (every task ID, the IDs that ended Failed), checking
    on the way that both query actions agree on every task's status."""
    clock = Clock()
    config = EmulatorConfig(seed=seed, task_failure_rate=rate, complete_after_s=0.5)
    with (
        EmulatorServer(config, clock=clock) as server,
        httpx.Client(base_url=server.url, timeout=5.0) as http,
    ):
        ids = [refresh(http, [f"a.example.com/{i}"])[0] for i in range(count)]
        assert {e["Status"] for e in listed(http, PageSize="100")} == {"Refreshing"}
        clock.offset_s = 1.0
        entries = listed(http, PageSize="100")
        by_id: dict[str, str] = {}
        for chunk in range(0, count, 10):
            answer = http.post(
                "/",
                data=signed("DescribeRefreshTaskById", TaskId=",".join(ids[chunk : chunk + 10])),
            ).json()
            by_id.update((t["TaskId"], t["Status"]) for t in answer["Tasks"])
    assert {e["TaskId"]: e["Status"] for e in entries} == by_id
    failed = [e for e in entries if e["Status"] == "Failed"]
    assert all((e["Description"], e["Process"]) == ("Internal Error", "0%") for e in failed)
    assert {e["Status"] for e in entries} <= {"Complete", "Failed"}
    return ids, sorted(e["TaskId"] for e in failed)


def test_task_failure_rate_fails_a_seeded_share_that_repeats_and_both_queries_agree() -> None:
    ids, failed = failed_task_ids(seed=3, rate=0.5)
    assert 8 <= len(failed) <= 32  # 40 draws at 0.5: far outside this is a broken draw
    assert failed_task_ids(seed=3, rate=0.5) == (ids, failed)
    assert failed_task_ids(seed=4, rate=0.5)[1] != failed
    assert failed_task_ids(seed=3, rate=0.0)[1] == []
    assert failed_task_ids(seed=3, rate=1.0)[1] == sorted(ids)


def test_task_failures_leave_the_fault_sequence_alone() -> None:
    def codes(task_failure_rate: float) -> list[int]:
        config = EmulatorConfig(seed=11, throttle_rate=0.3, task_failure_rate=task_failure_rate)
        state = EmulatorState(config)
        return [
            state.handle("POST", refresh_params([f"a.example.com/{i}"])).status for i in range(30)
        ]

    assert codes(0.0) == codes(0.7)
    assert 503 in codes(0.0)


# -- call rate limits ------------------------------------------------------------------------------


def test_calls_per_s_throttles_describe_refresh_tasks_only_when_set(
    server: EmulatorServer, client: httpx.Client, clock: Clock
) -> None:
    # Off by default: the provider's documented 5 a second is not enforced unless asked for.
    assert all(describe_tasks(client).status_code == 200 for _ in range(8))

    server.state.configure(calls_per_s={"DescribeRefreshTasks": 5})
    clock.offset_s = 10.0  # a fresh window
    assert [describe_tasks(client).status_code for _ in range(5)] == [200] * 5
    refused = describe_tasks(client)
    assert (refused.status_code, code_of(refused)) == (503, "Throttling")
    assert "x-acs-retry-after" not in refused.headers
    # Other actions have their own (here: no) limit.
    assert client.post("/", data=signed("DescribeRefreshTaskById", TaskId="1")).status_code == 200
    clock.offset_s = 11.01
    assert describe_tasks(client).status_code == 200
    stats = server.state.stats()["by_action"]["DescribeRefreshTasks"]
    assert stats == {"Success": 14, "Throttling": 1}


def test_calls_per_s_refuses_a_limit_below_one(client: httpx.Client) -> None:
    refused = client.post("/_emulator/config", json={"calls_per_s": {"DescribeRefreshTasks": 0}})
    assert refused.status_code == 400


# -- quota spent elsewhere -------------------------------------------------------------------------


def test_units_spent_elsewhere_count_in_describe_quota_and_in_the_refresh_check(
    server: EmulatorServer, client: httpx.Client
) -> None:
    changed = client.post(
        "/_emulator/config",
        json={"url_quota": 2000, "url_spent_elsewhere": 1900, "dir_spent_elsewhere": 99},
    )
    assert changed.status_code == 200
    assert (changed.json()["url_spent_elsewhere"], changed.json()["dir_spent_elsewhere"]) == (
        1900,
        99,
    )
    quota = client.post("/", data=signed("DescribeRefreshQuota")).json()
    assert (quota["UrlQuota"], quota["UrlRemain"]) == ("2000", "100")
    assert (quota["DirQuota"], quota["DirRemain"]) == ("100", "1")

    refresh(client, [f"a.example.com/{i}" for i in range(60)])
    refresh(client, [f"a.example.com/{i}" for i in range(60, 100)])
    one_more = client.post("/", data=refresh_params(["a.example.com/100"]))
    assert (one_more.status_code, code_of(one_more)) == (400, "QuotaExceeded.Refresh")
    refresh(client, ["a.example.com/d/"], "Directory")
    dir_more = client.post("/", data=refresh_params(["a.example.com/e/"], "Directory"))
    assert code_of(dir_more) == "QuotaExceeded.Refresh"
    quota = client.post("/", data=signed("DescribeRefreshQuota")).json()
    assert (quota["UrlRemain"], quota["DirRemain"]) == ("0", "0")
    assert server.state.stats()["quota"]["url_used"] == 100  # only our own use is counted

    # Taking some back at run time frees that much again; more than the quota leaves none.
    client.post("/_emulator/config", json={"url_spent_elsewhere": 1890})
    assert client.post("/", data=signed("DescribeRefreshQuota")).json()["UrlRemain"] == "10"
    client.post("/_emulator/config", json={"url_spent_elsewhere": 5000})
    assert client.post("/", data=signed("DescribeRefreshQuota")).json()["UrlRemain"] == "0"


# -- raw spaces in ObjectPath ----------------------------------------------------------------------


def test_sdk_raw_space_in_object_path_is_accepted_and_recorded_as_sent(
    server: EmulatorServer, client: httpx.Client
) -> None:
    # PROVIDER.md: paths are separated by "\n (or \r\n)" and no other character rule is given;
    # the official SDK sends the space as it is. So the emulator accepts it, as the provider
    # must for its own SDK, and keeps the path exactly as it arrived.
    raw = "http://static.example.com/a b/c.png"
    sdk = sdk_client(server)
    answer = sdk.refresh_object_caches(models.RefreshObjectCachesRequest(object_path=raw)).body
    assert answer.refresh_task_id.isdigit()
    # Our own pipeline percent-encodes the space before sending: a different text, kept apart.
    refresh(client, ["http://static.example.com/a%20b/c.png"])

    assert [c["paths"] for c in server.state.calls()] == [
        [raw],
        ["http://static.example.com/a%20b/c.png"],
    ]
    found = sdk.describe_refresh_tasks(models.DescribeRefreshTasksRequest(object_path=raw)).body
    assert [(t.task_id, t.object_path) for t in found.tasks.cdntask] == [
        (answer.refresh_task_id, raw)
    ]
    [by_id] = sdk.describe_refresh_task_by_id(
        models.DescribeRefreshTaskByIdRequest(task_id=answer.refresh_task_id)
    ).body.tasks
    assert by_id.object_path == raw
    directory = sdk.refresh_object_caches(
        models.RefreshObjectCachesRequest(
            object_path="static.example.com/a b/", object_type="Directory"
        )
    )
    assert directory.body.refresh_task_id.isdigit()
