#!/usr/bin/env bash
# The docs' examples must be the compiled ones: the block between the `// [handlers]` markers of
# examples/quickstart/handlers.hpp must appear verbatim in README.md, and the `// [schedule]`
# block in docs/schedules.md.
set -euo pipefail
root=$1
check() {  # check MARKER DOC
  SNIPPET=$(sed -n "/\/\/ \[$1\]/,/\/\/ \[$1\]/p" "$root/examples/quickstart/handlers.hpp" | sed '1d;$d') \
  DOC="$root/$2" MARKER=$1 python3 - <<'PY'
import os, sys
snippet, doc, marker = os.environ["SNIPPET"], os.environ["DOC"], os.environ["MARKER"]
if not snippet.strip():
    sys.exit(f"no [{marker}] block in examples/quickstart/handlers.hpp")
if snippet not in open(doc).read():
    sys.exit(f"{os.path.basename(doc)} does not contain the [{marker}] example of "
             "examples/quickstart/handlers.hpp verbatim; copy it again:\n" + snippet)
print(f"{os.path.basename(doc)}: the [{marker}] example matches the compiled code")
PY
}
check handlers README.md
check schedule docs/schedules.md
