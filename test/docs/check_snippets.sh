#!/usr/bin/env bash
# The README's handler example must be the compiled one: the block between the `// [handlers]`
# markers of examples/quickstart/handlers.hpp must appear verbatim in README.md.
set -euo pipefail
root=$1
SNIPPET=$(sed -n '/\/\/ \[handlers\]/,/\/\/ \[handlers\]/p' "$root/examples/quickstart/handlers.hpp" | sed '1d;$d') \
README="$root/README.md" python3 - <<'PY'
import os, sys
snippet = os.environ["SNIPPET"]
if not snippet.strip():
    sys.exit("no [handlers] block in examples/quickstart/handlers.hpp")
if snippet not in open(os.environ["README"]).read():
    sys.exit("README.md does not contain the handler example of examples/quickstart/handlers.hpp "
             "verbatim; copy it again:\n" + snippet)
print("README handler example matches the compiled code")
PY
