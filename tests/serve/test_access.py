"""Who may use `shoal serve`: the bearer token, the bind rule, CORS and per-client rate limits."""

from __future__ import annotations

import hashlib

import pytest

from app.serve import auth
from app.serve.auth import Access, decide_access, is_loopback
from core.errors import ConfigError
from core.secrets import get_token
from core.settings import ServeSettings
from tests.serve.conftest import served


async def test_no_token_or_a_wrong_one_gets_401_and_the_right_one_passes() -> None:
    async with served() as server:
        assert server.token and len(server.token) >= 40
        for token in (None, "wrong", server.token[:-1], server.token + "x"):
            async with server.client(token=token) as client:
                for path in ("/api/sessions", "/v1/models", "/metrics", "/api/tools"):
                    answer = await client.get(path)
                    assert answer.status_code == 401, (token, path)
                    assert answer.headers["www-authenticate"].startswith("Bearer")
                    body = answer.json()
                    if path.startswith("/v1/"):  # OpenAI's error shape, which its clients read
                        assert body["error"]["code"] == "Unauthorized" and "--show-token" in body["error"]["message"]
                    else:
                        assert body["error"] == "Unauthorized" and "--show-token" in body["fix"]
        async with server.client() as client:
            assert (await client.get("/api/sessions")).status_code == 200
            assert (await client.get("/v1/models")).json()["data"][0]["id"] == "shoal"
        async with server.client(token=None) as client:  # liveness and the API description need no token
            assert (await client.get("/health")).json()["status"] == "ok"
            assert (await client.get("/openapi.json")).json()["info"]["title"] == "Shoal"
            assert (await client.get("/docs")).status_code == 401  # no CDN-loading docs page, and nothing else open


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check compares two SHA-256 digests with hmac.compare_digest: equal lengths whatever was sent,
    so neither a token's length nor its matching prefix shows in the time taken."""
    compared: list[tuple[int, int]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    access = Access("s3cret-token-value")
    presented = [None, "", "Bearer ", "Bearer s", "Bearer s3cret-token-valu", "Bearer " + "x" * 5000, "Basic abc"]
    assert not any(access.allows(h) for h in presented)
    assert access.allows("Bearer s3cret-token-value") and access.allows("bearer s3cret-token-value")
    assert compared == [(32, 32)] * (len(presented) + 2)
    assert hashlib.sha256(b"").digest() != hashlib.sha256(b"s3cret-token-value").digest()


def test_the_token_is_generated_once_and_kept_in_the_keyring() -> None:
    assert get_token("serve") is None
    first = decide_access(ServeSettings())
    assert first.created and first.token_origin == "keyring"
    stored = get_token("serve")
    assert stored is not None and stored.value == first.token
    again = decide_access(ServeSettings())
    assert not again.created and again.token == first.token


def test_the_token_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_SERVE_TOKEN", "from-the-unit-file-0123456789")
    access = decide_access(ServeSettings())
    assert access.token == "from-the-unit-file-0123456789" and access.token_origin == "env:SHOAL_SERVE_TOKEN"


def test_binding_beyond_loopback_needs_the_token_and_warns_without_tls() -> None:
    with pytest.raises(ConfigError, match="other machines can reach"):
        decide_access(ServeSettings(host="0.0.0.0", auth=False))
    exposed = decide_access(ServeSettings(host="0.0.0.0"))
    assert exposed.token and any("TLS is off" in w for w in exposed.warnings)
    assert decide_access(ServeSettings(host="127.0.0.1", auth=False)).token is None
    assert not decide_access(ServeSettings(host="::1")).warnings
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("192.168.1.10") and not is_loopback("pi.local")


def test_wildcard_cors_and_half_a_tls_pair_are_refused() -> None:
    with pytest.raises(ConfigError, match="any web page"):
        decide_access(ServeSettings(cors_origins=["*"]))
    with pytest.raises(ConfigError, match=r"Only one of serve\.tls_certfile"):
        decide_access(ServeSettings(tls_certfile="/etc/cert.pem"))


async def test_cors_answers_only_listed_origins() -> None:
    origins = {"serve": {"cors_origins": ["https://dash.example"]}}
    async with served(overrides=origins) as server, server.client() as client:
        listed = await client.get("/api/sessions", headers={"Origin": "https://dash.example"})
        assert listed.headers["access-control-allow-origin"] == "https://dash.example"
        other = await client.get("/api/sessions", headers={"Origin": "https://evil.example"})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
        preflight = await client.options(
            "/api/sessions",
            headers={"Origin": "https://dash.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204 and "authorization" in preflight.headers["access-control-allow-headers"]


async def test_a_burst_over_the_rate_limit_gets_429_with_retry_after() -> None:
    async with served(overrides={"serve": {"rate_limit": 0.5, "rate_burst": 5}}) as server:
        async with server.client() as client:
            answers = [await client.get("/api/tools") for _ in range(8)]
            assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
            refused = answers[-1]
            assert refused.headers["retry-after"] == "2" and refused.json()["error"] == "RateLimited"
        async with server.client(token="guess") as guesser:  # guessing tokens is throttled too
            assert (await guesser.get("/api/tools")).status_code == 429
        assert server.state.metrics.refused.labels("rate_limit")._value.get() == 4


def test_fastapi_telemetry_stays_off_even_when_the_environment_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.serve.api import create_app

    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    app = create_app(object())  # type: ignore[arg-type]
    config = getattr(app, "_telemetry", None)
    if config is not None:  # FastAPI releases with OpenTelemetry hooks
        assert not any(config[k] for k in ("tracing", "metrics", "logs", "operation_spans", "auto_configure"))
    assert app.docs_url is None and app.redoc_url is None
