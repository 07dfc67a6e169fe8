"""User text on the pages, shown as typed: never read as Markdown or HTML.

Notes, comments, reasons, case text and names come from users; rendered as Markdown, a
note holding `![x](http://host/a.png)` would make every reader's browser fetch that
address, and `[click](...)` would dress a link up as the product's own. Blocks of such
text go through `text` (st.text parses nothing); a value inside a line of Markdown goes
through `md`, which escapes every character Markdown gives a meaning to.
"""

from __future__ import annotations

import streamlit as st

from dashboard.components import done as _done
from dashboard.components import escape_md


def md(value: object) -> str:
    """`value` as literal text inside Markdown (also '=', which can make a heading)."""
    return escape_md(str(value)).replace("=", "\\=")


def text(value: object) -> None:
    """A block of user text, line breaks kept, nothing interpreted."""
    st.text(str(value))


def error(message: str) -> None:
    """An error that may quote what a user typed (a name, a reason)."""
    st.error(md(message))


def done(message: str) -> None:
    """`components.done` for a message that quotes user text."""
    _done(md(message))
