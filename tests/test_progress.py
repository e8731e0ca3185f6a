"""Progress of long operations (issue 15 item 5): operations report to modelhub.progress, the CLI
shows it with rich on stderr only when stderr is a terminal and no JSON was asked for."""
from __future__ import annotations

import io
from contextlib import contextmanager

import torch

from modelhub.cli.ui import UI, TerminalProgress
from modelhub.progress import NULL_PROGRESS


class Recorder:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.tasks: list[list] = []      # [label, total, advanced]
        self.messages: list[str] = []

    @contextmanager
    def task(self, label: str, total, unit: str = "bytes"):
        entry = [label, total, 0]
        self.tasks.append(entry)

        class _Task:
            def advance(self, n: int) -> None:
                entry[2] += n
        yield _Task()

    def message(self, text: str) -> None:
        self.messages.append(text)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(64, 32, generator=g), "a.bias": torch.randn(64, generator=g),
            "b.weight": torch.randn(10, 64, generator=g).double()}


def test_commit_and_checkout_count_every_byte(repo, monkeypatch) -> None:
    state = _state(0)
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    rec = Recorder()
    repo.commit(state, name="net", message="one", snapshots=[_state(1)], progress=rec)
    ((label, total, done),) = rec.tasks
    assert label == "commit net" and total == done == 2 * nbytes     # both snapshots
    monkeypatch.setenv("DLV_HOT_COPIES", "0")                         # decoded from the archive
    rec = Recorder()
    ck = repo.checkout("net", progress=rec)
    assert [t[1:] for t in rec.tasks] == [[nbytes, nbytes]]
    assert torch.equal(ck.state_dict["a.weight"], state["a.weight"])


def test_the_cli_shows_progress_only_on_a_terminal() -> None:
    assert UI(out=io.StringIO(), err=io.StringIO()).progress() is NULL_PROGRESS
    assert isinstance(UI(out=io.StringIO(), err=_Terminal()).progress(), TerminalProgress)
    as_json = UI(out=io.StringIO(), err=_Terminal())
    as_json.json_mode = True
    assert as_json.progress() is NULL_PROGRESS and as_json.progress_messages() is None


def test_a_terminal_gets_a_bar_once_a_task_outlasts_the_delay(monkeypatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    err = _Terminal()
    progress = UI(out=io.StringIO(), err=err).progress()
    with progress.task("quick", 100) as task:     # done before the delay: nothing drawn
        task.advance(100)
    assert err.getvalue() == ""
    monkeypatch.setattr(TerminalProgress, "delay_s", 0.0)
    with progress.task("commit net", 2048) as task:
        task.advance(2048)
    progress.message("re-encoding 3 tensors")
    assert "commit net" in err.getvalue() and "re-encoding 3 tensors" in err.getvalue()


def test_piped_commands_print_no_progress(cli) -> None:
    from safetensors.torch import save_file

    assert cli("init")[0] == 0
    save_file(_state(0), str(cli.work / "w.safetensors"))
    code, _, err = cli("commit", "-m", "one", "--name", "net", "--weights", "w.safetensors")
    assert code == 0 and err == ""
    code, _, err = cli("checkout", "net", "-o", "out.safetensors")
    assert code == 0 and err == ""
