"""Reading the files a user points alprd at (config, policy, hotlist) as hostile input.

Only regular files are read (a FIFO or /dev/zero would hang the reader or never end), never more
than a size cap, and YAML is parsed without anchors or aliases (a "billion laughs" bomb expands a
few hundred bytes into gigabytes), with nesting capped while the document is composed (5000 levels
would otherwise recurse past Python's limit) and duplicate keys refused (the last one silently won).

Errors say file, line, column and the problem, never the text at that place: a path symlinked to
/etc/shadow must not have its lines echoed into a terminal or a journal."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node

from alprd.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a unit's config or policy is a few KiB; 1 MiB leaves room for many cameras
MAX_DEPTH = 32  # the deepest config (cameras -> camera -> roi -> point) is 5 levels


class LineDict(dict):  # type: ignore[type-arg]
    """A mapping that remembers the line it started on, for messages naming file:line."""

    line: int = 0


def read_regular_file(path: str | os.PathLike[str], *, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; ConfigError (one line) otherwise.

    Opened non-blocking so a FIFO cannot block the open, then checked with fstat on the open file
    (not the name, which could be swapped between a check and the open)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read {what} file ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket")
            raise ConfigError(f"{p}: cannot read {what} file: it is {kind}, not a regular file")
        if st.st_size > max_bytes:
            raise ConfigError(f"{p}: {what} file is too big ({st.st_size} bytes; at most {max_bytes})")
        os.set_blocking(fd, True)
        chunks, got = [], 0
        while got <= max_bytes:  # the file may grow after fstat: read at most one byte past the cap
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > max_bytes:
            raise ConfigError(f"{p}: {what} file is too big (over {max_bytes} bytes)")
        return b"".join(chunks)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read {what} file ({e.strerror})") from None
    finally:
        os.close(fd)


def decode_text(raw: bytes, source: str | os.PathLike[str], what: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # Not the codec's message: it quotes the offending bytes.
        raise ConfigError(f"{source}: not a text {what} file (expected UTF-8; undecodable byte at offset "
                          f"{e.start})") from None


def _short(key: object) -> str:
    """A key fit to name in a message: short printable scalars only."""
    text = str(key)
    if isinstance(key, (str, int, float, bool)) and len(text) <= 64 and text.isprintable():
        return repr(key)
    return "(a long or unprintable key)"


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def shorten_quoted(message: str, limit: int = 60) -> str:
    """A message with every quoted value over `limit` characters cut in the middle: an error is
    one readable line even when a setting is 100000 characters long."""
    half = limit // 2
    return _QUOTED.sub(lambda m: m.group(0) if len(m.group(0)) <= limit else
                       f"{m.group(0)[:half]}...{m.group(0)[-half:]}", message)


def _safe_problem(problem: str | None) -> str:
    """YAML's problem without quoted file text longer than a character or an escape (a tag, an alias
    name, a token): those are where the file's content would leak."""
    text = _QUOTED.sub(lambda m: m.group(0) if len(m.group(0)) <= 6 else "(...)", problem or "syntax error")
    return text[:200]


class _Refused(ComposerError):
    """One of the rules here broken; its problem is written here, not taken from the file."""


class _HostileSafeLoader(yaml.SafeLoader):
    """SafeLoader refusing anchors, aliases and merge keys, nesting deeper than `max_depth` and
    duplicate mapping keys."""

    max_depth = MAX_DEPTH

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(None, None, "YAML anchors and aliases (& and *) are not allowed", event.start_mark)
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise _Refused(None, None, f"nested more than {self.max_depth} levels deep", event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        if isinstance(node, MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise _Refused(None, None, "YAML merge keys (<<) are not allowed", key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first
                except TypeError:
                    raise _Refused(None, None, "a mapping key must be a plain value", key_node.start_mark) from None
                if seen:
                    raise _Refused(None, None, f"duplicate key {_short(key)} (first at line {first[key]})",
                                   key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError):
            # A scalar the YAML resolver took for a date or number that is none (2021-13-45, a
            # 5000-digit integer): said with its place, not a traceback.
            raise _Refused(None, None, f"{node.tag.rsplit(':', 1)[-1]} value out of range", node.start_mark) from None


class _LineLoader(_HostileSafeLoader):
    def construct_line_map(self, node: MappingNode) -> Any:
        data = LineDict()
        data.line = node.start_mark.line + 1
        yield data
        data.update(self.construct_mapping(node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_map)


def parse_yaml(text: str | bytes, *, source: str | os.PathLike[str], what: str, max_depth: int = MAX_DEPTH,
               lines: bool = False) -> Any:
    """One YAML document, loaded under the rules above; `lines`: mappings are LineDicts."""
    if isinstance(text, bytes):
        text = decode_text(text, source, what)
    loader_cls = _LineLoader if lines else _HostileSafeLoader
    loader = None
    try:
        loader = loader_cls(text)  # the reader checks every character here
        loader.max_depth = max_depth
        return loader.get_single_data()
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{source}: not valid YAML at line {line}: a control character (#x{e.character:04x}) "
                          "YAML does not allow") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "an unknown place"
        if isinstance(e, _Refused):
            raise ConfigError(f"{source}: {at}: {e.problem}") from None
        problem = e.problem if e.problem_mark else e.context
        if isinstance(e, ConstructorError) and e.context is None:  # a tag or value YAML cannot build
            raise ConfigError(f"{source}: {at}: {_safe_problem(problem)}") from None
        raise ConfigError(f"{source}: not valid YAML at {at}: {_safe_problem(problem)}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{source}: not valid YAML (not a readable text stream)") from None
    except RecursionError:  # pragma: no cover - the depth cap comes first
        raise ConfigError(f"{source}: nested too deep") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | os.PathLike[str], *, what: str, max_bytes: int = MAX_CONFIG_BYTES,
              max_depth: int = MAX_DEPTH, lines: bool = False) -> Any:
    """A YAML file read and parsed as hostile input; ConfigError (one line, no file content) on any fault."""
    return parse_yaml(read_regular_file(path, what=what, max_bytes=max_bytes), source=path, what=what,
                      max_depth=max_depth, lines=lines)
