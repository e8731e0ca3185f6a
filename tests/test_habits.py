"""Habits git and MLflow users bring (issue 15): status and unstage, tags, rm and mv, global options,
errors under --json, exit codes in --help, suggestions, hparams kept by weights-only commits."""
from __future__ import annotations

import io
import json

import pytest
import torch

import modelhub
from helpers import assert_bit_exact, tiny_cnn
from modelhub.catalog.removal import KEPT_ON_REMOVE, VERSION_TABLES
from modelhub.cli import main
from modelhub.cli.exitcodes import EXIT_CODES, MEANINGS
from modelhub.errors import InputError, RefError


@pytest.fixture
def work(cli):
    assert cli("init")[0] == 0
    return cli, modelhub.open_repo(cli.work)


# -- global options, errors, help -----------------------------------------------------------

def test_options_before_the_command_as_git(work, tmp_path, monkeypatch):
    cli, repo = work
    repo.commit(tiny_cnn(0), name="net", message="base")
    monkeypatch.chdir(tmp_path)  # outside the repository
    code, out, _ = cli("-C", str(repo.root), "--json", "log")
    assert code == 0 and [v["ref"] for v in json.loads(out)] == ["net@1"]
    code, out, _ = cli("--repo", str(repo.root), "log")
    assert code == 0 and "net@1" in out
    code, _, err = cli("-C", str(tmp_path / "nope"), "log")
    assert code == 2 and "-C" in err and "cannot enter the folder" in err
    # the command's own --repo still works, and wins
    code, out, _ = cli("--repo", str(tmp_path), "log", "--repo", str(repo.root))
    assert code == 0 and "net@1" in out


def test_errors_are_one_json_object_under_json(work):
    cli, _ = work
    code, out, err = cli("desc", "nosuch", "--json")
    assert code == 3 and out == ""
    assert json.loads(err) == {"error": {"message": json.loads(err)["error"]["message"], "code": 3, "kind": "RefError"}}
    assert "unknown version reference 'nosuch'" in json.loads(err)["error"]["message"]
    code, _, err = cli("--json", "log", "--nosuch")
    assert code == 2 and json.loads(err)["error"]["kind"] == "UsageError"
    code, _, err = cli("--json")
    assert code == 2 and "no command given" in json.loads(err)["error"]["message"]


def test_help_lists_every_exit_code(capsys):
    assert main(["--help"], out=io.StringIO(), err=io.StringIO()) == 0   # argparse prints help on sys.stdout
    shown = capsys.readouterr().out
    listed = {code for code, _ in MEANINGS}
    assert {code for _, code in EXIT_CODES} <= listed
    for code, text in MEANINGS:
        assert f"{code:>3}  {text}" in shown


def test_mistyped_commands_and_options_get_suggestions(work):
    cli, _ = work
    code, _, err = cli("lgo")
    assert code == 2 and "did you mean 'log'?" in err
    code, _, err = cli("log", "--lmit", "3")
    assert code == 2 and "--lmit: did you mean '--limit'?" in err


def test_init_twice_says_so(work):
    cli, repo = work
    code, out, err = cli("init")
    assert code == 0 and err == "" and out == f"{repo.root} is already a dlv repository; nothing changed\n"
    code, out, _ = cli("init", "--json")
    assert code == 0 and json.loads(out)["created"] is False


# -- status and unstage ---------------------------------------------------------------------

def test_status_and_unstage(work):
    cli, repo = work
    (cli.work / "notes.md").write_text("hello")
    (cli.work / "cfg.toml").write_text("x = 1")
    assert cli("add", "notes.md", "cfg.toml")[0] == 0
    code, out, _ = cli("status")
    assert code == 0 and "notes.md (5 B)" in out and "no versions yet" in out
    st = repo.status()
    assert [(f.path, f.state) for f in st.staged] == [("cfg.toml", "staged"), ("notes.md", "staged")]
    (cli.work / "notes.md").write_text("hello, changed")
    code, out, err = cli("status")
    assert "[modified since staged]" in out and "notes.md changed since `dlv add`" in err
    assert cli("reset", "notes.md") == (0, "unstaged notes.md\n", "")
    assert cli("add", "--undo", "cfg.toml") == (0, "unstaged cfg.toml\n", "")
    assert repo.staged() == []
    with pytest.raises(InputError, match=r"notes.md is not staged \(staged: nothing\)"):
        repo.unstage(["notes.md"])
    repo.commit(tiny_cnn(0), name="net", message="base")
    st = json.loads(cli("status", "--json")[1])
    assert st["staged"] == [] and [m["name"] for m in st["models"]] == ["net"]


# -- tags -----------------------------------------------------------------------------------

