"""The manifest format, the committed nemotron3_nano manifest, and coreutils' reading of both."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.inputs import manifest as mf
from runner.inputs.hub_pins import manifest_header
from runner.recipe import load_recipe

NEMO = load_recipe("nemotron3_nano")
PUBLISHED_SHARDS = {  # the Hub's LFS oids at cbd3fa9f (spot checks of the first and last)
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
    with pytest.raises(UsageError, match="has no checksum line"):
        mf.parse(f"# size: 3 model/a\n{'0' * 64}  model/b\n", "m")


def test_duplicate_path_is_an_error():
    with pytest.raises(UsageError, match="listed twice"):
        mf.parse(f"{'0' * 64}  a\n{'1' * 64}  a\n", "m")


def test_committed_manifest_lists_every_model_file_and_the_data_with_sizes():
    m = mf.load(NEMO.path("manifest"))
    paths = [e.path for e in m.entries]
    shards = [p for p in paths if p.endswith(".safetensors")]
    assert shards == [f"model/model-{i:05d}-of-00013.safetensors" for i in range(1, 14)]
    for name in ("model.safetensors.index.json", "config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "chat_template.jinja", "generation_config.json",
                 "configuration_nemotron_h.py", "modeling_nemotron_h.py"):
        assert f"model/{name}" in paths
    assert len(paths) == 23 and all(e.size for e in m.entries)
    byp = m.by_path()
    for p, (size, sha) in PUBLISHED_SHARDS.items():
        assert (byp[p].size, byp[p].sha256) == (size, sha)


def test_committed_manifest_header_matches_recipe_toml():
    """A pin changed in recipe.toml without `recipe lock` leaves a stale manifest: catch it."""
    m = mf.load(NEMO.path("manifest"))
    comments, header = manifest_header(NEMO)
    assert m.header == header, f"{NEMO.path('manifest')} is stale: run `recipe lock {NEMO.name}`"
    assert header["model.revision"].startswith("cbd3fa9f") and "@sha256:" in header["image"]


def test_committed_manifest_holds_the_remote_code_config_json_names():
    """miles loads the config with trust_remote_code=True: every module config.json's auto_map names
    must be in the model directory, so in the manifest (issue: OSError at start-up otherwise)."""
    auto_map = json.loads((NEMO.dir / "hf_config.json").read_text())["auto_map"]
    modules = {ref.split(".")[0] for ref in auto_map.values()}
    assert modules == {"configuration_nemotron_h", "modeling_nemotron_h"}
    byp = mf.load(NEMO.path("manifest")).by_path()
    assert {f"model/{mod}.py" for mod in modules} <= set(byp)


def test_committed_remote_code_is_pinned_by_size_with_nothing_invented():
    """Sizes from the Hub's listing at cbd3fa9f; sha256 and git blob id not known here: `unknown`."""
    byp = mf.load(NEMO.path("manifest")).by_path()
    assert byp["model/configuration_nemotron_h.py"] == mf.Entry("model/configuration_nemotron_h.py", None, 12893,
                                                                mf.UNKNOWN)
    assert byp["model/modeling_nemotron_h.py"] == mf.Entry("model/modeling_nemotron_h.py", None, 83779, mf.UNKNOWN)


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
    assert r.stderr.count("No such file or directory") == 21  # the 2 pinned-only entries are comments to it


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


def test_git_blob_lines_round_trip_and_make_an_entry_pinned_by_revision_only():
    text = (f"# size: 5 model/a.py\n# git-blob: unknown model/a.py\n"
            f"# size: 3 model/b.py\n# git-blob: {'ab' * 20} model/b.py\n{'1' * 64}  model/b.py\n")
    m = mf.parse(text, "m")
    assert m.entries == [mf.Entry("model/a.py", None, 5, mf.UNKNOWN), mf.Entry("model/b.py", "1" * 64, 3, "ab" * 20)]
    assert [e.path for e in m.pinned_only] == ["model/a.py"] and mf.render(m) == text


@pytest.mark.parametrize("text,why", [
    (f"# size: 5 a\n# size: 5 a\n{'0' * 64}  a\n", "m:2: a second '# size:' line for a (the first is line 1)"),
    ("# git-blob: unknown a\n# git-blob: unknown a\n# size: 1 a\n", "m:2: a second '# git-blob:' line for a"),
    ("# git-blob: unknown a\n", "a is pinned by git blob only; it needs a '# size:' line too"),
    ("# git-blob: 1234 a\n# size: 1 a\n", "m:1: expected '# git-blob: <40 hex git blob id, or unknown> <path>'"),
    ("# size: many a\n", "m:1: expected '# size: <bytes> <path>'"),
    ("", "m: lists no file"),
    ("# recipe-bundle inputs manifest\n# model.repo: a/b\n", "m: lists no file"),
])
def test_malformed_manifests_name_the_file_and_line(text, why):
    with pytest.raises(UsageError) as e:
        mf.parse(text, "m")
    assert why in e.value.message and e.value.code == 2 and "\n" not in e.value.message


@pytest.mark.parametrize("path,why", [
    ("model/" + "x" * 5_000_000, "longer than 4096 bytes"),
    ("model/" + "y" * 256, "component longer than 255 bytes"),
])
def test_a_path_no_file_system_can_open_is_a_manifest_error_not_unreadable(path, why):
    """A 5 MB path line used to reach os.stat and come back as "unreadable" (exit 5)."""
    with pytest.raises(mf.UnsafePathError) as e:
        mf.parse(f"{'0' * 64}  {path}\n", "m")
    assert e.value.code == 2 and why in e.value.message and len(e.value.message) < 400


@pytest.mark.skipif(not shutil.which("sha256sum"), reason="coreutils sha256sum not installed")
@pytest.mark.parametrize("text", ["", "# recipe-bundle inputs manifest\n# model.repo: a/b\n"])
def test_an_empty_or_header_only_manifest_fails_as_coreutils_fails_it(tmp_path, text):
    man = tmp_path / "m.sha256"
    man.write_text(text)
    coreutils = subprocess.run(["sha256sum", "-c", "--strict", str(man)], cwd=tmp_path, capture_output=True)
    assert coreutils.returncode == 1
    with pytest.raises(UsageError, match="lists no file"):
        mf.load(man)


@pytest.mark.skipif(not shutil.which("sha256sum"), reason="coreutils sha256sum not installed")
def test_coreutils_checks_a_manifest_with_pinned_only_entries_and_skips_them(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "a.bin").write_bytes(b"abc")
    (tmp_path / "model" / "r.py").write_bytes(b"print(1)\n")
    m = mf.Manifest({"model.repo": "a/b"}, [mf.Entry("model/a.bin", hashlib.sha256(b"abc").hexdigest(), 3),
                                            mf.Entry("model/r.py", None, 9, mf.UNKNOWN)])
    mf.write(m, tmp_path / "m.sha256")
    r = subprocess.run(["sha256sum", "-c", "--strict", "m.sha256"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "model/a.bin: OK\n", r.stdout + r.stderr
