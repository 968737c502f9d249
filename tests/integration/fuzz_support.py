"""What the fuzz tests share: hostile text, webhooks signed as each platform signs them (with the channels
service's own signing code, for the accounts of the example configuration), and schemathesis runs over an
OpenAPI document, stateless and stateful, that collect every 5xx instead of stopping at the first.

Every run is derandomized (``derandomize=True``), so CI sees the same examples each time."""

import contextlib
import itertools
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, HypothesisDeprecationWarning
from schemathesis import Case
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from kefu.config_file import load_section
from kefu.settings import EXAMPLE_CONFIG
from services.channels.accounts import ChannelsConfig
from services.channels.config import ChannelsSettings
from services.channels.douyin.signature import DouyinSignatureVerifier
from services.channels.phone.calls import normalize_number
from services.channels.phone.twilio import compute_signature
from services.channels.wechat.crypto import WechatCrypto, sha1_signature
from tests.fakes.wecom import FakeWecom
from tests.integration.support import free_port, server_in_thread
from tests.integration.test_channel_wechat import KF_SECRET
from tools.assemble import channels_app as create_app
from tools.demo import signed_request

# --- hostile text ---------------------------------------------------------------------------------

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
HUGE_UNITS = ["好", "\U0001f4a9", "\u202e\u0301", "\x00"]
NASTY = ["\x00", *BIDI, "\ufeff", "\u200b", "\u0301", "\r\n", "\x1b[31m", "你好", "\U0001f4a9", "\ufffd", "\x7f"]


def storable(value: Any) -> bool:
    """Whether PostgreSQL can store every string in a JSON value: no NUL, no lone surrogate half."""
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(item) for item in value)
    return True


