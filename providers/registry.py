"""Build a provider adapter from its config entry."""

from __future__ import annotations

from gateway.config import ProviderConfig
from providers.base import Provider
from providers.mock import MockProvider
from providers.openai import OpenAIProvider
from providers.translated import TranslatedProvider


def build_provider(config: ProviderConfig) -> Provider:
    if config.type == "mock":
        return MockProvider(config.name)
    if config.type in ("openai", "azure"):
        assert config.base_url is not None
        return OpenAIProvider(config.name, config.base_url, config.api_key, azure=config.type == "azure",
                              api_version=config.api_version, extra_headers=config.headers,
                              max_connections=config.max_connections)
    if config.type == "anthropic":
        from providers.anthropic.adapter import AnthropicDialect

        return TranslatedProvider(config.name, AnthropicDialect(config), max_connections=config.max_connections)
    if config.type == "gemini":
        from providers.gemini.adapter import GeminiDialect

        return TranslatedProvider(config.name, GeminiDialect(config), max_connections=config.max_connections)
    raise ValueError(f"unknown provider type {config.type!r}")
