"""Reading plugin logs for ``logs``: tails, cursors across rotation, and hostile content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rosey.api.logfile import MAX_LINE, WINDOW, Cursor, read_after, tail
from rosey.errors import BadRequest


def write(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def rotate(path: Path) -> None:
    """What ``sandbox.logs.RotatingLog`` does: ``.1`` → ``.2``, current → ``.1``, new current."""
    one, two = path.with_name(path.name + ".1"), path.with_name(path.name + ".2")
    if one.exists():
        os.replace(one, two)
    os.replace(path, one)
    path.touch()


def follow(path: Path, cursor: Cursor, lines: int = 1000) -> tuple[list[str], Cursor]:
    out: list[str] = []
    while True:
        got, cursor = read_after(path, cursor, lines)
        if not got:
            return out, cursor
        out += got


def test_no_log_yet(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    assert tail(path, 10) == ([], Cursor(0, 0))
    assert read_after(path, Cursor(0, 0), 10) == ([], Cursor(0, 0))
    write(path, b"first\n")
    assert read_after(path, Cursor(0, 0), 10)[0] == ["first"]


def test_tail_gives_the_last_complete_lines_and_a_cursor_after_them(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    write(path, b"".join(b"line %d\n" % i for i in range(100)) + b"partial")
    lines, cursor = tail(path, 3)
    assert lines == ["line 97", "line 98", "line 99"]
    assert cursor == Cursor(path.stat().st_ino, path.stat().st_size - len(b"partial"))
    write(path, b" now complete\nnext\n")
    assert follow(path, cursor)[0] == ["partial now complete", "next"]


def test_tail_reaches_into_the_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    write(path, b"old 1\nold 2\n")
    rotate(path)
    write(path, b"new 1\n")
    assert tail(path, 3)[0] == ["old 1", "old 2", "new 1"]
    assert tail(path, 2)[0] == ["old 2", "new 1"]


def test_cursor_pages_through_in_order(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    write(path, b"".join(b"%d\n" % i for i in range(10)))
    cursor = Cursor(0, 0)
    pages = []
    for _ in range(4):
        lines, cursor = read_after(path, cursor, 3)
        pages.append(lines)
    assert pages == [["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8"], ["9"]]
    assert read_after(path, cursor, 3) == ([], cursor)


def test_cursor_follows_the_log_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    write(path, b"a\nb\n")
    _, cursor = tail(path, 10)
    write(path, b"c\nd")  # the rotation splits "d|e" mid-line, as RotatingLog may
    rotate(path)
    write(path, b"e\nf\n")
    rotate(path)
    write(path, b"g\n")
    lines, cursor = follow(path, cursor)
    assert lines == ["c", "d", "e", "f", "g"]
    write(path, b"h\n")
    assert follow(path, cursor)[0] == ["h"]


def test_a_cursor_of_a_file_gone_long_ago_starts_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    write(path, b"x\ny\n")
    assert read_after(path, Cursor(999999999, 5), 10)[0] == ["x", "y"]


def test_a_truncated_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    write(path, b"0123456789\n")
    _, cursor = tail(path, 1)
    path.write_bytes(b"new\n")
    assert read_after(path, cursor, 10)[0] == ["new"]


def test_control_characters_and_terminal_escapes_are_neutralised(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    write(path, b"red \x1b[31mtext\x1b[0m\tend\x07\r\n\xff\xfe bytes\n")
    lines, _ = tail(path, 10)
    assert lines == ["red \ufffd[31mtext\ufffd[0m\tend\ufffd", "\ufffd\ufffd bytes"]
    assert all("\x1b" not in line for line in lines)


def test_huge_lines_and_floods_stay_bounded(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    write(path, b"x" * (WINDOW * 3) + b"\n" + b"short\n" * 100000)
    lines, _ = tail(path, 10000)
    assert sum(len(line) + 1 for line in lines) <= WINDOW
    lines, _ = read_after(path, Cursor(0, 0), 10000)
    assert lines[0] == "x" * (MAX_LINE - 1) + "…"
    assert all(len(line) <= MAX_LINE for line in lines)
    everything, _ = follow(path, Cursor(0, 0), 10000)
    assert everything.count("short") == 100000  # no line lost, however it was paged


@pytest.mark.parametrize("text", ["", "1", "a:b", "1:2:3", "-1:2", "1:" + "9" * 30])
def test_bad_cursors_are_bad_requests(text: str) -> None:
    with pytest.raises(BadRequest, match="field 'cursor'"):
        Cursor.parse(text)
