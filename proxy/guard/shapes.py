"""Statement shapes: the guard's work on a statement, reused for the same statement with other values.

Agents send the same query over and over with other constants (`WHERE id = 1`, then `= 2`).
Parsing, analysing and rewriting it costs about a millisecond each time; for a shape seen
before, this module fills the constants of the new statement into the rewrite it already made.

A *shape* is the statement as Postgres's scanner tokenises it (`tokens.scan_sql`) with every
swappable constant replaced by a hole: plain quoted strings and plain numbers that are not a
row count (LIMIT/OFFSET/FETCH) or an interval's text. Every other constant is *pinned*: part
of the shape, compared by its exact text. The second time a shape comes by (under the same
search path and catalog) and its statement was allowed, a `Shape` is learned:

1. the statement is copied with each swappable constant replaced by a unique *sentinel* of the
   same kind (random per build, checked not to occur in the statement), and the copy goes
   through the whole guard again (`parse_statement`, `enforce` under the same obligations);
2. the copy's `Analysis` must equal the statement's, and its rewrite must mask, filter, cap and
   read exactly what the statement's did;
3. the sentinels are found in the copy's rewritten SQL: the text between them is the template;
4. filling the statement's own constants into the template must give, character for character,
   the SQL the guard produced for the statement.

Anything that fails is remembered as "not cacheable" and takes the full path every time. A
filled template changes one constant token for another of the same kind in the positions the
guard itself put them, so the statement Postgres receives has the structure the guard built and
checked, and `Template.checked_fill` has Postgres's parser confirm it for every statement: its
normalisation (constants replaced) must equal the normalisation of the rewrite the template was
learned from, which passed the guard's full re-validation.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pglast import parser as pgparser

from pgwarden.proxy.guard.catalog import Catalog
from pgwarden.proxy.guard.enforce import enforce, normalize
from pgwarden.proxy.guard.model import Analysis, GuardDenied, Obligations, Reason, Rewrite
from pgwarden.proxy.guard.parse import Statement, parse_statement
from pgwarden.proxy.guard.tokens import Constant, Scanned

SHAPES = 512  # learned shapes kept per cache (least recently used dropped)
TEMPLATES_PER_SHAPE = 16  # one per distinct set of obligations (e.g. per tenant's row filter)
SIGHTINGS = 2048  # shapes seen once, remembered so the second sighting learns


@dataclass(frozen=True, slots=True)
class Template:
    """A shape's rewritten SQL under one set of obligations, with holes for its constants."""

    segments: tuple[str, ...]  # len(holes) + 1 pieces of SQL around the holes
    holes: tuple[int, ...]  # for each hole, the index of the statement's constant that fills it
    rewrite: Rewrite  # the rewrite of the statement it was learned from (for everything but `sql`)
    memo: dict[str, Any] = field(default_factory=dict, compare=False)  # the caller's derived values

    def fill(self, constants: Sequence[Constant]) -> str:
        parts = [self.segments[0]]
        for index, segment in zip(self.holes, self.segments[1:], strict=True):
            parts.append(constants[index].text)
            parts.append(segment)
        return "".join(parts)

    def checked_fill(self, constants: Sequence[Constant]) -> str:
        """`fill`, confirmed by Postgres's parser: once its normalisation has replaced every
        constant, the filled statement is the rewrite the guard built and re-validated."""
        sql = self.fill(constants)
        try:
            same = normalize(sql) == self.rewrite.normalized
        except pgparser.ParseError:
            same = False
        if not same:
            raise GuardDenied(Reason.PARSER_DISAGREEMENT, "the rewritten statement failed re-validation",
                              detail={"check": "filled template"})
        return sql


@dataclass(slots=True)
class Shape:
    """What is known about one shape: its analysis and a template per set of obligations."""

    statement: Statement  # the sentinel copy, analysed (its analysis equals `analysis`)
    analysis: Analysis
    sentinels: dict[int, str]  # constant index -> the sentinel text that stood for it
    templates: OrderedDict[Hashable, Template] = field(default_factory=OrderedDict)


