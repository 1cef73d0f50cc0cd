"""What a GraphQL document may cost, measured in one pass before Strawberry validates it.

graphql-core's validation and the usual limit extensions walk every fragment spread again where it is
used, so a few hundred bytes of nested spreads (`F1 = ...F0 ...F0`, `F2 = ...F1 ...F1`, …) cost 2^n
and stall the event loop. Here each fragment is measured once, in dependency order, and a spread adds
its fragment's measure, so the whole check is linear in the document's size. A document over any
limit is refused with `QUERY_TOO_COMPLEX` (or `INVALID_INPUT` for control characters in its strings)
before validation runs; validation of what passes is then bounded too (see `QueryLimits`).
"""

from __future__ import annotations

import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    parse,
)
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from domain.errors import ErrorCode

INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})
# Tab, line feed and carriage return are text; every other control character is refused.
ALLOWED_CONTROLS = frozenset("\t\n\r")


@dataclass(frozen=True)
class QueryLimits:
    """The most a single document may ask for. Defaults fit GraphiQL's introspection and the portal."""

    max_document_bytes: int = 32_768
    max_tokens: int = 2_000
    max_operations: int = 20
    max_depth: int = 10
    # GraphiQL's introspection query nests `ofType` eight levels under `__schema { types { fields`.
    max_introspection_depth: int = 16
    max_aliases: int = 15
    # Fields after every fragment is expanded: what execution and validation will actually walk.
    max_fields: int = 1_000
    # The same response name in one selection set: validation compares each such pair, with sub-fields.
    max_same_name: int = 8


class QueryRefused(Exception):
    """The document is over a limit; carries the GraphQL error the client gets."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.QUERY_TOO_COMPLEX) -> None:
        super().__init__(message)
        self.error = GraphQLError(message, extensions={"code": code.value})


@dataclass
class Measure:
    """What a selection set (or a fragment, expanded) costs."""

    fields: int = 0
    aliases: int = 0
    depth: int = 0
    # Response names at the top level of the selection set, fragments' top levels included.
    names: Counter[str] = field(default_factory=Counter)


def check_document_text(query: str, limits: QueryLimits) -> None:
    """The cheapest bound, before parsing: the document's size in bytes."""
    if len(query) > limits.max_document_bytes or len(query.encode()) > limits.max_document_bytes:
        raise QueryRefused(f"The document is larger than {limits.max_document_bytes} bytes.")


def check_document(document: DocumentNode, limits: QueryLimits, text: str | None = None) -> None:
    """Refuse a parsed document over any limit, in time linear in its size."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) > limits.max_operations:
        raise QueryRefused(f"A document may hold at most {limits.max_operations} operations.")
    # The lexer refuses raw control characters, so only an escape (\u0000, \b, …) can make one.
    if text is None or "\\" in text:
        _refuse_control_characters(document)
    fragments = _fragments_in_dependency_order(document)
    measured: dict[str, Measure] = {}
    for definition in fragments:
        measured[definition.name.value] = _measure(definition.selection_set, measured, limits)
    fields = sum(m.fields for m in measured.values())
    for operation in operations:
        fields += _check_operation(operation, measured, limits).fields
    # Validation also walks fragment definitions on their own, so they count once more.
    if fields > limits.max_fields:
        raise QueryRefused(f"The document selects more than {limits.max_fields} fields.")


def _check_operation(
    operation: OperationDefinitionNode, measured: dict[str, Measure], limits: QueryLimits
) -> Measure:
    """Aliases per operation; depth per root field (introspection roots have their own, deeper limit)."""
    total = _measure(operation.selection_set, measured, limits)
    if total.aliases > limits.max_aliases:
        raise QueryRefused(f"An operation may use at most {limits.max_aliases} aliases.")
    for selection in operation.selection_set.selections:
        introspection = isinstance(selection, FieldNode) and selection.name.value in INTROSPECTION_ROOTS
        allowed = limits.max_introspection_depth if introspection else limits.max_depth
        depth = _measure(SelectionSetNode(selections=(selection,)), measured, limits).depth
        if depth > allowed:
            raise QueryRefused(f"The operation is nested deeper than {allowed} levels.")
    return total


def _measure(
    selection_set: SelectionSetNode, measured: Mapping[str, Measure], limits: QueryLimits
) -> Measure:
    """Measure a selection set; fragments it spreads are already measured (dependency order)."""
    cap = limits.max_fields + 1  # saturate: beyond the limit the exact number does not matter
    total = Measure()
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            inner = _measure(selection.selection_set, measured, limits) if selection.selection_set else None
            total.fields += 1 + (inner.fields if inner else 0)
            total.aliases += (1 if selection.alias else 0) + (inner.aliases if inner else 0)
            # Leaves do not count: `{ viewer { id } }` is one level deep.
            total.depth = max(total.depth, 1 + inner.depth if inner else 0)
            total.names[(selection.alias or selection.name).value] += 1
            continue
        if isinstance(selection, InlineFragmentNode):
            inner = _measure(selection.selection_set, measured, limits)
        else:
            assert isinstance(selection, FragmentSpreadNode)
            known = measured.get(selection.name.value)
            if known is None:
                continue  # an unknown fragment: validation names it, at no cost
            inner = known
        total.fields += inner.fields
        total.aliases += inner.aliases
        total.depth = max(total.depth, inner.depth)
        total.names.update(inner.names)
    total.fields = min(total.fields, cap)
    total.aliases = min(total.aliases, cap)
    _check_same_names(total.names, limits)
    return total


def _check_same_names(names: Counter[str], limits: QueryLimits) -> None:
    for name, count in names.items():
        if count > limits.max_same_name:
            raise QueryRefused(
                f"'{name}' is selected {count} times in one selection set (at most {limits.max_same_name})."
            )


def _fragments_in_dependency_order(document: DocumentNode) -> list[FragmentDefinitionNode]:
    """Fragment definitions, each after the fragments it spreads (iterative: no recursion limit)."""
    definitions: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            definitions.setdefault(definition.name.value, definition)
    spreads = {name: sorted(_spread_names(d.selection_set)) for name, d in definitions.items()}
    ordered: list[FragmentDefinitionNode] = []
    state: dict[str, str] = {}  # name -> "open" while its dependencies are walked, "done" after
    for root in definitions:
        if root in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(spreads[root]))]
        state[root] = "open"
        while stack:
            name, pending = stack[-1]
            child = next((c for c in pending if c in definitions and state.get(c) != "done"), None)
            if child is None:
                stack.pop()
                state[name] = "done"
                ordered.append(definitions[name])
            elif state.get(child) == "open":
                raise QueryRefused(f"Fragment '{child}' spreads itself.", ErrorCode.INVALID_INPUT)
            else:
                state[child] = "open"
                stack.append((child, iter(spreads[child])))
    return ordered


def _spread_names(selection_set: SelectionSetNode) -> set[str]:
    names: set[str] = set()
    pending = [selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                names.add(selection.name.value)
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                pending.append(selection.selection_set)
    return names


def _refuse_control_characters(document: DocumentNode) -> None:
    """String literals (escapes such as \\u0000 included) carry no control characters."""
    pending: list[Any] = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, StringValueNode):
            refuse_control_characters(node.value)
            continue
        for key in node.keys:
            child = getattr(node, key, None)
            if isinstance(child, Node):
                pending.append(child)
            elif isinstance(child, tuple | list):
                pending.extend(c for c in child if isinstance(c, Node))


def refuse_control_characters(value: Any) -> None:
    """Refuse NUL and other control characters anywhere in a JSON value (variables, literals)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isprintable() and any(_is_control(ch) for ch in item):
                raise QueryRefused(
                    "Text may not contain control characters such as NUL.", ErrorCode.INVALID_INPUT
                )
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _is_control(ch: str) -> bool:
    return ch not in ALLOWED_CONTROLS and unicodedata.category(ch) == "Cc"


