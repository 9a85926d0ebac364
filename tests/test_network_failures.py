"""Loading weights without a network fails fast, in one line naming the weights and the fixes; the command's
logging prints a library's lines once; network waits are bounded."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

from tedloc.cli import _not_handled_elsewhere, bound_network_waits


def test_open_clip_text_encoder_offline_is_one_line(synthetic_small, tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "tedloc", "anchors", "--data", str(synthetic_small),
                           "--text-encoder", "open_clip:ViT-B-16@openai", "--out", str(tmp_path / "a.safetensors")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "open_clip:ViT-B-16@openai" in errors[0] and "HF_HUB_OFFLINE=1" in errors[0]
    assert "local file" in errors[0]
    assert not (tmp_path / "a.safetensors").exists()


def test_unknown_open_clip_tag_is_one_line(synthetic_small, tmp_path):
    from tedloc.cli import main

    code = main(["anchors", "--data", str(synthetic_small), "--text-encoder", "open_clip:ViT-B-16@nosuchtag",
                 "--out", str(tmp_path / "a.safetensors")])
    assert code == 2


def test_a_library_logger_with_its_own_handler_prints_once():
    library = logging.getLogger("tedloc_test_library")
    child = logging.getLogger("tedloc_test_library.sub")
    plain = logging.getLogger("tedloc_test_plain.sub")
    handler = logging.StreamHandler()
    library.addHandler(handler)
    try:
        assert not _not_handled_elsewhere(logging.LogRecord(child.name, logging.WARNING, "", 0, "x", (), None))
        assert _not_handled_elsewhere(logging.LogRecord(plain.name, logging.WARNING, "", 0, "x", (), None))
        library.propagate = False  # a logger that does not propagate never reaches the root handler anyway
        assert _not_handled_elsewhere(logging.LogRecord("tedloc_test_plain", logging.INFO, "", 0, "x", (), None))
    finally:
        library.removeHandler(handler)
        library.propagate = True


def test_network_waits_are_bounded_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "77")
    monkeypatch.setenv("TEDLOC_NETWORK_TIMEOUT", "12")
    before = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(None)
        bound_network_waits()
        assert os.environ["HF_HUB_ETAG_TIMEOUT"] == "12" and os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] == "77"
        assert socket.getdefaulttimeout() == 12.0
        socket.setdefaulttimeout(5.0)
        bound_network_waits()
        assert socket.getdefaulttimeout() == 5.0  # a timeout already set is kept
    finally:
        socket.setdefaulttimeout(before)


def test_a_silent_server_times_out(monkeypatch):
    """A server that accepts and never answers (a firewall that drops packets) fails within the bound, as
    torchvision's downloads (urllib) would."""
    import time
    import urllib.request

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    monkeypatch.setenv("TEDLOC_NETWORK_TIMEOUT", "1")
    before = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(None)
        bound_network_waits()
        start = time.monotonic()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.getsockname()[1]}/weights.pth")
            raise AssertionError("the silent server answered")
        except (TimeoutError, OSError):
            pass
        assert time.monotonic() - start < 10
    finally:
        socket.setdefaulttimeout(before)
        server.close()
