"""Validation per type: a regex path is an allowed host and a pattern that compiles, kept as
written; an ignore-params path is a File URL whose query is dropped. Each refusal has its
reason, and no path can carry a second one into the newline-separated ObjectPath."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdn_refresh.constants import MAX_PATH_LENGTH, ObjectType
from cdn_refresh.paths import InvalidPathError, normalize_path

REGEX, IGNORE_PARAMS = ObjectType.REGEX, ObjectType.IGNORE_PARAMS
ALLOWED = frozenset({"www.example.com", "*.cdn.example.com"})


def reason_of(raw: str, kind: ObjectType, allowed: frozenset[str] = frozenset()) -> str:
    with pytest.raises(InvalidPathError) as caught:
        normalize_path(raw, kind, allowed)
    return caught.value.reason


# --- regex ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("www.example.com/img/.*\\.png", "http://www.example.com/img/.*\\.png"),
        ("HTTPS://WWW.Example.COM:443/img/.*", "https://www.example.com/img/.*"),
        ("  //www.example.com/a/(b|c)/  ", "http://www.example.com/a/(b|c)/"),
        ("https://www.example.com:8443/x.*", "https://www.example.com:8443/x.*"),
        ("https://bücher.example/.*", "https://xn--bcher-kva.example/.*"),
    ],
)
def test_a_regex_path_has_a_canonical_scheme_and_host(raw: str, expected: str) -> None:
    assert normalize_path(raw, REGEX) == expected


@pytest.mark.parametrize(
    "pattern",
    ["/a/./b", "/a/../b", "/x?v=[0-9]+", "/x#y", "/%2f%2E/", "/(?i:readme)", "/a{2,3}$", "/"],
)
def test_a_regex_pattern_is_kept_exactly_as_written(pattern: str) -> None:
    # Dot segments, "?" and "#" are regex syntax here: nothing is resolved, dropped or recased.
    assert normalize_path("https://www.example.com" + pattern, REGEX) == (
        "https://www.example.com" + pattern
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("www.example.com/(a", "regex does not compile: missing ), unterminated subpattern"),
        ("www.example.com/[a-", "regex does not compile: unterminated character set"),
        ("www.example.com/a**", "regex does not compile: multiple repeat"),
        ("www.example.com/\\", "regex does not compile: bad escape (end of pattern)"),
        ("www.example.com/a{99999999999}", "regex does not compile: too large"),
        ("www.example.com", "regex path needs a host, then / and the pattern"),
        ("www.example.com?x", "regex path needs a host, then / and the pattern"),
        ("www.example.com/a b", "regex must be printable ASCII without spaces (percent-encode)"),
        ("www.example.com/é.*", "regex must be printable ASCII without spaces (percent-encode)"),
        ("ftp://www.example.com/.*", "scheme ftp not allowed"),
        ("*.example.com/.*", "wildcard host"),
        ("user:pw@www.example.com/.*", "credentials in URL"),
        ("https:/www.example.com/.*", "no host"),
        ("/.*", "no host"),
        ("www.example.com/.*\nwww.example.com/b", "control character U+000A"),
        ("www.example.com/.*\r", "control character U+000D"),
        ("www.example.com/.*\u2028x", "control character U+2028"),
        ("www.example.com/" + "a" * MAX_PATH_LENGTH, f"longer than {MAX_PATH_LENGTH} characters"),
    ],
)
def test_a_regex_path_is_refused_with_its_reason(raw: str, reason: str) -> None:
    assert reason_of(raw, REGEX) == reason


def test_a_regex_names_a_host_the_deployment_allows_as_a_file_must() -> None:
    assert normalize_path("a.cdn.example.com/.*", REGEX, ALLOWED) == "http://a.cdn.example.com/.*"
    assert reason_of("evil.org/.*", REGEX, ALLOWED) == "domain evil.org not allowed"
    # The host is never a pattern: a regex's reach ends at the host it names.
    assert reason_of("cdn.example.com/.*", REGEX, ALLOWED) == "domain cdn.example.com not allowed"
    assert reason_of("(www|evil).example.com/.*", REGEX, ALLOWED) == "invalid host"


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
    separator=st.sampled_from(["\n", "\r", "\r\n", "\x00", "\x85", "\u2028", "\u2029", "\x0b"]),
    suffix=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
)
def test_no_regex_path_carries_a_line_break_into_object_path(
    prefix: str, separator: str, suffix: str
) -> None:
    raw = f"https://www.example.com/{prefix}{separator}{suffix}"
    assert reason_of(raw, REGEX).startswith("control character U+")


# --- ignore-params ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "www.example.com/app.js?v=1",
        "www.example.com/app.js?v=2&lang=en",
        "HTTP://WWW.EXAMPLE.COM:80/app.js?",
        "www.example.com/js/../app.js#top",
        "www.example.com/app.js",
    ],
)
def test_every_query_variant_of_an_ignore_params_url_is_one_path(raw: str) -> None:
    assert normalize_path(raw, IGNORE_PARAMS) == "http://www.example.com/app.js"


def test_an_ignore_params_path_is_checked_as_a_file_url() -> None:
    assert reason_of("ftp://www.example.com/a", IGNORE_PARAMS) == "scheme ftp not allowed"
    assert reason_of("www.example.com/a\n/b", IGNORE_PARAMS) == "control character U+000A"
    assert reason_of("evil.org/a?x", IGNORE_PARAMS, ALLOWED) == "domain evil.org not allowed"
    assert normalize_path("www.example.com/a b?x", IGNORE_PARAMS) == (
        "http://www.example.com/a%20b"
    )
    # A File keeps the query that IgnoreParams drops.
    assert normalize_path("www.example.com/app.js?v=1", ObjectType.FILE).endswith("?v=1")
