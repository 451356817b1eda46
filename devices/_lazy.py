"""Public names a package imports on first use (PEP 562), for every package's __init__.

``import devices`` (and controller, programs, simulator) must stay as cheap as the
emergency stop's quick path needs, so a package lists its public names with the
module that defines each, and this builds the module ``__getattr__`` and ``__dir__``
that import it when it is first looked up. Nothing here imports at module level:
not even typing (the annotations are never evaluated).
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: the quick path must not import typing (mypy knows this name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping, Sequence


def lazy_names(
    package: str,
    namespace: MutableMapping[str, object],
    public: Sequence[str],
    where: Mapping[str, str | tuple[str, str]],
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for the names in where.

    where: public name -> the module that defines it, or (module, its name there) for
    a name the package gives another name. namespace: the package's globals(), where a
    name looked up once is kept (so the next lookup does not come here).
    """

    def __getattr__(name: str) -> object:
        found = where.get(name)
        if found is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        module, attribute = (found, name) if isinstance(found, str) else found
        value = getattr(import_module(module), attribute)
        namespace[name] = value  # looked up once
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
