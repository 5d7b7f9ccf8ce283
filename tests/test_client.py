"""The CDN client over ``httpx.MockTransport``: what it sends, how it signs, what it raises."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import httpx
import pytest

from cdn_refresh.constants import ObjectType
from cdn_refresh.settings import Settings
from cdn_refresh.signature import verify
from tests.conftest import make_settings
from worker.client import CdnClient, RefreshTask, RpcSigner
from worker.errors import (
    CdnError,
    CredentialError,
    NetworkError,
    QuotaExhaustedError,
    RejectedPathError,
    RequestShapeError,
    RetryableError,
)

SECRET = "testsecret"
E = TypeVar("E", bound=Exception)


# --- handlers ----------------------------------------------------------------------------


class Recorder:
    """Answers every request with one JSON body and keeps the requests it saw."""

    def __init__(self, body: dict[str, Any] | None = None, status: int = 200) -> None:
        self.body = body if body is not None else {"RefreshTaskId": "1", "RequestId": "req"}
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)

    @property
    def params(self) -> dict[str, str]:
        """The form parameters of the last request."""
        return form_params(self.requests[-1])


class Answer:
    """Answers with a fixed status, raw body and headers."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any] | str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if isinstance(self.body, str):
            return httpx.Response(self.status, text=self.body, headers=self.headers)
        return httpx.Response(self.status, json=self.body, headers=self.headers)


class Raiser:
    """Raises one transport error, as a dead or flaky network would."""

    def __init__(self, exc_type: type[httpx.TransportError]) -> None:
        self.exc_type = exc_type
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise self.exc_type("simulated", request=request)


def form_params(request: httpx.Request) -> dict[str, str]:
    pairs = parse_qsl(request.content.decode(), keep_blank_values=True, strict_parsing=True)
    params = dict(pairs)
    assert len(params) == len(pairs), "a parameter was sent twice"
    return params


def client_for(handler: Any, settings: Settings | None = None) -> CdnClient:
    return CdnClient((settings or make_settings()).provider, transport=httpx.MockTransport(handler))


def refresh_raises(handler: Any, exc_type: type[E]) -> pytest.ExceptionInfo[E]:
    """Refresh one path through ``handler`` and return what the client raised."""
    with client_for(handler) as client, pytest.raises(exc_type) as caught:
        client.refresh_object_caches(["example.com/a.png"])
    return caught


# --- what goes on the wire ---------------------------------------------------------------


