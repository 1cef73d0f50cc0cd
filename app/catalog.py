"""Catalog files: TOML or JSON documents of products and their dated prices (see app/catalog.toml)."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from domain.errors import DomainError, ErrorCode
from domain.products import CatalogEntry, catalog_from_document

# The catalog shipped with the package: the demo seeds it, an operator may import it as a start.
PACKAGED_CATALOG = "catalog.toml"


def read_catalog(text: str, *, is_json: bool) -> list[CatalogEntry]:
    """Parse and validate a catalog; a syntax error is INVALID_INPUT with the parser's words."""
    try:
        document: Any = json.loads(text) if is_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise DomainError(ErrorCode.INVALID_INPUT, f"Not a valid catalog file: {error}", "file") from error
    if not isinstance(document, dict):
        raise DomainError(ErrorCode.INVALID_INPUT, "A catalog file is a table with `products`.", "file")
    return catalog_from_document(document)


def load_catalog(path: Path) -> list[CatalogEntry]:
    """A catalog file: JSON if its name ends in .json, TOML otherwise."""
    return read_catalog(path.read_text(encoding="utf-8"), is_json=path.suffix.lower() == ".json")


def packaged_catalog() -> list[CatalogEntry]:
    text = resources.files("app").joinpath(PACKAGED_CATALOG).read_text(encoding="utf-8")
    return read_catalog(text, is_json=False)
