"""layer: one call to generate images through many AI providers, routed per named gate.

Every public name is re-exported here, lazily: ``import layer_core`` imports nothing heavy, and
``from layer_core import Layer`` imports only what a `Layer` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # the app's API
    "Layer": "layer_core.layer",
    "ImageData": "layer_core.schema",
    "ImageRequest": "layer_core.schema",
    "ImageOutput": "layer_core.schema",
    "ImageResponse": "layer_core.schema",
    "Attempt": "layer_core.schema",
    "Size": "layer_core.schema",
    "Quality": "layer_core.schema",
    "Style": "layer_core.schema",
    "SIZES": "layer_core.schema",
    "ModelSpec": "layer_core.catalog",
    "Catalog": "layer_core.catalog",
    "Gate": "layer_core.gates",
    "GateDefaults": "layer_core.gates",
    "Budget": "layer_core.gates",
    "Plan": "layer_core.policy",
    "Candidate": "layer_core.policy",
    "Rejection": "layer_core.policy",
    "ProviderState": "layer_core.policy",
    "plan": "layer_core.policy",
    "CostReport": "layer_core.ledger",
    "CostRow": "layer_core.ledger",
    "LedgerRecord": "layer_core.ledger",
    "BatchResult": "layer_core.batch",
    "BatchSummary": "layer_core.batch",
    "run_batch": "layer_core.batch",
    "write_gallery": "layer_core.gallery",
    # plugin authors
    "Provider": "layer_core.provider",
    "ProviderSettings": "layer_core.provider",
    "GenerationCall": "layer_core.provider",
    "PerLoop": "layer_core.provider",
    "error_for_response": "layer_core.provider",
    "error_for_status": "layer_core.provider",
    "error_text": "layer_core.provider",
    "httpx_errors": "layer_core.provider",
    "malformed_reply": "layer_core.provider",
    "parse_retry_after": "layer_core.provider",
    "hookimpl": "layer_core.hookspecs",
    "hookspec": "layer_core.hookspecs",
    # errors
    "LayerError": "layer_core.errors",
    "ConfigError": "layer_core.errors",
    "PluginLoadError": "layer_core.errors",
    "PluginRegistrationError": "layer_core.errors",
    "InvalidRequest": "layer_core.errors",
    "GateNotFound": "layer_core.errors",
    "UnknownModel": "layer_core.errors",
    "LayerClosed": "layer_core.errors",
    "OverrideNotAllowed": "layer_core.errors",
    "NoEligibleModel": "layer_core.errors",
    "BudgetExceeded": "layer_core.errors",
    "LedgerUnavailable": "layer_core.errors",
    "AllAttemptsFailed": "layer_core.errors",
    "ProviderError": "layer_core.errors",
    "RateLimited": "layer_core.errors",
    "ProviderUnavailable": "layer_core.errors",
    "ProviderTimeout": "layer_core.errors",
    "AuthenticationFailed": "layer_core.errors",
    "BillingError": "layer_core.errors",
    "ContentRejected": "layer_core.errors",
    "InvalidProviderRequest": "layer_core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'layer_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from layer_core.batch import (
        BatchResult as BatchResult,
        BatchSummary as BatchSummary,
        run_batch as run_batch,
    )
    from layer_core.catalog import (
        Catalog as Catalog,
        ModelSpec as ModelSpec,
    )
    from layer_core.errors import (
        AllAttemptsFailed as AllAttemptsFailed,
        AuthenticationFailed as AuthenticationFailed,
        BillingError as BillingError,
        BudgetExceeded as BudgetExceeded,
        ConfigError as ConfigError,
        ContentRejected as ContentRejected,
        GateNotFound as GateNotFound,
        InvalidProviderRequest as InvalidProviderRequest,
        InvalidRequest as InvalidRequest,
        LayerClosed as LayerClosed,
        LayerError as LayerError,
        LedgerUnavailable as LedgerUnavailable,
        NoEligibleModel as NoEligibleModel,
        OverrideNotAllowed as OverrideNotAllowed,
        PluginLoadError as PluginLoadError,
        PluginRegistrationError as PluginRegistrationError,
        ProviderError as ProviderError,
        ProviderTimeout as ProviderTimeout,
        ProviderUnavailable as ProviderUnavailable,
        RateLimited as RateLimited,
        UnknownModel as UnknownModel,
    )
    from layer_core.gallery import (
        write_gallery as write_gallery,
    )
    from layer_core.gates import (
        Budget as Budget,
        Gate as Gate,
        GateDefaults as GateDefaults,
    )
    from layer_core.hookspecs import (
        hookimpl as hookimpl,
        hookspec as hookspec,
    )
    from layer_core.layer import (
        Layer as Layer,
    )
    from layer_core.ledger import (
        CostReport as CostReport,
        CostRow as CostRow,
        LedgerRecord as LedgerRecord,
    )
    from layer_core.policy import (
        Candidate as Candidate,
        Plan as Plan,
        ProviderState as ProviderState,
        Rejection as Rejection,
        plan as plan,
    )
    from layer_core.provider import (
        GenerationCall as GenerationCall,
        PerLoop as PerLoop,
        Provider as Provider,
        ProviderSettings as ProviderSettings,
        error_for_response as error_for_response,
        error_for_status as error_for_status,
        error_text as error_text,
        httpx_errors as httpx_errors,
        malformed_reply as malformed_reply,
        parse_retry_after as parse_retry_after,
    )
    from layer_core.schema import (
        SIZES as SIZES,
        Attempt as Attempt,
        ImageData as ImageData,
        ImageOutput as ImageOutput,
        ImageRequest as ImageRequest,
        ImageResponse as ImageResponse,
        Quality as Quality,
        Size as Size,
        Style as Style,
    )