def test_refresh_posts_a_signed_form_to_root() -> None:
    recorder = Recorder()
    with client_for(recorder) as client:
        client.refresh_object_caches(["example.com/a.png"])
    request = recorder.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/"
    assert request.url.query == b""
    assert request.url.host == "127.0.0.1"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert int(request.headers["content-length"]) == len(request.content)
    params = recorder.params
    assert params["Action"] == "RefreshObjectCaches"
    assert params["Version"] == "2018-05-10"
    assert params["Format"] == "JSON"
    assert params["AccessKeyId"] == "testid"
    assert params["SignatureMethod"] == "HMAC-SHA1"
    assert params["SignatureVersion"] == "1.0"
    assert params["SignatureNonce"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", params["Timestamp"])
    assert "SecurityToken" not in params
    assert verify("POST", params, SECRET)


def test_signature_is_rejected_with_another_secret_or_method() -> None:
    recorder = Recorder()
    with client_for(recorder) as client:
        client.refresh_object_caches(["example.com/a.png"])
    assert not verify("POST", recorder.params, "othersecret")
    assert not verify("GET", recorder.params, SECRET)


def test_each_request_gets_a_fresh_nonce_and_a_valid_signature() -> None:
    recorder = Recorder()
    with client_for(recorder) as client:
        for _ in range(5):
            client.refresh_object_caches(["example.com/a.png"])
    nonces = [form_params(r)["SignatureNonce"] for r in recorder.requests]
    assert len(set(nonces)) == 5
    assert all(verify("POST", form_params(r), SECRET) for r in recorder.requests)


def test_security_token_is_sent_and_signed_when_set() -> None:
    recorder = Recorder()
    with client_for(recorder, make_settings(security_token="sts-token")) as client:
        client.refresh_object_caches(["example.com/a.png"])
    assert recorder.params["SecurityToken"] == "sts-token"
    assert verify("POST", recorder.params, SECRET)


def test_object_paths_are_joined_by_newline() -> None:
    recorder = Recorder()
    paths = ["example.com/a.png", "example.com/b c.png", "example.com/中*~+&=.png"]
    with client_for(recorder) as client:
        client.refresh_object_caches(paths)
    params = recorder.params
    assert params["ObjectPath"] == "\n".join(paths)
    assert params["ObjectPath"].split("\n") == paths
    assert params["ObjectType"] == "File"
    # Spaces, '+', '*' and unicode survive the form encoding and still verify.
    assert verify("POST", params, SECRET)


def test_body_uses_provider_encoding_not_plus_for_space() -> None:
    recorder = Recorder()
    with client_for(recorder) as client:
        client.refresh_object_caches(["example.com/a b*.png"])
    body = recorder.requests[0].content.decode()
    assert "ObjectPath=example.com%2Fa%20b%2A.png" in body
    assert "+" not in body.split("Signature=")[0]


def test_directory_refresh_sends_force_only_when_asked() -> None:
    recorder = Recorder()
    with client_for(recorder) as client:
        client.refresh_object_caches(["example.com/dir/"], "Directory", force=True)
        forced = recorder.params
        client.refresh_object_caches(["example.com/dir/"], "Directory")
        unforced = recorder.params
    assert forced["ObjectType"] == "Directory"
    assert forced["Force"] == "true"
    assert unforced["ObjectType"] == "Directory"
    assert "Force" not in unforced


def test_file_refresh_never_sends_force() -> None:
    recorder = Recorder()
    with client_for(recorder) as client:
        client.refresh_object_caches(["example.com/a.png"], "File", force=True)
    assert recorder.params["ObjectType"] == "File"
    assert "Force" not in recorder.params


def test_refresh_without_paths_is_refused_before_sending() -> None:
    recorder = Recorder()
    with client_for(recorder) as client, pytest.raises(ValueError):
        client.refresh_object_caches([])
    assert recorder.requests == []


def test_the_signer_signs_get_queries_too() -> None:
    signer = RpcSigner("testid", make_settings().provider.access_key_secret)
    query = signer.signed_form("GET", {"Action": "DescribeRefreshQuota", "X": "a b+c"})
    params = dict(parse_qsl(query, keep_blank_values=True))
    assert params["Action"] == "DescribeRefreshQuota"
    assert params["X"] == "a b+c"
    assert params["AccessKeyId"] == "testid"
    assert verify("GET", params, SECRET)
    assert not verify("POST", params, SECRET)


# --- parsing answers ---------------------------------------------------------------------


def test_refresh_splits_comma_separated_task_ids() -> None:
    recorder = Recorder({"RefreshTaskId": "a,b", "RequestId": "req-42"})
    with client_for(recorder) as client:
        result = client.refresh_object_caches(["example.com/a.png", "example.com/b.png"])
    assert result.task_ids == ("a", "b")
    assert result.request_id == "req-42"


def test_refresh_accepts_a_numeric_task_id() -> None:
    with client_for(Recorder({"RefreshTaskId": 704222904, "RequestId": "r"})) as client:
        assert client.refresh_object_caches(["example.com/a"]).task_ids == ("704222904",)


def test_describe_refresh_quota_returns_ints() -> None:
    recorder = Recorder(
        {
            "UrlQuota": "10000",
            "UrlRemain": "9990",
            "DirQuota": "100",
            "DirRemain": "97",
            "RequestId": "req-q",
        }
    )
    with client_for(recorder) as client:
        quota = client.describe_refresh_quota()
    assert recorder.params["Action"] == "DescribeRefreshQuota"
    assert verify("POST", recorder.params, SECRET)
    file, directory = quota.of(ObjectType.FILE), quota.of(ObjectType.DIRECTORY)
    assert (file.quota, file.remain, directory.quota, directory.remain) == (10000, 9990, 100, 97)
    assert all(type(v) is int for v in (file.quota, file.remain, directory.quota, directory.remain))
    assert quota.request_id == "req-q"


def test_describe_refresh_task_by_id_parses_tasks() -> None:
    task = {
        "TaskId": "704222904",
        "ObjectPath": "http://example.com/a.png",
        "ObjectType": "file",
        "Status": "Complete",
        "Process": "100%",
        "Description": "",
        "CreationTime": "2024-01-01T00:00:00Z",
    }
    recorder = Recorder({"Tasks": [task, {**task, "TaskId": "2", "Status": "Pending"}]})
    with client_for(recorder) as client:
        tasks = client.describe_refresh_task_by_id(["704222904", "2"])
    assert recorder.params["Action"] == "DescribeRefreshTaskById"
    assert recorder.params["TaskId"] == "704222904,2"
    assert tasks[0] == RefreshTask(
        task_id="704222904",
        object_path="http://example.com/a.png",
        object_type="file",
        status="Complete",
        process="100%",
        description="",
        creation_time="2024-01-01T00:00:00Z",
    )
    assert (tasks[1].task_id, tasks[1].status) == ("2", "Pending")


def test_describe_refresh_task_by_id_without_tasks_is_empty() -> None:
    with client_for(Recorder({"RequestId": "r"})) as client:
        assert client.describe_refresh_task_by_id(["1"]) == []


@pytest.mark.parametrize("count", [0, 11])
def test_describe_refresh_task_by_id_refuses_outside_one_to_ten(count: int) -> None:
    recorder = Recorder({"Tasks": []})
    with client_for(recorder) as client, pytest.raises(ValueError):
        client.describe_refresh_task_by_id([str(i) for i in range(count)])
    assert recorder.requests == []


@pytest.mark.parametrize("count", [1, 10])
def test_describe_refresh_task_by_id_accepts_one_to_ten(count: int) -> None:
    recorder = Recorder({"Tasks": []})
    with client_for(recorder) as client:
        client.describe_refresh_task_by_id(str(i) for i in range(count))
    assert recorder.params["TaskId"].split(",") == [str(i) for i in range(count)]


def test_push_object_cache_sends_paths_and_area() -> None:
    recorder = Recorder({"PushTaskId": "p1,p2", "RequestId": "req-p"})
    with client_for(recorder) as client:
        result = client.push_object_cache(["example.com/a", "example.com/b"], area="domestic")
    params = recorder.params
    assert params["Action"] == "PushObjectCache"
    assert params["ObjectPath"] == "example.com/a\nexample.com/b"
    assert params["Area"] == "domestic"
    assert verify("POST", params, SECRET)
    assert result.task_ids == ("p1", "p2")
    assert result.request_id == "req-p"


def test_push_object_cache_omits_area_when_not_given() -> None:
    recorder = Recorder({"PushTaskId": "p1", "RequestId": "r"})
    with client_for(recorder) as client:
        client.push_object_cache(["example.com/a"])
    assert "Area" not in recorder.params


# --- error answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, "InternalError", RetryableError),
        (503, "Throttling", RetryableError),
        (400, "Throttling", RetryableError),
        (403, "ServiceBusy", RetryableError),
        (400, "QuotaExceeded.Refresh", QuotaExhaustedError),
        (404, "InvalidDomain.NotFound", RejectedPathError),
        (403, "SignatureDoesNotMatch", CredentialError),
        (400, "InvalidTimeStamp.Expired", CredentialError),
        (400, "InvalidObjectPath.Size.Malformed", RequestShapeError),
        (400, "Unheard.Of", RequestShapeError),
        (502, "Unheard.Of", RetryableError),
    ],
)
def test_error_answer_maps_to_its_class(status: int, code: str, expected: type[CdnError]) -> None:
    body = {"Code": code, "Message": "nope", "RequestId": "req-err", "HostId": "cdn"}
    error = refresh_raises(Answer(status, body), expected).value
    assert type(error) is expected
    assert error.code == code
    assert error.message == "nope"
    assert error.status_code == status
    assert error.request_id == "req-err"


