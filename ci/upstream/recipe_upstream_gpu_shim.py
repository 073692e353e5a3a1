"""TEST-ONLY: makes a CPU machine answer three GPU queries as the pinned image on an H200 does.

Installed by ci/upstream_env.sh into the upstream test venv only (loaded by recipe_upstream_gpu_shim.pth
in that venv's site-packages); never part of the project runtime or the image. miles'
parse_args (Megatron's validate_args inside it) asks:

- torch.cuda.get_device_capability()          -> (9, 0)   an H200 is compute capability 9.0
- megatron.training.utils.get_device_arch_version() -> 9   (it reads cuda:0's properties)
- megatron.core.utils.is_te_min_version(v)    -> TE 2.17.0 >= v   (the image's Transformer Engine)

Each is replaced right after its module is first imported (a post-import hook), before any other
module binds the name, so `from megatron.training.utils import get_device_arch_version` sees the
replacement. Nothing else is changed; every other CUDA query still answers as on this CPU machine.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

DEVICE_CAPABILITY = (9, 0)
TE_VERSION = "2.17.0"


def _torch(mod):
    mod.cuda.get_device_capability = lambda device=None: DEVICE_CAPABILITY


def _core_utils(mod):
    from packaging.version import Version

    def is_te_min_version(version, check_equality=True):
        have, want = Version(TE_VERSION), Version(version)
        return have >= want if check_equality else have > want

    mod.is_te_min_version = is_te_min_version


def _training_utils(mod):
    mod.get_device_arch_version = lambda: DEVICE_CAPABILITY[0]


PATCHES = {"torch": _torch, "megatron.core.utils": _core_utils, "megatron.training.utils": _training_utils}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        patch = PATCHES.get(name)
        if patch is None:
            return None
        sys.meta_path.remove(self)  # find the real module, not ourselves
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


if not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _PatchAfterImport())
