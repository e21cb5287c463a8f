"""Sets of requests as unions of boxes over the candidate domains.

A box maps a variable's index to a bitmask of its candidates (a variable
that is absent is unconstrained); a region is a list of boxes. Conditions
become regions exactly (with respect to the candidates), and the algebra
below is plain set algebra on finite sets, so emptiness of a region is
decided exactly whenever the candidates are complete (domain.py).
"""

from __future__ import annotations

from .. import ir
from .domain import Variable, atom_of

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

    def exact(self, indices) -> bool:
        return all(self.variables[i].exact for i in indices)


def _value(cmp: ir.Compare):
    return None if cmp.operator in ir.UNARY_OPERATORS else cmp.value


def _meets(a: Box, b: Box) -> bool:
    for index, mask in b.items():
        if index in a and not a[index] & mask:
            return False
    return True


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
    return any(_meets(x, y) for x in a for y in b)


def variables_of(region: Region) -> set[int]:
    return {i for box in region for i in box}


def _merge(into: dict, fragment: dict) -> None:
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
