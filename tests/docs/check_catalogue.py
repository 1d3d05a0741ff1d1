# SPDX-License-Identifier: LGPL-2.1-or-later
"""docs/security.md's catalogue names real tests.

Every row of the catalogue ("| # | input | result | test |") cites ctest names
and test functions ("integration-hygiene: test_x, test_y"); this fails if a
ctest name is not a test of the build (or, for fuzz-*, no target in
tests/fuzz/), if a test function is defined nowhere under tests/, or if the
catalogue has fewer than 60 rows.

Run: python3 check_catalogue.py SOURCE_DIR BUILD_DIR
"""

import os
import re
import subprocess
import sys


def main(source, build):
    with open(os.path.join(source, "docs", "security.md")) as f:
        text = f.read()
    catalogue = text[text.index("## The catalogue"):]
    catalogue = catalogue[:catalogue.find("\n## ", 1)] if "\n## " in catalogue[1:] else catalogue
    rows = [line for line in catalogue.splitlines() if re.match(r"^\| \d+ \|", line)]
    errors = []
    if len(rows) < 60:
        errors.append(f"the catalogue has {len(rows)} rows, fewer than 60")
    listed = subprocess.run(["ctest", "-N"], cwd=build, capture_output=True, text=True, check=True).stdout
    ctests = set(re.findall(r"Test\s+#\d+: (\S+)", listed))
    sources = []
    for root, _, files in os.walk(os.path.join(source, "tests")):
        for name in files:
            if name.endswith((".c", ".py")):
                with open(os.path.join(root, name), errors="replace") as f:
                    sources.append(f.read())
    # A build may leave a label out (the sanitizer build has no e2e tests): then the
    # test must at least be registered in tests/*/CMakeLists.txt (by name, or as the
    # word after its label's prefix in a foreach).
    cmake_text = ""
    for root, _, files in os.walk(os.path.join(source, "tests")):
        if "CMakeLists.txt" in files:
            with open(os.path.join(root, "CMakeLists.txt")) as f:
                cmake_text += f.read()

    def registered(name):
        if name in ctests:
            return True
        if any(t.startswith(name.split("-")[0] + "-") for t in ctests):
            return False  # the label is built: the name must be among its tests
        word = name.split("-", 1)[1] if "-" in name else name
        return re.search(rf"\b{re.escape(name)}\b", cmake_text) or re.search(rf"\b{re.escape(word)}\b", cmake_text)

    defined = set()
    for src in sources:
        defined.update(re.findall(r"START_TEST\((\w+)\)", src))
        defined.update(re.findall(r"def (test_\w+)\(", src))
    numbers = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        numbers.append(int(cells[0]))
        cites = cells[-1]
        for part in cites.split(";"):
            part = part.strip()
            name, _, funcs = part.partition(":")
            name = name.strip().split(" ")[0]
            if name.startswith("fuzz-"):
                # A fuzz target (docs/fuzzing.md): built only with -DSHMEM_FUZZ=ON, so by its source.
                if not os.path.exists(os.path.join(source, "tests", "fuzz", name + ".c")):
                    errors.append(f"row {cells[0]}: '{name}' is no target in tests/fuzz/")
                continue
            if not registered(name):
                errors.append(f"row {cells[0]}: '{name}' is not a ctest test")
            for fn in re.findall(r"test_\w+", funcs):
                if fn not in defined:
                    errors.append(f"row {cells[0]}: {fn} is defined nowhere under tests/")
    if numbers != list(range(1, len(numbers) + 1)):
        errors.append("the rows are not numbered 1, 2, 3, ...")
    for e in errors:
        print(f"check_catalogue: {e}", file=sys.stderr)
    print(f"check_catalogue: {len(rows)} rows, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: check_catalogue.py SOURCE_DIR BUILD_DIR")
    sys.exit(main(sys.argv[1], sys.argv[2]))