def hostile_text(*, surrogates: bool = False, max_size: int = 80) -> st.SearchStrategy[str]:
    """Text an attacker would send: NUL, bidi overrides, control and combining characters, emoji, and one time in
    five a huge run of multi-byte characters (up to 60,000 code points, about 240 kB of UTF-8); lone surrogates
    only where the wire format can carry them (JSON ``\\ud800`` escapes)."""
    characters = st.characters(exclude_categories=[] if surrogates else ["Cs"])
    ordinary = st.text(characters, max_size=max_size)
    nasty = st.lists(st.sampled_from(NASTY), max_size=max_size // 4).map("".join)
    huge = st.builds(lambda unit, n: unit * n, st.sampled_from(HUGE_UNITS), st.integers(1, 60_000))
    return st.one_of(ordinary, nasty, ordinary, nasty, huge)


def hostile_id(plain: str, *, surrogates: bool = False) -> st.SearchStrategy[str]:
    """An id: ``plain`` three times in four, hostile text otherwise (ids are checked for shape, so that most of
    those are refused, and a run still has enough accepted messages to check that none is lost)."""
    hostile = hostile_text(surrogates=surrogates, max_size=20).map(lambda text: text or plain)
    return st.one_of(st.just(plain), st.just(plain), st.just(plain), hostile)


def deep(depth: int) -> Any:
    """A JSON value nested ``depth`` levels deep."""
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


def wrong_type() -> st.SearchStrategy[Any]:
    """A JSON value of a type no field expects, or nested far deeper than any field."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),  # JSON has neither
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        st.integers(50, 300).map(deep),
    )


# --- webhooks signed for the example configuration's accounts ------------------------------------

EXAMPLE = load_section(EXAMPLE_CONFIG, "channels", ChannelsConfig)
WEBCHAT = EXAMPLE.webchat[0]
OFFICIAL_ACCOUNT = EXAMPLE.wechat[0]
KF = EXAMPLE.wecom_kf[0]
DOUYIN = EXAMPLE.douyin[0]
RAW_INBOX = next(inbox for inbox in EXAMPLE.email if inbox.provider == "raw")
LINE = EXAMPLE.phone[0]
LINE_NUMBER = normalize_number(LINE.numbers[0], LINE.region)


@dataclass(frozen=True)
class Webhook:
    """One request as the platform sends it; ``marker`` is in the dedup key of the contact it must publish."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    marker: str | None = None

    def send(self, client: httpx.Client) -> httpx.Response:
        return client.request(**self.request())

    def request(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx`` clients' ``request``."""
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "headers": self.headers,
            "content": self.body,
        }


def webchat(body: bytes, marker: str, path: str = f"/webhooks/webchat/{WEBCHAT.id}") -> Webhook:
    """A web chat delivery signed with Standard Webhooks; its webhook-id is ``marker``."""
    secret = WEBCHAT.secrets[0].get_secret_value()
    return Webhook("POST", path, body, signed_request(secret, body, msg_id=marker), marker=marker)


def douyin(body: bytes, marker: str, path: str = f"/webhooks/douyin/{DOUYIN.id}") -> Webhook:
    """A Douyin event signed with SHA-1 of secret and body; its Msg-Id header is ``marker``."""
    signature = DouyinSignatureVerifier(DOUYIN.client_secret.get_secret_value()).sign(body)
    headers = {"content-type": "application/json", "x-douyin-signature": signature, "msg-id": marker}
    return Webhook("POST", path, body, headers, marker=marker)


def _wechat_query(token: str) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    return {"signature": sha1_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}


def wechat(
    xml: str, marker: str | None, *, safe: bool, path: str = f"/webhooks/wechat/{OFFICIAL_ACCOUNT.id}"
) -> Webhook:
    """An Official Account callback, plain or safe mode (AES, ``msg_signature``)."""
    token = OFFICIAL_ACCOUNT.token.get_secret_value()
    params = _wechat_query(token)
    body = xml.encode("utf-8", "surrogatepass")
    if safe:
        assert OFFICIAL_ACCOUNT.encoding_aes_key is not None
        crypto = WechatCrypto(token, OFFICIAL_ACCOUNT.encoding_aes_key.get_secret_value(), OFFICIAL_ACCOUNT.appid)
        encrypted = crypto.encrypt(xml)
        params |= {"encrypt_type": "aes", "msg_signature": crypto.sign(params["timestamp"], params["nonce"], encrypted)}
        body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    return Webhook("POST", path, body, {"content-type": "text/xml"}, params, marker)


def wechat_url_check(echostr: str, path: str = f"/webhooks/wechat/{OFFICIAL_ACCOUNT.id}") -> Webhook:
    params = _wechat_query(OFFICIAL_ACCOUNT.token.get_secret_value()) | {"echostr": echostr}
    return Webhook("GET", path, b"", {}, params)


KF_CRYPTO = WechatCrypto(KF.token.get_secret_value(), KF.encoding_aes_key.get_secret_value(), KF.corp_id)


def wecom_kf(inner_xml: str, path: str = f"/webhooks/wecom-kf/{KF.id}", *, method: str = "POST") -> Webhook:
    """A WeCom callback (doorbell, or with ``GET`` the URL check) encrypted and signed for the example corp."""
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    encrypted = KF_CRYPTO.encrypt(inner_xml)
    params = {"msg_signature": KF_CRYPTO.sign(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    if method == "GET":
        return Webhook("GET", path, b"", {}, params | {"echostr": encrypted})
    body = f"<xml><ToUserName><![CDATA[{KF.corp_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return Webhook("POST", path, body.encode(), {"content-type": "text/xml"}, params)


def doorbell(token: str, open_kfid: str) -> str:
    """The decrypted XML of a ``kf_msg_or_event`` doorbell."""
    return (
        f"<xml><ToUserName><![CDATA[{KF.corp_id}]]></ToUserName><CreateTime>{int(time.time())}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
        f"<Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{open_kfid}]]></OpenKfId></xml>"
    )


def raw_email(message: bytes, marker: str | None, path: str = f"/webhooks/email/{RAW_INBOX.id}") -> Webhook:
    """An RFC 5322 message posted to the raw inbox with its bearer token."""
    assert RAW_INBOX.bearer_token is not None
    headers = {"content-type": "message/rfc822", "authorization": f"Bearer {RAW_INBOX.bearer_token.get_secret_value()}"}
    return Webhook("POST", path, message, headers, marker=marker)


def phone(form: Sequence[tuple[str, str]], marker: str | None, path: str = f"/webhooks/phone/{LINE.id}") -> Webhook:
    """A Twilio voice webhook signed over the line's public URL and the sorted form."""
    token = LINE.auth_token.get_secret_value().encode()
    signature = compute_signature(token, LINE.public_url.rstrip("/") + path, sorted(form))
    body = str(httpx.QueryParams(list(form))).encode()
    headers = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature}
    return Webhook("POST", path, body, headers, marker=marker)


@dataclass(frozen=True)
class ChannelsUnderTest:
    url: str
    wecom: FakeWecom
    config: Path


@contextlib.contextmanager
def channels_service(database_url: str, bootstrap: str, tmp_path: Path) -> Iterator[ChannelsUnderTest]:
    """The channels service on loopback with the example configuration, its WeCom corp talking to a fake WeCom
    API (also on loopback) that serves whatever ``wecom.pages`` holds."""
    wecom = FakeWecom(corp_id=KF.corp_id, secret=KF_SECRET, port=free_port())
    with server_in_thread(wecom.app(), wecom.port, name="fake-wecom"):
        document = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
        document["channels"]["wecom_kf"][0] |= {"api_base": wecom.api_base, "secret": KF_SECRET}
        config = tmp_path / "kefu-fuzz.yaml"
        config.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        settings_ = ChannelsSettings(database_url=database_url, kafka_bootstrap=bootstrap, config_path=config)
        port = free_port()
        with server_in_thread(create_app(settings_), port, lifespan="on", name="channels") as url:
            yield ChannelsUnderTest(url, wecom, config)


def lost(markers: Iterable[str], dedup_keys: Iterable[str]) -> list[str]:
    """The markers of acknowledged webhooks that no published contact carries in its dedup key."""
    keys = list(dedup_keys)
    return [marker for marker in markers if not any(marker in key for key in keys)]


# --- schemathesis ---------------------------------------------------------------------------------

MAX_RESTARTS = 10
Send = Callable[[Case[Any], Mapping[str, Any]], Response]


@dataclass
class Findings:
    """What a run saw: status codes per operation and, per operation, the first request that got a 5xx and the first
    success that did not match the document. Nothing is raised during a run: a stateful run replayed against a
    server whose state moved on would not be the same run."""

    seen: dict[str, set[int]] = field(default_factory=dict)
    server_errors: dict[str, str] = field(default_factory=dict)
    nonconforming: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    restarts: int = 0

    def record(self, case: Case[Any], response: Response) -> None:
        label = f"{case.method.upper()} {case.path}"
        self.calls += 1
        self.seen.setdefault(label, set()).add(response.status_code)
        answer = f"{case.as_curl_command()}\n  -> {response.status_code} {response.text[:300]}"
        if response.status_code >= 500:
            self.server_errors.setdefault(label, answer)
        elif response.status_code < 400:  # a success must be what the document promises
            try:
                case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])
            except Exception as exc:  # schemathesis raises a group of check failures
                self.nonconforming.setdefault(label, f"{answer}\n  {exc}")

    def problems(self) -> str:
        """Every 5xx and non-conforming success, empty when there is none."""
        return "\n".join([*self.server_errors.values(), *self.nonconforming.values()])


