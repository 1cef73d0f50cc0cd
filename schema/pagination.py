"""Relay connections over keyset pages."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Generic, TypeVar

import strawberry
from strawberry.types.nodes import SelectedField

from persistence.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, page_nodes

Item = TypeVar("Item")
Node = TypeVar("Node")

# The Relay connection arguments every list takes, described once.
First = Annotated[
    int | None,
    strawberry.argument(
        description=f"How many items to return: 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})."
    ),
]
After = Annotated[
    str | None,
    strawberry.argument(description="Start after this cursor: the previous page's `endCursor`."),
]


@strawberry.type(description="Where this page starts and ends, and whether more follow.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow `endCursor`.")
    has_previous_page: bool = strawberry.field(description="This page was fetched with `after`.")
    start_cursor: str | None = strawberry.field(description="Cursor of the first item on this page.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` to fetch the next page.")


@strawberry.type(description="An item of a list with its cursor.")
class Edge(Generic[Node]):
    node: Node = strawberry.field(description="The item.")
    cursor: str = strawberry.field(description="Opaque position of this item, for `after`.")


@strawberry.type(description="A page of a list (keyset cursors; `first` is at most 100).")
class Connection(Generic[Node]):
    edges: list[Edge[Node]] = strawberry.field(
        resolver=lambda root: root.page_edges(), description="The items on this page, with cursors."
    )
    page_info: PageInfo = strawberry.field(description="Cursors and whether more pages exist.")
    # None when the query did not select `totalCount` (see `selects_total_count`).
    counted: strawberry.Private[int | None]
    # The items, and the page they came from (its cursors are encoded only if `edges` are selected).
    listed: strawberry.Private[list[Node]]
    page: strawberry.Private[Page[Any]]

    def page_edges(self) -> list[Edge[Node]]:
        pairs = zip(self.page.items, self.listed, strict=True)
        return [Edge(node=node, cursor=cursor) for (cursor, _), node in pairs]

    @strawberry.field(description="How many items the whole list has.")
    def total_count(self) -> int:
        if self.counted is None:
            raise RuntimeError("totalCount was resolved on a page fetched without counting")
        return self.counted

    @strawberry.field(description="The items on this page, without cursors.")
    def nodes(self) -> list[Node]:
        return self.listed


def connection(page: Page[Item], to_node: Callable[[Item], Node]) -> Connection[Node]:
    items = page.items
    return Connection(
        listed=[to_node(item) for item in page_nodes(page)],
        page=page,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=items[0][0] if items else None,
            end_cursor=items[-1][0] if items else None,
        ),
        counted=page.total_count,
    )


def child_fields(fields: Iterable[Any]) -> list[SelectedField]:
    """The fields selected directly under `fields` (the selected fields of a resolver's `info`, or one
    selected field), with fragment spreads and inline fragments looked inside."""
    found: list[SelectedField] = []
    pending: list[Any] = list(fields)
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, SelectedField):
                found.append(selection)
            else:  # a fragment spread or an inline fragment: look inside
                pending.append(selection)
    return found


def selects_total_count(info: Any) -> bool:
    """Whether the query asks the connection being resolved for `totalCount` (in fragments too)."""
    return any(field.name == "totalCount" for field in child_fields(info.selected_fields))


def selected_field_names(info: Any) -> set[str]:
    """The names of every field selected under the field being resolved, at any depth (fragments
    included): enough to tell whether a page's items will need their products or prices."""
    names: set[str] = set()
    pending: list[Any] = list(info.selected_fields)
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, SelectedField):
                names.add(selection.name)
            pending.append(selection)
    return names
