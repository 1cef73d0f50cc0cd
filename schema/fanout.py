"""Subscriptions share their work: each distinct (document, variables, event, caller scope) runs once.

When a commit wakes a thousand subscribers of one partner, each of them maps the same event through
the same selection. graphql-core builds one per-event executor per subscriber; `FanoutExecutor` (the
schema's executor class) hands every subscriber whose question is the same the one result, and the
websocket handler (app.sockets) sends its JSON, serialized once, to each of them.

Two subscribers share an execution when all of these are equal:

- the document text and operation name;
- the variables the selection can see: every variable except those used only in the root field's
  arguments (`keys`, `since`: they choose the source stream, and a subscription's root field maps its
  event without looking at them);
- the caller's scope, `context.fanout_scope()`: everything about the caller that a selection's
  resolvers may depend on (partner, staff or not, role). A context without that method, or answering
  None, shares nothing;
- the event: `payload.fanout_key()` when the payload defines it (payloads with equal keys in one
  scope resolve identically; e.g. a feed item's sequence number), otherwise the payload object itself.

A result with errors is never shared (each subscriber runs its own, so each gets its own request id in
a masked error). A subscriber that leaves while the execution it waits for runs does not cancel it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Hashable, Mapping
from contextvars import ContextVar
from typing import Any, cast

from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    Visitor,
    visit,
)
from graphql.language import Node
from strawberry.schema.base import BaseSchema
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Results kept for subscribers still on their way to the same event (each entry: a few hundred bytes),
# for this long: subscribers woken by one commit ask within it; one replaying later runs its own (a
# standing or invoice is read "when delivered", so an old result must not stand in for a new read).
MAX_SHARED_RESULTS = 4096
SHARE_SECONDS = 5.0
MAX_DOCUMENTS = 512


class SharedData(dict[str, Any]):
    """A shared result's `data`: the same object for every subscriber of it, its JSON made once."""

    __slots__ = ("encoded",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.encoded: str | None = None


class FanoutStats:
    """What the sharing did (exported on /metrics)."""

    def __init__(self) -> None:
        # Selections run for a subscription event (shared or not), and results handed out again.
        self.executions = 0
        self.reused = 0


class _Entry:
    __slots__ = ("at", "payload", "result", "task")

    def __init__(self, payload: object, at: float) -> None:
        # Keeps the payload alive while it may be a key by identity (so its id is not reused).
        self.payload = payload
        self.at = at
        self.result: ExecutionResult | None = None
        self.task: asyncio.Future[ExecutionResult] | None = None


class SharedExecutions:
    """The results of one schema's subscription events, shared by every subscriber asking the same."""

    def __init__(self) -> None:
        self.stats = FanoutStats()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._visible: dict[tuple[str, str | None], frozenset[str]] = {}

    def subscription_key(self, executor: StrawberryGraphQLCoreExecutionContext) -> Hashable:
        """What a subscription's events are executed with (document, variables it can see, scope), or
        None when its executions may not be shared."""
        scope_of = getattr(executor.context_value, "fanout_scope", None)
        scope = scope_of() if callable(scope_of) else None
        operation = executor.operation
        location = operation.loc
        if scope is None or location is None:
            return None
        text = location.source.body
        name = None if operation.name is None else operation.name.value
        visible = self._visible_variables(text, name, executor)
        values = executor.variable_values.coerced
        try:
            variables = tuple(sorted((key, _frozen(values.get(key))) for key in visible))
            hash(variables)
        except TypeError:
            return None
        return (text, name, variables, scope)

    def execute(
        self, key: Hashable, payload: object, executor: FanoutExecutor
    ) -> ExecutionResult | Awaitable[ExecutionResult]:
        now = asyncio.get_running_loop().time()
        entry = self._entries.get(key)
        if entry is not None:
            if entry.task is not None:
                return self._join(entry, payload, executor)
            if entry.result is not None and now - entry.at <= SHARE_SECONDS:
                self.stats.reused += 1
                return entry.result
            del self._entries[key]
        entry = _Entry(payload, now)
        self._entries[key] = entry
        # Oldest first: drop what is too old or too many.
        while True:
            old_key, old = next(iter(self._entries.items()))
            crowded = len(self._entries) > MAX_SHARED_RESULTS
            if not crowded and (now - old.at <= SHARE_SECONDS or old.task is not None):
                break
            del self._entries[old_key]
        result = self._run(payload, executor)
        if executor.is_awaitable(result):
            # Its own task: the subscriber that started it may leave; the others still wait for it.
            task = asyncio.ensure_future(self._settle(key, entry, cast(Awaitable[ExecutionResult], result)))
            task.add_done_callback(_retrieve)
            entry.task = task
            return asyncio.shield(task)
        return self._keep(key, entry, cast(ExecutionResult, result))

    def _run(self, payload: object, executor: FanoutExecutor) -> Any:
        self.stats.executions += 1
        return executor.event_executor(payload).execute_operation(False)

    async def _settle(
        self, key: Hashable, entry: _Entry, result: Awaitable[ExecutionResult]
    ) -> ExecutionResult:
        try:
            done = await result
        except BaseException:
            self._forget(key, entry)
            raise
        return self._keep(key, entry, done)

    def _keep(self, key: Hashable, entry: _Entry, result: ExecutionResult) -> ExecutionResult:
        entry.task = None
        if result.errors or not isinstance(result.data, dict):
            self._forget(key, entry)
            return result
        entry.result = ExecutionResult(SharedData(result.data), None)
        return entry.result

    async def _join(self, entry: _Entry, payload: object, executor: FanoutExecutor) -> ExecutionResult:
        assert entry.task is not None
        with _suppress_all():
            await asyncio.shield(entry.task)
        if entry.result is not None:
            self.stats.reused += 1
            return entry.result
        # Not shareable (it had errors) or it failed: this subscriber runs its own.
        result = self._run(payload, executor)
        return await result if executor.is_awaitable(result) else cast(ExecutionResult, result)

    def _forget(self, key: Hashable, entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]

    def _visible_variables(
        self, text: str, name: str | None, executor: StrawberryGraphQLCoreExecutionContext
    ) -> frozenset[str]:
        found = self._visible.get((text, name))
        if found is None:
            if len(self._visible) >= MAX_DOCUMENTS:
                self._visible.clear()
            found = self._visible[(text, name)] = selection_variables(
                executor.operation, list(executor.fragment_definitions.values())
            )
        return found


def _retrieve(task: asyncio.Future[ExecutionResult]) -> None:
    """A shared execution's failure reaches its waiters; never log it as unretrieved."""
    if not task.cancelled():
        task.exception()


def event_key(payload: object) -> Hashable:
    """The event part of an execution's key: the payload's `fanout_key()`, or the payload itself."""
    key_of = getattr(payload, "fanout_key", None)
    key = key_of() if callable(key_of) else None
    return ("id", id(payload)) if key is None else ("key", type(payload), key)


class _suppress_all:
    """Wait for a shared execution without taking its failure: the joiner then runs its own."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and not issubclass(kind, asyncio.CancelledError)


class _VariableNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_variable(self, node: VariableNode, *_args: object) -> None:
        self.names.add(node.name.value)


def _variables_in(node: Node) -> set[str]:
    collector = _VariableNames()
    visit(node, collector)
    return collector.names


def selection_variables(operation: OperationDefinitionNode, fragments: list[Node]) -> frozenset[str]:
    """The variables that a subscription event's execution can see: all those the document uses, except
    ones that appear only in the arguments of the root field (which pick the source stream)."""
    names: set[str] = set()
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode):
            for directive in selection.directives or ():
                names |= _variables_in(directive)
            if selection.selection_set is not None:
                names |= _variables_in(selection.selection_set)
        else:
            names |= _variables_in(selection)
    for directive in operation.directives or ():
        names |= _variables_in(directive)
    for fragment in fragments:
        names |= _variables_in(fragment)
    return frozenset(names)


def _frozen(value: object) -> Hashable:
    """A hashable stand-in for a coerced variable value (lists and input objects included)."""
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(key), _frozen(item)) for key, item in value.items())))
    if isinstance(value, list | tuple):
        return ("list", tuple(_frozen(item) for item in value))
    return cast(Hashable, value)


_SHARED: weakref.WeakKeyDictionary[GraphQLSchema, SharedExecutions] = weakref.WeakKeyDictionary()


def fanout_stats(schema: BaseSchema) -> FanoutStats:
    """The sharing counters of a Strawberry schema (for the app's /metrics)."""
    graphql_schema: GraphQLSchema = schema._schema  # type: ignore[attr-defined]
    return shared_executions(graphql_schema).stats


def shared_executions(schema: GraphQLSchema) -> SharedExecutions:
    """The sharing of one schema (one app): tests build several apps in one process."""
    shared = _SHARED.get(schema)
    if shared is None:
        shared = _SHARED[schema] = SharedExecutions()
    return shared


class _SharedEvent:
    """What graphql-core runs for one subscriber's event: the shared result when there is one."""

    __slots__ = ("executor", "key", "payload", "shared")

    def __init__(
        self, shared: SharedExecutions, key: Hashable, payload: object, executor: FanoutExecutor
    ) -> None:
        self.shared = shared
        self.key = key
        self.payload = payload
        self.executor = executor

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult | Awaitable[ExecutionResult]:
        return self.shared.execute(self.key, self.payload, self.executor)


_UNKNOWN = object()


# The subscription executor built last in this task (each websocket operation runs in its own task):
# what a subscription handed to its partner's live tail keeps to execute its events (app.live_tail).
_SUBSCRIPTION: ContextVar[FanoutExecutor | None] = ContextVar("subscription_executor", default=None)


def subscription_executor() -> FanoutExecutor | None:
    """The executor of the subscription this task runs (None outside a subscription)."""
    return _SUBSCRIPTION.get()


def forget_subscription_executor() -> None:
    """Drop this task's executor (a finished task keeps its context, and with it what it refers to)."""
    _SUBSCRIPTION.set(None)


class FanoutExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor; a subscription event's execution goes through `SharedExecutions`."""

    _fanout_key: Hashable = _UNKNOWN

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.operation.operation is OperationType.SUBSCRIPTION:
            _SUBSCRIPTION.set(self)

    def build_per_event_executor(self, payload: Any) -> Any:
        shared = shared_executions(self.schema)
        key = self.sharing_key()
        if key is None:
            return _Counted(shared.stats, self.event_executor(payload))
        return _SharedEvent(shared, (key, event_key(payload)), payload, self)

    def sharing_key(self) -> Hashable:
        """What this subscription's events are executed with, or None when they are not shared."""
        if self._fanout_key is _UNKNOWN:
            # Once per subscription: its document, variables and caller do not change.
            self._fanout_key = shared_executions(self.schema).subscription_key(self)
        return self._fanout_key

    def run_event(self, payload: Any) -> ExecutionResult | Awaitable[ExecutionResult]:
        """The selection for one event of this subscription (shared as `SharedExecutions` decides)."""
        result: ExecutionResult | Awaitable[ExecutionResult] = self.build_per_event_executor(
            payload
        ).execute_operation(False)
        return result

    def retire(self) -> None:
        """Let this executor go as soon as nothing refers to it. graphql-core's executor refers to
        itself (its resolve-info helpers are its own bound methods), so a dropped one would otherwise
        wait, with its document's coerced variables and caches, for the garbage collector: a
        thousand subscriptions opening at once kept ~6 KiB each that way (README, Subscriptions).
        Per-event copies made before keep the helpers they copied."""
        self.async_helpers = None  # type: ignore[assignment]

    def count_reuse(self) -> None:
        """Count a shared result handed out again without asking `SharedExecutions` (app.live_tail)."""
        shared_executions(self.schema).stats.reused += 1

    def event_executor(self, payload: Any) -> StrawberryGraphQLCoreExecutionContext:
        """graphql-core's own per-event executor (built only when the event is really executed)."""
        return cast(StrawberryGraphQLCoreExecutionContext, super().build_per_event_executor(payload))


class _Counted:
    """An event that is not shared: it is executed for this subscriber alone (and counted)."""

    __slots__ = ("executor", "stats")

    def __init__(self, stats: FanoutStats, executor: StrawberryGraphQLCoreExecutionContext) -> None:
        self.stats = stats
        self.executor = executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        self.stats.executions += 1
        return self.executor.execute_operation(serially)
