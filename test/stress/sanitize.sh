#!/usr/bin/env bash
# The native code under AddressSanitizer + UndefinedBehaviorSanitizer
# (npm run test:sanitize; docs/sanitizers.md says what it covers and why).
#
# 1. builds the core, tcka-core-check and the addon with -fsanitize=address,undefined
#    into build-asan/ (cmake-js, CMakeLists.txt option TCKA_SANITIZE; RelWithDebInfo);
# 2. (a) runs tcka-core-check: the selftest, `compare` over the fixtures in
#    test/fixtures/*.pt (pairs of the same input shape, from fixtures.json), and
#    the .pt files that are not comparable models (test/fixtures/*.pt missing from
#    fixtures.json, test/fixtures/models-bad/*.pt), which must fail cleanly;
# 3. (b) runs the mocha suite in node with the ASan runtime preloaded and
#    TORCH_CKA_NATIVE pointing at the sanitized addon, minus the excluded tests;
# 4. (c) runs the fuzz harness with the seed and cases of the excluded fuzz test;
# 5. prints a summary. Exits nonzero on a build failure, a failed check or test,
#    or any sanitizer report other than libtorch crashing inside its own model
#    reader on a damaged file (see libtorch_crash below). ASan reports of every
#    process go to files in build-asan/logs/reports/; UBSan reports go to stderr
#    and are searched for in the logs.
#
# Environment: SANITIZE_DIR (default build-asan), JOBS (compile jobs, default 2),
# MOCHA_ARGS (extra mocha arguments, e.g. "--grep CLI").
set -uo pipefail
cd "$(dirname "$0")/../.."
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
rel() { echo "${1#"$ROOT"/}"; }
times=()
lap() { # STEP: the seconds since the last lap, for the summary
  local now
  now=$(date +%s)
  times+=("$1 $((now - ${LAP:-$START}))s")
  LAP=$now
}

mkdir -p "$DIR"
rm -rf "$LOGS"
mkdir -p "$LOGS/reports" "$LOGS/tmp"

# ---------------------------------------------------------------- 1. build
say "building core, tool and addon with ASan + UBSan into $(rel "$DIR") (log: $(rel "$LOGS")/build.log)"
# configure + build, not `compile` (which starts a clean rebuild after a failed build).
cmakejs=(npx --no-install cmake-js -d "$ROOT" -O "$DIR" -B RelWithDebInfo -p "$JOBS")
if ! { "${cmakejs[@]}" configure --CDTCKA_SANITIZE=ON --CDTCKA_TOOLS=ON && "${cmakejs[@]}" build; } \
  >"$LOGS/build.log" 2>&1; then
  tail -n 40 "$LOGS/build.log"
  fail "the sanitizer build failed"
fi
lap build
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
# allow_user_segv_handler=0: Node installs a SIGSEGV handler of its own (V8's
# WebAssembly trap handler) over ASan's; a segfault in a node process would then
# end it with a bare SIGSEGV and no report. With this, ASan reports it with a stack.
# log_path: every process writes its ASan reports to reports/asan.PID, those of
# child processes too (CLI tests and the fuzz harness capture their children's stderr).
# UBSan (GCC's separate libubsan) ignores log_path once libasan is loaded: its
# reports go to stderr, and abort_on_error=1 turns each into a SIGABRT, which
# no test expects of a child process.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allow_user_segv_handler=0:log_path=$LOGS/reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1"
# One intra-op thread per model, as on a small machine; the tool sets its own.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

