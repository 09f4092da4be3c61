"""ComfyUI side of the prompt nodes: the user's tag list (folder_paths) and the editor's live token counter
(an aiohttp route on ComfyUI's PromptServer). The counting itself is the pack's own encoder core
(prompt/encoder.py) on ComfyUI's stock CLIP tokenizer (comfy/sd1_tokenizer): no model, no network.

ComfyUI's SD1Tokenizer(embedding_directory=..., tokenizer_data=...) has the same signature in 0.3.64 and
in Comfy-Org/ComfyUI 443393b (0.38.x), which is all this module relies on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

from ..prompt.booru import PRESET_NAMES, NormalizeOptions, normalize, preset_options
from ..prompt.chunking import CHUNK_LENGTH, DEFAULT_BACKTRACK
from ..prompt.tags import load_tag_list
from .clip import tokenize

ROUTE = "/flowanime/prompt_tokens"
MAX_COUNTER_CHARS = 20_000  # ~260 chunks; the editor counts as the user types, so keep each call small
COUNTER_TIMEOUT_S = 10.0
BUNDLED_LIST = ""  # the tag_list_csv value that means the bundled Danbooru list
NO_LIST = "none"

_tokenizer = None
_tokenizer_lock = threading.Lock()  # one count at a time: the tokenizer is not shared across threads
# The counter's own worker: on the event loop's default executor, a burst of counts (a workflow with
# many prompt nodes opening) queued ahead of the server's file reads and stalled them for seconds.
COUNTER_THREAD = "flowanime-counter"
_counter_pool = None
_counter_pool_lock = threading.Lock()


def _counter_executor():
    global _counter_pool
    with _counter_pool_lock:
        if _counter_pool is None:
            _counter_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=COUNTER_THREAD)
            logging.getLogger().addFilter(_QuietCounterEmbeddings())  # the root logger: ComfyUI logs there
        return _counter_pool


class _QuietCounterEmbeddings(logging.Filter):
    """ComfyUI's tokenizer warns of each embedding name it cannot find: as the user types
    `embedding:name`, every prefix the counter counts would print one. Only the counter's thread's are
    dropped; the node's own encoding still warns."""

    def filter(self, record):
        return not (record.threadName.startswith(COUNTER_THREAD) and "does not exist" in str(record.msg)
                    and "embedding:" in str(record.msg))


class BadCounterRequest(ValueError):
    """A request the editor's counter would never send: answered 400, not counted."""


def counter_arguments(body) -> tuple:
    """(text, comma_backtrack, normalizer options or None) from the route's JSON body."""
    if not isinstance(body, dict) or not isinstance(body.get("text", ""), str):
        raise BadCounterRequest("the body must be a JSON object with a string 'text'")
    backtrack = body.get("comma_backtrack", DEFAULT_BACKTRACK)
    if isinstance(backtrack, bool) or not isinstance(backtrack, int):
        raise BadCounterRequest("'comma_backtrack' must be a whole number")
    normalizer = body.get("normalizer")
    if normalizer is not None and not isinstance(normalizer, dict):
        raise BadCounterRequest("'normalizer' must be a JSON object of the normaliser node's options")
    return body.get("text", ""), backtrack, normalizer or None


def user_tag_list(name: str):
    """The tag list the node's tag_list_csv names: "" the bundled Danbooru list, "none" no list, else a
    .csv / .csv.gz file inside ComfyUI's user directory (nothing outside it is read)."""
    name = (name or "").strip()
    if name == BUNDLED_LIST:
        return load_tag_list()
    if name.lower() == NO_LIST:
        return None
    import folder_paths

    user = Path(folder_paths.get_user_directory()).resolve()
    path = (user / name).resolve()
    if user not in path.parents:
        raise ValueError(f"FlowAnime: 'tag_list_csv' must name a file inside ComfyUI's user directory ({user}); "
                         f"got {name!r}. Leave it empty for the bundled Danbooru list, or 'none'.")
    if not path.name.lower().endswith((".csv", ".csv.gz")):
        raise ValueError(f"FlowAnime: 'tag_list_csv' must be a .csv or .csv.gz file; got {name!r}.")
    return load_tag_list(path, source=f"{name} (user directory)")


