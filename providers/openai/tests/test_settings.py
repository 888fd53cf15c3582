"""`[plugins.openai]` reaches the provider as its own typed settings, catalogue included."""

from __future__ import annotations

from layer_openai import OpenAIProvider, OpenAISettings
from pydantic import SecretStr

from layer_core import ProviderSettings


def test_the_settings_model_is_the_providers_type_parameter() -> None:
    provider = OpenAIProvider()
    assert OpenAIProvider.Settings is OpenAISettings
    assert isinstance(provider.settings, OpenAISettings)
    assert [spec.id for spec in provider.models()] == list(provider.settings.served)


def test_configured_settings_decide_the_models_served() -> None:
    provider = OpenAIProvider()
    provider.configure(OpenAISettings(models=("dall-e-3", "dall-e-2")))
    assert [spec.id for spec in provider.models()] == ["dall-e-3", "dall-e-2"]
    provider.configure(ProviderSettings(base_url="http://127.0.0.1:9/v1"))  # the common keys
    assert isinstance(provider.settings, OpenAISettings)
    assert len(provider.models()) == len(OpenAISettings().served)


def test_a_copy_with_other_settings_serves_its_own_catalogue() -> None:
    settings = OpenAISettings(models=("dall-e-3",))
    assert list(settings.model_copy(update={"models": ("dall-e-2",)}).served) == ["dall-e-2"]
    keyed = settings.model_copy(update={"api_key": SecretStr("sk-test")})
    assert list(keyed.served) == ["dall-e-3"]
    assert list(settings.served) == ["dall-e-3"]
