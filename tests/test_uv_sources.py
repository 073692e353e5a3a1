"""ci/uv_sources.py: pip's configured sources as uv flags, pip's main index first."""

from __future__ import annotations

import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("uv_sources", ROOT / "ci" / "uv_sources.py")
uv_sources = importlib.util.module_from_spec(spec)
spec.loader.exec_module(uv_sources)


def test_pips_main_index_comes_before_its_extra_indexes(tmp_path):
    """uv takes a version's files from the first index that has it; a partial mirror first made it
    pick multiprocess's py310 wheel where pip, pooling every index, took the py311 one."""
    out = uv_sources.parse(f"global.extra-index-url='file://{tmp_path} https://mirror.example/simple'\n"
                           f"global.find-links='{tmp_path}'\n")
    assert out == ["--index", "https://pypi.org/simple", "--index", f"file://{tmp_path}",
                   "--index", "https://mirror.example/simple", "--find-links", str(tmp_path),
                   "--index-strategy", "unsafe-best-match"]


def test_the_environment_wins_a_configured_index_replaces_pypi_and_missing_paths_are_dropped(tmp_path):
    out = uv_sources.parse("global.index-url='https://corp.example/simple'\n"
                           "global.find-links='/no/such/dir'\n"
                           f":env:.find-links='{tmp_path} /no/such/other'\n")
    assert out == ["--index", "https://corp.example/simple", "--find-links", str(tmp_path),
                   "--index-strategy", "unsafe-best-match"]


def test_no_configuration_is_pypi_alone_with_uvs_own_strategy():
    assert uv_sources.parse("") == ["--index", "https://pypi.org/simple"]
