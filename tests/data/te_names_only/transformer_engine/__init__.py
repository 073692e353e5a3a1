"""TEST-ONLY names-only stand-in for Transformer Engine (NOT the library; never on a job's path).

Why: megatron.bridge imports `transformer_engine.pytorch` unconditionally (NVIDIA-NeMo/Megatron-Bridge
73eb4b27, src/megatron/bridge/peft/lora_layers.py:20), and Megatron-LM then takes its TE code paths
(megatron/core/extensions/transformer_engine.py defines subclasses of TE classes at import). TE
itself needs CUDA to install. Building a provider with `to_megatron_provider(load_weights=False)`
and `finalize()` instantiates no TE layer, so names are all the `model` preflight's path needs:
every `transformer_engine.*` module exists, every attribute of one is a class (whose attributes are
classes in turn), and creating an instance raises. The version answers as the image's TE 2.17.0,
as ci/upstream/recipe_upstream_gpu_shim.py makes `is_te_min_version` answer.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "2.17.0"


class _NameMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _name(f"{cls.__qualname__}.{name}", cls.__module__)


def _name(qualname, module):
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{module}.{qualname} is a name only (tests/data/te_names_only): it cannot be built")

    return _NameMeta(qualname.rsplit(".", 1)[-1], (), {"__init__": __init__, "__module__": module,
                                                         "__qualname__": qualname})


class _Names(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _name(name, self.__name__)
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Names(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return importlib.import_module(f"{__name__}.{name}")