REPORT_PATTERN='ERROR: AddressSanitizer|SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)|: runtime error: '
reports() { find "$LOGS/reports" -type f -size +0 | sort; }
# True when a report is libtorch crashing (a deadly signal) inside its own
# model reader, below our call to torch::jit::load: libtorch 1.13 trusts the
# files it reads, and a damaged or crafted one can crash it (loadModel() reads
# each file in a child process first for that reason: ts/verify.ts). No frame
# of ours may lie between the fault and torch::jit::load.
libtorch_crash() {
  awk '
    /ERROR: AddressSanitizer: (SEGV|BUS|FPE|ILL|stack-overflow)/ { deadly = 1 }
    /^ *#[0-9]+ / {
      if (!below) {
        if ($0 ~ / in torch::jit::(load|import_ir_module)\(/) below = 1
        else if ($0 ~ /tcka::|\/native\/|torch_cka\.node|tcka-core-check/) ours = 1
      } else if ($0 ~ / in tcka::Model::load\(/) caller = 1
    }
    /ERROR: AddressSanitizer/ && ++errors > 1 { ours = 1 }
    END { exit !(deadly && below && caller && !ours) }' "$1"
}

# ---------------------------------------------------------------- 2. (a) the core tool
say "(a) tcka-core-check (logs: $(rel "$LOGS")/core-*.log)"
core_ok=0
core_failed=()
core_run() { # NAME EXPECT ARGS...; EXPECT: ok (exit 0), or clean-error (exit 0 or 1, or libtorch crashing)
  local name=$1 expect=$2 status verdict=FAIL before new
  shift 2
  before=$(reports)
  timeout 600 "$TOOL" "$@" >"$LOGS/core-$name.log" 2>&1
  status=$?
  new=$(comm -13 <(echo "$before") <(reports))
  local last
  last=$(tail -n 1 "$LOGS/core-$name.log")
  [ $status -eq 124 ] && last="timed out after 600 s"
  if [ "$expect" = ok ] && [ $status -eq 0 ]; then
    verdict=ok
  elif [ "$expect" = clean-error ] && [ $status -le 1 ]; then
    verdict=ok
  elif [ "$expect" = clean-error ] && [ $status -eq 134 ] && [ "$(wc -l <<<"$new")" -eq 1 ] && [ -n "$new" ] &&
    libtorch_crash "$new"; then
    verdict=ok
    last="libtorch crashed in its model reader ($(rel "$new"))"
  fi
  if [ $verdict = ok ]; then
    core_ok=$((core_ok + 1))
  else
    core_failed+=("$name (exit $status)")
  fi
  printf '  %-5s %-40s exit %-3d %s\n' "$verdict" "$name" $status "${last:0:110}"
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
const base = (f) => path.basename(f, ".pt");
for (const [shape, files] of groups) {
  files.forEach((f, i) => {
    const c = k++ % 2;
    line("ok", base(f) + "-self", c, shape, i === 0 ? "check" : "-", f, f);
    if (i > 0) line("ok", base(files[0]) + "-vs-" + base(f), 1 - c, shape, "-", files[0], f);
  });
}
// .pt files that are not comparable models: as model 1 beside the first fixture.
const known = new Set(meta.map((m) => m.file));
const first = meta.find((m) => !Array.isArray(m.inputShape[0]));
const others = fs.readdirSync(dir).filter((f) => f.endsWith(".pt") && !known.has(f)).sort().map((f) => path.join(dir, f));
const bad = path.join(dir, "models-bad");
if (fs.existsSync(bad)) others.push(...fs.readdirSync(bad).filter((f) => f.endsWith(".pt")).sort().map((f) => path.join(bad, f)));
for (const f of others) line("clean-error", "error-" + base(f), 0, first.inputShape.slice(1).join(","), "-", f, path.join(dir, first.file));
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
lap "(a)"
[ ${#core_skipped[@]} -eq 0 ] || say "(a) not run by the tool (it feeds one input; mocha covers them): ${core_skipped[*]}"

# ---------------------------------------------------------------- 3. (b) mocha with the sanitized addon
# Excluded (docs/sanitizers.md):
# - "in Chromium": the heatmapSvg / reportHtml tests in a real browser. They
#   never load the addon, and Chromium, a child of the test process, would
#   inherit LD_PRELOAD and run its own allocator and sandbox under the ASan runtime.
# - "fuzz: damaged files never crash the process": the fixed-seed fuzz run
#   allows 1024 MB of RSS per case (child and its model-check child together);
#   ASan's shadow memory and quarantine take the ASan'd children past that,
#   so cases end as "memory" findings. Step (c) runs the same seed and cases
#   with a 4096 MB limit instead.
EXCLUDE='in Chromium|fuzz: damaged files never crash the process'
say "(b) the mocha suite with $(rel "$ADDON") (log: $(rel "$LOGS")/mocha.log)"
if ! npm run --silent build:ts >"$LOGS/build-ts.log" 2>&1; then
  cat "$LOGS/build-ts.log"
  fail "npm run build:ts failed"
fi
export TORCH_CKA_NATIVE="$ADDON"
# Temporary files of the tests (and fixed-name ones, like the fuzz test's) away
# from those of other runs on the machine.
export TMPDIR="$LOGS/tmp"
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
# Both suites: npm test's (.mocharc.json: test/*.test.js) and npm run test:slow's.
SUITES=("test/slow/*.test.js")
# How many tests the suite has, and how many the exclusion takes out (mocha --dry-run).
tests_in() {
  local out n
  out=$(LD_PRELOAD="$ASAN_RT" node node_modules/mocha/bin/mocha.js --dry-run --reporter dot "${SUITES[@]}" "$@" 2>/dev/null)
  n=$(sed -E 's/\x1b\[[0-9;]*m//g' <<<"$out" | grep -Eo '^\s*[0-9]+ passing' | grep -Eo '[0-9]+' | tail -n 1)
  echo "${n:-?}"
}
total=$(tests_in)
excluded=$(tests_in --grep "$EXCLUDE")
# shellcheck disable=SC2086
LD_PRELOAD="$ASAN_RT" node node_modules/mocha/bin/mocha.js "${SUITES[@]}" --grep "$EXCLUDE" --invert ${MOCHA_ARGS:-} \
  2>&1 | tee "$LOGS/mocha.log"
mocha_status=${PIPESTATUS[0]}
lap "(b)"
count() { sed -E 's/\x1b\[[0-9;]*m//g' "$LOGS/mocha.log" | grep -Eo "^\s*[0-9]+ $1" | grep -Eo '[0-9]+' | tail -n 1; }
passing=$(count passing)
failing=$(count failing)
pending=$(count pending)
passing=${passing:-0}
failing=${failing:-0}
pending=${pending:-0}

# ---------------------------------------------------------------- 4. (c) the fuzz harness
FUZZ_CASES=npy=800,idx=800,cifar=400,model=400
FUZZ_SEED=20261130
fuzz_status=skipped
fuzz_line="test/fuzz/fuzz.js not found"
if [ -f test/fuzz/fuzz.js ]; then
  say "(c) test/fuzz/fuzz.js --seed $FUZZ_SEED --cases $FUZZ_CASES --memory-limit 4096 (log: $(rel "$LOGS")/fuzz.log)"
  mkdir -p "$LOGS/fuzz"
  LD_PRELOAD="$ASAN_RT" node test/fuzz/fuzz.js --cases "$FUZZ_CASES" --seed "$FUZZ_SEED" --jobs 2 \
    --memory-limit 4096 --case-timeout 60 --out "$LOGS/fuzz" --json "$LOGS/fuzz/summary.json" >"$LOGS/fuzz.log" 2>&1
  fuzz_status=$?
  tail -n 12 "$LOGS/fuzz.log"
  fuzz_line=$(node -e '
    const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`${s.cases} cases, ${s.findings.length} finding(s), ${s.seconds} s, child RSS up to ${s.maxRssMB} MB`);
  ' "$LOGS/fuzz/summary.json" 2>/dev/null || echo "no summary")
fi

lap "(c)"

# ---------------------------------------------------------------- 5. summary
expected_reports=()
unexpected_reports=()
while read -r f; do
  [ -n "$f" ] || continue
  if libtorch_crash "$f"; then expected_reports+=("$f"); else unexpected_reports+=("$f"); fi
done <<<"$(reports)"
# Sanitizer output in the logs: UBSan's always, ASan's should not happen (log_path).
stray=$(grep -lE "$REPORT_PATTERN" "$LOGS"/*.log 2>/dev/null | grep -v '/build' || true)
elapsed=$(($(date +%s) - START))
echo
echo "==================== sanitize summary ($(date -u +%FT%TZ), ${elapsed}s) ===================="
echo "build: $(rel "$DIR") (RelWithDebInfo, -fsanitize=address,undefined), ASan runtime $ASAN_RT"
echo "time: ${times[*]}"
selftest=$(grep -h -Eo '[0-9]+ passed, [0-9]+ failed' "$LOGS/core-selftest.log" || echo 'no result')
echo "(a) tcka-core-check: $core_ok ok, ${#core_failed[@]} failed (selftest: $selftest)"
for f in "${core_failed[@]}"; do echo "      failed: $f"; done
[ ${#core_skipped[@]} -eq 0 ] || echo "      not run by the tool (several inputs): ${core_skipped[*]}"
echo "(b) mocha: $passing passing, $failing failing, $pending pending (exit $mocha_status)"
echo "      of $total tests in the suite; excluded: $excluded matching /$EXCLUDE/"
echo "(c) fuzz: $fuzz_line (exit $fuzz_status)"
echo "sanitizer reports: ${#unexpected_reports[@]} unexpected; ${#expected_reports[@]} libtorch crash(es) in its model reader on damaged files (expected)"
for f in "${unexpected_reports[@]}" "${expected_reports[@]}"; do
  echo "---- $(rel "$f")"
  grep -E -m 2 "$REPORT_PATTERN" "$f" | cut -c1-200 | sed 's/^/     /'
done
[ -z "$stray" ] || echo "sanitizer output in: $stray"
status=0
if [ ${#core_failed[@]} -ne 0 ] || [ "$mocha_status" -ne 0 ] || [ "$failing" -ne 0 ] || [ "$passing" -eq 0 ] ||
  { [ "$fuzz_status" != 0 ] && [ "$fuzz_status" != skipped ]; } || [ ${#unexpected_reports[@]} -ne 0 ] || [ -n "$stray" ]; then
  status=1
fi
echo "result: $([ $status -eq 0 ] && echo PASS || echo FAIL) (logs and reports under $(rel "$LOGS")/)"
exit $status
