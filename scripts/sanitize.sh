#!/usr/bin/env bash
# The native code under AddressSanitizer + UndefinedBehaviorSanitizer
# (npm run test:sanitize; docs/sanitizers.md says what it covers and why).
#
# 1. builds the core, tcka-core-check and the addon with -fsanitize=address,undefined
#    into build-asan/ (cmake-js, CMakeLists.txt option TCKA_SANITIZE; RelWithDebInfo);
# 2. (a) runs tcka-core-check: the selftest, `compare` over the fixtures in
#    test/fixtures/*.pt (pairs of the same input shape, from fixtures.json), and
#    the .pt files that are not comparable models (test/fixtures/*.pt missing from
#    fixtures.json, test/fixtures/models-bad/*.pt), which must fail cleanly (exit 1);
# 3. (b) runs the mocha suite in node with the ASan runtime preloaded and
#    TORCH_CKA_NATIVE pointing at the sanitized addon, minus the Chromium tests;
# 4. prints a summary. Exits nonzero on a build failure, a failed check or test,
#    or any sanitizer report (ASan reports of every process go to files in
#    build-asan/logs/reports/; UBSan reports to stderr, searched in the logs).
#
# Environment: SANITIZE_DIR (default build-asan), JOBS (compile jobs, default 2),
# MOCHA_ARGS (extra arguments for mocha, e.g. "--grep CLI").
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=${SANITIZE_DIR:-build-asan}
case "$DIR" in /*) ;; *) DIR="$ROOT/$DIR" ;; esac
JOBS=${JOBS:-2}
LOGS="$DIR/logs"
START=$(date +%s)

say() { echo "sanitize: $*"; }
fail() {
  say "$*"
  exit 2
}

mkdir -p "$DIR"
rm -rf "$LOGS"
mkdir -p "$LOGS/reports"

# ---------------------------------------------------------------- 1. build
say "building core, tool and addon with ASan + UBSan into ${DIR#"$ROOT"/} (log: ${LOGS#"$ROOT"/}/build.log)"
# configure + build, not `compile` (which starts a clean rebuild after a failed build).
cmakejs=(npx --no-install cmake-js -d "$ROOT" -O "$DIR" -B RelWithDebInfo -p "$JOBS")
if ! { "${cmakejs[@]}" configure --CDTCKA_SANITIZE=ON --CDTCKA_TOOLS=ON && "${cmakejs[@]}" build; } \
  >"$LOGS/build.log" 2>&1; then
  tail -n 40 "$LOGS/build.log"
  fail "the sanitizer build failed"
fi
ADDON="$DIR/RelWithDebInfo/torch_cka.node"
TOOL="$DIR/tcka-core-check"
[ -f "$ADDON" ] || fail "no addon at $ADDON after the build"
[ -x "$TOOL" ] || fail "no tool at $TOOL after the build"
for bin in "$ADDON" "$TOOL"; do
  # The build really is instrumented: it calls into both runtimes.
  symbols=$(nm -D --undefined-only "$bin")
  grep -q __asan_report <<<"$symbols" || fail "$bin has no ASan instrumentation"
  grep -q __ubsan_handle <<<"$symbols" || fail "$bin has no UBSan instrumentation"
done

# The ASan runtime the addon was linked against (it must come first in the
# process: LD_PRELOAD). The UBSan runtime is a dependency of the addon and needs
# no preloading.
ASAN_RT=$(ldd "$ADDON" | awk '/libasan\.so/ { print $3; exit }')
[ -n "$ASAN_RT" ] && [ -f "$ASAN_RT" ] || ASAN_RT=$(g++ -print-file-name=libasan.so)
[ -f "$ASAN_RT" ] || fail "the ASan runtime was not found (g++ -print-file-name=libasan.so gave $ASAN_RT)"

# detect_leaks=0: LeakSanitizer would report the allocations Node, V8 and
# libtorch keep until exit on purpose (and cannot tell them from ours).
# log_path: every process writes its ASan reports to reports/asan.PID, those of
# child processes too (CLI tests capture their children's stderr).
# UBSan (GCC's separate libubsan) ignores log_path once libasan is loaded: its
# reports go to stderr, and abort_on_error=1 turns each into a SIGABRT, which
# no test expects of a child process (see docs/sanitizers.md).
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$LOGS/reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1"
# One intra-op thread per model, as on a small machine; the tool sets its own.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

reports() { find "$LOGS/reports" -type f -size +0 | sort; }
REPORT_PATTERN='ERROR: AddressSanitizer|SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)|: runtime error: '

# ---------------------------------------------------------------- 2. (a) the core tool
say "(a) tcka-core-check (logs: ${LOGS#"$ROOT"/}/core-*.log)"
core_ok=0
core_failed=()
core_run() { # NAME EXPECT(ok|clean-error) ARGS...
  local name=$1 expect=$2 status
  shift 2
  "$TOOL" "$@" >"$LOGS/core-$name.log" 2>&1
  status=$?
  local last
  last=$(tail -n 1 "$LOGS/core-$name.log")
  if { [ "$expect" = ok ] && [ $status -eq 0 ]; } || { [ "$expect" = clean-error ] && [ $status -le 1 ]; }; then
    core_ok=$((core_ok + 1))
    printf '  ok    %-44s exit %d  %s\n' "$name" $status "${last:0:100}"
  else
    core_failed+=("$name (exit $status)")
    printf '  FAIL  %-44s exit %d  %s\n' "$name" $status "${last:0:100}"
  fi
}

core_run selftest ok selftest
# Single-input fixtures grouped by input shape: each against itself and against
# the first of its group, alternating one thread at a time and both models at once.
plan=$(node -e '
const fs = require("fs"), path = require("path");
const dir = "test/fixtures";
const meta = JSON.parse(fs.readFileSync(path.join(dir, "fixtures.json"), "utf8"));
const groups = new Map();
const skipped = [];
for (const m of meta) {
  if (Array.isArray(m.inputShape[0])) { skipped.push(m.file); continue; }
  const key = m.inputShape.slice(1).join(",");
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(m.file);
}
let k = 0;
const line = (...a) => console.log(a.join(" "));
for (const [shape, files] of groups) {
  files.forEach((f, i) => {
    const c = k++ % 2;
    line("ok", f.replace(/\.pt$/, "") + "-self", c, shape, i === 0 ? "check" : "-", f, f);
    if (i > 0) line("ok", files[0].replace(/\.pt$/, "") + "-vs-" + f.replace(/\.pt$/, ""), 1 - c, shape, "-", files[0], f);
  });
}
// .pt files that are not comparable models: as model 1 beside the first fixture.
const known = new Set(meta.map((m) => m.file));
const first = meta.find((m) => !Array.isArray(m.inputShape[0]));
const others = fs.readdirSync(dir).filter((f) => f.endsWith(".pt") && !known.has(f)).map((f) => path.join(dir, f));
const bad = path.join(dir, "models-bad");
if (fs.existsSync(bad)) others.push(...fs.readdirSync(bad).filter((f) => f.endsWith(".pt")).sort().map((f) => path.join(bad, f)));
for (const f of others) line("clean-error", "error-" + path.basename(f, ".pt"), 0, first.inputShape.slice(1).join(","), "-", f, path.join(dir, first.file));
for (const f of skipped) line("skip", f);
')
[ -n "$plan" ] || fail "could not read test/fixtures/fixtures.json"
core_skipped=()
while read -r expect name concurrent shape check f1 f2; do
  if [ "$expect" = skip ]; then
    core_skipped+=("$name")
    continue
  fi
  case "$f1" in */*) ;; *) f1="test/fixtures/$f1" ;; esac
  case "$f2" in */*) ;; *) f2="test/fixtures/$f2" ;; esac
  extra=()
  [ "$check" = check ] && extra=(--check-device cpu --check-batches 1)
  core_run "$name" "$expect" compare "$f1" "$f2" --shape "$shape" --batch 16 --batches 3 --repeat 1 \
    --threads 1 --concurrent "$concurrent" "${extra[@]}"
done <<<"$plan"
[ ${#core_skipped[@]} -eq 0 ] || say "(a) not run by the tool (it feeds one input; mocha covers them): ${core_skipped[*]}"
core_reports=$(reports | wc -l)

# ---------------------------------------------------------------- 3. (b) mocha with the sanitized addon
# Excluded: the tests that drive Chromium (heatmapSvg / reportHtml "in Chromium").
# They never load the addon, and Chromium, a child of the test process, would
# inherit LD_PRELOAD and run its own allocator and sandbox under the ASan runtime.
EXCLUDE='in Chromium'
say "(b) the mocha suite with ${ADDON#"$ROOT"/} (log: ${LOGS#"$ROOT"/}/mocha.log)"
if ! npm run --silent build:ts >"$LOGS/build-ts.log" 2>&1; then
  cat "$LOGS/build-ts.log"
  fail "npm run build:ts failed"
fi
export TORCH_CKA_NATIVE="$ADDON"
# The addon the tests load is the sanitized one, in a process that runs under ASan.
if ! LD_PRELOAD="$ASAN_RT" node -e '
  const fs = require("fs");
  const info = require("./dist").runtimeInfo();
  const maps = fs.readFileSync("/proc/self/maps", "utf8");
  if (!maps.includes(process.env.TORCH_CKA_NATIVE)) throw new Error("dist/ loaded another addon than TORCH_CKA_NATIVE");
  if (!/libasan\.so/.test(maps)) throw new Error("the ASan runtime is not loaded");
  console.log(`libtorch ${info.libtorchVersion}, BLAS ${info.blas}, ${info.cores} cores`);
' >"$LOGS/preflight.log" 2>&1; then
  cat "$LOGS/preflight.log"
  reports | xargs -r cat
  fail "the preflight (loading the sanitized addon from dist/) failed"
fi
say "    preflight: $(tail -n 1 "$LOGS/preflight.log")"
dry=$(node node_modules/mocha/bin/mocha.js --dry-run --reporter dot --grep "$EXCLUDE" 2>/dev/null)
excluded=$(sed -E 's/\x1b\[[0-9;]*m//g' <<<"$dry" | grep -Eo '^\s*[0-9]+ passing' | grep -Eo '[0-9]+' | tail -n 1)
excluded=${excluded:-?}
# shellcheck disable=SC2086
LD_PRELOAD="$ASAN_RT" node node_modules/mocha/bin/mocha.js --grep "$EXCLUDE" --invert ${MOCHA_ARGS:-} \
  2>&1 | tee "$LOGS/mocha.log"
mocha_status=${PIPESTATUS[0]}
count() { sed -E 's/\x1b\[[0-9;]*m//g' "$LOGS/mocha.log" | grep -Eo "^\s*[0-9]+ $1" | grep -Eo '[0-9]+' | tail -n 1; }
passing=$(count passing)
failing=$(count failing)
pending=$(count pending)
passing=${passing:-0}
failing=${failing:-0}
pending=${pending:-0}

# ---------------------------------------------------------------- 4. summary
mapfile -t report_files < <(reports)
# Reports that went to stdout/stderr instead of a log file (none expected).
stray=$(grep -lE "$REPORT_PATTERN" "$LOGS"/*.log 2>/dev/null | grep -v '/build' || true)
elapsed=$(($(date +%s) - START))
echo
echo "==================== sanitize summary ($(date -u +%FT%TZ), ${elapsed}s) ===================="
echo "build: ${DIR#"$ROOT"/} (RelWithDebInfo, -fsanitize=address,undefined), ASan runtime $ASAN_RT"
echo "(a) tcka-core-check: $core_ok ok, ${#core_failed[@]} failed ($(grep -h -Eo '[0-9]+ passed, [0-9]+ failed' "$LOGS/core-selftest.log" || echo 'selftest: no result') in the selftest)"
for f in "${core_failed[@]}"; do echo "      failed: $f"; done
[ ${#core_skipped[@]} -eq 0 ] || echo "      not run by the tool (several inputs): ${core_skipped[*]}"
echo "(b) mocha: $passing passing, $failing failing, $pending pending (exit $mocha_status); excluded: $excluded tests matching '$EXCLUDE'"
echo "sanitizer reports: ${#report_files[@]} file(s) ($core_reports from the tool)"
for f in "${report_files[@]}"; do
  echo "---- ${f#"$ROOT"/}"
  grep -E -m 3 "$REPORT_PATTERN" "$f" | sed 's/^/     /'
done
[ -z "$stray" ] || echo "sanitizer output in: $stray"
status=0
if [ ${#core_failed[@]} -ne 0 ] || [ "$mocha_status" -ne 0 ] || [ "$failing" -ne 0 ] || [ "$passing" -eq 0 ] ||
  [ ${#report_files[@]} -ne 0 ] || [ -n "$stray" ]; then
  status=1
fi
echo "result: $([ $status -eq 0 ] && echo PASS || echo FAIL) (logs and reports under ${LOGS#"$ROOT"/}/)"
exit $status
