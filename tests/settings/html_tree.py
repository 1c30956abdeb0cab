"""A small HTML tree for assertions on rendered pages (stdlib ``html.parser``, no extra dependency)."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Element:
    """One element: its tag, attributes (``None`` for a bare attribute) and children."""

    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None = None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Element | str] = []

    def __repr__(self) -> str:
        return f"<{self.tag} {self.attrs}>"

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    @property
    def text(self) -> str:
        """The text inside, with runs of whitespace collapsed."""
        parts: list[str] = []
        self._collect_text(parts)
        return " ".join("".join(parts).split())

    def _collect_text(self, parts: list[str]) -> None:
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            else:
                child._collect_text(parts)

    @property
    def elements(self) -> list[Element]:
        """Direct child elements (no text)."""
        return [child for child in self.children if isinstance(child, Element)]

    def iter(self) -> Iterator[Element]:
        """This element and every element below it, in document order."""
        yield self
        for child in self.elements:
            yield from child.iter()

    def find_all(self, tag: str | None = None, class_: str | None = None, **attrs: str) -> list[Element]:
        """Descendants matching a tag, a class and attribute values (``for_`` means ``for``)."""
        wanted = {name.rstrip("_").replace("_", "-"): value for name, value in attrs.items()}
        return [
            element
            for element in self.iter()
            if element is not self
            and (tag is None or element.tag == tag)
            and (class_ is None or class_ in element.classes)
            and all(element.attrs.get(name) == value for name, value in wanted.items())
        ]

    def find(self, tag: str | None = None, class_: str | None = None, **attrs: str) -> Element | None:
        found = self.find_all(tag, class_, **attrs)
        return found[0] if found else None

    def by_id(self, element_id: str) -> Element:
        """The element with this id; fails the test when there is none or several."""
        found = self.find_all(id=element_id)
        assert len(found) == 1, f"expected one element with id={element_id!r}, found {len(found)}"
        return found[0]

    def closest(self, tag: str | None = None, class_: str | None = None) -> Element | None:
        """The nearest ancestor matching a tag and a class."""
        node = self.parent
        while node is not None:
            if (tag is None or node.tag == tag) and (class_ is None or class_ in node.classes):
                return node
            node = node.parent
        return None

    def definition(self, term: str) -> Element:
        """The ``<dd>`` that follows the ``<dt>`` with this text (status fields)."""
        for dt in self.find_all("dt"):
            if dt.text == term:
                siblings = dt.parent.elements
                return siblings[siblings.index(dt) + 1]
        raise AssertionError(f"no <dt> {term!r}")


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), self.stack[-1])
        self.stack[-1].children.append(element)
        if tag not in VOID_TAGS:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, dict(attrs), self.stack[-1]))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(markup: str) -> Element:
    """Parse a page or a fragment; the result is a ``#document`` element."""
    builder = _TreeBuilder()
    builder.feed(markup)
    builder.close()
    return builder.root


def oob_toast(document: Element, region: str) -> Element | None:
    """The out-of-band block an htmx answer puts at the top of ``#toasts`` or ``#alerts``."""
    return document.find(**{"hx-swap-oob": f"afterbegin:#{region}"})


def first_element(document: Element) -> Element:
    """The first top-level element of a fragment."""
    return document.elements[0]
