"""Sets of requests as unions of boxes over the candidate domains.

A box maps a variable's index to a bitmask of its candidates (a variable
that is absent is unconstrained); a region is a list of boxes. Conditions
become regions exactly (with respect to the candidates), and the algebra
below is plain set algebra on finite sets, so emptiness of a region is
decided exactly whenever the candidates are complete (domain.py).
"""

from __future__ import annotations

import copy

from .. import ir
from ..vocab import operators
from .domain import CAPPED, Variable, atom_of, family_inexact, field_inexact

Box = dict[int, int]
Region = list[Box]
MAX_BOXES = 4096


class TooComplex(Exception):
    """A condition expands into more boxes than the analysis will track."""


class Space:
    """The variables of one analysis and the translation of conditions."""

    def __init__(self, variables: list[Variable]):
        self.variables = variables
        self.var_of_field = {p: i for i, v in enumerate(variables) for p in v.paths}
        self.fulls = [v.full for v in variables]  # the search reads these in its innermost loop
        self._exact_cache: dict[frozenset, bool] = {}

    # ---- conditions -> regions ----------------------------------------------------

    def region(self, cond) -> Region:
        if cond is None:
            return [{}]
        if isinstance(cond, ir.Compare):
            index = self.var_of_field[cond.field]
            var = self.variables[index]
            mask = var.masks[atom_of(cond.field, cond.operator, _value(cond))]
            if mask == 0:
                return []
            return [{}] if mask == var.full else [{index: mask}]
        if isinstance(cond, ir.Not):
            return self.complement(self.region(cond.item))
        parts = [self.region(item) for item in cond.items]
        if isinstance(cond, ir.AnyOf):
            return simplify([box for part in parts for box in part])
        out: Region = [{}]
        for part in parts:
            out = intersect(out, part)
            if not out:
                return []
        return out

    def complement(self, region: Region) -> Region:
        return self.subtract([{}], region)

    def subtract(self, region: Region, minus: Region) -> Region:
        out = region
        for cut in minus:
            out = [piece for box in out for piece in self._box_minus(box, cut)]
            if len(out) > MAX_BOXES:
                raise TooComplex
            if not out:
                break
        return out

    def _box_minus(self, box: Box, cut: Box) -> Region:
        if not _meets(box, cut):
            return [box]
        pieces = []
        current = dict(box)
        for index, mask in cut.items():
            mine = current.get(index, self.variables[index].full)
            outside = mine & ~mask
            if outside:
                piece = dict(current)
                piece[index] = outside
                pieces.append(piece)
            current[index] = mine & mask
        return pieces

    # ---- witnesses ----------------------------------------------------------------

    def witness(self, box: Box) -> dict:
        request: dict = {}
        for index, mask in sorted(box.items()):
            if mask == self.variables[index].full:
                continue
            bit = (mask & -mask).bit_length() - 1
            _merge(request, self.variables[index].candidates[bit])
        return request

    def exact(self, atoms) -> bool:
        """Are the candidates complete for questions about these atoms?"""
        key = frozenset(atoms)
        known = self._exact_cache.get(key)
        if known is None:
            known = self._exact_cache[key] = self._exact(key)
        return known

    def _exact(self, atoms) -> bool:
        by_path: dict[str, list] = {}
        for atom in atoms:
            by_path.setdefault(atom.field, []).append(atom)
        for path, group in by_path.items():
            var = self.variables[self.var_of_field[path]]
            if (var.why_inexact or "").startswith(CAPPED) or field_inexact(group):
                return False
            if any(other.startswith(path + ".") for other in by_path) and family_inexact(path, group):
                return False
        return True


def _value(cmp: ir.Compare):
    return None if cmp.operator in operators.UNARY else cmp.value


def _meets(a: Box, b: Box) -> bool:
    for index, mask in b.items():
        if index in a and not a[index] & mask:
            return False
    return True


