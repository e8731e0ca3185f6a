"""The documentation runs as written: every shell and Python block of README.md and docs/*.md.

Each Markdown file is one session, as a reader would type it: its blocks run in order in a
fresh temporary folder that holds a copy of `examples/` (so `cp -r examples ...` works as it
does in a clone). Shell blocks (```bash, ```sh, ```console: its `$ ` lines) run in bash with
`set -e`, `dlv` and `python` taken from the interpreter running the tests; a `cd` carries over
to the next block. Python blocks (```python) run in one interpreter per file, sharing one
namespace, in the folder the shell blocks left (that folder first on sys.path, as for
`python` started there). A failure names the file and line of the block.

Every fence names its language. A block that is shown but not run says so and why in its
info string, e.g. "```bash illustration: installs packages" (there are few: installing
packages, running the suite itself, benchmarks, a Ray cluster, a server that runs until stopped). "```toml file=examples/eval.toml"
shows a file and must equal it. A file with a block marked `slow` is a slow test (still run
in CI). ```dql blocks hold DQL statements (each starts on an unindented line) and must parse.
Commands in indented code blocks would escape all this, so they are refused.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelhub

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py"}
BLOCK_TIMEOUT_S = 900
# An indented line starting like one of these is a command outside any fence.
INDENTED_COMMAND = re.compile(r"^ {4,}(\$ |dlv |python |pip |import |from modelhub|repo\.)")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


class DocBlockError(AssertionError):
    """A documentation block failed; the message names the file and line."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int            # 1-based line of the block's first content line
    lang: str            # first word of the info string, lower case ("" when none)
    illustration: str | None   # the reason it is only shown, or None when it runs
    shows_file: str | None     # file=PATH: the block must equal that file
    slow: bool
    source: str

    @property
    def where(self) -> str:
        return f"{_rel(self.path)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.illustration is None and self.lang in SHELL | PYTHON


