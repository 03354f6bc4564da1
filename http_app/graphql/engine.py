"""The GraphQL engine behind a small executor interface, so swapping Tartiflette is one module.

Tuning (architecture.md, measured): `coerce_list_concurrently=False` and a dict-first default resolver
roughly halve the cost of large lists; resolvers return dicts whose keys are the GraphQL field names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from tartiflette import Engine

from http_app.graphql.errors import coerce_error
from http_app.graphql.resolvers import register_resolvers

SDL_PATH = Path(__file__).with_name("schema.graphql")


class Executor(Protocol):
    async def start(self) -> None: ...

    async def execute(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None, context: dict[str, Any]
    ) -> dict[str, Any]: ...

    def subscribe(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None, context: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]: ...


async def dict_first_resolver(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    """Most parents are dicts keyed by field name: look there first (the default tries getattr first)."""
    if type(parent) is dict:
        return parent.get(info.field_name)
    return getattr(parent, info.field_name, None)


class TartifletteExecutor:
    def __init__(self, schema_name: str) -> None:
        self.schema_name = schema_name
        self._engine: Engine | None = None

    async def start(self) -> None:
        if self._engine is not None:
            return
        register_resolvers(self.schema_name)
        engine = Engine(
            sdl=str(SDL_PATH),
            schema_name=self.schema_name,
            error_coercer=coerce_error,
            custom_default_resolver=dict_first_resolver,
            coerce_list_concurrently=False,
            coerce_parent_concurrently=False,
            modules=[],
        )
        await engine.cook()
        self._engine = engine

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("executor not started")
        return self._engine

    async def execute(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None, context: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.engine.execute(
            query, operation_name=operation_name, variables=variables, context=context
        )
        return result

    async def subscribe(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None, context: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        async for payload in self.engine.subscribe(
            query, operation_name=operation_name, variables=variables, context=context
        ):
            yield payload


_executors: dict[str, TartifletteExecutor] = {}


def create_executor(schema_name: str) -> Executor:
    """One executor per schema name and process: Tartiflette keys its registry by that name."""
    executor = _executors.get(schema_name)
    if executor is None:
        executor = _executors[schema_name] = TartifletteExecutor(schema_name)
    return executor
