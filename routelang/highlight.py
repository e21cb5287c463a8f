"""A Pygments lexer for routelang, for documentation (Sphinx, MkDocs) and
`pygmentize`.

Registered through the ``pygments.lexers`` entry point, so after installing
routelang ``pygmentize -l route file.route`` and
``get_lexer_for_filename("x.route")`` find it. Pygments is an optional
dependency: importing this module without it raises ImportError.
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from .vocab import operators, strategies
from .vocab import settings as target_settings

__all__ = ["RoutelangLexer"]

# Names may contain dashes (llama-3-70b); a keyword is not part of a longer name,
# not a path segment after `.`, and not an object key before `:`.
_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*"
_BEFORE = r"(?<![A-Za-z0-9_.\-])"
_AFTER = r"(?![A-Za-z0-9_\-])(?!\s*[.:])"

# The words of `workspace` and `agent` blocks (docs/tenants.md).
POLICY_WORDS = ("budget", "limit", "allow", "providers", "tags", "compliance", "capabilities", "prefer", "require",
                "success", "otherwise", "serve", "best", "refuse", "timezone", "USD", "requests", "tokens",
                "second", "minute", "hour", "day", "week", "month")
DECLARATIONS = ("router", "metadata", "import", "provider", "profile", "defaults", "target",
                "condition", "schema", "rule", "test", "workspace", "agent")
STRATEGIES = ("when", *strategies.KEYWORDS, "shadow", "sticky", "by", "salt", "failover")
# Target settings and their sub-settings come from vocab/settings.py (`provider` is a declaration).
SETTINGS = tuple(dict.fromkeys((
    "priority", *(s.surface for s in target_settings.TABLE if s.surface != "provider"),
    *(sub.surface for s in target_settings.TABLE for sub in s.block), "use", "per", *strategies.SCORE_FACTORS,
    *POLICY_WORDS)))
WORD_OPERATORS = tuple(dict.fromkeys(("and", "or", "not", *operators.WORDS, "note")))
TEST_KEYWORDS = ("request", "expect", "no", "match", "targets")
MODIFIERS = ("enabled", "disabled")
TYPES = ("string", "number", "integer", "bool", "list", "object", "any", "enum")
CONSTANTS = ("true", "false", "null")


# Words followed by `(` that are not provider calls: operators, `enum(`, and
# strategies with a parameter list (`hybrid(`).
_CALL_LIKE = ("and", "or", "not", "in", "when", "enum",
              *(s.keyword for s in strategies.STRATEGIES.values() if s.layout == "call_list"))


def _kw(names: tuple[str, ...]):
    return words(names, prefix=_BEFORE, suffix=_AFTER)


class RoutelangLexer(RegexLexer):
    """Lexer for routelang (.route) inference-routing files."""

    name = "routelang"
    aliases = ["route", "routelang"]  # noqa: RUF012 - Pygments reads these class attributes
    filenames = ["*.route"]  # noqa: RUF012
    mimetypes = ["text/x-routelang"]  # noqa: RUF012
    version_added = ""

    tokens = {  # noqa: RUF012
        "root": [
            (r"\s+", Whitespace),
            (r"#.*?$", Comment.Single),
            # Strings: raw first, then `rule "quoted name"`, then ordinary ones.
            (r'(?<![A-Za-z0-9_.\-])(r)(")', bygroups(String.Affix, String.Double), "raw-string"),
            (r'(?<![A-Za-z0-9_.\-])(rule)(\s+)(")', bygroups(Keyword.Declaration, Whitespace, String.Double),
             "string"),
            (r'"', String.Double, "string"),
            # Names introduced by definitions.
            (r"(?<![A-Za-z0-9_.\-])(rule)(\s+)(" + _NAME + ")",
             bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (r"(?<![A-Za-z0-9_.\-])(target|condition)(\s+)(" + _NAME + r")(?=\s*=(?![=~]))",
             bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"(?<![A-Za-z0-9_.\-])(provider|profile|router)(\s+)(" + _NAME + ")",
             bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"(?<![A-Za-z0-9_.\-])(import)(\s+)(" + _NAME + r"(?:\." + _NAME + ")*)",
             bygroups(Keyword.Namespace, Whitespace, Name.Namespace)),
            (r"(?<![A-Za-z0-9_.\-])(per)(\s+)(1k)(?![A-Za-z0-9_\-])",
             bygroups(Keyword.Reserved, Whitespace, Keyword.Constant)),
            # Field paths (segments may be keywords) and object keys.
            (_BEFORE + _NAME + r"(?=\s*\.\s*[A-Za-z_\"])", Name.Variable),
            (r"(?<=\.)" + _NAME, Name.Attribute),
            (_BEFORE + _NAME + r"(?=\s*:)", Name.Label),
            # Provider preset calls: modal("model", "https://...").
            (_BEFORE + r"(?!(?:" + "|".join(_CALL_LIKE) + r")(?![A-Za-z0-9_\-]))" + _NAME + r"(?=\s*\()",
             Name.Function),
            # Numbers: percentages and durations before plain numbers.
            (_BEFORE + r"[0-9]+(?:\.[0-9]+)?%", Number),
            (_BEFORE + r"[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h)(?![A-Za-z0-9_\-])", Number),
            (_BEFORE + r"-?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?(?![A-Za-z0-9_\-])", Number.Float),
            (_BEFORE + r"-?\.[0-9]+(?:[eE][-+]?[0-9]+)?(?![A-Za-z0-9_\-])", Number.Float),
            (_BEFORE + r"-?[0-9]+(?:[eE][-+]?[0-9]+)?(?![A-Za-z0-9_\-])", Number.Integer),
            # Keywords.
            (_kw(DECLARATIONS), Keyword.Declaration),
            (_kw(STRATEGIES), Keyword),
            (_kw(SETTINGS), Keyword.Reserved),
            (_kw(WORD_OPERATORS), Operator.Word),
            (_kw(TEST_KEYWORDS), Keyword),
            (_kw(MODIFIERS), Keyword.Pseudo),
            (_kw(TYPES), Keyword.Type),
            (_kw(CONSTANTS), Keyword.Constant),
            # Operators, longest first, and punctuation.
            (r"=~|==|!=|>=|<=|>|<|=", Operator),
            (r"[{}\[\](),:.]", Punctuation),
            (_NAME, Name),
            # Anything else (a stray character) is shown as text, not an error:
            # the compiler reports it.
            (r".", Text),
        ],
        "interpolation": [
            (r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}\"\n]*)?\}", String.Interpol),
        ],
        "string": [
            (r'"', String.Double, "#pop"),
            (r"\\(?:u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|.)", String.Escape),
            include("interpolation"),
            (r"\n", String.Double, "#pop"),  # unterminated: stop at the end of the line
            (r'[^"\\$\n]+', String.Double),
            (r"[\\$]", String.Double),
        ],
        "raw-string": [
            (r'"', String.Double, "#pop"),
            include("interpolation"),
            (r"\n", String.Double, "#pop"),
            (r'[^"$\n]+', String.Double),
            (r"\$", String.Double),
        ],
    }
