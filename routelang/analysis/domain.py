"""Finite domains of request values: the "small model" the analysis reasons over.

Every condition is a boolean combination of atoms `operator(lookup(request,
field), value)`. For each *variable* (a field path, or a family of paths
where one is a prefix of another) we build a finite list of candidate
values such that every combination of atom outcomes that some real request
value produces is produced by at least one candidate (docs/analysis.md
gives the argument). Atom outcomes are computed by calling
`runtime.operators.apply` on the candidates, never re-derived, so the
analysis cannot disagree with the runtime about what a value does.

Where the argument does not hold (regexes that are not plain literals,
numeric and substring tests on one field, too many patterns), the variable
is marked inexact: witnesses found there are still real, but "no request
does X" is not claimed.
"""

from __future__ import annotations

import ast as pyast
import bisect
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..runtime.operators import lookup
from ..vocab import operators
from ..vocab.operators import apply, compile_regex, text, to_float
from .sre import sre_constants, sre_parse


def _in_domain(*domains: str) -> tuple[str, ...]:
    return tuple(op.name for op in operators.TABLE if op.domain in domains)


# Each operator's `domain` facet says how candidates are built for it; an
# operator without one (None) makes its field inexact (field_inexact).
NUMERIC_OPS = _in_domain("order")
EQUALITY_OPS = _in_domain("equality")
MEMBERSHIP_OPS = _in_domain("membership")
PATTERN_OPS = _in_domain("substring", "prefix", "suffix")
TEXT_DOMAINS = ("substring", "prefix", "suffix", "regex")
MAX_PATTERNS = 10          # 2**10 pattern combinations per field at most
MAX_FAMILY_CANDIDATES = 4096
CAPPED = "too many combinations of values under "
SEPARATORS = ("_", "-", "~", "|", "#", "\x1f")


@dataclass(frozen=True)
class Atom:
    field: str
    operator: str
    value_key: str          # JSON of the value: atoms with equal keys are one atom
    value: Any = field(default=None, compare=False, hash=False)


def atom_of(field_path: str, operator: str, value: Any) -> Atom:
    return Atom(field_path, operator, json.dumps(value, sort_keys=True), value)


def value_key(value: Any) -> tuple:
    """Identity of a candidate: 1, 1.0 and True are different candidates."""
    return (type(value).__name__, json.dumps(value, sort_keys=True, allow_nan=True))


# ---- literal-ish regexes ---------------------------------------------------------

@lru_cache(maxsize=4096)  # exactness questions ask about the same patterns again and again
def literal_regex(pattern: str) -> tuple[str, str] | None:
    """("substring"|"prefix"|"suffix"|"whole", text) for a regex that is a
    plain literal, optionally anchored by ^ and/or \\Z; None otherwise."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError):
        return None
    items = list(parsed)
    start = bool(items) and items[0] == (sre_constants.AT, sre_constants.AT_BEGINNING)
    if start:
        items = items[1:]
    end = bool(items) and items[-1] == (sre_constants.AT, sre_constants.AT_END_STRING)
    if end:
        items = items[:-1]
    if not all(op is sre_constants.LITERAL for op, _ in items):
        return None
    text = "".join(chr(arg) for _, arg in items)
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    kind = {(False, False): "substring", (True, False): "prefix",
            (False, True): "suffix", (True, True): "whole"}[(start, end)]
    return kind, text


@lru_cache(maxsize=4096)
def regex_prefix(pattern: str) -> str:
    """Text that every string the pattern finds a match in (`re.search`)
    starts with: the literals right after a leading `^` ("" when there are
    none, or when a flag lets `^` match elsewhere or letters match their other
    case)."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError):
        return ""
    if parsed.state.flags & (re.IGNORECASE | re.MULTILINE | re.VERBOSE):
        return ""
    items = list(parsed)
    if not items or items[0] != (sre_constants.AT, sre_constants.AT_BEGINNING):
        return ""
    prefix = []
    for op, arg in items[1:]:
        if op is not sre_constants.LITERAL:
            break
        prefix.append(chr(arg))
    return "".join(prefix)


