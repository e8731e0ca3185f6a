"""Shell completion scripts for `dlv` (bash, zsh, fish), generated from the argparse parser itself,
so they list exactly the commands and options `dlv --help` does.

Static scripts, no dependency: shtab writes bash and zsh but not fish, and argcomplete runs
Python (importing the CLI) on every TAB press, which is slow for a tool people run in loops.
"""
from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish")


def command_options(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """'' -> the global options; each command -> its options (long and short), in definition order."""
    out = {"": [s for a in parser._actions for s in a.option_strings]}  # noqa: SLF001 - no public accessor
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                out[name] = [s for a in sub._actions for s in a.option_strings]  # noqa: SLF001
    return out


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return {a.dest: (a.help or "") for a in action._choices_actions}  # noqa: SLF001
    return {}


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    opts = command_options(parser)
    commands = [c for c in opts if c]
    if shell == "bash":
        cases = "\n".join(f'        {c}) opts="{" ".join(o)}" ;;' for c, o in opts.items() if c)
        return f"""# dlv completion for bash: eval "$(dlv completion bash)" (e.g. in ~/.bashrc)
_dlv() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" i opts
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -C|--repo) ((i++)) ;;
            -*) ;;
            *) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then opts="{" ".join(opts[""])}"; else opts="{" ".join(commands)}"; fi
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case "$cmd" in
{cases}
        *) opts="" ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _dlv dlv
"""
    if shell == "zsh":
        # zsh runs the bash function through bashcompinit: one script to maintain
        return "# dlv completion for zsh: eval \"$(dlv completion zsh)\" (e.g. in ~/.zshrc)\n" \
               "autoload -U +X bashcompinit && bashcompinit\n" + script("bash", parser).split("\n", 1)[1]
    if shell == "fish":
        helps = _helps(parser)
        lines = ["# dlv completion for fish: dlv completion fish > ~/.config/fish/completions/dlv.fish"]
        for c in commands:
            desc = helps.get(c, "").replace("'", "\\'")
            lines.append(f"complete -c dlv -n '__fish_use_subcommand' -a {c} -d '{desc}'")
        for c, o in opts.items():
            cond = "__fish_use_subcommand" if not c else f"__fish_seen_subcommand_from {c}"
            for flag in o:
                arg = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
                lines.append(f"complete -c dlv -n '{cond}' {arg}")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown shell {shell!r}")
