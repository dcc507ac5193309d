#!/usr/bin/env bash
# The docs' examples must be the compiled ones: the block between the `// [handlers]` markers of
# examples/quickstart/handlers.hpp must appear verbatim in README.md, and the `// [schedule]`
# block of examples/quickstart/schedules.hpp in docs/schedules.md.
set -euo pipefail
root=$1
check() {  # check MARKER SOURCE DOC
  SNIPPET=$(sed -n "/\/\/ \[$1\]/,/\/\/ \[$1\]/p" "$root/$2" | sed '1d;$d') \
  SOURCE=$2 DOC="$root/$3" MARKER=$1 python3 - <<'PY'
import os, sys
snippet, source, doc, marker = os.environ["SNIPPET"], os.environ["SOURCE"], os.environ["DOC"], os.environ["MARKER"]
if not snippet.strip():
    sys.exit(f"no [{marker}] block in {source}")
if snippet not in open(doc).read():
    sys.exit(f"{os.path.basename(doc)} does not contain the [{marker}] example of "
             f"{source} verbatim; copy it again:\n" + snippet)
print(f"{os.path.basename(doc)}: the [{marker}] example matches the compiled code")
PY
}
check handlers examples/quickstart/handlers.hpp README.md
check schedule examples/quickstart/schedules.hpp docs/schedules.md
