"""Merge the obligations of every matching allow rule into the most restrictive set.

* tables and extra functions are grants: their union is what the call may use;
* masks: every mask of every matching rule applies; two different masks on one column give
  the stricter (`null` < `fixed` < `hash` < `partial`/`email`/`sql` by what they reveal; two
  `partial` masks keep the fewer characters; masks that cannot be ranked give `null`);
* row filters: all of them apply (AND), identical ones once;
* row cap: the smallest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pgwarden.proxy.guard.model import Mask, Obligations, RowFilter

_REVEALS = {"null": 0, "fixed": 1, "hash": 2, "partial": 3, "email": 3, "sql": 3}
NULL_MASK = Mask("null")


def stricter_mask(a: Mask, b: Mask) -> Mask:
    """The mask that reveals no more than either of `a` and `b`."""
    if a == b:
        return a
    if a.kind == b.kind == "partial":
        keep_a, keep_b = a.param("keep_last", 4), b.param("keep_last", 4)
        if keep_a != keep_b:
            return a if keep_a < keep_b else b
        return Mask("partial", (("keep_last", keep_a),))  # fills differ: default fill
    rank_a, rank_b = _REVEALS.get(a.kind, 3), _REVEALS.get(b.kind, 3)
    if rank_a != rank_b:
        return a if rank_a < rank_b else b
    return NULL_MASK


def merge(
    relations: Iterable[str],
    masks: Iterable[Mapping[str, Mapping[str, Mask]]],
    row_filters: Iterable[tuple[str, RowFilter]],
    row_caps: Iterable[int | None],
    functions: Iterable[Iterable[str]],
) -> Obligations:
    """Obligations of a decision from the pieces contributed by each matching allow rule."""
    merged_masks: dict[str, dict[str, Mask]] = {}
    for rule_masks in masks:
        for relation, columns in rule_masks.items():
            target = merged_masks.setdefault(relation, {})
            for column, mask in columns.items():
                current = target.get(column)
                target[column] = mask if current is None else stricter_mask(current, mask)
    merged_filters: dict[str, tuple[RowFilter, ...]] = {}
    for relation, row_filter in row_filters:
        existing = merged_filters.get(relation, ())
        if row_filter not in existing:
            merged_filters[relation] = (*existing, row_filter)
    caps = [cap for cap in row_caps if cap is not None]
    return Obligations(
        allowed_relations=frozenset(relations),
        masks=merged_masks,
        row_filters=merged_filters,
        row_cap=min(caps) if caps else None,
        extra_functions=frozenset(f for group in functions for f in group),
    )
