"""MkDocs hook: the manual's home page carries the README's two commands and first tour, from the README itself
(one source): the text between its markers replaces the line ``<!-- README quickstart -->`` in index.md, with
the README's links into docs/ made links between the manual's pages."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- the manual's home page includes from here", "<!-- quickstart-end -->"


def quickstart() -> str:
    text = README.read_text()
    section = text[text.index(START):text.index(END)].split("\n", 1)[1]
    return re.sub(r"\]\(docs/", "](", section)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "index.md":
        return markdown.replace("<!-- README quickstart -->", quickstart())
    return markdown
