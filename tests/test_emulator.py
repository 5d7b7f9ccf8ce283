"""The CDN emulator over real loopback HTTP: the official SDK, hand-signed calls, faults, CLI."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_cdn20180510 import models
from alibabacloud_cdn20180510.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException
from alibabacloud_tea_openapi.models import Config
from click.testing import CliRunner
from pydantic import ValidationError

import emulator
from cdn_refresh.constants import API_VERSION
from cdn_refresh.signature import common_params, sign
from emulator import EmulatorConfig, EmulatorServer, EmulatorState
from emulator.cli import emulator_command

KEY_ID, SECRET = "testid", "testsecret"


def signed(
    action: str,
    *,
    method: str = "POST",
    key_id: str = KEY_ID,
    secret: str = SECRET,
    now: datetime | None = None,
    nonce: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Parameters of one call, signed the way our client signs."""
    params = common_params(key_id, API_VERSION, now=now, nonce=nonce)
    params.update(Action=action, **extra)
    params["Signature"] = sign(method, params, secret)
    return params


def refresh_params(paths: list[str], object_type: str = "File", **kw: Any) -> dict[str, str]:
    return signed("RefreshObjectCaches", ObjectPath="\n".join(paths), ObjectType=object_type, **kw)


def code_of(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    return str(body.get("Code", "Success"))


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(complete_after_s=0.5)) as running:
        yield running


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        yield http


def sdk_client(server: EmulatorServer, secret: str = SECRET) -> Client:
    return Client(
        Config(
            access_key_id=KEY_ID,
            access_key_secret=secret,
            signature_algorithm="v2",
            protocol="http",
            endpoint=server.endpoint,
        )
    )


# -- the official SDK ----------------------------------------------------------------------------


def test_sdk_refresh_gets_one_task_id_per_domain_and_is_recorded(server: EmulatorServer) -> None:
    paths = "http://a.example.com/x.png\nhttp://b.example.com/y.png"
    response = sdk_client(server).refresh_object_caches(
        models.RefreshObjectCachesRequest(object_path=paths, object_type="File")
    )

    task_ids = response.body.refresh_task_id.split(",")
    assert len(task_ids) == 2 and all(t.isdigit() for t in task_ids)
    assert int(task_ids[0]) < int(task_ids[1])
    [call] = server.state.calls()
    assert call["paths"] == paths.split("\n")
    assert call["task_ids"] == task_ids
    assert call["request_id"] == response.body.request_id
    assert call["dropped_response"] is False


def test_sdk_with_wrong_secret_gets_signature_does_not_match(server: EmulatorServer) -> None:
    with pytest.raises(ClientException) as raised:
        sdk_client(server, secret="wrong").refresh_object_caches(
            models.RefreshObjectCachesRequest(object_path="a.example.com/x.png")
        )
    assert (raised.value.status_code, raised.value.code) == (400, "SignatureDoesNotMatch")
    assert server.state.calls() == []


def test_sdk_describe_refresh_quota_counts_what_was_used(server: EmulatorServer) -> None:
    sdk = sdk_client(server)
    sdk.refresh_object_caches(
        models.RefreshObjectCachesRequest(
            object_path="a.example.com/1\na.example.com/2\na.example.com/3"
        )
    )
    sdk.refresh_object_caches(
        models.RefreshObjectCachesRequest(
            object_path="a.example.com/d/", object_type="Directory", force=True
        )
    )

    quota = sdk.describe_refresh_quota(models.DescribeRefreshQuotaRequest()).body
    assert (quota.url_quota, quota.url_remain) == ("2000", "1997")
    assert (quota.dir_quota, quota.dir_remain) == ("100", "99")
    assert server.state.calls()[1]["force"] is True


