"""Static analysis of conditions: which requests reach which rule.

domain.py builds finite candidate values per field, regions.py does set
algebra over them, router.py answers questions about a router. The lint
rules and `routelang diff` are built on `RouterAnalysis`; docs/analysis.md
explains why the answers are exact and where they are not.
"""

from .domain import Atom, Variable, atom_of, build_variables
from .regions import Region, Space, TooComplex
from .router import RouterAnalysis, RuleFacts, Verdict, atoms_of, first_match

__all__ = [
    "Atom", "Region", "RouterAnalysis", "RuleFacts", "Space", "TooComplex", "Variable", "Verdict",
    "atom_of", "atoms_of", "build_variables", "first_match",
]