def test_retry_after_header_is_read_in_milliseconds() -> None:
    body = {"Code": "Throttling", "Message": "slow", "RequestId": "r"}
    answer = Answer(503, body, {"x-acs-retry-after": "1500"})
    with client_for(answer) as client, pytest.raises(RetryableError) as caught:
        client.refresh_object_caches(["example.com/a.png"])
    assert caught.value.retry_after_s == 1.5


@pytest.mark.parametrize("header", [None, "soon"])
def test_missing_or_garbled_retry_after_gives_no_hint(header: str | None) -> None:
    body = {"Code": "Throttling", "Message": "slow", "RequestId": "r"}
    answer = Answer(503, body, {"x-acs-retry-after": header} if header else None)
    with client_for(answer) as client, pytest.raises(RetryableError) as caught:
        client.refresh_object_caches(["example.com/a.png"])
    assert caught.value.retry_after_s is None


def test_error_answer_without_request_id_has_none() -> None:
    caught = refresh_raises(Answer(500, {"Code": "InternalError"}), RetryableError)
    assert caught.value.request_id is None


def test_error_answer_without_code_is_named_after_status() -> None:
    caught = refresh_raises(Answer(503, {"Message": "down"}), RetryableError)
    assert caught.value.code == "HTTP503"


def test_non_json_502_is_transient() -> None:
    caught = refresh_raises(Answer(502, "<html>Bad Gateway</html>"), RetryableError)
    assert caught.value.code == "InvalidResponse"
    assert caught.value.status_code == 502


def test_non_json_200_is_transient_not_permanent() -> None:
    # The provider may have taken the paths: never drop them as permanently failed.
    caught = refresh_raises(Answer(200, "<html>proxy page</html>"), RetryableError)
    assert caught.value.code == "InvalidResponse"


def test_json_array_answer_is_an_invalid_response() -> None:
    caught = refresh_raises(Answer(500, "[1, 2]"), RetryableError)
    assert caught.value.code == "InvalidResponse"


