#!/usr/bin/env bash
# The test command: installs what the tests need, type-checks src and test, runs every test
# against a real Temporal dev server, and closes with "N passed, N failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
if [ "$(id -u)" = 0 ]; then
  # The lab's packages (LXD, Incus, sshd, rsync, Caddy, NSD...) and the browser for the Web UI test.
  bash lab/install.sh chromium jq || { echo "package install failed"; echo "0 passed, 1 failed"; exit 1; }
fi
mkdir -p .data
report=.data/jest-report.json
rm -f "$report"
npx jest --runInBand --json --outputFile="$report" "$@"
rc=$?
if [ ! -f "$report" ]; then echo "0 passed, 1 failed"; exit 1; fi
read -r passed failed skipped broken_suites < <(node -e '
  const r = require(process.argv[1]);
  console.log(r.numPassedTests, r.numFailedTests, r.numPendingTests + r.numTodoTests, r.numRuntimeErrorTestSuites);
' "$root/$report")
# A suite that fails to load (or whose hooks fail) has no failed tests of its own: count it once.
failed=$((failed + broken_suites))
if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
  echo "CI=true: $skipped skipped test(s) count as failures"
  failed=$((failed + skipped))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