def test_sdk_task_shows_refreshing_then_complete_after_the_delay() -> None:
    # The emulator's clock is the test's, so a slow machine cannot make "early" late.
    offset = [0.0]
    config = EmulatorConfig(complete_after_s=0.5)
    with EmulatorServer(config, clock=lambda: time.time() + offset[0]) as server:
        sdk = sdk_client(server)
        task_id = sdk.refresh_object_caches(
            models.RefreshObjectCachesRequest(
                object_path="a.example.com/x.png\na.example.com/y.png"
            )
        ).body.refresh_task_id
        request = models.DescribeRefreshTaskByIdRequest(task_id=task_id)
        offset[0] = -60.0  # the describe call happens "before" the delay is up
        early = sdk.describe_refresh_task_by_id(request).body
        assert [t.status for t in early.tasks] == ["Refreshing", "Refreshing"]
        assert [t.object_type for t in early.tasks] == ["file", "file"]
        offset[0] = 0.6
        late = sdk.describe_refresh_task_by_id(request).body
        assert late.total_count == 2
        assert {(t.object_path, t.status, t.process) for t in late.tasks} == {
            ("a.example.com/x.png", "Complete", "100%"),
            ("a.example.com/y.png", "Complete", "100%"),
        }


# -- signature and freshness ---------------------------------------------------------------------


