"""mkdocs hook: small fixes to generated HTML, so that generated pages read as written ones.

- mkdocstrings renders the docstrings' Sphinx roles (``:class:`~harness.x.Name```) as the
  text ":class:" before the code ``~harness.x.Name``: keep the code alone, and for a ``~``
  name only its last part, as Sphinx would show it.
- mkdocs-click shows a default that click leaves unset (flags, ``--help``) as
  ``Sentinel.UNSET``: a flag is off unless given, so show ``False``; other options nothing.

(The hooks folder is excluded from the site in mkdocs.yml.)
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj|const):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:[\w.]+\.)?(\w+)</code>")
_UNSET_FLAG = re.compile(
    r"(<td>boolean</td>\s*<td>(?:(?!</td>).)*</td>\s*<td>)<code>Sentinel\.UNSET</code>", re.DOTALL)
_UNSET = "<code>Sentinel.UNSET</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """The page's HTML with role prefixes removed, ``~`` names shortened and unset
    defaults shown as a reader expects."""
    html = _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", html))
    return _UNSET_FLAG.sub(r"\1<code>False</code>", html).replace(_UNSET, "")
