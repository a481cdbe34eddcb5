"""Symbols with real spans for languages other than Python, from tree-sitter (tree-sitter-language-pack).

The walk visits declarations, and the bodies of the things that hold declarations (classes, impls, traits,
modules, interfaces), never a function's body: a 5,000-line Java class costs a few thousand node visits.
A language whose grammar is missing, or a parser that fails, leaves the caller to its regex fallback.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

Definition = tuple[str, str, int, int]  # name, kind (class, function, method), first and last line (1-based)
log = logging.getLogger(__name__)

LANGUAGE_OF = {
    "go": "go",
    "rs": "rust",
    "java": "java",
    "kt": "kotlin",
    "scala": "scala",
    "js": "javascript",
    "jsx": "javascript",
    "mjs": "javascript",
    "cjs": "javascript",
    "ts": "typescript",
    "mts": "typescript",
    "cts": "typescript",
    "tsx": "tsx",
    "c": "c",
    "h": "c",
    "cc": "cpp",
    "cpp": "cpp",
    "cxx": "cpp",
    "hpp": "cpp",
    "cs": "csharp",
    "rb": "ruby",
    "php": "php",
    "swift": "swift",
}
# Declarations: node type -> kind. Their name is the `name` field (an impl's is its `type`).
_CLASSES = """class_declaration class_definition interface_declaration enum_declaration record_declaration
    annotation_type_declaration struct_item enum_item trait_item impl_item mod_item union_item type_spec
    type_alias_declaration abstract_class_declaration object_declaration struct_specifier class_specifier
    module class trait_declaration protocol_declaration namespace_definition internal_module"""
_FUNCTIONS = """function_declaration function_item function_signature_item method_declaration
    constructor_declaration method_definition generator_function_declaration function_definition
    method_signature abstract_method_signature macro_definition method singleton_method function_signature"""
KINDS = {**{t: "class" for t in _CLASSES.split()}, **{t: "function" for t in _FUNCTIONS.split()}}
# Where declarations live besides the top level: walked into, but not recorded themselves.
_CONTAINERS_TEXT = """
    export_statement declaration_list class_body interface_body enum_body field_declaration_list
    object_type program source_file translation_unit namespace_body
    enum_body_declarations ambient_declaration module_body decorated_definition template_declaration
    field_declaration lexical_declaration variable_declaration expression_statement type_declaration"""
_CONTAINERS = frozenset(_CONTAINERS_TEXT.split())
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})


@cache
def _parser(language: str) -> Any | None:
    try:
        from tree_sitter_language_pack import get_parser

        return get_parser(language)  # type: ignore[arg-type]
    except Exception as error:  # not installed, or no grammar for it: the regex fallback takes over
        log.debug("no tree-sitter parser for %s: %s", language, error)
        return None


def language_for(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    return LANGUAGE_OF.get(name.rsplit(".", 1)[-1].lower()) if "." in name else None


def syntax_symbols(data: bytes, language: str) -> tuple[list[Definition], list[int]] | None:
    """Definitions (name, kind, 1-based first and last line) and chunk boundaries, or None to fall back."""
    parser = _parser(language)
    if parser is None:
        return None
    try:
        root = parser.parse(data).root_node
    except Exception as error:
        log.debug("tree-sitter failed on a %s file: %s", language, error)
        return None
    symbols: list[Definition] = []
    boundaries: list[int] = []
    _walk(root, symbols, boundaries, inside_class=False, depth=0)
    return symbols, sorted(set(boundaries))


def _name(node: Any) -> str | None:
    named = node.child_by_field_name("name") or node.child_by_field_name("type")
    if named is None:
        declarator = node.child_by_field_name("declarator")
        named = declarator.child_by_field_name("declarator") if declarator is not None else None
        named = named or declarator
    if named is None or named.text is None:
        return None
    text: str = named.text.decode("utf-8", errors="replace")
    return text.split("<", 1)[0].split("(", 1)[0].strip() or None


def _walk(
    node: Any, symbols: list[Definition], boundaries: list[int], *, inside_class: bool, depth: int
) -> None:
    if depth > 12:
        return
    for child in node.named_children:
        kind = KINDS.get(child.type)
        start, end = child.start_point[0] + 1, child.end_point[0] + 1
        if kind is not None:
            name = _name(child)
            if name:
                symbol_kind = "method" if kind == "function" and inside_class else kind
                symbols.append((name, symbol_kind, start, end))
                if depth <= 2 or kind == "function":
                    boundaries.append(start)
            if kind == "class":
                _walk(child, symbols, boundaries, inside_class=True, depth=depth + 1)
            continue
        if child.type in ("variable_declarator", "assignment_expression"):
            _value_definition(child, symbols, boundaries, inside_class)
            continue
        if child.type in _CONTAINERS:
            _walk(child, symbols, boundaries, inside_class=inside_class, depth=depth + 1)


def _value_definition(
    node: Any, symbols: list[Definition], boundaries: list[int], inside_class: bool
) -> None:
    """`const f = () => …`, `app.render = function render() …`, `exports.f = …`: functions by assignment."""
    value = node.child_by_field_name("value") or node.child_by_field_name("right")
    if value is None or value.type not in _FUNCTION_VALUES:
        return
    target = node.child_by_field_name("name") or node.child_by_field_name("left")
    if target is None:
        return
    if target.type == "member_expression":
        target = target.child_by_field_name("property") or target
    if target.text is None:
        return
    start = node.start_point[0] + 1
    kind = "method" if inside_class else "function"
    symbols.append((target.text.decode("utf-8", errors="replace"), kind, start, node.end_point[0] + 1))
    boundaries.append(start)