def fuzz_settings(examples: int, **extra: Any) -> settings:
    """``examples`` derandomized examples, no deadline, no example database, no shrinking."""
    defaults: dict[str, Any] = {
        "deadline": None,
        "database": None,
        "derandomize": True,
        "phases": [Phase.explicit, Phase.generate],  # no shrinking: a 5xx is collected, not raised
        "suppress_health_check": list(HealthCheck),
    }
    return settings(max_examples=examples, **(defaults | extra))


def _default_send(base_url: str) -> Send:
    def send(case: Case[Any], kwargs: Mapping[str, Any]) -> Response:
        return case.call(base_url=base_url, timeout=10, **kwargs)

    return send


def _quietly(run: Callable[[], None]) -> None:
    with warnings.catch_warnings():
        # schemathesis's generators draw from ``random`` inside strategies, which Hypothesis now deprecates
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        run()


def fuzz_stateless(
    schema: BaseSchema, *, base_url: str, tokens: Sequence[str], examples: int, send: Send | None = None
) -> Findings:
    """``examples`` generated calls (valid and invalid data) spread over every operation of ``schema``, each with
    one of ``tokens``."""
    findings = Findings()
    sender = send or _default_send(base_url)
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))

    @fuzz_settings(examples)
    @given(case=cases, token=st.sampled_from(tokens or [""]))
    def call(case: Case[Any], token: str) -> None:
        findings.record(case, sender(case, _auth(token)))

    _quietly(call)
    return findings