def test_get_with_query_string_is_signed_with_get(client: httpx.Client) -> None:
    response = client.get("/", params=signed("DescribeRefreshQuota", method="GET"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["UrlRemain"] == "2000"
    # The same parameters signed for POST do not pass as a GET.
    refused = client.get("/", params=signed("DescribeRefreshQuota", method="POST"))
    assert code_of(refused) == "SignatureDoesNotMatch"


def test_timestamp_older_than_15_minutes_is_expired(client: httpx.Client) -> None:
    now = datetime.now(UTC)
    old = client.post("/", data=signed("DescribeRefreshQuota", now=now - timedelta(minutes=16)))
    assert (old.status_code, code_of(old)) == (400, "InvalidTimeStamp.Expired")
    assert set(old.json()) == {"Code", "Message", "RequestId", "HostId"}
    recent = client.post("/", data=signed("DescribeRefreshQuota", now=now - timedelta(minutes=14)))
    assert recent.status_code == 200


def test_reused_nonce_is_refused(client: httpx.Client) -> None:
    first = client.post("/", data=signed("DescribeRefreshQuota", nonce="n-1"))
    again = client.post("/", data=signed("DescribeRefreshQuota", nonce="n-1"))
    assert first.status_code == 200
    assert (again.status_code, code_of(again)) == (400, "SignatureNonceUsed")


def test_unknown_access_key_id_is_404(client: httpx.Client) -> None:
    response = client.post("/", data=signed("DescribeRefreshQuota", key_id="nobody"))
    assert (response.status_code, code_of(response)) == (404, "InvalidAccessKeyId.NotFound")


def test_missing_parameter_and_unknown_action(client: httpx.Client) -> None:
    params = signed("DescribeRefreshQuota")
    del params["SignatureNonce"]
    missing = client.post("/", data=params)
    assert (missing.status_code, code_of(missing)) == (400, "MissingParameter")
    assert "SignatureNonce" in missing.json()["Message"]
    unknown = client.post("/", data=signed("DeleteEverything"))
    assert (unknown.status_code, code_of(unknown)) == (404, "InvalidAction.NotFound")
    no_paths = client.post("/", data=signed("RefreshObjectCaches"))
    assert code_of(no_paths) == "MissingParameter"


# -- RefreshObjectCaches rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "object_type", "code"),
    [
        ([f"a.example.com/{i}" for i in range(1001)], "File", "InvalidObjectPath.Size.Malformed"),
        ([f"a.example.com/{i}" for i in range(1000)], "File", "Success"),
        (
            [f"a.example.com/{i}/" for i in range(101)],
            "Directory",
            "InvalidObjectPath.Size.Malformed",
        ),
        ([f"a.example.com/{i}/" for i in range(100)], "Directory", "Success"),
        ([f"d{i}.example.com/x" for i in range(11)], "File", "SingleRequest.OverLimit"),
        ([f"d{i}.example.com/x" for i in range(10)], "File", "Success"),
    ],
)
def test_per_call_limits(
    server: EmulatorServer, client: httpx.Client, paths: list[str], object_type: str, code: str
) -> None:
    response = client.post("/", data=refresh_params(paths, object_type))
    assert code_of(response) == code
    assert len(server.state.calls()) == (1 if code == "Success" else 0)


def test_quota_exhaustion_is_all_or_nothing(server: EmulatorServer, client: httpx.Client) -> None:
    server.state.configure(url_quota=5)
    assert (
        client.post(
            "/", data=refresh_params(["a.example.com/1", "a.example.com/2", "a.example.com/3"])
        ).status_code
        == 200
    )
    too_many = client.post(
        "/", data=refresh_params(["a.example.com/4", "a.example.com/5", "a.example.com/6"])
    )
    assert (too_many.status_code, code_of(too_many)) == (400, "QuotaExceeded.Refresh")
    assert (
        client.post("/", data=refresh_params(["a.example.com/4", "a.example.com/5"])).status_code
        == 200
    )
    assert client.post("/", data=signed("DescribeRefreshQuota")).json()["UrlRemain"] == "0"
    assert [len(c["paths"]) for c in server.state.calls()] == [3, 2]


def test_quota_resets_at_midnight_utc_plus_8() -> None:
    # 15:59:59 UTC is 23:59:59 in UTC+8.
    clock = [datetime(2024, 5, 1, 15, 59, 59, tzinfo=UTC).timestamp()]
    state = EmulatorState(EmulatorConfig(url_quota=1), clock=lambda: clock[0])

    def refresh(path: str) -> int:
        now = datetime.fromtimestamp(clock[0], UTC)
        return state.handle("POST", refresh_params([path], now=now)).status

    assert refresh("a.example.com/1") == 200
    assert refresh("a.example.com/2") == 400
    clock[0] += 1
    assert refresh("a.example.com/2") == 200


@pytest.mark.parametrize(
    ("path", "object_type", "code"),
    [
        ("a.example.com/x y.png ", "File", "InvalidObjectPath.Malformed"),
        ("a.example.com/x\u00a0y.png", "File", "InvalidObjectPath.Malformed"),
        ("a.example.com/x\ty.png", "File", "InvalidObjectPath.Malformed"),
        ("http:///x.png", "File", "InvalidObjectPath.Malformed"),
        ("ftp://a.example.com/x.png", "File", "InvalidObjectPath.Malformed"),
        ("a.example.com/" + "x" * 1024, "File", "InvalidObjectPath.Malformed"),
        ("a.example.com/dir", "Directory", "InvalidObjectPath.Malformed"),
        ("*.example.com/x.png", "File", "InvalidExtensiveDomain.ValueNotSupported"),
        ("https://*.example.com/d/", "Directory", "InvalidExtensiveDomain.ValueNotSupported"),
    ],
)
def test_bad_path_is_refused_with_its_code(
    client: httpx.Client, path: str, object_type: str, code: str
) -> None:
    ok = "a.example.com/ok/" if object_type == "Directory" else "a.example.com/ok.png"
    response = client.post("/", data=refresh_params([ok, path], object_type))
    assert (response.status_code, code_of(response)) == (400, code)
    if code == "InvalidObjectPath.Malformed":
        assert path[:15] in response.json()["Message"]


def test_blank_line_is_malformed_and_crlf_splits(
    server: EmulatorServer, client: httpx.Client
) -> None:
    blank = client.post(
        "/", data=signed("RefreshObjectCaches", ObjectPath="a.example.com/1\n\na.example.com/2")
    )
    assert code_of(blank) == "InvalidObjectPath.Malformed"
    crlf = client.post(
        "/",
        data=signed("RefreshObjectCaches", ObjectPath="a.example.com/1\r\nHTTPS://A.example.com/2"),
    )
    assert "," not in crlf.json()["RefreshTaskId"]  # one domain, case aside: one task
    assert server.state.calls()[0]["paths"] == ["a.example.com/1", "HTTPS://A.example.com/2"]


def test_bad_object_type_is_refused(client: httpx.Client) -> None:
    response = client.post("/", data=refresh_params(["a.example.com/x"], "ExQuery"))
    assert (response.status_code, code_of(response)) == (400, "InvalidObjectType.Malformed")


def test_offline_and_unknown_domains_are_404(server: EmulatorServer, client: httpx.Client) -> None:
    server.state.configure(
        offline_domains={"off.example.com"}, known_domains={"a.example.com", "off.example.com"}
    )
    offline = client.post("/", data=refresh_params(["a.example.com/1", "off.example.com/1"]))
    assert (offline.status_code, code_of(offline)) == (404, "InvalidDomain.Offline")
    unknown = client.post("/", data=refresh_params(["elsewhere.example.com/1"]))
    assert (unknown.status_code, code_of(unknown)) == (404, "InvalidDomain.NotFound")
    assert client.post("/", data=refresh_params(["A.example.com/1"])).status_code == 200


def test_task_query_takes_at_most_ten_ids(client: httpx.Client) -> None:
    ids = ",".join(str(n) for n in range(1, 12))
    response = client.post("/", data=signed("DescribeRefreshTaskById", TaskId=ids))
    assert response.status_code == 400
    none_known = client.post("/", data=signed("DescribeRefreshTaskById", TaskId="1,2"))
    assert none_known.json()["TotalCount"] == 0


def test_push_object_cache_limits_and_task_id(client: httpx.Client) -> None:
    ok = client.post(
        "/", data=signed("PushObjectCache", ObjectPath="a.example.com/x.png", Area="domestic")
    )
    assert ok.json()["PushTaskId"].isdigit()
    too_many = client.post(
        "/",
        data=signed(
            "PushObjectCache", ObjectPath="\n".join(f"a.example.com/{i}" for i in range(101))
        ),
    )
    assert code_of(too_many) == "InvalidObjectPath.Size.Malformed"
    quota = client.post("/", data=signed("DescribeRefreshQuota")).json()
    assert quota["PreloadRemain"] == "999"


# -- faults ----------------------------------------------------------------------------------------


def fault_sequence(seed: int, count: int) -> list[str]:
    config = EmulatorConfig(seed=seed, internal_error_rate=0.25, throttle_rate=0.25, drop_rate=0.2)
    outcomes = []
    with EmulatorServer(config) as running, httpx.Client(base_url=running.url, timeout=5.0) as http:
        for i in range(count):
            try:
                outcomes.append(
                    code_of(http.post("/", data=refresh_params([f"a.example.com/{i}"])))
                )
            except httpx.TransportError:
                outcomes.append("dropped")
    return outcomes


def test_faults_repeat_with_the_same_seed() -> None:
    first = fault_sequence(seed=7, count=30)
    assert first == fault_sequence(seed=7, count=30)
    assert {"Success", "InternalError", "Throttling", "dropped"} <= set(first)
    assert first != fault_sequence(seed=8, count=30)


def test_throttling_carries_retry_after(server: EmulatorServer, client: httpx.Client) -> None:
    server.state.configure(throttle_rate=1.0, throttle_retry_after_ms=250)
    response = client.post("/", data=refresh_params(["a.example.com/x"]))
    assert (response.status_code, code_of(response)) == (503, "Throttling")
    assert response.headers["x-acs-retry-after"] == "250"
    # Only RefreshObjectCaches is faulted by default.
    assert client.post("/", data=signed("DescribeRefreshQuota")).status_code == 200
    # The SDK turns the header into a ThrottlingException carrying the wait.
    with pytest.raises(ThrottlingException) as raised:
        sdk_client(server).refresh_object_caches(
            models.RefreshObjectCachesRequest(object_path="a.example.com/x.png")
        )
    assert (raised.value.code, raised.value.retry_after) == ("Throttling", 250)


def test_drop_closes_the_connection_and_accepts_nothing(
    server: EmulatorServer, client: httpx.Client
) -> None:
    server.state.configure(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/", data=refresh_params(["a.example.com/x"]))
    assert server.state.calls() == []
    assert server.state.stats()["by_outcome"] == {"Dropped": 1}


def test_drop_after_accept_records_the_call(server: EmulatorServer, client: httpx.Client) -> None:
    server.state.configure(drop_after_accept_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/", data=refresh_params(["a.example.com/x"]))
    [call] = server.state.calls()
    assert call["dropped_response"] is True and call["paths"] == ["a.example.com/x"]
    assert client.post("/", data=signed("DescribeRefreshQuota")).json()["UrlRemain"] == "1999"


def test_latency_delays_the_answer(server: EmulatorServer, client: httpx.Client) -> None:
    server.state.configure(latency_s=0.2)
    started = time.monotonic()
    assert client.post("/", data=refresh_params(["a.example.com/x"])).status_code == 200
    assert time.monotonic() - started >= 0.2


# -- admin endpoints and state ---------------------------------------------------------------------


def test_admin_endpoints_read_change_and_reset(
    server: EmulatorServer, client: httpx.Client
) -> None:
    client.post("/", data=refresh_params(["a.example.com/x"]))
    client.post("/", data=signed("DescribeRefreshQuota", key_id="nobody"))

    calls = client.get("/_emulator/calls").json()["calls"]
    assert [c["paths"] for c in calls] == [["a.example.com/x"]]
    stats = client.get("/_emulator/stats").json()
    assert stats["by_outcome"] == {"Success": 1, "InvalidAccessKeyId.NotFound": 1}
    assert stats["quota"]["url_used"] == 1

    changed = client.post("/_emulator/config", json={"url_quota": 7, "credentials": {"k2": "s2"}})
    assert changed.status_code == 200
    assert changed.json()["access_key_ids"] == ["k2"]
    assert "s2" not in changed.text and "s2" not in client.get("/_emulator/config").text
    quota = client.post("/", data=signed("DescribeRefreshQuota", key_id="k2", secret="s2"))
    assert (quota.json()["UrlQuota"], quota.json()["UrlRemain"]) == ("7", "6")

    bad = client.post("/_emulator/config", json={"no_such_setting": 1})
    assert bad.status_code == 400
    assert client.post("/_emulator/reset").status_code == 200
    assert client.get("/_emulator/calls").json() == {"calls": []}
    assert client.get("/_emulator/stats").json()["requests"] == 0


def test_configure_refuses_bad_values(server: EmulatorServer) -> None:
    with pytest.raises(ValidationError):
        server.state.configure(drop_rate=2.0)
    with pytest.raises(ValidationError):
        server.state.configure(drop_rate=0.6, throttle_rate=0.6)
    with pytest.raises(ValidationError):
        server.state.configure(no_such_setting=1)
    assert "testsecret" not in repr(server.state.config)


# -- the command line ------------------------------------------------------------------------------


def test_cli_prints_ready_line_serves_and_exits_on_sigterm() -> None:
    root = Path(emulator.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "CDN_REFRESH_ACCESS_KEY_SECRET": "cli-secret",
    }
    with subprocess.Popen(
        [
            *(sys.executable, "-m", "emulator", "--port", "0", "--json", "--url-quota", "42"),
            *("--url-spent-elsewhere", "40", "--dir-spent-elsewhere", "7"),
            *("--task-failure-rate", "0.25", "--calls-per-s", "DescribeRefreshTasks=5"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 10)
            assert ready, "no ready line within 10 s"
            info = json.loads(proc.stdout.readline())
            assert info["url"] == f"http://127.0.0.1:{info['port']}"
            with httpx.Client(base_url=info["url"], timeout=5.0) as http:
                answer = http.post("/", data=signed("DescribeRefreshQuota", secret="cli-secret"))
                settings = http.get("/_emulator/config").json()
            assert (answer.json()["UrlQuota"], answer.json()["UrlRemain"]) == ("42", "2")
            assert answer.json()["DirRemain"] == "93"
            assert settings["task_failure_rate"] == 0.25
            assert settings["calls_per_s"] == {"DescribeRefreshTasks": 5}
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    assert "cli-secret" not in out + err


@pytest.mark.parametrize("value", ["DescribeRefreshTasks", "DescribeRefreshTasks=0", "=5", "X=a"])
def test_cli_refuses_a_malformed_calls_per_s(value: str) -> None:
    result = CliRunner().invoke(emulator_command, ["--port", "0", "--calls-per-s", value])
    assert result.exit_code == 2
    assert "ACTION=N" in result.output


def test_a_refresh_reaches_the_object_its_dot_segments_resolve_to(server: EmulatorServer) -> None:
    state = server.state
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        assert code_of(http.post("/", data=refresh_params(["a.com/x/"], "Directory"))) == "Success"
        sent = refresh_params(["a.com/y/%2e%2E/z.png"])
        assert code_of(http.post("/", data=sent)) == "Success"
    answers = {a["path"]: a for a in state.refreshed(["a.com/x/../s.png", "a.com/z.png"])}
    # "/x/../s.png" is "/s.png" to the CDN: the Directory "/x/" never reached it.
    assert not answers["a.com/x/../s.png"]["refreshed"]
    assert answers["a.com/z.png"]["how"] == "itself"
