# SPDX-License-Identifier: LGPL-2.1-or-later
"""completion: the bash completions of shell-completion/bash/ run as bash runs them.

    harness.completion.complete("shmemctl", [ctl, "inspect", ""], env)  # -> sorted COMPREPLY

COMP_WORDS must be split as readline splits the line: COMP_WORDBREAKS holds
'=', so "--socket=X" is the three words "--socket", "=", "X".
"""

import os
import subprocess

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "shell-completion", "bash")
FUNCTIONS = {"shmemctl": "_shmemctl", "shmem-brokerd": "_shmem_brokerd"}


def complete(command, words, env=None, timeout=30):
    """COMPREPLY, sorted, of @command's completion (its script sourced into a bash of
    its own) for the command line @words, the last one being completed."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    prog = (f"source '{os.path.join(SCRIPTS, command)}'\n"
            f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
            f"{FUNCTIONS[command]}\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if r.returncode != 0 or r.stderr:
        raise AssertionError(f"bash failed ({r.returncode}) completing {words}: {r.stderr}")
    return sorted(line for line in r.stdout.split("\n") if line)