@pytest.mark.parametrize("body", [{"RequestId": "r"}, {"RefreshTaskId": "", "RequestId": "r"}])
def test_200_without_refresh_task_id_is_transient(body: dict[str, str]) -> None:
    with client_for(Recorder(body)) as client, pytest.raises(RetryableError) as caught:
        client.refresh_object_caches(["example.com/a.png"])
    assert caught.value.code == "InvalidResponse"


# --- network errors ----------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout])
def test_no_connection_is_an_unreachable_endpoint_that_holds_not_a_retry(
    exc_type: type[httpx.TransportError],
) -> None:
    from worker.errors import HoldError, UnreachableError
    from worker.policy import Action, policy_for

    with client_for(Raiser(exc_type)) as client, pytest.raises(UnreachableError) as caught:
        client.refresh_object_caches(["example.com/a.png"])
    assert caught.value.outcome_unknown is False
    assert caught.value.code == exc_type.__name__
    assert isinstance(caught.value, HoldError) and not isinstance(caught.value, RetryableError)
    policy = policy_for(caught.value)
    assert policy.action is Action.HOLD_ALL and policy.quota_back(caught.value)


def test_a_busy_connection_pool_is_a_network_error_with_known_outcome() -> None:
    with client_for(Raiser(httpx.PoolTimeout)) as client, pytest.raises(NetworkError) as caught:
        client.refresh_object_caches(["example.com/a.png"])
    assert caught.value.outcome_unknown is False
    assert isinstance(caught.value, RetryableError)


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError],
)
def test_error_after_sending_is_network_error_with_unknown_outcome(
    exc_type: type[httpx.TransportError],
) -> None:
    with client_for(Raiser(exc_type)) as client, pytest.raises(NetworkError) as caught:
        client.refresh_object_caches(["example.com/a.png"])
    assert caught.value.outcome_unknown is True
    assert caught.value.code == exc_type.__name__


def test_client_does_not_retry_by_itself() -> None:
    raiser = Raiser(httpx.ReadTimeout)
    with client_for(raiser) as client, pytest.raises(NetworkError):
        client.refresh_object_caches(["example.com/a.png"])
    assert raiser.calls == 1


# --- the secret stays secret -------------------------------------------------------------

LEAKY_SECRET = "Sup3r-Secret-Value-9f8e7d"
LEAKY_TOKEN = "Sts-Token-Value-1a2b3c"


def test_secret_never_appears_in_reprs_errors_logs_or_on_the_wire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(access_key_secret=LEAKY_SECRET, security_token=LEAKY_TOKEN)
    recorder = Recorder({"RefreshTaskId": "1", "RequestId": "r"})
    client = client_for(recorder, settings)
    auth = RpcSigner(
        "testid", settings.provider.access_key_secret, settings.provider.security_token
    )
    texts = [repr(client), repr(auth), str(auth), repr(vars(auth))]

    client.refresh_object_caches(["example.com/a.png"])
    client.describe_refresh_quota()
    for handler in (
        Answer(403, {"Code": "SignatureDoesNotMatch", "Message": "bad", "RequestId": "r"}),
        Answer(502, "garbage"),
        Raiser(httpx.ConnectError),
        Raiser(httpx.ReadTimeout),
    ):
        with client_for(handler, settings) as failing, pytest.raises(Exception) as caught:
            failing.refresh_object_caches(["example.com/a.png"])
        texts += [str(caught.value), repr(caught.value), repr(failing)]
    client.close()

    # The signature proves the secret was used; the secret itself never left the process.
    assert verify("POST", recorder.params, LEAKY_SECRET)
    for request in recorder.requests:
        assert LEAKY_SECRET not in request.content.decode()
        assert LEAKY_SECRET not in str(request.url)
        assert all(LEAKY_SECRET not in value for value in request.headers.values())

    assert any(r.name.startswith("httpx") for r in caplog.records), "httpx did not log"
    texts += [record.getMessage() for record in caplog.records]
    texts += [json.dumps(record.args, default=repr) for record in caplog.records]
    texts.append(caplog.text)
    for text in texts:
        assert LEAKY_SECRET not in text
        assert LEAKY_TOKEN not in text


@pytest.mark.parametrize(
    ("answer", "unknown"),
    [
        (Answer(200, {"RequestId": "r"}), True),  # a 200 without a task ID
        (Answer(200, "<html>ok</html>"), True),
        (Answer(504, "<html>gateway timeout</html>"), True),  # a gateway's page
        (Answer(502, "bad gateway"), True),
        (Answer(500, {"Code": "InternalError", "Message": "x", "RequestId": "r"}), False),
        (Answer(503, {"Code": "Throttling", "Message": "x", "RequestId": "r"}), False),
    ],
)
def test_answers_the_provider_may_have_acted_on_are_marked_outcome_unknown(
    answer: Answer, unknown: bool
) -> None:
    info = refresh_raises(answer, RetryableError)
    assert info.value.outcome_unknown is unknown
