"""The config classes declare one typed attribute per option of their scope, matching
the option table (so the type checker sees what the parser sets)."""

import pytest

from midge.config import options as opts
from midge.config.model import BridgeConfig, Config, ListenerConfig, SecurityConfig

_PYTHON_TYPES = {opts.BOOL: "bool", opts.INT: "int", opts.FLOAT: "float", opts.STRING: "str",
                 opts.PATH: "str", opts.CHOICE: "str"}


def expected_annotation(option: opts.Option) -> str:
    base = _PYTHON_TYPES[option.kind]
    return base + (" | None" if option.default is None else "")


@pytest.mark.parametrize("cls, scope", [(Config, opts.GLOBAL), (ListenerConfig, opts.LISTENER),
                                        (SecurityConfig, opts.SECURITY), (BridgeConfig, opts.BRIDGE)])
def test_annotations_match_the_option_table(cls, scope):
    declared = cls.__annotations__
    wanted = {opt.attr: expected_annotation(opt) for opt in opts.OPTIONS
              if opt.scope == scope and opt.kind != opts.SPECIAL}
    missing = [f"    {attr}: {annotation}" for attr, annotation in wanted.items() if declared.get(attr) != annotation]
    assert not missing, f"{cls.__name__} needs (in config/model.py):\n" + "\n".join(missing)
    extra = [attr for attr in declared if attr not in wanted and attr != "_scope"]
    assert extra == [], f"{cls.__name__} declares attributes that are no option of its scope: {extra}"


@pytest.mark.parametrize("cls", [Config, ListenerConfig, SecurityConfig, BridgeConfig])
def test_defaults_have_the_declared_type(cls):
    instance = cls()
    for attr, annotation in cls.__annotations__.items():
        if attr == "_scope":
            continue
        value = getattr(instance, attr)
        allowed = tuple(t for t in (bool, int, float, str, type(None))
                        if t.__name__ in annotation.replace("None", "NoneType").split(" | "))
        assert isinstance(value, allowed), f"{cls.__name__}.{attr} = {value!r} is not {annotation}"
