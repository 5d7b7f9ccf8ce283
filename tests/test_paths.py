"""The path model: validation reasons, canonical forms, domain matching and properties."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdn_refresh.constants import MAX_PATH_LENGTH, OBJECT_TYPES, ObjectType
from cdn_refresh.paths import (
    MAX_RAW_LENGTH,
    InvalidPathError,
    OverlongInput,
    domain_of,
    normalize_path,
    remove_dot_segments,
    shown_path,
)
from cdn_refresh.store.records import Batch
from emulator.paths import served_as


def reason_of(raw: str, object_type: str = "File", allowed: frozenset[str] = frozenset()) -> str:
    with pytest.raises(InvalidPathError) as caught:
        normalize_path(raw, object_type, allowed)  # type: ignore[arg-type]
    return caught.value.reason


# --- canonical forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "example.com/a.png",
        "HTTP://Example.COM:80/a.png#x",
        "http://example.com/a.png",
        "//example.com/a.png",
        "Http://EXAMPLE.com./a.png",
        "  example.com/a.png  ",
        "example.com:80/a.png",
        "example.com:/a.png",
        "example.com:0080/a.png",
        "example.com/a.png?",
        "example.com/a.png#",
    ],
)
def test_spellings_of_one_path_coalesce(raw: str) -> None:
    assert normalize_path(raw, "File") == "http://example.com/a.png"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("example.com:8080/a", "http://example.com:8080/a"),
        ("localhost:8080", "http://localhost:8080/"),
        ("example.com", "http://example.com/"),
        ("example.com?x=1", "http://example.com/?x=1"),
        ("example.com/a?b=1&c=%2f+d", "http://example.com/a?b=1&c=%2F+d"),
        ("example.com/a?x#frag?y", "http://example.com/a?x"),
        ("example.com/a/../b//c", "http://example.com/b//c"),
        ("192.0.2.1/a", "http://192.0.2.1/a"),
        ("img-1.example.com/a", "http://img-1.example.com/a"),
    ],
)
def test_canonical_form(raw: str, expected: str) -> None:
    assert normalize_path(raw, "File") == expected


def test_internal_spaces_become_percent_20_and_surrounding_ones_are_stripped() -> None:
    assert normalize_path(" example.com/a b.png?q=x y ", "File") == (
        "http://example.com/a%20b.png?q=x%20y"
    )


def test_non_ascii_in_path_and_query_is_utf8_percent_encoded() -> None:
    assert normalize_path("example.com/é/文件.png?q=ü", "File") == (
        "http://example.com/%C3%A9/%E6%96%87%E4%BB%B6.png?q=%C3%BC"
    )


def test_existing_escapes_are_kept_with_uppercase_hex_and_never_decoded() -> None:
    assert normalize_path("example.com/%c3%a9%20%41?x=%2f", "File") == (
        "http://example.com/%C3%A9%20%41?x=%2F"
    )
    # A "%" that starts no escape stays as browsers send it.
    assert normalize_path("example.com/100%/%zz", "File") == "http://example.com/100%/%zz"


def test_encoded_and_raw_spellings_coalesce() -> None:
    assert normalize_path("example.com/a b/é", "File") == normalize_path(
        "example.com/a%20b/%c3%a9", "File"
    )


def test_unicode_host_becomes_punycode() -> None:
    assert normalize_path("Bücher.Example/a", "File") == "http://xn--bcher-kva.example/a"
    assert normalize_path("例え.テスト/", "File") == "http://xn--r8jz45g.xn--zckzah/"


def test_unicode_full_stop_in_host_is_a_dot() -> None:
    assert normalize_path("example.com。/a", "File") == "http://example.com/a"


# Expected A-labels decode back (stdlib punycode) to the input, deviation characters kept:
# IDNA 2003 would give fass, xn--nxasmq6b (final sigma as plain sigma) and drop the joiners.
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("faß.ok.com/a", "http://xn--fa-hia.ok.com/a"),
        ("FAß.ok.com/a", "http://xn--fa-hia.ok.com/a"),
        ("βόλος.com/", "http://xn--nxasmm1c.com/"),
        # ZWNJ between a dual- and a right-joining Arabic letter (Persian "nameh-i").
        ("\u0646\u0627\u0645\u0647\u200c\u0627\u06cc.com/", "http://xn--mgba3gch31f060k.com/"),
        # ZWNJ and ZWJ after a virama (Devanagari ka, virama, joiner, ssa).
        ("\u0915\u094d\u200c\u0937.com/", "http://xn--11b2ezcs70k.com/"),
        ("\u0915\u094d\u200d\u0937.com/", "http://xn--11b2ezcw70k.com/"),
    ],
)
def test_idn_hosts_follow_uts46_non_transitional_as_browsers_do(raw: str, expected: str) -> None:
    assert normalize_path(raw, "File") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "a\u200cb.com/",  # ZWNJ between Latin letters: no joining context, no virama
        "b\u00fccher\u200c.com/",
        "a\u200db.com/",  # ZWJ is only valid after a virama
        "a_b.b\u00fccher.de/",
        "-b\u00fccher.de/",
    ],
)
def test_idn_hosts_that_uts46_refuses_are_invalid(raw: str) -> None:
    assert reason_of(raw) == "invalid host"


# --- refusals, each with its reason ------------------------------------------------------


@pytest.mark.parametrize("raw", ["", " ", "    "])
def test_empty_or_blank_is_refused(raw: str) -> None:
    assert reason_of(raw) == "empty"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("example.com/a\nexample.com/b", "control character U+000A"),
        ("example.com/a\r", "control character U+000D"),
        ("example.com/a\n", "control character U+000A"),
        ("\nexample.com/a", "control character U+000A"),
        ("example.com/a\x00", "control character U+0000"),
        ("example.com/a\tb", "control character U+0009"),
        ("\texample.com/a", "control character U+0009"),
        ("example.com/a\x7f", "control character U+007F"),
        ("example.com/a\x85", "control character U+0085"),
        ("example.com/a\x9b", "control character U+009B"),
        ("example.com/é\u2028", "control character U+2028"),
        ("example.com/a\u2029", "control character U+2029"),
        ("exam\nple.com/a", "control character U+000A"),
        ("example.com/a?x=\r\n", "control character U+000D"),
        ("example.com/a#\n", "control character U+000A"),
    ],
)
def test_control_characters_are_refused_anywhere(raw: str, reason: str) -> None:
    assert reason_of(raw) == reason


def test_lone_surrogate_is_refused() -> None:
    assert reason_of("example.com/a\ud800") == "invalid character U+D800"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("ftp://example.com/a", "scheme ftp not allowed"),
        ("FTP://example.com/a", "scheme ftp not allowed"),
        ("javascript:alert(1)", "scheme javascript not allowed"),
        ("file:///etc/passwd", "scheme file not allowed"),
        ("data:text/html,x", "scheme data not allowed"),
        ("x" * 100 + "://example.com/", "scheme " + "x" * 20 + "... not allowed"),
    ],
)
def test_other_schemes_are_refused(raw: str, reason: str) -> None:
    assert reason_of(raw) == reason


@pytest.mark.parametrize(
    "raw", ["/a.png", "http:///a.png", "https://", "//", "///a", "http:example.com/a", ":80/a"]
)
def test_missing_host_is_refused(raw: str) -> None:
    assert reason_of(raw) == "no host"


@pytest.mark.parametrize(
    "raw",
    [
        "https:/www.example.com/typo.png",
        "http:/x",
        "https:?x",
        "https:",
        "HTTPS:/www.example.com/a",
        "Http:#x",
        "http:80/a",
        "https:443",
    ],
)
def test_http_or_https_without_its_slashes_is_no_host_not_a_host_named_http(raw: str) -> None:
    assert reason_of(raw) == "no host"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("ftp:/example.com/a", "scheme ftp not allowed"),
        ("file:/etc/passwd", "scheme file not allowed"),
        ("mailto:?to=x", "scheme mailto not allowed"),
        ("ws:", "scheme ws not allowed"),
        ("host:/a", "scheme host not allowed"),
    ],
)
def test_a_dotless_name_and_a_colon_without_a_port_is_a_scheme(raw: str, reason: str) -> None:
    assert reason_of(raw) == reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("localhost:80", "http://localhost/"),
        ("localhost:8080/a", "http://localhost:8080/a"),
        ("ftp:21/a", "http://ftp:21/a"),
        ("example.com:/a", "http://example.com/a"),
        ("example.com:", "http://example.com/"),
    ],
)
def test_a_name_with_a_port_or_a_dot_before_the_colon_is_a_host(raw: str, expected: str) -> None:
    assert normalize_path(raw, "File") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "http://user@example.com/a",
        "http://user:secret@example.com/a",
        "user:secret@example.com/a",
        "//user@example.com",
    ],
)
def test_credentials_are_refused(raw: str) -> None:
    assert reason_of(raw) == "credentials in URL"


@pytest.mark.parametrize(
    "raw", ["*.example.com/a", "http://img*.example.com/", "example.*/a", "a\uff0ab.com/"]
)
def test_wildcard_hosts_are_refused(raw: str) -> None:
    assert reason_of(raw) == "wildcard host"


@pytest.mark.parametrize(
    "raw",
    [
        "http://exa mple.com/a",
        "http://example.com\\a",
        "exa%41mple.com/a",
        "example..com/a",
        "example.com../a",
        "-example.com/a",
        "example-.com/a",
        "http://[::1]/a",
        "http://[2001:db8::1]:8080/a",
        "http://a:b:80/x",
        ("a" * 64) + ".com/",
        ".".join(["a" * 60] * 5) + "/",
        "exa!mple.com/",
    ],
)
def test_invalid_hosts_are_refused(raw: str) -> None:
    assert reason_of(raw) == "invalid host"


@pytest.mark.parametrize(
    "raw",
    [
        "example.com:0/a",
        "example.com:65536/a",
        "example.com:8o/a",
        "example.com:-1/a",
        "http://example.com:http/a",
        "example.com:\uff11\uff12/a",
    ],
)
def test_invalid_ports_are_refused(raw: str) -> None:
    assert reason_of(raw) == "invalid port"


def test_highest_port_is_kept() -> None:
    assert normalize_path("example.com:65535/a", "File") == "http://example.com:65535/a"


def test_directory_must_end_with_slash_and_have_no_query() -> None:
    assert normalize_path("Example.com/dir/", "Directory") == "http://example.com/dir/"
    assert normalize_path("example.com", "Directory") == "http://example.com/"
    assert normalize_path("example.com/dir/?", "Directory") == "http://example.com/dir/"
    assert reason_of("example.com/dir", "Directory") == "directory path must end with /"
    assert reason_of("example.com/dir/?x=1", "Directory") == (
        "directory path must not have a query"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://a.com/x/../secret.png", "http://a.com/secret.png"),
        ("a.com/x/%2E%2E/secret.png", "http://a.com/secret.png"),
        ("a.com/x/%2e%2E/secret.png", "http://a.com/secret.png"),
        ("a.com/x/.%2e/y", "http://a.com/y"),
        ("a.com/x/%2e/y", "http://a.com/x/y"),
        ("a.com/a/b/c/./../../g", "http://a.com/a/g"),
        ("a.com/x/..", "http://a.com/"),
        ("a.com/x/.", "http://a.com/x/"),
        ("a.com/../../a", "http://a.com/a"),
        ("a.com/a//../b", "http://a.com/a/b"),
        ("a.com/x/..?q=/../", "http://a.com/?q=/../"),
        # Not dot segments: kept as they are.
        ("a.com/.well-known/x", "http://a.com/.well-known/x"),
        ("a.com/x/..a/y", "http://a.com/x/..a/y"),
        ("a.com/x/%2E%2E%2Fy", "http://a.com/x/%2E%2E%2Fy"),
    ],
)
def test_dot_segments_are_removed_as_rfc_3986_says(raw: str, expected: str) -> None:
    assert normalize_path(raw, "File") == expected


def test_a_directory_spelled_with_dot_segments_is_the_directory_they_resolve_to() -> None:
    assert normalize_path("a.com/x/../", "Directory") == "http://a.com/"
    assert normalize_path("a.com/x/y/..", "Directory") == "http://a.com/x/"


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", ".", "..", "%2E", "%2E%2E", ".%2E", "", ".a"]), max_size=8)
)
def test_dot_segment_removal_agrees_with_the_emulators_rfc_loop(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    ours = remove_dot_segments(path).replace("%2E", ".")
    assert served_as("http://h" + path) == "http://h" + ours


def test_file_may_end_with_slash_or_have_a_query() -> None:
    assert normalize_path("example.com/dir/?x=1", "File") == "http://example.com/dir/?x=1"


def test_unknown_object_type_is_a_programming_error_not_a_bad_path() -> None:
    with pytest.raises(ValueError) as caught:
        normalize_path("example.com/a", "Tag")  # type: ignore[arg-type]
    assert not isinstance(caught.value, InvalidPathError)


def test_length_limit_applies_to_the_normalized_form() -> None:
    prefix = "http://example.com/"
    longest = prefix + "a" * (MAX_PATH_LENGTH - len(prefix))
    assert normalize_path(longest, "File") == longest
    assert reason_of(longest + "a") == "longer than 1024 characters"
    # Percent-encoding grows a path past the limit: the encoded length is what counts.
    assert reason_of(prefix + "é" * 510) == "longer than 1024 characters"
    # Leading spaces and a fragment do not count.
    assert normalize_path("   " + longest + "#" + "f" * 100, "File") == longest


def test_huge_raw_input_is_refused_before_parsing() -> None:
    assert reason_of("example.com/" + "a" * 5000) == "longer than 1024 characters"
    assert reason_of("\n" * 5000) == "longer than 1024 characters"


def test_an_overlong_input_is_refused_as_too_long_whatever_its_start() -> None:
    start = "example.com/" + "a" * MAX_RAW_LENGTH
    assert reason_of(OverlongInput(start, 100 * 1024 * 1024)) == "longer than 1024 characters"
    with pytest.raises(ValueError):
        OverlongInput("example.com/a", 100 * 1024 * 1024)  # a cut that might pass as valid


def test_a_rejection_shows_a_short_path_whole() -> None:
    path = "ftp://example.com/" + "a" * 82
    assert shown_path(path) == path


def test_a_rejection_shows_a_long_path_cut_with_its_length() -> None:
    path = "https://example.com/" + "a" * 5000
    assert shown_path(path) == "https://example.com/" + "a" * 80 + "... (5020 characters)"


def test_a_rejection_shows_an_overlong_inputs_whole_length() -> None:
    start = "https://example.com/" + "a" * MAX_RAW_LENGTH
    shown = shown_path(OverlongInput(start, 104857600))
    assert shown == "https://example.com/" + "a" * 80 + "... (104857600 characters)"
    assert type(shown) is str


def test_reason_is_the_exception_message() -> None:
    error = InvalidPathError("empty")
    assert error.reason == "empty"
    assert str(error) == "empty"
    assert isinstance(error, ValueError)


# --- allowed domains ---------------------------------------------------------------------


ALLOWED = frozenset({"example.com", "*.cdn.example.org"})


@pytest.mark.parametrize(
    "raw",
    [
        "example.com/a",
        "EXAMPLE.COM./a",
        "https://example.com:8443/a",
        "img.cdn.example.org/a",
        "a.b.cdn.example.org/a",
    ],
)
def test_allowed_domains_accept_exact_hosts_and_subdomains_of_wildcards(raw: str) -> None:
    normalize_path(raw, "File", ALLOWED)


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("www.example.com/a", "www.example.com"),
        ("cdn.example.org/a", "cdn.example.org"),
        ("example.org/a", "example.org"),
        ("evilcdn.example.org/a", "evilcdn.example.org"),
        ("img.cdn.example.org.evil.com/a", "img.cdn.example.org.evil.com"),
        ("notexample.com/a", "notexample.com"),
    ],
)
def test_allowed_domains_refuse_other_hosts(raw: str, host: str) -> None:
    assert reason_of(raw, allowed=ALLOWED) == f"domain {host} not allowed"


def test_allowed_domains_match_the_punycode_host() -> None:
    allowed = frozenset({"xn--bcher-kva.example"})
    assert normalize_path("bücher.example/a", "File", allowed) == ("http://xn--bcher-kva.example/a")


def test_allowed_domains_may_be_any_collection() -> None:
    assert normalize_path("a.example.com/x", "File", ["*.example.com"]) == (
        "http://a.example.com/x"
    )


def test_empty_allowed_domains_allow_any_host() -> None:
    assert normalize_path("anything.test/a", "File", ()) == "http://anything.test/a"


# --- the domain of a normalized path (what a batch counts against the 10-domain limit) ---


def _domain(normalized: str) -> str:
    return Batch("1", ObjectType.FILE, (normalized,)).domains[0]


@pytest.mark.parametrize(
    ("normalized", "host"),
    [
        ("http://example.com/a", "example.com"),
        ("https://example.com:8443/a?x=1", "example.com"),
        ("http://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        ("http://example.com", "example.com"),
    ],
)
def test_a_batch_and_the_plan_count_the_host_without_port_as_the_domain(
    normalized: str, host: str
) -> None:
    assert _domain(normalized) == host
    assert domain_of(normalized) == host


# --- properties --------------------------------------------------------------------------

_LABEL = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789üé例"),
    min_size=1,
    max_size=12,
)
_HOSTS = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_PATH_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcXYZ019/-_.~!$&'()*+,;=:@% ?#"),
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    ),
    max_size=60,
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    """URL-like input that is mostly valid, in the many spellings users write."""
    scheme = draw(st.sampled_from(["", "http://", "https://", "HTTP://", "Https://", "//"]))
    host = draw(_HOSTS) + draw(st.sampled_from(["", "."]))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080", ":"]))
    path = "/" + draw(_PATH_TEXT)
    return draw(st.sampled_from(["", " "])) + scheme + host + port + path


_ANY_TEXT = st.one_of(st.text(max_size=80), urls(), st.builds(str.__add__, urls(), st.text()))
_SEPARATORS = st.sampled_from(["\n", "\r", "\r\n", "\x00", "\x85", "\u2028", "\u2029", "\x0b"])


def _is_safe_output(value: str) -> bool:
    return all(unicodedata.category(ch) not in ("Cc", "Zl", "Zp") for ch in value)


@settings(max_examples=300, deadline=None)
@given(raw=_ANY_TEXT, object_type=st.sampled_from([t.value for t in OBJECT_TYPES]))
def test_property_refused_with_a_reason_or_safe_canonical_output(
    raw: str, object_type: str
) -> None:
    try:
        result = normalize_path(raw, object_type)  # type: ignore[arg-type]
    except InvalidPathError as error:
        assert error.reason
        return
    assert _is_safe_output(result)
    assert "\r" not in result and "\n" not in result and " " not in result
    assert len(result) <= MAX_PATH_LENGTH
    assert result.startswith(("http://", "https://"))
    host = _domain(result)
    assert host and host == host.lower() and host.isascii()


@settings(max_examples=300, deadline=None)
@given(raw=_ANY_TEXT, object_type=st.sampled_from([t.value for t in OBJECT_TYPES]))
def test_property_normalization_is_idempotent(raw: str, object_type: str) -> None:
    try:
        once = normalize_path(raw, object_type)  # type: ignore[arg-type]
    except InvalidPathError:
        return
    assert normalize_path(once, object_type) == once  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(url=urls(), data=st.data(), separator=_SEPARATORS)
def test_property_a_line_break_anywhere_is_refused(
    url: str, data: st.DataObject, separator: str
) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(url)))
    reason = reason_of(url[:position] + separator + url[position:])
    assert reason.startswith("control character U+")


def test_generated_urls_are_mostly_accepted() -> None:
    """The properties above are only worth something if many generated inputs pass."""
    accepted = 0

    @settings(max_examples=200, deadline=None, database=None)
    @given(url=urls())
    def count(url: str) -> None:
        nonlocal accepted
        try:
            normalize_path(url, "File")
        except InvalidPathError:
            return
        accepted += 1

    count()
    assert accepted >= 50


def test_underscore_in_a_host_is_refused_like_the_provider_does() -> None:
    for raw in ("http://a_b.example.com/x", "a_b.example.com/x", "HTTP://A_B.example.com/x"):
        with pytest.raises(InvalidPathError, match="invalid host"):
            normalize_path(raw, "File")


_canonical_like = st.builds(
    lambda scheme, labels, path: f"{scheme}{'.'.join(labels)}/{path}",
    st.sampled_from(["", "http://", "https://"]),
    st.lists(st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True), min_size=1, max_size=4),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
)


@settings(max_examples=400, deadline=None)
@given(raw=_canonical_like, kind=st.sampled_from([t.value for t in OBJECT_TYPES]))
def test_the_fast_path_agrees_with_the_general_rules(raw: str, kind: str) -> None:
    # A leading space cannot match the fast path's pattern, so the general rules decide.
    def outcome(text: str) -> str:
        try:
            return normalize_path(text, kind)  # type: ignore[arg-type]
        except InvalidPathError as exc:
            return f"rejected: {exc.reason}"

    assert outcome(raw) == outcome(" " + raw)
