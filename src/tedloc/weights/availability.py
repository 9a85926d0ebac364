"""Weights present before any work, or one line saying which are missing and the three fixes.

:func:`ensure_weights` looks every source of the models up in the local caches (no network); a missing one is
fetched now when the machine may use the network (``HF_HUB_OFFLINE`` unset) and its host answers a connection
within ``TEDLOC_NETWORK_TIMEOUT`` seconds (default 30: a refused connection fails at once, a network that drops
packets within that bound, instead of the Hub's minutes of retries). :func:`loading_weights` wraps a library's
loader: the weights ensured first, then loaded with the Hub in offline mode, so a filled cache never waits on a
network (the Hub otherwise asks for newer versions of every file, minutes behind a firewall).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Iterable, Iterator
from urllib.parse import urlparse

from tedloc.errors import TedlocError
from tedloc.weights.resolve import ModelWeights, weights_of
from tedloc.weights.sources import WeightSource

__all__ = ["WeightsUnavailable", "ensure_weights", "loading_weights", "hub_offline", "network_timeout",
           "fixes_text"]

_logger = logging.getLogger(__name__)
_DEFAULT_TIMEOUT_S = 30.0
_reachable: dict[str, str | None] = {}  # server URL -> None when it answers, else why not (once per process)


class WeightsUnavailable(TedlocError):
    """A weight file is neither in the local cache nor could be fetched."""


def network_timeout() -> float:
    """Seconds a connection or a read may wait (``TEDLOC_NETWORK_TIMEOUT``, default 30)."""
    try:
        return float(os.environ.get("TEDLOC_NETWORK_TIMEOUT", _DEFAULT_TIMEOUT_S))
    except ValueError:
        raise TedlocError(f"TEDLOC_NETWORK_TIMEOUT={os.environ['TEDLOC_NETWORK_TIMEOUT']!r} is not a number of "
                          f"seconds") from None


def hub_offline_requested() -> bool:
    """Whether the user forbade the Hub (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import constants

    if any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
           for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True  # set after huggingface_hub was imported (which reads it once)
    return bool(constants.HF_HUB_OFFLINE)


def fixes_text(model: ModelWeights, fetch_args: str | None = None) -> str:
    """The three ways out, for a message; ``fetch_args`` what ``tedloc weights fetch`` is given (default
    ``--model SPEC``)."""
    return (f"fixes: network access here; or `tedloc weights fetch {fetch_args or '--model ' + model.spec}` on a "
            f"machine with network into a shared HF_HOME/TORCH_HOME, then HF_HUB_OFFLINE=1 here; or "
            f"{model.local_option}")


def _unreachable(url: str) -> str | None:
    """Why ``url``'s server (through the proxy of the environment, if any) gives no HTTP answer within the bound;
    None when it answers (any status: it is there). One request per server and process."""
    import urllib.error
    import urllib.request

    parts = urlparse(url)
    root = f"{parts.scheme}://{parts.netloc}/"
    if root not in _reachable:
        timeout = network_timeout()
        start = time.monotonic()
        try:
            urllib.request.urlopen(urllib.request.Request(root, method="HEAD"), timeout=timeout).close()
            _reachable[root] = None
        except urllib.error.HTTPError:  # an answer, if not a welcome one: the server is there
            _reachable[root] = None
        except (urllib.error.URLError, OSError) as e:  # refused, unknown host, no answer in time
            waited = time.monotonic() - start
            reason = getattr(e, "reason", e)
            text = "no answer" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else (
                getattr(reason, "strerror", None) or str(reason) or type(reason).__name__)
            _reachable[root] = f"{parts.netloc} is unreachable ({text} after {waited:.0f} s)"
    return _reachable[root]


def _fail(model: ModelWeights, source: WeightSource, why: str, others: list[str] = (),
          fetch_args: str | None = None) -> WeightsUnavailable:
    more = f" (also missing: {', '.join(others)})" if others else ""
    return WeightsUnavailable(f"weights of {model.spec}: {source.describe()} is not in {source.location} and "
                              f"{why}{more}; {fixes_text(model, fetch_args)}")


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:157] + "...") if len(text) > 160 else (text or type(e).__name__)


def _refusal(source: WeightSource) -> str | None:
    """Why ``source`` cannot be downloaded now (offline mode, an unreachable host), None when it can."""
    if source.on_hub and hub_offline_requested():
        return "HF_HUB_OFFLINE=1 forbids downloading it"
    return _unreachable(source.host)


def ensure_weights(models: Iterable[str | ModelWeights], fetch: bool = True,
                   fetch_args: str | None = None) -> list[ModelWeights]:
    """Every source of ``models`` in the local caches, the missing ones fetched now (``fetch``, the network
    allowing), else one line (:class:`WeightsUnavailable`) naming the first missing, the others, why, and the fixes
    (``fetch_args``: what to give ``tedloc weights fetch``, e.g. ``--bench cub``). Returns the resolved models."""
    resolved = [m if isinstance(m, ModelWeights) else weights_of(m) for m in models]
    missing = [(model, source) for model in resolved for source in model.missing()]
    for i, (model, source) in enumerate(missing):
        why = "`tedloc weights check` downloads nothing" if not fetch else _refusal(source)
        if why:
            raise _fail(model, source, why, [m.spec for m, _ in missing[i + 1:] if m is not model], fetch_args)
        _logger.info("fetching %s: %s -> %s", model.spec, source.describe(), source.location)
        try:
            source.fetch()
        except Exception as e:  # the libraries raise many kinds: HTTP errors, timeouts, a moved file, ...
            raise _fail(model, source, f"could not be fetched ({type(e).__name__}: {_reason(e)})",
                        fetch_args=fetch_args) from None
    return resolved


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """The Hugging Face Hub in offline mode for the block (the libraries read only their cache)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


@contextlib.contextmanager
def loading_weights(spec: str, needed: bool = True) -> Iterator[ModelWeights | None]:
    """Around a library's loader of ``spec``: its weights ensured (fetched if missing and possible, else one line),
    then the block run with the Hub offline, so that loading reads the cache and never waits on the network.
    ``needed=False`` (random or local weights): nothing is done."""
    if not needed:
        yield None
        return
    (model,) = ensure_weights([spec])
    if not model.sources:
        yield model
        return
    with hub_offline():
        yield model