def tag_list_stamp(name: str | None) -> str | float:
    """What a user tag list's contents hang on (its path, size and modification time), for the node's
    IS_CHANGED: ComfyUI runs the node again when the file changes, not only when its inputs do. The
    bundled list and "none" do not change; a name the node will refuse is returned as it is (the node
    then runs and says why). A name linked from another node is not known yet (ComfyUI passes None):
    NaN, which equals nothing, so the node runs every time."""
    if name is None:
        return float("nan")
    name = name.strip()
    if name == BUNDLED_LIST or name.lower() == NO_LIST:
        return name
    try:
        import folder_paths

        path = (Path(folder_paths.get_user_directory()) / name).resolve()
        stat = path.stat()
    except (OSError, ValueError, RuntimeError):
        return name
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def _counter_clip():
    """A stand-in for a CLIP object with ComfyUI's stock CLIP-L tokenizer: what prompt.encoder.tokenize
    needs (tokenize and tokenizer), no text-encoder weights."""
    global _tokenizer
    if _tokenizer is None:
        import comfy.sd1_clip
        import folder_paths

        embeddings = folder_paths.get_folder_paths("embeddings") if "embeddings" in folder_paths.folder_names_and_paths else None
        _tokenizer = comfy.sd1_clip.SD1Tokenizer(embedding_directory=embeddings, tokenizer_data={})
    return SimpleNamespace(tokenizer=_tokenizer, tokenize=lambda text: _tokenizer.tokenize_with_weights(text))


def count_tokens(text: str, comma_backtrack: int = DEFAULT_BACKTRACK, normalizer: dict | None = None) -> dict:
    """The chunking CLIPTextEncodeBreak would make of text (CLIP-L's vocabulary, which SDXL's G shares).
    normalizer: the normaliser node's options, to count its output instead of its input."""
    if not isinstance(text, str):
        raise ValueError("text must be a string")
    if len(text) > MAX_COUNTER_CHARS:
        return {"error": f"prompt too long for the live counter ({len(text):,} characters, limit {MAX_COUNTER_CHARS:,})"}
    if not isinstance(comma_backtrack, int) or not 0 <= comma_backtrack < CHUNK_LENGTH:
        comma_backtrack = DEFAULT_BACKTRACK
    if normalizer:
        custom = NormalizeOptions(bool(normalizer.get("drop_quality_tags")), bool(normalizer.get("artists_to_own_chunk")),
                                  bool(normalizer.get("lowercase")), bool(normalizer.get("resolve_aliases")))
        preset = normalizer.get("preset", "custom")
        options = preset_options(preset if preset in PRESET_NAMES else "custom", custom)
        text = normalize(text, options, user_tag_list(str(normalizer.get("tag_list_csv", ""))))  # as the node does
    with _tokenizer_lock:
        encoded = tokenize(_counter_clip(), text, comma_backtrack)
    chunking = encoded.chunkings[0] if encoded.chunkings else {"chunks": [], "split_tags": [], "cuts": []}
    return {"tokens": sum(c["tokens"] for c in chunking["chunks"]), "chunk_length": CHUNK_LENGTH,
            "chunks": chunking["chunks"], "split_tags": chunking["split_tags"], "cuts": chunking["cuts"],
            "text": text if normalizer else None}


def register_routes() -> bool:
    """Add the counter's route to ComfyUI's running server; nothing when there is none (tests, scripts)."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    from aiohttp import web

    async def prompt_tokens(request):
        try:
            try:
                body = await request.json()
            except (ValueError, RecursionError):  # not JSON, or nested past the parser's recursion limit
                raise BadCounterRequest("the body must be JSON") from None
            arguments = counter_arguments(body)
            result = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(_counter_executor(), count_tokens, *arguments),
                COUNTER_TIMEOUT_S)
        except BadCounterRequest as e:
            return web.json_response({"error": f"bad request: {e}"}, status=400)
        except asyncio.TimeoutError:
            result = {"error": "the counter is busy", "busy": True}  # the editor asks again
        except Exception as e:  # a prompt the encoder refuses: the message is the count's answer
            logging.getLogger(__name__).debug("FlowAnime counter: %s", e)
            result = {"error": str(e)[:300]}
        return web.json_response(result)

    # A second copy of the pack in custom_nodes/ leaves the route to the first: aiohttp refuses a
    # second POST on one path, and that stops ComfyUI's start.
    if not any(getattr(r, "method", None) == "POST" and getattr(r, "path", None) == ROUTE for r in instance.routes):
        instance.routes.post(ROUTE)(prompt_tokens)
    return True
