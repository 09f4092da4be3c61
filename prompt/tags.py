"""A Danbooru tag list: canonical tags with category and post count, and their aliases (plain Python).

The format is tagcomplete's (`name,category,post_count,"alias,alias"`, no header), read from a .csv or
a gzip-compressed .csv.gz. The pack bundles tagcomplete's danbooru.csv (data/NOTICE.md says where it
comes from); a user may give their own file of the same format. Tags are looked up in prompt form
(`long hair`, `karin (blue archive)`, lower-case), so a tag written either way finds its entry.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import threading
from pathlib import Path
from typing import NamedTuple

from .booru import normalize_tag, tag_key, written_as_listed

log = logging.getLogger("FlowAnime")

BUNDLED = Path(__file__).resolve().parent / "data" / "danbooru.csv.gz"
BUNDLED_SOURCE = "danbooru.csv (tagcomplete, bundled)"
MAX_FILE_BYTES = 64 * 1024 * 1024  # of text, after decompression: ~20 times the Danbooru list
MAX_ROWS = 2_000_000
CATEGORY_NAMES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta"}


class TagInfo(NamedTuple):  # a tuple of atoms: the garbage collector stops tracking 140,000 of them
    prompt: str  # prompt form: `karin \(blue archive\)`
    category: int
    posts: int


class TagList:
    def __init__(self, rows, source: str):
        """rows: (name, category, post count, aliases) as in the CSV; the first row of a name wins, and an
        alias never hides a canonical tag."""
        self.source = source
        self._tags: dict[str, TagInfo] = {}
        self._written: dict[str, TagInfo] = {}  # `long_hair` as the list writes it -> its entry
        alias_rows = []
        for name, category, posts, aliases in rows:
            prompt = normalize_tag(name)
            if not prompt:
                continue
            key = tag_key(prompt)
            if key not in self._tags:
                self._tags[key] = info = TagInfo(prompt, category, posts)
                if written_as_listed(name, key):
                    self._written[key if name == key else name] = info
                if aliases:
                    alias_rows.append((key, aliases))
        self._aliases: dict[str, str] = {}
        for key, aliases in alias_rows:
            for alias in aliases.split(","):
                alias = alias.strip()
                if not alias or alias.startswith("/"):  # "/lh": tagcomplete's typing shortcuts, not tags
                    continue
                alias_key = tag_key(normalize_tag(alias))
                if alias_key and alias_key not in self._tags:
                    self._aliases.setdefault(alias_key, key)
        # The dicts' own look-ups (the normaliser makes a few per tag; a method around each would double
        # their cost): get(key) -> TagInfo or None; alias_of(key) -> the key of the canonical tag the
        # alias stands for, or None.
        self.get = self._tags.get
        self.alias_of = self._aliases.get
        # as_written(text) -> TagInfo or None: the entry of a tag the normaliser may take straight from
        # how the list writes it (booru.written_as_listed); built once per list, it spares those tags
        # the steps that find their prompt form.
        self.as_written = self._written.get

    def __len__(self) -> int:
        return len(self._tags)

    def __contains__(self, key: str) -> bool:
        return key in self._tags

    def items(self):
        return self._tags.items()

    def aliases(self):
        return self._aliases.items()


def _rows(text_stream, source: str):
    count = 0
    for row in csv.reader(text_stream):
        if not row or not row[0].strip():
            continue
        count += 1
        if count > MAX_ROWS:
            raise ValueError(f"FlowAnime: the tag list {source} has more than {MAX_ROWS:,} rows ('tag_list_csv').")
        try:
            category = int(row[1]) if len(row) > 1 and row[1].strip() else 0
            posts = int(row[2]) if len(row) > 2 and row[2].strip() else 0
        except ValueError:
            continue  # a header line, or a row of another format
        yield row[0].strip(), category, posts, row[3] if len(row) > 3 else ""


def read_tag_csv(path, source: str | None = None) -> TagList:
    """Read a tag list (.csv or .csv.gz); raises ValueError naming 'tag_list_csv' when it is unusable."""
    path = Path(path)
    source = source or path.name
    if not path.is_file():
        raise ValueError(f"FlowAnime: the tag list {source} does not exist ('tag_list_csv').")
    with open(path, "rb") as raw:
        data = raw.read(MAX_FILE_BYTES + 1)
    if data[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
            data = unzipped.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"FlowAnime: the tag list {source} is larger than {MAX_FILE_BYTES // 2**20} MB ('tag_list_csv').")
    # utf-8-sig: Excel's "CSV UTF-8" and Notepad write a byte-order mark before the first tag;
    # Notepad's "UTF-16" ("Unicode") starts with its own mark.
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:  # e.g. Excel's plain "CSV" (the Windows code page)
        log.warning("FlowAnime: the tag list %s is not %s (byte %d): tags with such characters will not "
                    "match; save it as UTF-8 (Excel: \"CSV UTF-8\").", source,
                    "UTF-16" if encoding == "utf-16" else "UTF-8", e.start)
        text = data.decode(encoding, errors="replace")
    tags = TagList(_rows(io.StringIO(text, newline=""), source), source)
    if not len(tags):
        raise ValueError(f"FlowAnime: no tags found in {source}: expected tagcomplete's format "
                         "name,category,post_count,\"aliases\" ('tag_list_csv').")
    return tags


_cache: dict = {}
_cache_lock = threading.Lock()  # the node and the editor's counter at once: one read, the other waits


def load_tag_list(path=None, source: str | None = None) -> TagList:
    """The bundled list (path None) or a user's file, read once while the file is unchanged."""
    path = Path(path) if path is not None else BUNDLED
    stat = os.stat(path) if path.is_file() else None
    key = (str(path), stat and stat.st_mtime_ns, stat and stat.st_size)
    with _cache_lock:
        if key not in _cache:
            if len(_cache) >= 4:
                _cache.clear()
            _cache[key] = read_tag_csv(path, source or (BUNDLED_SOURCE if path == BUNDLED else None))
        return _cache[key]