def _meeting(box: Box, boxes: list[Box]) -> list[Box]:
    """The boxes that meet `box`, in order (`_meets` inlined: this runs for
    every pair of rules)."""
    out = []
    for b in boxes:
        for index, mask in b.items():
            if index in box and not box[index] & mask:
                break
        else:
            out.append(b)
    return out


def intersect(a: Region, b: Region) -> Region:
    out = []
    for x in a:
        for y in b:
            if _meets(x, y):
                box = dict(x)
                for index, mask in y.items():
                    box[index] = box[index] & mask if index in box else mask
                out.append(box)
    if len(out) > MAX_BOXES:
        raise TooComplex
    return out


def simplify(region: Region) -> Region:
    """Merge boxes that constrain the same single variable (`a == 1 or a == 2`)."""
    single: dict[int, int] = {}
    rest = []
    for box in region:
        if not box:
            return [{}]
        if len(box) == 1:
            (index, mask), = box.items()
            single[index] = single.get(index, 0) | mask
        else:
            rest.append(box)
    if len(rest) > MAX_BOXES:
        raise TooComplex
    return [{i: m} for i, m in single.items()] + rest


def meets_region(a: Region, b: Region) -> bool:
    for x in a:
        for y in b:
            for index, mask in y.items():
                if index in x and not x[index] & mask:
                    break
            else:
                return True
    return False


def variables_of(region: Region) -> set[int]:
    return {i for box in region for i in box}


def _merge(into: dict, fragment: dict) -> None:
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            # A copy: later merges must not write into the stored candidate.
            into[key] = copy.deepcopy(value)


def find_point(space: Space, box: Box, avoid: list[Box]) -> Box | None:
    """A point of `box` (a box whose constrained variables hold one candidate
    each) inside none of the `avoid` boxes, or None when there is none.

    A backtracking search: assign the variable most of the remaining `avoid`
    boxes constrain, trying one candidate per class of candidates that those
    boxes cannot tell apart (partition refinement over the bitmasks), least
    covered class first. Complete: every class is tried, and candidates of one
    class behave identically for every box still in play."""
    survivors = _meeting(box, avoid)
    return _search(space, dict(box), survivors, set())


def _search(space: Space, point: Box, survivors: list[Box], assigned: set[int]) -> Box | None:
    counts: dict[int, int] = {}
    fulls = space.fulls
    for b in survivors:
        for i, mask in b.items():
            if point.get(i, fulls[i]) & ~mask:
                break
        else:
            return None  # this box holds every completion of the point
        for i in b:
            if i not in assigned:
                counts[i] = counts.get(i, 0) + 1
    if not survivors:
        return point
    var = max(counts, key=counts.get)
    mine = point.get(var, fulls[var])
    allowed = 0
    for b in survivors:
        allowed |= b.get(var, 0)
    if mine & ~allowed:
        # A candidate no box here allows on `var` escapes every box that
        # constrains `var`; any other candidate faces a superset of boxes, so
        # if this one fails they all fail.
        classes = [(mine & ~allowed, 0)]
    else:
        classes = _classes(mine, [b[var] for b in survivors if var in b])
    classes.sort(key=lambda c: c[1])
    assigned.add(var)
    for cls, _ in classes:
        bit = cls & -cls
        point[var] = bit
        found = _search(space, point, [b for b in survivors if b.get(var, bit) & bit], assigned)
        if found is not None:
            return found
    assigned.discard(var)
    point[var] = mine
    return None


def _classes(mine: int, masks: list[int]) -> list[tuple[int, int]]:
    """Split `mine` into sets of candidates no mask tells apart, with how many masks hold each."""
    classes = [(mine, 0)]
    for mask in masks:
        refined = []
        for cls, count in classes:
            inside, outside = cls & mask, cls & ~mask
            if inside:
                refined.append((inside, count + 1))
            if outside:
                refined.append((outside, count))
        classes = refined
    return classes


def is_empty_minus(space: Space, region: Region, minus: Region) -> bool:
    """Is `region` minus `minus` empty?"""
    return all(find_point(space, box, minus) is None for box in region)