def test_tags_work_wherever_a_ref_does_and_keep_their_history(work, monkeypatch):
    cli, repo = work
    v1 = repo.commit(tiny_cnn(0), name="net", message="one")
    v2 = repo.commit(tiny_cnn(1), name="net", message="two")
    assert cli("tag", "net@1", "production") == (0, "tagged net@1 as net:production\n", "")
    assert repo.resolve("net:production") == v1.id
    assert_bit_exact(repo.checkout("net:production").state_dict, tiny_cnn(0).state_dict())
    assert cli("desc", "net:production")[0] == 0
    assert cli("diff", "net:production", "net@2")[0] == 0
    monkeypatch.setenv("DLV_AUTHOR", "alice")
    assert cli("tag", "net@2", "production") == (0, "moved net:production from net@1 to net@2\n", "")
    assert repo.resolve("net:production") == v2.id
    assert [(t.name, t.ref) for t in repo.tags()] == [("net:production", "net@2")]
    moves = repo.tag_history("net", "production")
    assert [(m.ref, m.author) for m in moves] == [("net@1", "tester"), ("net@2", "alice")]
    assert cli("tag", "-d", "net:production")[0] == 0
    assert [m.ref for m in repo.tag_history()] == ["net@1", "net@2", None]
    with pytest.raises(RefError, match="model 'net' has no tags, so 'net:production' names nothing"):
        repo.resolve("net:production")
    repo.tag("net@1", "staging")
    with pytest.raises(RefError, match=r"no tag 'stagin'; did you mean net:staging\?"):
        repo.resolve("net:stagin")
    with pytest.raises(InputError, match="invalid tag '3'"):
        repo.tag("net@1", "3")
    code, out, _ = cli("tag", "--list", "--json")
    assert json.loads(out) == [{"model": "net", "tag": "staging", "id": v1.id, "ref": "net@1", "name": "net:staging"}]


# -- rm and mv ------------------------------------------------------------------------------

def test_rm_refuses_versions_with_children_unless_recursive_and_gc_reclaims(work):
    cli, repo = work
    repo.commit(tiny_cnn(0), name="net", message="one")
    repo.commit(tiny_cnn(1), name="net", message="two")
    keep = repo.commit(tiny_cnn(2), name="other", message="unrelated", parent=())
    repo.tag("net@2", "best")
    code, _, err = cli("rm", "net@1")
    assert code == 2 and "1 other version(s) descend from it (net@2)" in err and "`dlv rm -r`" in err
    code, _, err = cli("--json", "rm", "net@1")
    assert code == 2 and json.loads(err)["error"]["kind"] == "InputError" and "--recursive" in err
    with pytest.raises(InputError, match="recursive=True"):
        repo.remove(["net@1"])
    code, out, _ = cli("rm", "-r", "net@1")
    assert code == 0 and "removed net@1" in out and "removed net@2" in out and "deleted tag net:best" in out
    assert [v.ref for v in repo.log()] == ["other@1"] and [m.name for m in repo.models()] == ["other"]
    assert repo.tags() == [] and repo.tag_history()[-1].ref is None
    report = repo.gc(grace_s=0)
    assert report.removed_blobs > 0 and report.removed_tensor_rows > 0
    assert repo.fsck().ok
    assert_bit_exact(repo.checkout(keep.id).state_dict, tiny_cnn(2).state_dict())


def test_rm_prints_json_and_keeps_the_delta_bases_of_what_remains(work):
    cli, repo = work
    base = tiny_cnn(0)
    repo.commit(base, name="net", message="one")
    tuned = tiny_cnn(0)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(1e-4)
    repo.commit(tuned, name="net", message="two")
    repo.archive(alpha=100.0)            # one of the two is now stored as a delta of the other
    repo.tag("net@2", "prod")
    code, out, _ = cli("--json", "rm", "net@2")
    assert code == 0 and json.loads(out) == {"versions": ["net@2"], "ids": [json.loads(out)["ids"][0]],
                                            "tags": ["net:prod"]}
    repo.gc(grace_s=0)
    assert repo.fsck().ok
    assert_bit_exact(repo.checkout("net@1").state_dict, base.state_dict())


def test_rm_model_and_mv(work):
    cli, repo = work
    repo.commit(tiny_cnn(0), name="net", message="one")
    repo.commit(tiny_cnn(1), name="net", message="two")
    repo.copy("net@2", "child")
    code, _, err = cli("rm", "--model", "net")
    assert code == 2 and "descend from it (child@1)" in err
    repo.tag("child@1", "prod")
    assert cli("mv", "child", "kid") == (0, "renamed model child to kid\n", "")
    assert [v.ref for v in repo.log("kid")] == ["kid@1"] and repo.resolve("kid:prod") == repo.resolve("kid@1")
    with pytest.raises(RefError, match="unknown version reference 'child'"):
        repo.log("child")
    with pytest.raises(InputError, match="model 'net' already exists"):
        repo.rename_model("kid", "net")
    removed = repo.remove(["net"], model=True, recursive=True)
    assert sorted(removed.versions) == ["kid@1", "net@1", "net@2"] and repo.models() == []
    repo.gc(grace_s=0)
    assert repo.fsck().ok


