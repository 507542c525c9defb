"""A small model registry in the timm style.

Each architecture file registers one function per named variant; callers build
models by name with ``create_model(kind, name, **overrides)``. Tests iterate over
``list_models(kind)`` so a new variant is tested without new test code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from talkinghead.errors import InvalidInputError

_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {}


def register_model(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as the variant ``fn.__name__`` (underscores become dashes) of ``kind``."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__.replace("_", "-")
        _REGISTRY.setdefault(kind, {})[name] = fn
        return fn

    return decorator


def list_models(kind: str) -> list[str]:
    """Names of the registered variants of ``kind``, sorted."""
    return sorted(_REGISTRY.get(kind, {}))


def create_model(kind: str, name: str, **overrides: Any) -> Any:
    """Build the registered variant ``name`` of ``kind``; ``overrides`` replace config fields."""
    variants = _REGISTRY.get(kind, {})
    if name not in variants:
        raise InvalidInputError(
            f"unknown {kind} variant {name!r}; registered: {', '.join(sorted(variants)) or 'none'}"
        )
    return variants[name](**overrides)


class ChannelsConfig:
    """JSON round trip for frozen config dataclasses whose ``channels`` is a tuple."""

    def to_dict(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)  # type: ignore[call-overload]
        d["channels"] = list(d["channels"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)
