"""Each endpoint failure becomes an error that names the cause and the fix (against a local HTTP server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import (
    Actor,
    AuthenticationError,
    ContextOverflowError,
    ModelNotConfiguredError,
    ModelNotFoundError,
    ProviderError,
)
from core.providers.base import ChatMessage, GenerationOptions
from core.providers.openai_compat import OpenAIProvider

ANSWERS: dict[str, tuple[int, dict[str, object]]] = {
    "auth": (401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
    "missing": (404, {"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error"}}),
    "overflow": (400, {"error": {"message": "This model's maximum context length is 8192 tokens", "type": "x"}}),
    "busy": (429, {"error": {"message": "Rate limit reached", "type": "requests"}}),
    "broken": (500, {"error": {"message": "CUDA out of memory", "type": "server_error"}}),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        case = self.path.split("/")[1]
        status, body = ANSWERS[case]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


async def fail(base_url: str) -> Exception:
    provider = OpenAIProvider(base_url, "gpt-9", "sk-test-1234567890", key_name="work")
    try:
        async for _ in provider.stream([ChatMessage("user", "hi")], [], GenerationOptions(max_tokens=5)):
            pass
    except Exception as exc:
        return exc
    finally:
        await provider.stop()
    raise AssertionError("expected an error")


@pytest.mark.parametrize(
    ("case", "kind", "actor", "fix_words"),
    [
        ("auth", AuthenticationError, Actor.CONFIG, "shoal config set-key"),
        ("missing", ModelNotFoundError, Actor.CONFIG, "model.name"),
        ("overflow", ContextOverflowError, Actor.USER, "new session"),
        ("busy", ProviderError, Actor.NETWORK, "retry"),
        ("broken", ProviderError, Actor.NETWORK, "log"),
    ],
)
async def test_endpoint_errors_are_classified(server: str, case: str, kind: type, actor: Actor, fix_words: str) -> None:
    error = await fail(f"{server}/{case}/v1")
    assert type(error) is kind, error
    assert error.actor is actor and fix_words in error.fix  # type: ignore[attr-defined]
    assert "sk-test" not in str(error)  # the key never appears in an error


async def test_auth_fix_names_the_right_environment_variable(server: str) -> None:
    error = await fail(f"{server}/auth/v1")
    assert "SHOAL_API_KEY_WORK" in error.fix  # type: ignore[attr-defined]


def test_missing_endpoint_or_model_name_is_a_config_error() -> None:
    with pytest.raises(ModelNotConfiguredError, match="No endpoint"):
        OpenAIProvider("", "m", None)
    with pytest.raises(ModelNotConfiguredError, match="No model name"):
        OpenAIProvider("http://localhost:11434/v1", "", None)


async def test_the_configured_provider_reads_its_key_from_the_keyring_when_it_starts() -> None:
    from core.providers.factory import build_provider
    from core.secrets import set_api_key
    from core.settings import ModelSettings

    set_api_key("sk-from-the-keyring-42")
    provider = build_provider(ModelSettings(provider="openai", base_url="http://127.0.0.1:9/v1", name="m"))
    assert provider._api_key is None  # nothing read while building (that may run on the GUI thread)
    await provider.start()
    try:
        assert provider._client.api_key == "sk-from-the-keyring-42"
    finally:
        await provider.stop()
