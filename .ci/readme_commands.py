#!/usr/bin/env python3
"""Fails when the README's command table and `ubm --help` disagree.

The table lies between `<!-- commands` and `<!-- /commands -->`; each row's first cell is a
command as a user types it (`ubm run`, `ubm cluster scheduler`). The commands `ubm --help` lists,
and those of each command that has subcommands of its own (`ubm cluster --help`), must be
exactly the table's rows.

Usage: .ci/readme_commands.py PATH_TO_UBM [README]
"""
import re
import subprocess
import sys


def commands_of(ubm, words):
    """The subcommands `ubm WORDS… --help` lists (clap's "Commands:" section), `help` left out."""
    out = subprocess.run([ubm, *words, "--help"], capture_output=True, text=True, check=True).stdout
    section = out.split("Commands:", 1)
    if len(section) < 2:
        return []
    names = []
    for line in section[1].splitlines()[1:]:  # the rest of the "Commands:" line is empty
        if not line.strip():
            break
        match = re.match(r"^  (\S+)", line)
        if match and match.group(1) != "help":
            names.append(match.group(1))
    return names


def from_help(ubm):
    paths = []
    for name in commands_of(ubm, []):
        nested = commands_of(ubm, [name])
        paths += [f"ubm {name} {sub}" for sub in nested] if nested else [f"ubm {name}"]
    return paths


def from_readme(path):
    text = open(path, encoding="utf-8").read()
    table = text.split("<!-- commands", 1)[1].split("<!-- /commands -->", 1)[0]
    return re.findall(r"^\| `(ubm [^`]+)` \|", table, re.M)


def main(ubm, readme="README.md"):
    helped, listed = from_help(ubm), from_readme(readme)
    missing = [c for c in helped if c not in listed]
    stale = [c for c in listed if c not in helped]
    for command in missing:
        print(f"README.md: the command table lacks `{command}`, which `ubm --help` lists")
    for command in stale:
        print(f"README.md: the command table lists `{command}`, which `ubm --help` does not")
    if not missing and not stale:
        print(f"README.md: the command table matches `ubm --help` ({len(helped)} commands)")
    return 1 if missing or stale else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