def test_every_table_naming_a_version_is_cleaned_by_rm(repo):
    with repo.catalog.read() as con:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'version_id' "
            "AND table_catalog = current_database()").fetchall()}
    assert tables == set(VERSION_TABLES) | set(KEPT_ON_REMOVE)


# -- commits and log ------------------------------------------------------------------------

def test_weights_only_commit_keeps_the_parents_hparams(work, tmp_path):
    from modelhub.tensorio import save_safetensors
    cli, repo = work
    repo.commit(tiny_cnn(0), name="net", message="one", hparams={"lr": 0.1, "bs": 32})
    save_safetensors(tmp_path / "w.safetensors", tiny_cnn(1).state_dict())
    assert cli("commit", "--name", "net", "-m", "two", "--weights", str(tmp_path / "w.safetensors"),
               "--hparam", "lr=0.2")[0] == 0
    assert repo.desc("net@2").hparams == {"lr": 0.2, "bs": 32}
    code, out, _ = cli("diff", "net@1", "net@2")
    assert code == 0 and "removed" not in out and "bs" not in out   # bs unchanged: not reported removed
    assert cli("commit", "--name", "net", "-m", "three")[0] == 0   # no weights: the parent's, and its hparams
    assert repo.desc("net@3").hparams == {"lr": 0.2, "bs": 32}
    # the Python API keeps its explicit semantics: hparams are what the call gives
    repo.commit(tiny_cnn(2), name="net", message="four", hparams={"x": 1})
    assert repo.desc("net@4").hparams == {"x": 1}


def test_log_cuts_long_messages_with_an_ellipsis(work):
    cli, repo = work
    repo.commit(tiny_cnn(0), name="net", message="m" * 80)
    line = cli("log")[1].splitlines()[2]
    assert line.endswith("m" * 59 + "…")


# -- completion, query output ---------------------------------------------------------------

def test_completion_scripts_list_every_command_and_option(cli, tmp_path):
    import shutil
    import subprocess
    from modelhub.cli import build_parser
    from modelhub.cli.completion import command_options
    parser = build_parser()[0]
    for shell in ("bash", "zsh", "fish"):
        code, out, _ = cli("completion", shell)
        assert code == 0
        for command in command_options(parser):
            assert command in out
    code, out, _ = cli("completion", "bash")
    assert "--limit" in out and "--recursive" in out
    if shutil.which("bash"):
        script = tmp_path / "dlv.bash"
        script.write_text(out + '\nCOMP_WORDS=(dlv -C /tmp lo); COMP_CWORD=3; _dlv; echo "${COMPREPLY[@]}"\n'
                          'COMP_WORDS=(dlv log --li); COMP_CWORD=2; _dlv; echo "${COMPREPLY[@]}"\n')
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
        assert done.stdout.splitlines() == ["log", "--limit"]
    code, _, err = cli("completion", "tcsh")
    assert code == 2 and "invalid choice: 'tcsh'" in err


def test_query_rows_are_objects_and_df(work):
    cli, repo = work
    repo.commit(tiny_cnn(0), name="net", message="one", hparams={"lr": 0.1})
    code, out, _ = cli("query", "--json", "select m.name, m.hparams.lr")
    assert code == 0 and json.loads(out)["rows"] == [{"name": "net", "hparams.lr": 0.1}]
    # select m: the default columns and the values it filters and orders on, as keys
    repo.commit(tiny_cnn(1), name="net", message="two", hparams={"lr": 0.01}, metrics={"acc": 0.95})
    code, out, _ = cli("query", "--json", 'select m where m.metrics["acc"] > 0.9 order by m.hparams.lr')
    assert code == 0 and [{k: r[k] for k in ("name", "seq", "metrics[acc]", "hparams.lr")} for r in json.loads(out)["rows"]] \
        == [{"name": "net", "seq": 2, "metrics[acc]": 0.95, "hparams.lr": 0.01}]
    code, out, _ = cli("query", 'select m where m.metrics["acc"] > 0.9 order by m.hparams.lr')
    assert code == 0 and out.split()[:6] == ["id", "name", "seq", "creation_time", "metrics[acc]", "hparams.lr"]
    pd = pytest.importorskip("pandas")
    frame = repo.query("select m.name, m.hparams.lr").df()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["name", "hparams.lr"] and frame["hparams.lr"].tolist() == [0.1, 0.01]