def refuse_subscription_over_http(context: ExecutionContext) -> None:
    if context.operation_type is OperationType.SUBSCRIPTION and not getattr(
        context.context, "over_websocket", True
    ):
        raise QueryRefused(
            "Subscriptions are served over a websocket on /graphql (graphql-transport-ws).",
            ErrorCode.BAD_REQUEST,
        )


@dataclass
class PreparedDocument:
    """A parsed text with what the gate and validation found about it, computed once per text."""

    document: DocumentNode
    # The gate's refusal, once measured (None: within the limits).
    refusal: GraphQLError | None = None
    measured: bool = False
    # Validation's errors, by the validation rules they were found with.
    validated: dict[tuple[Any, ...], list[GraphQLError]] = field(default_factory=dict)


class DocumentGate:
    """Parses, measures and validates each document text once, for the most recent `size` texts.

    `parse` bounds the text (its size, then the parser's token limit) before parsing it; `validate`
    refuses a document over a limit before validation runs (QUERY_TOO_COMPLEX), then checks the
    request's variables and its transport (run on every request), then answers validation's errors.
    The verdict and validation errors of a text are kept with its parsed document: a repeated text costs
    one dictionary lookup. A refused or unparseable text is not kept (Strawberry parses it again and
    answers the syntax error in the error model).
    """

    def __init__(self, limits: QueryLimits, size: int = 256) -> None:
        self.limits = limits
        self.size = size
        self._prepared: OrderedDict[str, PreparedDocument] = OrderedDict()

    def parse(self, context: ExecutionContext) -> None:
        query = context.query
        context.parse_options["max_tokens"] = self.limits.max_tokens
        if query is None or context.graphql_document is not None:
            return
        prepared = self._prepared.get(query)
        if prepared is not None:
            self._prepared.move_to_end(query)
            context.graphql_document = prepared.document
            return
        try:
            check_document_text(query, self.limits)
        except QueryRefused as refused:
            # Strawberry skips validation when an extension has already set the errors.
            context.pre_execution_errors = [refused.error]
            return
        try:
            document = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLError:
            return
        self._prepared[query] = PreparedDocument(document)
        if len(self._prepared) > self.size:
            self._prepared.popitem(last=False)
        context.graphql_document = document

    def validate(self, context: ExecutionContext) -> None:
        """Set the refusal or validation's errors as the pre-execution errors ([] when there are none)."""
        document = context.graphql_document
        if context.pre_execution_errors is not None or document is None:
            return
        prepared = self._prepared.get(context.query) if context.query is not None else None
        if prepared is not None and prepared.document is not document:
            prepared = None  # a document that did not come from this text: measured on its own
        if prepared is None:
            prepared = PreparedDocument(document)
        if not prepared.measured:
            prepared.refusal = self._measure(document, context.query)
            prepared.measured = True
        if prepared.refusal is not None:
            context.pre_execution_errors = [prepared.refusal]
            return
        try:
            refuse_control_characters(context.variables or {})
            refuse_subscription_over_http(context)
        except QueryRefused as refused:
            context.pre_execution_errors = [refused.error]
            return
        rules = context.validation_rules
        errors = prepared.validated.get(rules)
        if errors is None:
            errors = prepared.validated[rules] = validate_document(context.schema._schema, document, rules)
        context.pre_execution_errors = errors

    def _measure(self, document: DocumentNode, text: str | None) -> GraphQLError | None:
        try:
            check_document(document, self.limits, text)
        except QueryRefused as refused:
            return refused.error
        return None
