"""Pre-execution checks on a GraphQL document: parse limits, schema validation, depth, aliases, roots.

Parsed once per distinct query text (LRU), with graphql-core, before Tartiflette ever sees it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    parse,
    print_ast,
    validate,
)

from http_app.graphql.errors import PARSE_FAILED, QUERY_TOO_COMPLEX, VALIDATION_FAILED

SDL_PATH = Path(__file__).with_name("schema.graphql")

MAX_DEPTH = 6
MAX_ALIASES = 15
MAX_ROOT_FIELDS = 10
MAX_TOKENS = 1_000
MAX_BODY_BYTES = 100 * 1024
OPERATION_TIMEOUT = 10.0
MAX_BATCH = 1  # JSON array batching is refused

SCHEMA_VERSION = hashlib.sha256(SDL_PATH.read_bytes()).hexdigest()[:10]
# Answers that must never be shared: live counters, or data of one user (scopes are per role, not user).
UNCACHEABLE_ROOTS = frozenset({"cacheStatus", "systemStats", "myStakeAccounts"})
# Roots whose answers never depend on the caller: every caller shares one cache entry for them.
PUBLIC_ROOTS = frozenset({"validators", "validatorsConnection", "validator", "recommendedValidators",
                          "commissionEvents", "__typename"})
_SUGGESTION = re.compile(r"\s*Did you mean .*\?$")


@dataclass(frozen=True)
class Problem:
    code: str
    messages: tuple[str, ...]


@dataclass(frozen=True)
class Analysis:
    """What the handler needs to know about one query text."""

    operations: dict[str | None, str] = field(default_factory=dict)  # name → query|mutation|subscription
    normalized: str = ""
    introspection: bool = False
    problem: Problem | None = None
    suggestions_stripped: tuple[str, ...] = ()
    cacheable: bool = True  # no root field in UNCACHEABLE_ROOTS, no introspection
    public: bool = False  # only PUBLIC_ROOTS: the answer is the same for every caller

    def operation_type(self, name: str | None) -> str | None:
        if name is None and len(self.operations) == 1:
            return next(iter(self.operations.values()))
        return self.operations.get(name) if name is not None else None


@lru_cache(maxsize=1)
def schema() -> GraphQLSchema:
    return build_schema(SDL_PATH.read_text())


@lru_cache(maxsize=2048)
def analyze(query: str) -> Analysis:
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLSyntaxError as exc:
        code = QUERY_TOO_COMPLEX if "tokens" in exc.message and "more than" in exc.message else PARSE_FAILED
        return Analysis(problem=Problem(code, (exc.message,)))
    errors = validate(schema(), document)
    if errors:
        messages = tuple(e.message for e in errors)
        return Analysis(problem=Problem(VALIDATION_FAILED, messages),
                        suggestions_stripped=tuple(_SUGGESTION.sub("", m) for m in messages))
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations: dict[str | None, str] = {}
    introspection = False
    roots_seen: set[str] = set()
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        name = definition.name.value if definition.name else None
        operations[name] = definition.operation.value
        walk = _Walk(fragments)
        walk.selection_set(definition.selection_set, 1)
        introspection = introspection or walk.introspection
        roots = _count_roots(definition.selection_set, fragments, roots_seen)
        problem = None
        if walk.max_depth > MAX_DEPTH:
            problem = f"query depth {walk.max_depth} exceeds the limit of {MAX_DEPTH}"
        elif walk.aliases > MAX_ALIASES:
            problem = f"{walk.aliases} aliases exceed the limit of {MAX_ALIASES}"
        elif roots > MAX_ROOT_FIELDS:
            problem = f"{roots} root fields exceed the limit of {MAX_ROOT_FIELDS}"
        if problem:
            return Analysis(operations, problem=Problem(QUERY_TOO_COMPLEX, (problem,)))
    cacheable = not introspection and not (roots_seen & UNCACHEABLE_ROOTS)
    public = cacheable and roots_seen <= PUBLIC_ROOTS and set(operations.values()) == {"query"}
    return Analysis(operations, normalized=print_ast(document), introspection=introspection, cacheable=cacheable,
                    public=public)


class _Walk:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.max_depth = 0
        self.aliases = 0
        self.introspection = False
        self._visiting: set[str] = set()

    def selection_set(self, node: SelectionSetNode, depth: int) -> None:
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    self.aliases += 1
                if selection.name.value in ("__schema", "__type"):
                    self.introspection = True
                    continue  # introspection's own nesting is exempt from the depth limit
                self.max_depth = max(self.max_depth, depth)
                if selection.selection_set is not None:
                    self.selection_set(selection.selection_set, depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                self.selection_set(selection.selection_set, depth)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in self._visiting:  # validation rejects cycles anyway
                    self._visiting.add(name)
                    self.selection_set(fragment.selection_set, depth)
                    self._visiting.discard(name)


def _count_roots(node: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: set[str]) -> int:
    count = 0
    for selection in node.selections:
        if isinstance(selection, FieldNode):
            count += 1
            seen.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            count += _count_roots(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            count += _count_roots(fragments[selection.name.value].selection_set, fragments, seen)
    return count


__all__ = ["MAX_BODY_BYTES", "SCHEMA_VERSION", "Analysis", "GraphQLError", "analyze"]