def regex_samples(pattern: str) -> list[str]:
    """A few strings the pattern matches (shortest choices), best effort."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError):
        return []
    out = []
    for repeat in (0, 1, 2):
        try:
            out.append(_generate(parsed, repeat))
        except (ValueError, RecursionError, TypeError):
            continue
    return out


def _generate(items, extra: int) -> str:
    text = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            text.append(chr(arg))
        elif op is sre_constants.NOT_LITERAL:
            text.append("a" if chr(arg) != "a" else "b")
        elif op is sre_constants.ANY:
            text.append("a")
        elif op is sre_constants.IN:
            text.append(_class_sample(arg))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = arg
            count = low + extra if high is sre_constants.MAXREPEAT or low + extra <= high else low
            text.append(_generate(sub, extra) * count)
        elif op is sre_constants.SUBPATTERN:
            text.append(_generate(arg[-1], extra))
        elif op is sre_constants.BRANCH:
            text.append(_generate(arg[1][min(extra, len(arg[1]) - 1)], extra))
        elif op is sre_constants.AT:
            continue
        else:
            raise ValueError(op)
    return "".join(text)


def _class_sample(arg) -> str:
    if arg and arg[0][0] is sre_constants.NEGATE:
        return "@"
    op, value = arg[0]
    if op is sre_constants.LITERAL:
        return chr(value)
    if op is sre_constants.RANGE:
        return chr(value[0])
    if op is sre_constants.CATEGORY:
        return {sre_constants.CATEGORY_DIGIT: "0", sre_constants.CATEGORY_SPACE: " "}.get(value, "a")
    raise ValueError(op)


# ---- candidates for one field path ------------------------------------------------

@dataclass
class Leaf:
    """The candidates for one path's own atoms, and whether they are complete."""

    values: list[Any]
    exact: bool
    why_inexact: str | None = None


def _number(x: float) -> Any:
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def _numeric_forms(x: float) -> list[Any]:
    """x as a number and as strings that float() reads as x (never equal to a number)."""
    shown = repr(_number(x))
    return [_number(x), float(x), shown, f" {shown} ", f"+{shown}"]