def obligations_key(obligations: Obligations) -> Hashable:
    """A hashable, order-independent identity of `obligations` (templates are kept per value)."""
    masks = tuple(sorted(
        (relation, tuple(sorted((column, mask.kind, repr(mask.params)) for column, mask in cols.items())))
        for relation, cols in obligations.masks.items()
    ))
    filters = tuple(sorted(
        (relation, tuple((f.column, repr(f.values)) for f in found))
        for relation, found in obligations.row_filters.items()
    ))
    return (tuple(sorted(obligations.allowed_relations)), masks, filters, obligations.row_cap,
            tuple(sorted(obligations.extra_functions)))


def _sentinel(kind: str, nonce: str, index: int) -> str:
    if kind == "string":
        return f"'pgw{nonce}x{index}'"
    if kind == "integer":
        return f"1{nonce[:5]}{index:03d}"  # nine digits: an int4, as the original was
    if kind == "bigint":
        return f"9{nonce}{index:04d}"  # beyond int4, as the original was
    return f"1{nonce[:5]}{index:03d}.5"  # decimal


def _sentinel_pattern(text: str) -> re.Pattern[str]:
    if text.startswith("'"):
        return re.compile(re.escape(text))
    return re.compile(rf"(?<![0-9.]){re.escape(text)}(?![0-9])")


def _splice(sql: str, constants: Sequence[Constant], replacements: dict[int, str]) -> str:
    parts, position = [], 0
    for index in sorted(replacements):
        constant = constants[index]
        parts.append(sql[position:constant.start])
        parts.append(replacements[index])
        position = constant.end
    parts.append(sql[position:])
    return "".join(parts)


def _same_effect(a: Rewrite, b: Rewrite) -> bool:
    """Same masks, filters, relations and cap, and the same statement once Postgres's own
    normalisation has replaced every constant."""
    return (a.masked_columns, a.row_filters_applied, a.relations, a.row_cap, a.normalized) == (
        b.masked_columns, b.row_filters_applied, b.relations, b.row_cap, b.normalized)


class ShapeCache:
    """Learned shapes of one gate. Not thread-safe: the gate uses it from its event-loop thread.

    Shapes come in families: the same tokens, the same naturally pinned constants (see
    `tokens.Constant`) and the same kinds of swappable ones. When the guard turns a swappable
    constant of a family into something other than itself (sqlglot rewrites some arguments,
    e.g. `date_trunc('month', …)` to `DATE_TRUNC('MONTH', …)`), that constant is pinned for the
    whole family and the shape is learned again once.
    """

    def __init__(self, *, shapes: int = SHAPES, templates_per_shape: int = TEMPLATES_PER_SHAPE) -> None:
        self.max_shapes = shapes
        self.max_templates = templates_per_shape
        self._shapes: OrderedDict[Hashable, Shape] = OrderedDict()
        self._sighted: OrderedDict[Hashable, None] = OrderedDict()
        self._refused: OrderedDict[Hashable, None] = OrderedDict()
        self._extra_pins: OrderedDict[Hashable, frozenset[int]] = OrderedDict()  # per family
        self.learned = self.refused = 0  # counters, for tests and benchmarks

    def _key(self, scanned: Scanned, context: Hashable) -> tuple[Hashable, frozenset[int], Hashable]:
        family = (scanned.key, context, tuple(c.text if c.pinned else c.kind for c in scanned.constants))
        extra = self._extra_pins.get(family, frozenset())
        return family, extra, (family, tuple(scanned.constants[i].text for i in sorted(extra)))

    def find(self, scanned: Scanned, context: Hashable) -> Shape | None:
        """The learned shape of `scanned` under `context` (search path, catalog), if any."""
        key = self._key(scanned, context)[2]
        shape = self._shapes.get(key)
        if shape is not None:
            self._shapes.move_to_end(key)
        return shape

    def template(self, shape: Shape, obligations: Obligations) -> Template | None:
        return shape.templates.get(obligations_key(obligations))

    def learn(
        self,
        scanned: Scanned,
        context: Hashable,
        statement: Statement,
        obligations: Obligations,
        rewrite: Rewrite,
        catalog: Catalog | None,
    ) -> None:
        """Record that `statement` (scanned as `scanned`) was rewritten to `rewrite` under
        `obligations`; from the second sighting of its shape on, learn a template for it."""
        family, extra, key = self._key(scanned, context)
        if key in self._refused:
            return
        ob_key = obligations_key(obligations)
        shape = self._shapes.get(key)
        if shape is not None and ob_key in shape.templates:
            return
        if shape is None and key not in self._sighted:
            _remember(self._sighted, key, SIGHTINGS)
            return
        for attempt in range(2):
            if shape is None:
                shape = _learn_shape(scanned, statement, extra)
                if shape is None:
                    break
                _remember(self._shapes, key, self.max_shapes, shape)
            template = _learn_template(shape, scanned, obligations, rewrite, catalog)
            if isinstance(template, Template):
                _remember(shape.templates, ob_key, self.max_templates, template)
                self.learned += 1
                return
            self._shapes.pop(key, None)
            if not template or attempt:
                break
            extra = extra | template  # constants the guard did not keep as written: pin them
            _remember(self._extra_pins, family, SIGHTINGS, extra)
            key, shape = (family, tuple(scanned.constants[i].text for i in sorted(extra))), None
        _remember(self._refused, key, SIGHTINGS)
        self.refused += 1


