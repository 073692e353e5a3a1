"""The manifest format, the committed nemotron3_nano manifest, and coreutils' reading of both."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.inputs import manifest as mf
from runner.inputs.hub_pins import manifest_header
from runner.recipe import load_recipe

NEMO = load_recipe("nemotron3_nano")
PUBLISHED_SHARDS = {  # facts.md: the Hub's LFS oids at cbd3fa9f (spot checks of the first and last)
    "model/model-00001-of-00013.safetensors":
        (4991205008, "4c77b0f1717f1fb11791fb62fc57ca56f59fd1427ac466849ef9705ac90729ea"),
    "model/model-00013-of-00013.safetensors":
        (3239751000, "9458d10c7e999db805c5fa6ffa778cc0dc63478ea4210a942759358736bebf1d"),
    "data/dapo-math-17k.jsonl": (10490834, "cc9c39c2aa19177abe9464741e121cf4cac90fd25484ef3cdf86535101e3a5b6"),
}


def test_roundtrip_keeps_header_sizes_and_order():
    m = mf.Manifest({"model.repo": "a/b", "model.revision": "c" * 40},
                    [mf.Entry("model/z.bin", "1" * 64, 10), mf.Entry("data/a b.jsonl", "2" * 64, None)],
                    comments=["free text"])
    text = mf.render(m)
    back = mf.parse(text)
    assert back.header == m.header and back.entries == m.entries and back.comments == ["free text"]
    assert mf.render(back) == text


def test_plain_sha256sum_output_parses_without_sizes(tmp_path):
    (tmp_path / "a").write_bytes(b"x")
    out = subprocess.run(["sha256sum", "a"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    m = mf.parse(out)
    assert m.entries == [mf.Entry("a", hashlib.sha256(b"x").hexdigest(), None)]


def test_size_line_without_checksum_line_is_an_error():
    with pytest.raises(mf.UsageError, match="has no checksum line"):
        mf.parse(f"# size: 3 model/a\n{'0' * 64}  model/b\n", "m")


def test_duplicate_path_is_an_error():
    with pytest.raises(mf.UsageError, match="listed twice"):
        mf.parse(f"{'0' * 64}  a\n{'1' * 64}  a\n", "m")


def test_committed_manifest_lists_every_model_file_and_the_data_with_sizes():
    m = mf.load(NEMO.path("manifest"))
    paths = [e.path for e in m.entries]
    shards = [p for p in paths if p.endswith(".safetensors")]
    assert shards == [f"model/model-{i:05d}-of-00013.safetensors" for i in range(1, 14)]
    for name in ("model.safetensors.index.json", "config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "chat_template.jinja", "generation_config.json"):
        assert f"model/{name}" in paths
    assert len(paths) == 21 and all(e.size for e in m.entries)
    byp = m.by_path()
    for p, (size, sha) in PUBLISHED_SHARDS.items():
        assert (byp[p].size, byp[p].sha256) == (size, sha)


def test_committed_manifest_header_matches_recipe_toml():
    """A pin changed in recipe.toml without `recipe lock` leaves a stale manifest: catch it."""
    m = mf.load(NEMO.path("manifest"))
    comments, header = manifest_header(NEMO)
    assert m.header == header, f"{NEMO.path('manifest')} is stale: run `recipe lock {NEMO.name}`"
    assert header["model.revision"].startswith("cbd3fa9f") and "@sha256:" in header["image"]


def test_model_config_in_the_manifest_is_the_recipes_hf_config():
    m = mf.load(NEMO.path("manifest")).by_path()
    cfg = NEMO.dir / "hf_config.json"
    assert m["model/config.json"].sha256 == hashlib.sha256(cfg.read_bytes()).hexdigest()
    assert m["model/config.json"].size == cfg.stat().st_size


@pytest.mark.skipif(not shutil.which("sha256sum"), reason="coreutils sha256sum not installed")
def test_coreutils_accepts_what_the_project_writes(tmp_path):
    """`cd <root> && sha256sum -c --strict <manifest>`: header, size comments and all."""
    root = tmp_path / "inputs"
    files = {"model/config.json": b"{}", "model/model-00001-of-00001.safetensors": bytes(range(256)) * 99,
             "data/dapo-math-17k.jsonl": b'{"prompt": "p", "label": "1"}\n'}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    comments, header = manifest_header(NEMO)
    m = mf.Manifest(header, [mf.Entry(p, hashlib.sha256(d).hexdigest(), len(d)) for p, d in files.items()],
                    comments)
    man = tmp_path / "inputs.sha256"
    mf.write(m, man)
    ok = subprocess.run(["sha256sum", "-c", "--strict", str(man)], cwd=root, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == 3
    (root / "model/config.json").write_bytes(b"[]")  # and coreutils agrees when it is wrong
    bad = subprocess.run(["sha256sum", "-c", "--strict", str(man)], cwd=root, capture_output=True, text=True)
    assert bad.returncode == 1 and "model/config.json: FAILED" in bad.stdout


@pytest.mark.skipif(not shutil.which("sha256sum"), reason="coreutils sha256sum not installed")
def test_coreutils_parses_the_committed_manifest(tmp_path):
    """Every line of the real manifest is a comment or a well-formed checksum line to coreutils:
    with no files present it reports each as missing, and none as improperly formatted."""
    r = subprocess.run(["sha256sum", "-c", "--strict", str(NEMO.path("manifest"))], cwd=tmp_path,
                       capture_output=True, text=True)
    assert "improperly formatted" not in r.stderr
    assert r.stderr.count("No such file or directory") == 21


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    man = tmp_path / "m.sha256"
    mf.write(mf.Manifest({}, [mf.Entry("a", "0" * 64, 1)]), man)
    mf.write(mf.Manifest({}, [mf.Entry("b", "1" * 64, 2)]), man)
    assert [p.name for p in tmp_path.iterdir()] == ["m.sha256"]
    assert mf.load(man).entries == [mf.Entry("b", "1" * 64, 2)]


def test_render_refuses_an_unsafe_path():
    with pytest.raises(mf.UnsafePathError):
        mf.render(mf.Manifest({}, [mf.Entry("../x", "0" * 64, 1)]))


def test_resolve_inside(tmp_path: Path):
    (tmp_path / "r").mkdir()
    assert mf.resolve_inside(tmp_path / "r", "a/b") == (tmp_path / "r" / "a" / "b").resolve()
