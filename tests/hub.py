"""The Hugging Face Hub without a network, for tests that load Hub ids or push to the Hub.

Loading: `add_to_hub_cache` lays files out exactly as huggingface_hub's cache holds a downloaded repo (content-named
blobs, `snapshots/<commit>/` linking to them, `refs/<branch>` naming the commit), so diffusers, transformers and
huggingface_hub resolve a repo id, a `revision` and a `variant` through their own code. `use_hub_cache` points
`HF_HUB_CACHE` at such a cache and turns on `HF_HUB_OFFLINE`; huggingface_hub reads both into
`huggingface_hub.constants` when it is imported, so the constants are set too (diffusers and transformers read them
from there at each call).

Pushing: `HubRecorder` stands in for the Hub where the requests would leave the process. Creating a repo is one HTTP
request, and checking a README.md's metadata another; both are answered by an `httpx2.MockTransport` in the client huggingface_hub makes all its requests with (what its
`set_client_factory` installs; the public `huggingface_hub.create_repo` is a method bound at import, which no class
attribute patch reaches). A commit is
recorded from its `CommitOperationAdd`/`CommitOperationDelete` list: at `HfApi.create_commit`, and at the streamed
`pipelined_upload` that `HfApi.upload_folder` uses instead when `hf_xet` is installed. Any other request is refused as
huggingface_hub refuses it offline (`HF_HUB_OFFLINE=1`: a download, such as the repo's current model card, then comes
from the cache), or else fails the test.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import CommitInfo, CommitOperationAdd, ModelCard, _upload_pipeline, constants
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import _http


def add_to_hub_cache(
    cache: Path, repo_id: str, files: Mapping[str, bytes] | Path, revision: str = "main", commit: str | None = None
) -> str:
    """Add one snapshot of the model repo `repo_id` to the huggingface_hub cache at `cache`, as a download leaves it:
    `models--{org}--{name}/blobs/<sha256>` hold the contents, `snapshots/<commit>/<path>` are relative symlinks to
    them, and `refs/<revision>` holds the commit. Several snapshots of a repo share their blobs.

    Args:
        files: path in the repo -> content, or a folder whose files are taken (e.g. what `save_pretrained` wrote).
        revision: the branch the snapshot is (`refs/<revision>`); `None` for a snapshot reached by its commit only.
        commit: the snapshot's 40-hex commit; by default a hash of the repo id and the contents.

    Returns:
        the commit.
    """
    if isinstance(files, Path):
        files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    commit = commit or hashlib.sha1(json.dumps([repo_id, sorted(digests.items())]).encode()).hexdigest()
    for name, content in files.items():
        blob = repo / "blobs" / digests[name]
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    if revision is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(commit)
    return commit


def use_hub_cache(monkeypatch: pytest.MonkeyPatch, cache: Path, offline: bool = True) -> Path:
    """Make `cache` the huggingface_hub cache (`HF_HUB_CACHE`) and, with `offline`, forbid Hub requests
    (`HF_HUB_OFFLINE=1`) for the rest of the test: the environment for the processes a test starts, the constants for
    this one."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    return cache


@dataclass
class HubCommit:
    """One commit as huggingface_hub would send it: the files added (path in the repo -> content) and deleted."""

    repo_id: str
    files: dict[str, bytes]
    deleted: list[str]
    commit_message: str
    revision: str | None = None
    create_pr: bool = False

    def card(self) -> ModelCard:
        """The committed README.md, parsed as the Hub parses a model card."""
        return ModelCard(self.files["README.md"].decode())

    def json(self, path: str) -> dict:
        return json.loads(self.files[path])


@dataclass
class HubRecorder:
    """What a push sent to the Hub: `repos` created (repo ids, in order) and `commits`. With `refuse_status` set,
    every request is answered with that HTTP status instead (401: not logged in)."""

    repos: list[str] = field(default_factory=list)
    commits: list[HubCommit] = field(default_factory=list)
    refuse_status: int | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> "HubRecorder":
        """Stand in for the Hub until `monkeypatch` is undone (the end of the test, or of a `MonkeyPatch.context()`)."""
        # huggingface_hub's `set_client_factory`, undone with the rest: its shared client is made anew from the factory
        client = httpx2.Client(transport=httpx2.MockTransport(self._answer))
        monkeypatch.setattr(_http, "_GLOBAL_CLIENT_FACTORY", lambda: client)
        monkeypatch.setattr(_http, "_GLOBAL_CLIENT", None)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", self._create_commit)
        monkeypatch.setattr(_upload_pipeline, "pipelined_upload", self._pipelined_upload)
        return self

    def only_commit(self, repo_id: str) -> HubCommit:
        """The one commit of the push, after checking that `repo_id` was created once and committed to once."""
        assert self.repos == [repo_id], self.repos
        assert [commit.repo_id for commit in self.commits] == [repo_id], [c.repo_id for c in self.commits]
        return self.commits[0]

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        if self.refuse_status is not None:
            return httpx2.Response(self.refuse_status, json={"error": "refused by the test"})
        if request.method == "POST" and request.url.path == "/api/repos/create":
            payload = json.loads(request.content)
            repo_id = "/".join(part for part in (payload.get("organization"), payload["name"]) if part)
            self.repos.append(repo_id)
            return httpx2.Response(200, json={"url": f"{constants.ENDPOINT}/{repo_id}"})
        if request.method == "POST" and request.url.path == "/api/validate-yaml":  # `upload_folder` asks for README.md
            try:
                ModelCard(json.loads(request.content)["content"])
            except Exception as error:  # a header that does not parse: the Hub answers 400 with the errors
                return httpx2.Response(400, json={"errors": [{"message": str(error)}]})
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if constants.HF_HUB_OFFLINE:  # as huggingface_hub's own client refuses it: a download then reads the cache
            raise OfflineModeIsEnabled(f"Cannot reach {request.url}: offline mode is enabled.")
        raise AssertionError(f"a request the test does not expect: {request.method} {request.url}")

    def _record(self, repo_id, operations, commit_message, revision=None, create_pr=False) -> CommitInfo:
        files, deleted = {}, []
        for operation in operations:
            if isinstance(operation, CommitOperationAdd):
                with operation.as_file() as file:
                    files[operation.path_in_repo] = file.read()
            else:
                deleted.append(operation.path_in_repo)
        self.commits.append(HubCommit(repo_id, files, deleted, commit_message, revision, bool(create_pr)))
        oid = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
        return CommitInfo(f"{constants.ENDPOINT}/{repo_id}/commit/{oid}", commit_message, "", oid)

    def _create_commit(self, repo_id, operations, *, commit_message, revision=None, create_pr=None, **kwargs):
        # set on the class as this recorder's bound method: the `HfApi` instance is not passed
        return self._record(repo_id, operations, commit_message, revision, create_pr)

    def _pipelined_upload(self, api, *, repo_id, add_operations, delete_operations, commit_message, revision=None,
                          create_pr=False, **kwargs):  # fmt: skip
        return self._record(repo_id, [*delete_operations, *add_operations], commit_message, revision, create_pr)
