"""Registrations of the built-in environments and adapters (imports are lazy)."""

from __future__ import annotations

from empg.envs.core import TextEnv, register


@register("household")
def _household(**kwargs) -> TextEnv:
    from empg.envs.household import HouseholdEnv

    return HouseholdEnv(**kwargs)


@register("shop")
def _shop(**kwargs) -> TextEnv:
    from empg.envs.shop import ShopEnv

    return ShopEnv(**kwargs)


@register("search")
def _search(**kwargs) -> TextEnv:
    from empg.envs.search import SearchEnv

    return SearchEnv(**kwargs)


@register("textworld")
def _textworld(**kwargs) -> TextEnv:
    from empg.envs.textworld import TextWorldEnv

    return TextWorldEnv(**kwargs)


@register("alfworld")
def _alfworld(**kwargs) -> TextEnv:
    from empg.envs.alfworld import AlfWorldEnv

    return AlfWorldEnv(**kwargs)
