"""Reading our pages' forms with a plain HTTP client (no browser): the log-in and consent forms
a person would fill in."""

from html.parser import HTMLParser


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.forms.append({"action": found.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and found.get("name"):
            fields = self.forms[-1]["fields"]
            assert isinstance(fields, dict)
            if found.get("type") != "submit":
                fields[found["name"]] = found.get("value") or ""


def form_fields(html: str, action: str) -> dict[str, str]:
    """The named inputs of the form posting to `action` (its path)."""
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        if str(form["action"]).split("?")[0] == action:
            fields = form["fields"]
            assert isinstance(fields, dict)
            return fields
    raise AssertionError(f"no form posting to {action}")


def input_value(html: str, element_id: str) -> str:
    parser = _Value(element_id)
    parser.feed(html)
    assert parser.value is not None, f"no #{element_id}"
    return parser.value


class _Value(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id = element_id
        self.value: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id") == self.element_id:
            self.value = found.get("value") or ""
