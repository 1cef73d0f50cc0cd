"""What every operation goes through around its execution, as one Strawberry extension.

Strawberry wraps each hook of each extension in a context manager on every request, so the steps below
share one extension with one hook per phase:

- parse: the document text is bounded and parsed once per text (`schema.limits.DocumentGate`);
- validate: the document's limits, the variables, the transport and validation (cached per text); then,
  if the document is valid, the caller's token is looked up, unless no root field needs a caller
  (`schema.tokens.identify_if_needed`); only a query keeps the request's shared reads
  (`resolvers.context.SharedReads`);
- the result: DomainErrors become coded errors, anything unexpected is masked with the request id
  (`schema.errors.mask_errors`), before outer extensions (logging, metrics) see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult, StreamExecutionResult
from strawberry.types.graphql import OperationType

from resolvers.context import RequestContext
from schema.errors import mask_errors
from schema.limits import DocumentGate
from schema.tokens import identify_if_needed


class RequestPipeline(SchemaExtension):
    def __init__(self, gate: DocumentGate) -> None:
        self.gate = gate

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context
        mask_errors(context.result, getattr(context.context, "request_id", "unknown"))

    def on_parse(self) -> Iterator[None]:
        self.gate.parse(self.execution_context)
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        self.gate.validate(context)
        request = context.context
        if isinstance(request, RequestContext) and context.operation_type is not OperationType.QUERY:
            # A mutation's answer reads what it wrote: no snapshot taken before the write.
            request.shared_reads = None
        if not context.pre_execution_errors:
            await identify_if_needed(context)
        yield

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        if isinstance(result, ExecutionResult):
            mask_errors(result, getattr(self.execution_context.context, "request_id", "unknown"))
        yield