def _rel(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def parse_blocks(path: Path) -> list[Block]:
    """The fenced blocks of the Markdown file ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m["fence"], m["info"].strip()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            body.append(lines[j][len(m["indent"]):] if lines[j].startswith(m["indent"]) else lines[j])
            j += 1
        if j == len(lines):
            raise DocBlockError(f"{_rel(path)}:{i + 1}: the fence opened here is never closed")
        words = info.split(None, 1)
        lang = words[0].lower() if words else ""
        rest = words[1] if len(words) > 1 else ""
        illustration = None
        if re.match(r"illustration\b", rest):
            illustration = rest[len("illustration"):].lstrip(" :").strip()
        shown = re.search(r"\bfile=(\S+)", rest)
        blocks.append(Block(path=path, line=i + 2, lang=lang, illustration=illustration,
                            shows_file=shown[1] if shown else None, slow=bool(re.search(r"\bslow\b", rest)),
                            source="\n".join(body) + "\n"))
        i = j + 1
    return blocks


def check_conventions(path: Path) -> list[str]:
    """What keeps ``path``'s blocks from being run or checked: one message per problem."""
    problems = []
    blocks = parse_blocks(path)
    for b in blocks:
        if not b.lang:
            problems.append(f"{b.where}: a fence without a language; name it (```bash, ```python, ```text, ...) "
                            "so that the docs test knows whether to run it")
        if b.illustration == "":
            problems.append(f"{b.where}: say why the block is only an illustration (```{b.lang} illustration: why)")
        if b.lang == "dql" and path.name != "DQL.md":   # DQL.md's blocks run in tests/test_dql_docs.py
            problems.extend(_dql_problems(b))
        if b.shows_file:
            shown = ROOT / b.shows_file
            if not shown.is_file() or shown.read_text(encoding="utf-8") != b.source:
                problems.append(f"{b.where}: the block differs from {b.shows_file}; copy the file into it")
    fenced = {n for b in blocks for n in range(b.line - 1, b.line + b.source.count("\n") + 1)}
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if n not in fenced and INDENTED_COMMAND.match(text):
            problems.append(f"{_rel(path)}:{n}: a command in an indented block is never run; "
                            "put it in a ```bash or ```python fence")
    return problems


def _dql_problems(block: Block) -> list[str]:
    from modelhub.dql.parser import parse
    from modelhub.errors import QueryError

    problems = []
    for statement in re.split(r"\n(?=\S)", block.source.strip()):
        try:
            parse(statement)
        except QueryError as exc:
            problems.append(f"{block.where}: a DQL statement does not parse: {exc}")
    return problems


# -- running a file's blocks ----------------------------------------------------------------------

_DRIVER = r'''
import json, os, sys, traceback
namespace = {"__name__": "__main__"}
for request in sys.stdin:
    req = json.loads(request)
    os.chdir(req["cwd"])
    if sys.path[0] != req["cwd"]:
        sys.path.insert(0, req["cwd"])
    error = None
    try:
        code = compile("\n" * (req["line"] - 1) + req["source"], req["file"], "exec")
        exec(code, namespace)
    except BaseException:
        error = traceback.format_exc()
    sys.stdout.flush(); sys.stderr.flush()
    print("\n@@docs-result@@ " + json.dumps({"error": error}), flush=True)
'''


class DocSession:
    """One reader's terminal for one Markdown file: the current folder, a Python interpreter."""

    def __init__(self, work: Path) -> None:
        self.cwd = work
        self.bin = work.parent / "bin"
        self.bin.mkdir(exist_ok=True)
        for name, target in (("dlv", f'"{sys.executable}" -m modelhub'), ("python", f'"{sys.executable}"'),
                             ("python3", f'"{sys.executable}"')):
            shim = self.bin / name
            shim.write_text(f"#!/bin/sh\nexec {target} \"$@\"\n")
            shim.chmod(0o755)
        home = work.parent / "home"
        home.mkdir(exist_ok=True)
        source_root = str(Path(modelhub.__file__).resolve().parents[1])
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DLV_BACKEND", "RAY_ADDRESS", "DLV_REPO", "PYTHONSTARTUP")}
        self.env.update({
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p),
            "HOME": str(home), "DLV_AUTHOR": "docs", "PYTHONUNBUFFERED": "1",
        })
        self._python: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def run(self, block: Block) -> None:
        if block.lang in PYTHON:
            self._run_python(block)
        else:
            self._run_shell(block)

    def _run_shell(self, block: Block) -> None:
        source = block.source
        if block.lang == "console":
            commands = [line[2:] for line in source.splitlines() if line.startswith("$ ")]
            source = "\n".join(commands) + "\n"
        state = self.cwd.parent / "cwd-after-block"
        header = ('cd "$1" || exit 97\ntrap \'pwd > "$2"\' EXIT\n'
                  "trap 'echo \"@@docs-failed-line $LINENO\" >&2' ERR\nset -eo pipefail\n")
        try:
            proc = subprocess.run(["bash", "-c", header + source, "docs", str(self.cwd), str(state)],
                                  env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=BLOCK_TIMEOUT_S, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            raise DocBlockError(f"{block.where}: the ```{block.lang} block ran longer than {BLOCK_TIMEOUT_S} s\n"
                                f"--- block ---\n{block.source}") from None
        if proc.returncode != 0:
            failed = re.findall(r"@@docs-failed-line (\d+)", proc.stdout)
            at = block.line + int(failed[-1]) - 1 - header.count("\n") if failed else block.line
            output = re.sub(r"@@docs-failed-line \d+\n?", "", proc.stdout)
            raise DocBlockError(f"{_rel(block.path)}:{at}: a command of the ```{block.lang} block at {block.where} "
                                f"exited {proc.returncode}\n--- block ---\n{block.source}--- output ---\n{output[-4000:]}")
        if state.is_file():
            self.cwd = Path(state.read_text().strip())

    def _start_python(self) -> None:
        self._python = subprocess.Popen([sys.executable, "-u", "-c", _DRIVER], env=self.env, cwd=self.cwd,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, errors="replace")

        def pump(stream, sink) -> None:
            for line in stream:
                sink.put(line)
            sink.put(None)

        threading.Thread(target=pump, args=(self._python.stdout, self._lines), daemon=True).start()

    def _run_python(self, block: Block) -> None:
        if self._python is None:
            self._start_python()
        assert self._python is not None and self._python.stdin is not None
        request = {"cwd": str(self.cwd), "line": block.line, "file": _rel(block.path), "source": block.source}
        self._python.stdin.write(json.dumps(request) + "\n")
        self._python.stdin.flush()
        output = []
        while True:
            try:
                line = self._lines.get(timeout=BLOCK_TIMEOUT_S)
            except queue.Empty:
                raise DocBlockError(f"{block.where}: the ```python block ran longer than {BLOCK_TIMEOUT_S} s") from None
            if line is None:
                raise DocBlockError(f"{block.where}: the Python interpreter exited while running the block\n"
                                    + "".join(output)[-4000:])
            if line.startswith("@@docs-result@@ "):
                error = json.loads(line[len("@@docs-result@@ "):])["error"]
                break
            output.append(line)
        if error:
            raise DocBlockError(f"{block.where}: the ```python block failed\n--- output ---\n"
                                f"{''.join(output)[-2000:]}--- traceback ---\n{error}")

    def close(self) -> None:
        if self._python is not None:
            assert self._python.stdin is not None
            self._python.stdin.close()
            try:
                self._python.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._python.kill()
                self._python.wait()


def run_doc(path: Path, tmp: Path) -> int:
    """Run every block of ``path`` that runs, in order, in a fresh folder under ``tmp``; how many ran."""
    work = tmp / "work"
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    session = DocSession(work)
    ran = 0
    try:
        for block in parse_blocks(path):
            if block.runs:
                session.run(block)
                ran += 1
    finally:
        session.close()
    return ran


def _param(path: Path):
    marks = [pytest.mark.slow] if any(b.slow for b in parse_blocks(path)) else []
    return pytest.param(path, id=path.name, marks=marks)


# -- tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in DOCS])
def test_every_block_is_run_or_says_why_not(path: Path) -> None:
    problems = check_conventions(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", [_param(p) for p in DOCS])
def test_the_blocks_run_as_written(path: Path, tmp_path: Path) -> None:
    if not any(b.runs for b in parse_blocks(path)):
        pytest.skip(f"{path.name} has no shell or Python block")
    run_doc(path, tmp_path)


def test_illustrations_are_few() -> None:
    """Shown-only blocks are the exception: each one is a block the docs test cannot check."""
    shown = [f"{b.where}: {b.illustration}" for p in DOCS for b in parse_blocks(p) if b.illustration is not None]
    # installs, benchmarks, a Ray cluster, servers (dlv ui) and the suite itself cannot run inside this test
    assert len(shown) <= 7, "more blocks are only illustrations than expected:\n" + "\n".join(shown)


# -- the runner itself ----------------------------------------------------------------------------

def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guide.md"
    path.write_text(text)
    return path


def test_a_failing_shell_command_is_reported_with_its_file_and_line(tmp_path) -> None:
    doc = _doc(tmp_path, "# guide\n\n```bash\ncd examples\necho fine\nfalse\necho never\n```\n")
    with pytest.raises(DocBlockError, match=r"(?s)guide\.md:6: a command of the ```bash block at guide\.md:4 exited 1"):
        run_doc(doc, tmp_path / "run")


def test_a_failing_python_block_is_reported_with_its_file_and_line(tmp_path) -> None:
    doc = _doc(tmp_path, "```bash\ncd examples\n```\n\n```python\nimport model\nx = 1\n```\n\n"
                         "```python\nassert x == 1\nassert x == 2, 'x is not 2'\n```\n")
    with pytest.raises(DocBlockError, match=r"(?s)guide\.md:11: the ```python block failed.*"
                                            r'File "guide\.md", line 12.*x is not 2'):
        run_doc(doc, tmp_path / "run")


def test_blocks_share_the_folder_and_the_python_namespace(tmp_path) -> None:
    doc = _doc(tmp_path, "```bash\nmkdir there && cd there\n```\n\n```python\nimport os\nhere = os.getcwd()\n```\n\n"
                         "```console\n$ test \"$(basename \"$PWD\")\" = there\nsome output\n```\n\n"
                         "```python illustration: never runs\nraise SystemExit(1)\n```\n\n"
                         "```python\nassert here.endswith('there') and os.getcwd() == here\n```\n")
    assert run_doc(doc, tmp_path / "run") == 4


def test_conventions_name_every_problem(tmp_path) -> None:
    doc = _doc(tmp_path, "```\ndlv log\n```\n\nText:\n\n    dlv init\n\n```bash illustration\nls\n```\n\n"
                         "```toml file=examples/eval.toml\nepochs = 1\n```\n\n```dql\nselect m wher m.seq == 1\n```\n")
    problems = "\n".join(check_conventions(doc))
    assert "guide.md:2: a fence without a language" in problems
    assert "guide.md:7: a command in an indented block is never run" in problems
    assert "guide.md:10: say why the block is only an illustration" in problems
    assert "guide.md:14: the block differs from examples/eval.toml" in problems
    assert "guide.md:18: a DQL statement does not parse" in problems
