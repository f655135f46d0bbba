"""The bundle's Jinja2 templates, rendered exactly as pyinfra's ``files.template``
renders them (StrictUndefined, trailing newline kept), so unit tests see what hosts get."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api.util import get_template

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def template_path(name: str) -> str:
    return str(TEMPLATE_DIR / name)


def render_template(name: str, **context) -> str:
    return get_template(template_path(name)).render(**context)