def _literal_variants(value: Any) -> list[Any]:
    """The literal itself and values equal to it or printing the same."""
    out = [value]
    if isinstance(value, (bool, int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
        f = float(value)
        out += _numeric_forms(f)
        if f in (0.0, 1.0):
            out.append(bool(f))
    elif isinstance(value, str):
        f = to_float(value)
        if f is not None and math.isfinite(f):
            out += [x for x in (_number(f), f) if str(x) == value]
        try:
            parsed = pyast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parsed = None
        if isinstance(parsed, (list, dict)) and str(parsed) == value:
            out.append(parsed)
    elif isinstance(value, (list, dict)):
        out.append(str(value))
    return out


def field_inexact(atoms) -> str | None:
    """Why the candidates for one path's atoms might miss a class of values
    (None: they provably do not). Depends only on these atoms, so a question
    about a subset of a field's atoms can be exact when the whole set is not."""
    reasons = []
    patterns = 0
    numeric = False
    for atom in atoms:
        op, value = atom.operator, atom.value
        domain = operators.get(op).domain
        if domain is None:
            reasons.append(f"the analysis has no domain for `{op}`")
        elif op in NUMERIC_OPS and (f := to_float(value)) is not None and math.isfinite(f):
            numeric = True
        elif op in PATTERN_OPS and isinstance(value, str):
            patterns += 1
        elif domain == "regex":
            plain = literal_regex(str(value))
            if plain is None:
                reasons.append(f"the regex {str(value)!r} is not a plain literal")
            else:
                patterns += 1
    if patterns and numeric:
        reasons.append("the field is tested both as a number and as text")
    if patterns > MAX_PATTERNS:
        reasons.append(f"more than {MAX_PATTERNS} substring tests on one field")
    return "; ".join(reasons) or None


def leaf_candidates(atoms: list[Atom]) -> Leaf:
    literals: list[Any] = []
    thresholds: list[float] = []
    contains: set[str] = set()
    prefixes: set[str] = set()
    suffixes: set[str] = set()
    regex_texts: list[str] = []
    for atom in atoms:
        op, value = atom.operator, atom.value
        if op in EQUALITY_OPS:
            literals.append(value)
        elif op in MEMBERSHIP_OPS:
            literals.extend(value if isinstance(value, list) else [value])
        elif op in NUMERIC_OPS:
            f = to_float(value)
            if f is not None and math.isfinite(f):
                thresholds.append(f)
        elif op in PATTERN_OPS and isinstance(value, str):
            {"substring": contains, "prefix": prefixes, "suffix": suffixes}[operators.get(op).domain].add(value)
        elif operators.get(op).domain == "regex":
            text = str(value)
            regex_texts.append(text)
            plain = literal_regex(text)
            if plain is None:
                literals.extend(regex_samples(text))
            elif plain[0] == "whole":
                literals.append(plain[1])
                prefixes.add(plain[1])   # the whole-string case needs no more
            else:
                {"substring": contains, "prefix": prefixes, "suffix": suffixes}[plain[0]].add(plain[1])
    patterns = len(contains) + len(prefixes) + len(suffixes)

    values: list[Any] = [None, True, False, 0, 1, -1, 0.5, "", [], {}, "nan", "inf", "-inf"]
    for lit in literals:
        values += _literal_variants(lit)
    numeric_literals = sorted({f for v in literals if (f := to_float(v)) is not None and math.isfinite(f)})
    points = sorted(set(thresholds) | set(numeric_literals))
    if points:
        grid = [points[0] - 1, points[-1] + 1] + points
        grid += [(a + b) / 2 for a, b in itertools.pairwise(points)]
        for x in grid:
            values += _numeric_forms(x)
    every_text = [*contains, *prefixes, *suffixes, *regex_texts] + [
        v for v in literals if isinstance(v, str)]
    sep = next((c for c in SEPARATORS if not any(c in s for s in every_text)), "\x1f")
    values.append(sep * 3)  # a string equal to nothing mentioned and containing nothing mentioned
    values += _pattern_strings(sorted(contains), sorted(prefixes), sorted(suffixes), sep, limited=patterns > MAX_PATTERNS)
    for text in regex_texts:
        for sample in regex_samples(text):
            values += [sample, sep + sample + sep]
    why = field_inexact(atoms)
    return Leaf(values, exact=why is None, why_inexact=why)


def _pattern_strings(contains, prefixes, suffixes, sep, limited: bool) -> list[str]:
    """For each set of patterns, the least string holding all of them: the
    prefix, the substrings and the suffix joined by a character none of them
    contains. It holds a pattern only if some chosen pattern holds it, so if any
    string realises a combination of pattern outcomes, this one does."""
    tagged = [("c", s) for s in contains] + [("p", s) for s in prefixes] + [("s", s) for s in suffixes]
    sizes = range(3) if limited else range(len(tagged) + 1)
    out = []
    for size in sizes:
        for chosen in itertools.combinations(tagged, size):
            pre = max((s for k, s in chosen if k == "p"), key=len, default="")
            suf = max((s for k, s in chosen if k == "s"), key=len, default="")
            if not all(pre.startswith(s) for k, s in chosen if k == "p"):
                continue
            if not all(suf.endswith(s) for k, s in chosen if k == "s"):
                continue
            middle = sep.join(s for k, s in chosen if k == "c")
            out.append(pre + sep + middle + sep + suf)
    return out


# ---- variables: field families ------------------------------------------------------

@dataclass
class Variable:
    """One independent part of a request: a root path and the mentioned paths
    under it. Its candidates are request fragments ({"user": {...}} or {})."""

    root: str
    paths: list[str]
    candidates: list[dict] = field(default_factory=list)
    exact: bool = True
    why_inexact: str | None = None
    # atom -> bitmask over candidates (bit i set when the atom holds for candidate i)
    masks: dict[Atom, int] = field(default_factory=dict)
    schema_mask: int | None = None

    @property
    def full(self) -> int:
        return (1 << len(self.candidates)) - 1


def _fragment(path: str, value: Any) -> dict:
    if value is None:
        return {}
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


def _family_values(path: str, paths: list[str], leaves: dict[str, Leaf],
                   by_path: dict[str, list[Atom]]) -> tuple[list[Any], bool, str | None]:
    """Values for `path` itself when paths under it are mentioned too."""
    leaf = leaves[path]
    children = _top_level(p for p in paths if p.startswith(path + "."))
    exact, why = leaf.exact, leaf.why_inexact
    if not children:
        return leaf.values, exact, why
    own = [v for v in leaf.values if not isinstance(v, dict)]
    if family_inexact(path, by_path[path]):
        exact, why = False, family_inexact(path, by_path[path])
    child_options = []
    for child in children:
        values, child_exact, child_why = _family_values(child, paths, leaves, by_path)
        exact, why = exact and child_exact, why or child_why
        rel = child[len(path) + 1:]
        child_options.append([(rel, v) for v in values])
    objects = []
    for combo in itertools.product(*child_options):
        if len(objects) >= MAX_FAMILY_CANDIDATES:
            exact, why = False, f"{CAPPED}`{path}`"
            break
        obj: dict = {}
        for rel, v in combo:
            if v is not None:
                _set_path(obj, rel, v)
        objects.append(obj)
    return own + objects, exact, why


def family_inexact(path: str, atoms) -> str | None:
    """Why a path with fields under it cannot be analysed exactly: its own text
    tests see the object's str(), which depends on what is inside."""
    if any(operators.get(a.operator).domain in TEXT_DOMAINS for a in atoms) or any(
            isinstance(v, (dict, list)) and v for a in atoms for v in _compared_values(a)):
        return f"`{path}` is tested as text or against an object while fields under it are tested too"
    return None


def _compared_values(atom: Atom) -> list:
    value = atom.value
    return value if atom.operator in MEMBERSHIP_OPS and isinstance(value, list) else [value]


def _set_path(obj: dict, rel: str, value: Any) -> None:
    keys = rel.split(".")
    for key in keys[:-1]:
        obj = obj.setdefault(key, {})
    obj[keys[-1]] = value


def _top_level(paths) -> list[str]:
    paths = sorted(set(paths))
    return [p for p in paths if not any(p.startswith(q + ".") for q in paths if q != p)]


def build_variables(atoms: set[Atom], extra_paths: set[str] = frozenset()) -> list[Variable]:
    by_path: dict[str, list[Atom]] = {}
    # Sorted, not in set order: set order follows string hashing, which
    # changes between processes, and the candidates' order picks witnesses.
    for atom in sorted(atoms, key=lambda a: (a.field, a.operator, repr(a.value))):
        by_path.setdefault(atom.field, []).append(atom)
    for path in extra_paths:
        by_path.setdefault(path, [])
    paths = sorted(by_path)
    leaves = {path: leaf_candidates(by_path[path]) for path in paths}
    variables = []
    for root in _top_level(paths):
        members = [p for p in paths if p == root or p.startswith(root + ".")]
        values, exact, why = _family_values(root, members, leaves, by_path)
        var = Variable(root, members, exact=exact, why_inexact=why)
        member_atoms = [a for p in members for a in by_path[p]]
        seen_keys = set()
        fragments = []
        for value in values:
            key = value_key(value)
            if key not in seen_keys:
                seen_keys.add(key)
                fragments.append(_fragment(root, value))
        # Each atom's outcomes on every distinct candidate at once (one bit each),
        # then candidates with the same outcome on every atom are merged.
        columns = {p: Column([lookup(f, p) for f in fragments]) for p in members}
        raw = [columns[a.field].mask(a.operator, a.value) for a in member_atoms]
        kept = _distinct_outcomes(raw, len(fragments))
        var.candidates = [fragments[i] for i in kept]
        if len(kept) < len(fragments):
            raw = [_select_bits(m, kept, len(fragments)) for m in raw]
        var.masks = dict(zip(member_atoms, raw))
        variables.append(var)
    return variables


def _mask_to_bits(mask: int, size: int) -> str:
    """'0'/'1' per candidate, candidate 0 first."""
    return format(mask, "b").zfill(size)[::-1]


def _select_bits(mask: int, kept: list[int], size: int) -> int:
    """The mask restricted to the candidates `kept`, renumbered 0, 1, ..."""
    bits = _mask_to_bits(mask, size)
    return _bits_to_mask([bits[i] for i in kept])


def _bits_to_mask(bits) -> int:
    return int("".join(reversed(bits)), 2) if bits else 0


def _distinct_outcomes(masks: list[int], size: int) -> list[int]:
    """Indices of the first candidate of each distinct outcome signature (the
    set of atoms it satisfies), in candidate order. Walks only the set bits:
    equality atoms hold for a handful of candidates."""
    holds: list[list[int]] = [[] for _ in range(size)]
    for j, mask in enumerate(masks):
        bits = _mask_to_bits(mask, size)
        i = bits.find("1")
        while i >= 0:
            holds[i].append(j)
            i = bits.find("1", i + 1)
    seen: set[tuple] = set()
    kept = []
    for i, atoms_held in enumerate(holds):
        signature = tuple(atoms_held)
        if signature not in seen:
            seen.add(signature)
            kept.append(i)
    return kept


_HASHABLE_SCALARS = (str, int, float, bool, type(None))
_COMPARISONS = {"greater_than": (bisect.bisect_right, False), "greater_or_equal": (bisect.bisect_left, False),
                "less_than": (bisect.bisect_left, True), "less_or_equal": (bisect.bisect_right, True)}


def _plain(value: Any) -> bool:
    """A value whose equality is hash-consistent and reflexive (no NaN), so a
    dict lookup finds exactly the values `==` to it."""
    return type(value) in _HASHABLE_SCALARS and not (isinstance(value, float) and math.isnan(value))


class Column:
    """The values one path takes across a variable's candidates, and the
    bitmask of candidates each atom on that path holds for. Equality and
    membership are answered from a dict of equality classes and comparisons
    by bisecting the sorted float values; both give exactly the bits
    `operators.apply` gives (1 == 1.0 == True share a dict key, as they are
    equal; float() is the same `to_float` the operators use). A regex is
    searched in the texts that start with its literal prefix (`^m1-` in
    `^m1-\\d+`), found by bisecting the sorted texts. Everything else calls
    the operator on each value."""

    def __init__(self, values: list[Any]):
        self.values = values
        self.full = (1 << len(values)) - 1
        self._classes: dict[Any, int] | None = None
        self._odd: list[tuple[int, Any]] = []   # values not usable as dict keys
        self._sorted: tuple[list[float], list[int]] | None = None
        self._texts: list[tuple[str, int]] | None = None  # (text, index), sorted, for regexes

    def mask(self, op: str, expected: Any) -> int:
        op = operators.get(op).name
        if op in EQUALITY_OPS and _plain(expected):
            equal = self._equal_to([expected])
            return equal if op == "equals" else self.full & ~equal
        if op in MEMBERSHIP_OPS and isinstance(expected, list) and all(_plain(e) for e in expected):
            inside = self._equal_to(expected)
            return inside if op == "in" else self.full & ~inside
        if op in _COMPARISONS:
            return self._compare(op, expected)
        if operators.get(op).domain == "regex":
            return self._regex(expected)
        return _bits_to_mask(["1" if apply(op, v, expected) else "0" for v in self.values])

    def _regex(self, expected: Any) -> int:
        """Only values whose text starts with the pattern's literal prefix can
        match: they are a range of the sorted texts."""
        pattern = compile_regex(expected)
        if pattern is None:
            return 0
        if self._texts is None:
            self._texts = sorted((t, i) for i, v in enumerate(self.values)
                                 if v is not None and (t := text(v)) is not None)
        prefix = regex_prefix(str(expected))
        mask = 0
        for t, i in self._texts[bisect.bisect_left(self._texts, (prefix,)):]:
            if not t.startswith(prefix):
                break
            if pattern.search(t) is not None:
                mask |= 1 << i
        return mask

    def _equal_to(self, expected: list) -> int:
        if self._classes is None:
            self._classes = {}
            for i, value in enumerate(self.values):
                if _plain(value):
                    self._classes[value] = self._classes.get(value, 0) | 1 << i
                else:
                    self._odd.append((i, value))
        mask = 0
        for e in expected:
            mask |= self._classes.get(e, 0)
            for i, value in self._odd:
                if value == e:
                    mask |= 1 << i
        return mask

    def _compare(self, op: str, expected: Any) -> int:
        bound = to_float(expected)
        if bound is None or math.isnan(bound):
            return 0  # NaN or not a number: the comparison is False everywhere
        if self._sorted is None:
            numbers = sorted((f, i) for i, v in enumerate(self.values)
                             if (f := to_float(v)) is not None and not math.isnan(f))
            prefix = [0]
            for _, i in numbers:
                prefix.append(prefix[-1] | 1 << i)
            self._sorted = ([f for f, _ in numbers], prefix)
        floats, prefix = self._sorted
        search, below = _COMPARISONS[op]
        cut = search(floats, bound)
        return prefix[cut] if below else prefix[-1] & ~prefix[cut]
