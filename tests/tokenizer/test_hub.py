"""The codec as a Hugging Face Hub model: a repo id loads from the hub cache, push_to_hub uploads the folder."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from tokenizer import CheckpointError, RVQCodec


def _cached_repo(cache, repo_id: str, folder) -> None:
    """Lay `folder`'s files out as huggingface_hub's cache holds a snapshot of `repo_id` at main."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    root = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def _same(a: RVQCodec, b: RVQCodec) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_repo_id_loads_from_the_hub_cache(codec, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    codec.eval().save_pretrained(tmp_path / "saved")
    _cached_repo(tmp_path / "cache", "org/tiny-codec", tmp_path / "saved")
    loaded = RVQCodec.from_pretrained("org/tiny-codec", cache_dir=tmp_path / "cache")
    assert _same(codec, loaded) and loaded.fingerprint == codec.fingerprint
    wav = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.encode(wav), codec.encode(wav))


def test_missing_repo_or_folder_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="org/absent"):
        RVQCodec.from_pretrained("org/absent", cache_dir=tmp_path / "cache")
    with pytest.raises(CheckpointError, match="does not exist"):
        RVQCodec.from_pretrained(tmp_path / "no" / "such" / "folder")


def test_push_to_hub_uploads_the_checkpoint_and_a_card(codec, tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.repocard import RepoCard

    uploaded = {}

    def create_repo(self, repo_id, **kwargs):
        return type("Repo", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploaded["files"] = sorted(p.name for p in folder_path.iterdir())
        uploaded["card"] = RepoCard.load(folder_path / "README.md")
        uploaded["codec"] = RVQCodec.from_pretrained(folder_path)
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    codec.eval().push_to_hub("org/tiny-codec")
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
    assert uploaded["card"].data.library_name == "rvqaudio"
    assert codec.fingerprint in uploaded["card"].text
    assert _same(codec, uploaded["codec"])


def test_local_save_writes_no_card_unless_asked(codec, tmp_path):
    plain = codec.save_pretrained(tmp_path / "plain")
    assert sorted(p.name for p in plain.iterdir()) == ["config.json", "model.safetensors"]
    carded = codec.save_pretrained(tmp_path / "carded", model_card_kwargs={})
    assert (carded / "README.md").is_file()
    with pytest.raises(CheckpointError, match="own config"):
        codec.save_pretrained(tmp_path / "other", config={"a": 1})
