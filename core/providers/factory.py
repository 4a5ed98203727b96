"""Builds the configured provider. Nothing heavy is imported here: providers import their SDKs on start."""

from __future__ import annotations

from core.providers.base import GenerationOptions, Provider
from core.settings import ModelSettings


def build_provider(model: ModelSettings) -> Provider:
    if model.provider == "openai":
        from core.providers.openai_compat import OpenAIProvider

        return OpenAIProvider(
            model.base_url,
            model.name,
            None,
            key_name=model.key_name,
            timeout=model.timeout,
            parse_tool_tags=model.tool_call_tags,
            key_from_keyring=True,  # looked up on start(), off the event loop
        )
    from core.providers.llama_local import LlamaCppProvider

    return LlamaCppProvider(
        model.path,
        n_ctx=model.n_ctx,
        n_threads=model.n_threads,
        n_gpu_layers=model.n_gpu_layers,
        chat_format=model.chat_format,
        parse_tool_tags=model.tool_call_tags,
    )


def generation_options(model: ModelSettings) -> GenerationOptions:
    return GenerationOptions(
        temperature=model.temperature, top_p=model.top_p, max_tokens=model.max_tokens, seed=model.seed
    )
