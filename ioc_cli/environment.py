"""The ``IOC_`` environment variables a command reads: declared beside the command, shown at the end of its help."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from ioc_core.settings import variable

__all__ = ["MARKER", "environment", "settings_variables"]

# The help's last paragraph starts with it; tests find the declaration by it.
MARKER = "Environment:"


def settings_variables(settings: type[BaseSettings]) -> tuple[str, ...]:
    """Every variable a settings class reads, in the order of its fields."""
    return tuple(variable(settings, name) for name in settings.model_fields)


def environment(*settings: type[BaseSettings], also: tuple[str, ...] = ()) -> str:
    """A command's epilog naming the variables of ``settings`` and the ones in ``also`` (read another way: an
    option's envvar, ``os.environ``), in that order, each once."""
    names = list(dict.fromkeys([*(n for s in settings for n in settings_variables(s)), *also]))
    return f"{MARKER} {', '.join(names)}." if names else f"{MARKER} no IOC_ variables."