def fuzz_stateful(
    schema: BaseSchema,
    *,
    base_url: str,
    tokens: Sequence[str],
    scenarios: int,
    steps: int,
    send: Send | None = None,
    caller: Callable[[Case[Any], str], str] | None = None,
) -> Findings:
    """``scenarios`` sequences of up to ``steps`` calls that follow the document's links (declared or inferred by
    schemathesis), so later calls use ids earlier answers returned; each scenario is one caller, the tokens taking
    turns, unless ``caller`` (the case and the scenario's token) names another for a call.

    The server's state moves on between scenarios, so the rules a scenario may take differ from one run to the
    next and Hypothesis can find its own generation inconsistent (``Flaky``); the run then goes on with the next
    fixed seed for the scenarios left, as schemathesis's own runner does."""
    findings = Findings()
    sender = send or _default_send(base_url)
    roles = itertools.cycle(tokens or [""])
    done = [0]

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.token = next(roles)

        def call(self, case: Case[Any], **kwargs: Any) -> Response:
            return sender(case, _auth(caller(case, self.token) if caller else self.token))

        def validate_response(self, response: Response, case: Case[Any], *args: Any, **kwargs: Any) -> None:
            findings.record(case, response)

        def teardown(self) -> None:
            done[0] += 1
            super().teardown()

    for attempt in range(MAX_RESTARTS):
        if done[0] >= scenarios:
            break
        seeded = seed(attempt)(Machine)
        run_settings = fuzz_settings(scenarios - done[0], stateful_step_count=steps, derandomize=False)
        try:
            _quietly(lambda: seeded.run(settings=run_settings))  # noqa: B023 (called at once)
        except Flaky:
            findings.restarts += 1
    return findings


def _auth(token: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}"}} if token else {}


def add_link(
    document: dict[str, Any],
    source: str,
    target: str,
    name: str,
    pointer: str = "",
    status: str = "200",
    *,
    value: str | None = None,
) -> None:
    """Declare an OpenAPI link: the ``name`` of ``source``'s answer (at ``pointer``, ``/*`` for each item of a list)
    fills the path parameter ``name`` of ``target``, or the constant ``value`` does; operations are written
    ``"METHOD /path"``."""
    method, path = source.split(" ", 1)
    target_method, target_path = target.split(" ", 1)
    response = document["paths"][path][method.lower()]["responses"].setdefault(status, {"description": "ok"})
    ref = "#/paths/" + target_path.replace("~", "~0").replace("/", "~1") + "/" + target_method.lower()
    response.setdefault("links", {})[f"{target_method}{target_path}".replace("/", "_").strip("_")] = {
        "operationRef": ref,
        "parameters": {f"path.{name}": f"$response.body#{pointer}/{name}" if value is None else value},
    }


def pin_path_parameter(document: dict[str, Any], name: str, values: Sequence[str]) -> None:
    """Make every path parameter ``name`` one of ``values`` (existing ids, and an unknown one), so that generated
    calls reach objects that exist instead of 404 after 404."""
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == name:
                    parameter["schema"] = {"type": "string", "enum": list(values)}


def fetch_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI document the service at ``base_url`` serves, to add links to before fuzzing."""
    document: dict[str, Any] = httpx.get(f"{base_url}/openapi.json", timeout=10).raise_for_status().json()
    return document
