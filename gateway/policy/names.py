"""Tool names: how a tool is identified, and how allow- and deny-lists match it.

The two lists are deliberately asymmetric. An allow-list admits exact names only, so
any variant of an allowed name (other case, padding, fullwidth, zero-width, look-alike
letters) is simply not on the list. A deny-list compares *skeletons*: names folded so
that every such variant collapses onto one form, so no variant slips past it.

The skeleton is built like the Unicode TR39 one, extended with case folding:
compatibility decomposition (fullwidth, ligatures, math letters), dropping every
invisible or combining character and all whitespace, mapping cross-script look-alikes
(Cyrillic, Greek, small capitals, ...) onto Latin, and merging letters that look
alike even in Latin (i/l/1/|, o/0) and the dash family onto `_`. A name that is still
not ASCII after that is refused by every deny-list: no table of look-alikes is complete.
"""

# ruff: noqa: RUF001, RUF003 - the look-alike tables below are made of ambiguous letters on purpose

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Look-alikes of uppercase Latin letters, mapped before case folding (the lowercase
# of Greek `Η` is `η`, which looks like `n`, not `h`).
_UPPER_LOOKALIKES = str.maketrans({
    **dict.fromkeys("АΑᎪ", "a"), **dict.fromkeys("ВΒᏴ", "b"), **dict.fromkeys("СϹᏟ", "c"),
    **dict.fromkeys("ЕΕᎬ", "e"), **dict.fromkeys("НΗᎻ", "h"), **dict.fromkeys("ІΙӀ", "l"),
    **dict.fromkeys("ЈᎫ", "j"), **dict.fromkeys("КΚᏦ", "k"), **dict.fromkeys("МΜᎷ", "m"),
    **dict.fromkeys("Ν", "n"), **dict.fromkeys("ОΟ", "o"), **dict.fromkeys("РΡᏢ", "p"),
    **dict.fromkeys("Ԛ", "q"), **dict.fromkeys("ЅᏚ", "s"), **dict.fromkeys("ТΤᎢ", "t"),
    **dict.fromkeys("ХΧ", "x"), **dict.fromkeys("УΥ", "y"), **dict.fromkeys("ΖᏃ", "z"),
    **dict.fromkeys("Ԝ", "w"),
})

# Look-alikes of lowercase Latin letters (after case folding), and Latin letters that
# are themselves easy to confuse.
_LOWER_LOOKALIKES = str.maketrans({
    **dict.fromkeys("аɑαᴀ⍺", "a"), **dict.fromkeys("ьвβʙ", "b"), **dict.fromkeys("сϲᴄ", "c"),
    **dict.fromkeys("ԁᴅ", "d"), **dict.fromkeys("еєεᴇ", "e"), **dict.fromkeys("ɡɢ", "g"),
    **dict.fromkeys("һнʜ", "h"), **dict.fromkeys("iıіιӏɪ1|ǀ", "l"), **dict.fromkeys("јϳȷᴊ", "j"),
    **dict.fromkeys("кκᴋ", "k"), **dict.fromkeys("ʟ", "l"), **dict.fromkeys("мᴍ", "m"),
    **dict.fromkeys("пηɴ", "n"), **dict.fromkeys("оοσᴏ0", "o"), **dict.fromkeys("рρᴘ", "p"),
    **dict.fromkeys("ԛ", "q"), **dict.fromkeys("гʀ", "r"), **dict.fromkeys("ѕꜱ", "s"),
    **dict.fromkeys("тτᴛ", "t"), **dict.fromkeys("υμᴜ", "u"), **dict.fromkeys("νѵᴠ", "v"),
    **dict.fromkeys("ԝшωᴡ", "w"), **dict.fromkeys("хχ", "x"), **dict.fromkeys("уγʏ", "y"),
    **dict.fromkeys("ᴢ", "z"),
    **dict.fromkeys("-‐‑‒–—―−﹘﹣", "_"),
})

# Unicode categories that render as nothing (format, combining marks, controls) or as
# blank space; a name with them removed looks the same to a human and to most parsers.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Mn", "Me", "Mc", "Zs", "Zl", "Zp", "Co", "Cn"})


@lru_cache(maxsize=4096)
def skeleton(name: str) -> str:
    """The folded form of `name` that deny-lists compare (see the module docstring)."""
    decomposed = unicodedata.normalize("NFKD", name)
    visible = "".join(
        char for char in decomposed
        if not char.isspace() and unicodedata.category(char) not in _INVISIBLE_CATEGORIES
    )
    return visible.translate(_UPPER_LOOKALIKES).casefold().translate(_LOWER_LOOKALIKES)


@dataclass(frozen=True, slots=True)
class ToolRef:
    """A tool as the rules see it.

    `name` is what an allow-list must contain exactly. `groups` are broader names that
    also admit it (`mcp` for every MCP server, `web_search` for every web search
    version, a namespace for its functions). `related` names only feed deny-lists (the
    bare function name inside a namespace, the tool called on an MCP server), so that
    denying `delete_repo` also denies it when it arrives through an MCP server.
    `open_ended` marks a tool that may call tools it does not name (an MCP server
    without `allowed_tools`): no deny-list can clear it, so every deny-list refuses it.
    """

    name: str
    groups: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    open_ended: bool = False

    @property
    def readable(self) -> bool:
        return bool(self.name)


@dataclass(frozen=True, slots=True)
class ToolList:
    """The `tools:` setting of a rule: an allow-list or a deny-list of names."""

    mode: str  # "allow" | "deny"
    names: frozenset[str]
    skeletons: frozenset[str]

    @classmethod
    def of(cls, mode: str, names: list[str]) -> ToolList:
        return cls(mode, frozenset(names), frozenset(skeleton(name) for name in names))

    def violated_by(self, tool: ToolRef) -> bool:
        """Whether `tool` breaks this list. A tool without a readable name always does."""
        if not tool.readable:
            return True
        if self.mode == "allow":
            return tool.name not in self.names and not any(g in self.names for g in tool.groups)
        if tool.open_ended:
            return True
        candidates = (tool.name, *tool.groups, *tool.related)
        return any(_denied(skeleton(candidate), self.skeletons) for candidate in candidates)


def _denied(folded: str, skeletons: frozenset[str]) -> bool:
    # No look-alike table is complete (Armenian, Lisu, ... hold more Latin look-alikes), so
    # a name still outside ASCII once folded cannot be told apart from a denied one: it fails
    # closed. Every provider takes ASCII tool names only, so no real tool is refused by it.
    return folded in skeletons or not folded.isascii()