def _learn_shape(scanned: Scanned, statement: Statement, extra_pins: frozenset[int]) -> Shape | None:
    if len(scanned.constants) > 999:
        return None  # sentinels number constants with three digits
    nonce = f"{secrets.randbelow(10**10):010d}"
    sentinels = {
        index: _sentinel(constant.kind, nonce, index)
        for index, constant in enumerate(scanned.constants)
        if not constant.pinned and index not in extra_pins
    }
    if any(s.strip("'") in scanned.sql for s in sentinels.values()):
        return None  # the statement holds a sentinel's text (chance, or an attempt): do not guess
    copy = _splice(scanned.sql, scanned.constants, sentinels)
    try:
        sentinel_statement = parse_statement(copy, search_path=statement.search_path)
    except GuardDenied:
        return None
    if sentinel_statement.analysis != statement.analysis:
        return None
    return Shape(statement=sentinel_statement, analysis=statement.analysis, sentinels=sentinels)


def _learn_template(
    shape: Shape, scanned: Scanned, obligations: Obligations, rewrite: Rewrite, catalog: Catalog | None
) -> Template | frozenset[int]:
    """The template, or the constants to pin because the rewrite does not carry them as
    constants (empty: the shape cannot be templated at all)."""
    try:
        sentinel_rewrite = enforce(shape.statement, obligations, catalog)
    except GuardDenied:
        return frozenset()
    found: list[tuple[int, int, int]] = []
    to_pin = set()
    for index, text in shape.sentinels.items():
        pattern = _sentinel_pattern(text)
        spans = [(m.start(), m.end(), index) for m in pattern.finditer(sentinel_rewrite.sql)]
        # Not in the SQL as written (the guard rewrote it), or still there once Postgres has
        # normalised every constant away (a column position, a type modifier): structure.
        if not spans or pattern.search(sentinel_rewrite.normalized):
            to_pin.add(index)
        found.extend(spans)
    if to_pin:
        return frozenset(to_pin)
    if not _same_effect(sentinel_rewrite, rewrite):
        return frozenset()
    found.sort()
    segments, holes, position = [], [], 0
    for start, end, index in found:
        if start < position:
            return frozenset()
        segments.append(sentinel_rewrite.sql[position:start])
        holes.append(index)
        position = end
    segments.append(sentinel_rewrite.sql[position:])
    template = Template(segments=tuple(segments), holes=tuple(holes), rewrite=rewrite)
    if template.fill(scanned.constants) != rewrite.sql:
        return frozenset()
    return template


def _remember(cache: OrderedDict[Hashable, Any], key: Hashable, limit: int, value: Any = None) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
