"""The REPL loop: read lines until `;`, run the statement, print an aligned table.

Ctrl-C drops the statement being typed, Ctrl-D leaves; errors are printed
and the loop goes on (a query mistake never ends the session).
"""
from __future__ import annotations

import sys
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, InMemoryHistory

from ..dql.vocabulary import Vocabulary
from ..errors import ModelhubError
from .completion import DQLCompleter
from .highlight import STYLE, DQLLexer

HELP = r"""DQL shell — end each statement with ;   (Ctrl-C cancels the line, Ctrl-D exits)
  select m where m.name like "alexnet%" and m.metrics["acc"] > 0.9 order by m.creation_time desc limit 5;
  select m.name, max(m.metrics["acc"]) as best where m["conv*"].next has POOL("MAX");
  explain select m where m.hparams.lr between 0.001 and 0.1;
  save query good as select m where max(m.metrics["acc"]) > 0.9;   then: select m from "good";
  slice m2 from m1 where m1.name == "lenet" mutate m2.input = m1["conv1"] and m2.output = m1["fc1"];
Commands: \help  \models  \layers  \keys  \quit        Full reference: docs/DQL.md"""


class ReplSession:
    def __init__(self, repo, *, out: TextIO | None = None, input=None, output=None, history_path=None) -> None:
        self.repo = repo
        self.out = out or sys.stdout
        self.completer = DQLCompleter(Vocabulary.empty())
        self.refresh_vocabulary()
        path = history_path if history_path is not None else getattr(repo.paths, "history", None)
        history = FileHistory(str(path)) if path is not None else InMemoryHistory()
        self.session = PromptSession(lexer=DQLLexer(), completer=self.completer, style=STYLE, history=history,
                                     input=input, output=output, complete_while_typing=False)

    def refresh_vocabulary(self) -> None:
        try:
            self.completer.vocab = self.repo.vocabulary()
        except ModelhubError as exc:
            self.print(f"warning: completion unavailable: {exc}")

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> int:
        self.print("modelhub DQL shell; \\help for help, Ctrl-D to exit")
        pending: list[str] = []
        while True:
            try:
                line = self.session.prompt("dql> " if not pending else " ..> ")
            except KeyboardInterrupt:
                pending = []          # Ctrl-C: forget the statement being typed
                continue
            except EOFError:
                return 0
            stripped = line.strip()
            if not pending and stripped.startswith("\\"):
                if self.command(stripped):
                    return 0
                continue
            if not stripped and not pending:
                continue
            pending.append(line)
            text = "\n".join(pending).strip()
            if not text.endswith(";"):
                continue
            pending = []
            self.run_statement(text)

    def command(self, cmd: str) -> bool:
        """Run a backslash command; True means quit."""
        name = cmd.split()[0].lower()
        v = self.completer.vocab
        if name in ("\\q", "\\quit", "\\exit"):
            return True
        if name in ("\\h", "\\help", "\\?"):
            self.print(HELP)
        elif name == "\\models":
            self.print("\n".join(sorted(v.models)) or "(no models)")
        elif name == "\\layers":
            self.print("\n".join(sorted(v.layer_names)) or "(no layers)")
        elif name == "\\keys":
            self.print("hparams: " + ", ".join(sorted(v.hparam_keys)))
            self.print("metrics: " + ", ".join(sorted(v.metric_names)))
        else:
            self.print(f"unknown command {name}; try \\help")
        return False

    def run_statement(self, text: str) -> None:
        """Run one DQL statement through the repository and print its result; an error is printed
        and the session goes on."""
        try:
            result = self.repo.query(text)
        except ModelhubError as exc:
            self.print(f"error: {exc}")
            return
        except Exception as exc:          # the shell must survive anything a query does
            self.print(f"internal error: {type(exc).__name__}: {exc} (please report it)")
            return
        if result.kind == "explain":
            self.print(result.text)
        else:
            if result.columns:
                self.print(result.format_table())
            if result.text and result.kind != "select":
                self.print(result.text)
        if result.kind == "save":
            self.refresh_vocabulary()


def run_repl(repo, *, out: TextIO | None = None, input=None, output=None) -> int:
    return ReplSession(repo, out=out, input=input, output=output).run()
