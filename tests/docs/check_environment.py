# SPDX-License-Identifier: LGPL-2.1-or-later
"""Each program's man page names, in its ENVIRONMENT section, every variable
the program reads.

PROGRAM_SOURCES (written by cmake/ShmemSources.cmake) lists the sources each
program is built from, its libraries' included; every getenv() or
secure_getenv() in them, and in the headers beside them, must name a string
literal (or a macro #defined to one in the same file) that an entry of the
page's ENVIRONMENT section names (in its .TP tag line). A getenv() of
anything else fails (its name cannot be checked), and so does one in the
project's sources that no program listed here is built from (a page would
miss it).

Run: python3 check_environment.py SOURCE_DIR PROGRAM_SOURCES
"""

import os
import re
import sys

PAGES = {"shmem-brokerd": "man/shmem-brokerd.8", "shmemctl": "man/shmemctl.1",
         "shmem-guest": "man/shmem-guest.1", "shmem-hotplug": "man/shmem-hotplug.8"}
# Where the installed programs' code lives; tests/ and bench/ read variables of their own.
PROJECT_DIRS = ("broker", "plugin-qemu", "clients", "proto")
GETENV = re.compile(r"\b(?:secure_)?getenv\s*\(\s*([^)]*?)\s*\)")
DEFINE = re.compile(r'^#define\s+([A-Za-z_][A-Za-z0-9_]*)\s+("[A-Za-z_][A-Za-z0-9_]*")\s*(?:/\*.*)?$', re.M)


def getenvs(path):
    """[(line, argument)] of the getenv calls in @path, a macro argument replaced by the string
    literal it is #defined to in @path (getenv(HANDOVER_FD_ENV))."""
    with open(path, errors="replace") as f:
        text = f.read()
    defines = dict(DEFINE.findall(text))
    return [(text.count("\n", 0, m.start()) + 1, defines.get(m.group(1), m.group(1))) for m in GETENV.finditer(text)]


def environment_entries(page):
    """The variable names of the entries of @page's ENVIRONMENT section (the tag line after each
    .TP: a name merely mentioned in another entry's text documents nothing); None without one."""
    with open(page) as f:
        text = f.read()
    m = re.search(r"^\.SH ENVIRONMENT\n(.*?)(?=^\.SH |\Z)", text, re.M | re.S)
    if not m:
        return None
    lines = m.group(1).splitlines()
    tags = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith((".TP", ".TQ"))]
    return {name for tag in tags for name in re.findall(r"[A-Z_][A-Z0-9_]*", re.sub(r"\\f[BIRP]", "", tag))}


def main(source, listing):
    programs = {}
    with open(listing) as f:
        for line in f:
            program, path = line.rstrip("\n").split("\t")
            programs.setdefault(program, set()).add(os.path.abspath(path))
    errors = []
    covered = set()
    for program, page in PAGES.items():
        if program not in programs:
            errors.append(f"{program}: not in {listing} (not built? the check needs every program)")
            continue
        files = set(programs[program])
        for d in {os.path.dirname(p) for p in files}:
            if os.path.isdir(d):
                files |= {os.path.join(d, n) for n in os.listdir(d) if n.endswith(".h")}
        covered |= files
        entries = environment_entries(os.path.join(source, page))
        if entries is None:
            errors.append(f"{page}: no ENVIRONMENT section")
            continue
        names = set()
        for path in sorted(p for p in files if os.path.isfile(p)):
            for line, arg in getenvs(path):
                literal = re.fullmatch(r'"([A-Za-z_][A-Za-z0-9_]*)"', arg)
                if not literal:
                    errors.append(f"{path}:{line}: getenv({arg}) of no literal name: {page} cannot be checked")
                    continue
                names.add(literal.group(1))
                if literal.group(1) not in entries:
                    errors.append(f"{page}: ENVIRONMENT has no entry for {literal.group(1)}, "
                                  f"which {program} reads ({os.path.relpath(path, source)}:{line})")
        print(f"{program}: {', '.join(sorted(names)) or 'no variables'}")
    for d in PROJECT_DIRS:
        for root, _, names in os.walk(os.path.join(source, d)):
            for n in names:
                path = os.path.abspath(os.path.join(root, n))
                if n.endswith((".c", ".h")) and path not in covered and getenvs(path):
                    errors.append(f"{os.path.relpath(path, source)}: reads the environment, but no program "
                                  f"of {sorted(PAGES)} is built from it")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: check_environment.py SOURCE_DIR PROGRAM_SOURCES")
    sys.exit(main(*sys.argv[1:]))
