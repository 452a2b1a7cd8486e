#!/usr/bin/env bash
# A GPU session's work in device calls, each under the device tool's 10-minute limit (CONTRIBUTING.md,
# "GPU sessions"). Run on the lent host, in the repository root, with `.carry` carried (made here by
# `node scripts/gpu-carry.mjs`):
#
#   bash scripts/gpu-session.sh proof    issue 32 in ONE call, the one to send when a session has about 15
#                                        minutes of device time: unpack, build (sm_90 only, or the carried
#                                        CUDA package), nvidia-smi, doctor, CUDA_LLAMA_REQUIRE_GPU=1 vitest
#                                        run test/gpu (gpu.test.ts and the engine's engine.test.ts),
#                                        single-stream tg against llama-bench with generate() and streaming,
#                                        arrivals at 16/64 sequences against llama-batched-bench, serving at
#                                        1/16/64 clients against llama-server, then a scan of the logs for a
#                                        CPU fallback, and the first load from PTX against SASS (jit.ts);
#                                        the most important results first
#
# The four steps below are the longer session (about 40 minutes of device time, four calls back to back):
#
#   bash scripts/gpu-session.sh setup    unpack, build, nvidia-smi, doctor, demo, the GPU suite, bench model
#   bash scripts/gpu-session.sh bench    the GPU benchmark: CPU / full / partial offload, sweeps, parallel,
#                                        against node-llama-cpp too when .carry has it
#   bash scripts/gpu-session.sh extras   paired rounds (GPU, GPU against node-llama-cpp, CPU), npm test, tune (two workloads), the tarball with the CUDA package
#   bash scripts/gpu-session.sh serving  issues 26, 27, 31 and 33 on the GPU: arrivals at 1/16/64 sequences against llama-batched-bench,
#                                        multi-turn chat, the serving benchmark against llama-server at 1/16/64 clients,
#                                        structured output (a JSON schema against plain requests, against llama-server),
#                                        and embeddings and rerank (against llama-embedding and llama-server)
#
#   bash scripts/gpu-session.sh scale    issue 34 on the GPU (about 3 minutes): two replicas on the one GPU against one
#                                        replica with the same sequences at 16 and 64 clients (replicas.ts), and the
#                                        local GPU against the same GPU behind a cuda-llama rpc-server on this host
#                                        (rpc.ts); the GPU suite's scale.test.ts (in `proof` and `setup`) checks
#                                        their placement and tokens
#
#   bash scripts/gpu-session.sh STEP NAME...   only the step's commands with these names (to redo
#                                              one that failed, e.g. `extras test-pack-cuda`)
#
# GPU_SESSION_REHEARSE=1 runs a step on this machine without a GPU, to see every command of it run end to
# end before a GPU session spends its minutes (`proof` is the step written for it): no unpacking (this
# machine's node and tree), the CPU build, no nvidia-smi, no --gpu, the `tiny` model shape, the
# smallest sizes and one round; the GPU tier runs on the CPU (CUDA_LLAMA_GPU_TIER_ON_CPU=1, where
# test/gpu/engine.test.ts runs and test/gpu/gpu.test.ts skips with its reason); and an hour's budget.
#
# Every command's output goes to <step>-<name>.log, packed at the end into $OUT/<step>-logs.tar.gz
# (the device tool returns at most 8 files from $OUT), and a failing command does not stop the
# step: a refusal from doctor is a result to record, not a reason to skip the GPU suite. Each
# command gets only the time left before GPU_SESSION_SECONDS (default 570 s), so the step ends
# itself and its logs come back before the tool's kill at 600 s.
# $OUT/<step>-summary.txt (also in the archive) lists each command with its exit status and seconds.
# The machine is handed back 30 s after a call ends: send the next call straight away. Every
# later step first brings the build up to date (seconds when nothing changed; on a fresh machine
# it redoes the unpacking and the build, and says so).
set -uo pipefail
cd "$(dirname "$0")/.."

step=${1:-}
case "$step" in setup | bench | extras | serving | proof | scale) ;; *) echo "usage: bash scripts/gpu-session.sh setup|bench|extras|serving|proof|scale [NAME...]" >&2; exit 2 ;; esac
only=" ${*:2} "
rehearse=0
[ "${GPU_SESSION_REHEARSE:-0}" = 1 ] && rehearse=1
returned=${OUT:-$PWD/gpu-session-out}
mkdir -p "$returned"
# Logs and results gather here and travel back as one archive, whatever ends the step.
OUT=$(mktemp -d)
pack() { cp "$OUT/$step-summary.txt" "$returned/" 2>/dev/null; tar -C "$OUT" -czf "$returned/$step-logs.tar.gz" .; }
trap pack EXIT
budget=${GPU_SESSION_SECONDS:-570}
((rehearse)) && budget=${GPU_SESSION_SECONDS:-3600}
summary="$OUT/$step-summary.txt"
: >"$summary"
failures=0

say() { echo "[gpu-session +${SECONDS}s] $*" | tee -a "$summary"; }

# run NAME COMMAND...: the command under `timeout` with the time left, its output teed to a log.
run() {
  local name=$1
  shift
  if [ "$only" != "  " ] && [[ "$only" != *" $name "* ]]; then return 0; fi
  local left=$((budget - SECONDS))
  if ((left < 20)); then
    say "$name: not run, ${left}s left of ${budget}s"
    failures=$((failures + 1))
    return 1
  fi
  local log="$OUT/$step-$name.log" began=$SECONDS rc
  say "$name: $* (at most ${left}s)"
  timeout --kill-after=5 "$left" "$@" >"$log" 2>&1
  rc=$?
  tail -n 25 "$log"
  ((rc == 124)) && say "$name: TIMED OUT after $((SECONDS - began))s (log: $log)" || say "$name: exit $rc in $((SECONDS - began))s"
  ((rc == 0)) || failures=$((failures + 1))
  return "$rc"
}

# The carried node (the host may have none, or an older one), sources and dependencies.
unpack() {
  if ((rehearse)); then
    say "rehearsal (GPU_SESSION_REHEARSE=1): this machine's node $(node --version) and tree, nothing unpacked; $(nproc) cores"
    return 0
  fi
  # A call that carried only .carry-nlc runs on what setup unpacked; on a fresh machine there is nothing.
  [ -d .carry ] || [ -x /tmp/node/bin/node ] || { say "no .carry here and nothing unpacked: the machine was handed back since setup; rerun setup carrying .carry"; exit 1; }
  if [ -f .carry/node.tar.xz ]; then
    if [ ! -x /tmp/node/bin/node ]; then mkdir -p /tmp/node && tar -C /tmp/node -xJf .carry/node.tar.xz; fi
    export PATH=/tmp/node/bin:$PATH
  fi
  command -v node >/dev/null || { say "no node here and no .carry/node.tar.xz: run node scripts/gpu-carry.mjs and carry .carry"; exit 1; }
  [ -f vendor/llama.cpp/CMakeLists.txt ] || tar -xJf .carry/llama.tar.xz
  [ -d node_modules/vitest ] || tar -xJf .carry/node_modules.tar.xz
  # The optional CUDA package, where npm would put it; without it `setup` compiles the module.
  if [ -f .carry/cuda13.tar.xz ] && [ ! -f node_modules/@cuda-llama/linux-x64-cuda13/libggml-cuda.so ]; then
    tar -xJf .carry/cuda13.tar.xz && mkdir -p node_modules/@cuda-llama && cp -r prebuilds/linux-x64-cuda13 node_modules/@cuda-llama/
  fi
  # node-llama-cpp for the three-way comparison (its CUDA module's code zeroed: the benchmark reads its
  # headers, says whether this GPU could run it, and stands cuda-llama's module in for it).
  # It comes in .carry-nlc, carried by the bench call alone (with the CUDA package .carry is too full).
  if [ -f .carry-nlc/node-llama-cpp.tar.xz ] && [ ! -d test/bench/.node-llama-cpp/node_modules ]; then tar -xJf .carry-nlc/node-llama-cpp.tar.xz; fi
  # The runtime dependencies the packed tarball pulls in, for an offline `npm install` (test-pack).
  if [ -f .carry/npm-cache.tar.xz ] && [ ! -d /tmp/npm-cache ]; then tar -C /tmp -xJf .carry/npm-cache.tar.xz; fi
  # No registry here: npm must not stall on its update check.
  export npm_config_update_notifier=false
  say "node $(node --version) at $(command -v node); $(nproc) cores"
}

# build [TOOL...]: the addon with CUDA, then llama.cpp's programs (build-tools.mjs's default two, or those named).
build() {
  if ((rehearse)) || [ -f node_modules/@cuda-llama/linux-x64-cuda13/libggml-cuda.so ]; then
    run install node scripts/install.mjs
  else
    # The whole build with CUDA (build-cuda runs install.mjs with the CUDA settings), not a CPU-only
    # build first: a rerun after a timeout then configures the same way, and ninja keeps what it
    # finished. It finds python3's nvidia cu13 wheels or a system toolkit; sm_90 only, to fit the call,
    # as "90": SASS and its PTX (nvcc writes that PTX for the SASS anyway; kept, it lets jit.ts time
    # what a GPU without SASS pays on its first load).
    # Without a toolkit, the CPU build, so that doctor and the GPU suite can say what is missing.
    run build-cuda node scripts/build-cuda.mjs --arch 90 || run install node scripts/install.mjs
  fi
  run tools node scripts/build-tools.mjs "$@"
}

# What a later step needs from setup runs whatever NAMEs were given.
always() {
  local saved=$only
  only="  "
  "$@"
  only=$saved
}

unpack
if [ "$step" != setup ] && [ "$step" != proof ]; then
  # A no-op when nothing changed since setup; rebuilds after a fix made between calls.
  [ -f build/Release/cuda_llama.node ] || say "no build/ here: the machine was handed back since setup, so this step builds first"
  always build
fi

case "$step" in
  setup)
    run nvidia-smi bash -c 'nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv'
    run python-wheels python3 -c 'import nvidia, os; [print(p, sorted(os.listdir(p))) for p in nvidia.__path__]'
    build
    run doctor-json npx tsx lib/tools/cli.ts doctor --json
    run doctor npx tsx lib/tools/cli.ts doctor
    run demo npm run demo
    CUDA_LLAMA_REQUIRE_GPU=1 run gpu-suite npx vitest run test/gpu
    run bench-prepare npx tsx test/bench/compare.ts --prepare-only
    ;;
  bench)
    # With node-llama-cpp carried, the three-way comparison; without it, ours against llama-bench.
    nlc=--no-node-llama-cpp
    [ -d test/bench/.node-llama-cpp/node_modules/node-llama-cpp ] && nlc=
    run bench npx tsx test/bench/compare.ts --gpu --reps 3 $nlc --out "$OUT/bench" --write-docs --docs "$OUT/gpu-bench.md"
    ;;
  extras)
    model=$(ls test/.models/tinyllama1b-ctx32k-*-q4_0.gguf 2>/dev/null | head -n 1)
    [ -n "$model" ] || { always run bench-prepare npx tsx test/bench/compare.ts --prepare-only; model=$(ls test/.models/tinyllama1b-ctx32k-*-q4_0.gguf | head -n 1); }
    # Paired rounds first: the ratios against llama-bench with drift cancelled, on the GPU and on the host's CPU.
    run paired-gpu npx tsx test/bench/paired.ts --gpu --metrics pp128,pp512,tg128,parallel --rounds 8 --write-docs --docs "$OUT/paired-gpu.md"
    if [ -d test/bench/.node-llama-cpp/node_modules/node-llama-cpp ]; then
      run paired-gpu-nlc npx tsx test/bench/paired.ts --gpu --metrics node-llama-cpp --rounds 6 --write-docs --docs "$OUT/paired-gpu-node-llama-cpp.md"
    fi
    run paired-cpu npx tsx test/bench/paired.ts --metrics pp128,pp512,tg128 --rounds 4 --write-docs --docs "$OUT/paired-cpu.md"
    run npm-test npm test
    run tune npx tsx lib/tools/cli.ts tune "$model" --prompt 512 --output 128
    run tune-16 npx tsx lib/tools/cli.ts tune "$model" --prompt 128 --output 64 --sequences 16
    # Offline, from the carried cache, under the registry URL it was filled from (npm keys its cache by URL).
    registry=$(cat .carry/npm-registry.txt 2>/dev/null || echo https://registry.npmjs.org/)
    npm_config_cache=/tmp/npm-cache npm_config_offline=true npm_config_registry=$registry run test-pack-cuda node scripts/test-pack.mjs --build native --cuda
    ;;
  serving)
    [ -n "$(ls test/.models/tinyllama1b-ctx32k-*-q4_0.gguf 2>/dev/null)" ] || always run bench-prepare npx tsx test/bench/compare.ts --prepare-only
    run llama-server node scripts/build-tools.mjs llama-server
    run arrivals npx tsx test/bench/arrivals.ts --gpu --requests 1,16,64 --rounds 8 --out "$OUT/arrivals" --write-docs --docs "$OUT/arrivals-gpu.md"
    run serve npx tsx test/bench/serve.ts --gpu --clients 1,16,64 --rounds 6 --out "$OUT/serve"
    run chat-turns npx tsx test/bench/chat-turns.ts --gpu --rounds 8 --out "$OUT/chat-turns" --write-docs --docs "$OUT/chat-turns-gpu.md"
    # The schema's grammar as `grammar` (structured.ts's default): llama-server refuses `response_format` on the synthetic model.
    run structured npx tsx test/bench/structured.ts --gpu --clients 1,16 --parallel 16 --rounds 6 --out "$OUT/structured"
    # Issue 33: texts/s at 256 and 4,096 short texts and 64 long ones (BGE-small shape) against llama-embedding,
    # documents/s of 100-document rerank requests against llama-server; node-llama-cpp is not in .carry.
    run embeddings npx tsx test/bench/embeddings.ts --gpu --rounds 6 --no-node-llama-cpp --out "$OUT/embeddings"
    ;;
  scale)
    # Issue 34. The 1.1B shape as the other GPU benchmarks; the rehearsal runs the tiny one on the CPU.
    if ((rehearse)); then
      run replicas npx tsx test/bench/replicas.ts --model tiny --rounds 1 --clients 4 --sequences 2 --max-tokens 8 --out "$OUT/replicas.md"
      run rpc npx tsx test/bench/rpc.ts --model small --rounds 1 --out "$OUT/rpc.md"
    else
      run replicas npx tsx test/bench/replicas.ts --gpu --model tinyllama1b --rounds 6 --clients 16,64 --sequences 16 --max-tokens 64 --out "$OUT/replicas-gpu.md"
      run rpc npx tsx test/bench/rpc.ts --gpu --model tinyllama1b --rounds 6 --out "$OUT/rpc-gpu.md"
    fi
    ;;
  proof)
    # Issue 32 in one call. The seconds in the comments are estimates for a 16-core H100 host, made from
    # the settings, from the H100 figures in docs/benchmarks.md (the 1.1B Q4_0 file loads in 0.36 s;
    # tg128 at about 850 tok/s; a 16-sequence step 3.4 ms) and from what each script logs per round in
    # a rehearsal; $OUT/proof-summary.txt has the real ones. Total: about 500 s with the carried CUDA
    # package, about 610 s without it, where arrivals and serving then run fewer rounds (below).
    #
    # Before anything is measured (about 185 s with the CUDA package, 290 s without): unpacking (15 s);
    # the addon with CUDA (the package: install.mjs's CPU build from an empty folder, about 75 s, as it
    # is 400 s on 2 CI cores; without it, build-cuda.mjs for sm_90 only, about 180 s, as that build
    # was 1983 CPU-seconds on the 2-core VM); llama.cpp's four programs in one build (60 s: the common
    # library and llama-server's sources); the benchmarks' 1.1B file (35 s: tsc for dist/, then 2.1 GiB
    # of F16, written at 80 MiB/s on the busy 2-core VM, and its Q4_0 quantization).
    always build llama-simple llama-bench llama-batched-bench llama-server
    if ((rehearse)); then
      always run models npx tsx test/bench/compare.ts --model tiny --prepare-only
      model=$(ls test/.models/tiny-ctx32k-*-q4_0.gguf 2>/dev/null | head -n 1)
    else
      always run models npx tsx test/bench/compare.ts --prepare-only
    fi
    # 1 s: the GPU's name, driver, memory, clocks and power limit, and the CUDA version of the driver.
    ((rehearse)) || run nvidia-smi bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader; nvidia-smi | grep -o "CUDA Version: [0-9.]*"'
    # 5 s: what the library finds (devices, the CUDA module's code against this GPU and driver, a probe
    # load and generation). The rehearsal checks the CPU path only: without a GPU doctor reports problems.
    if ((rehearse)); then
      run doctor npx tsx lib/tools/cli.ts doctor --cpu
    else
      run doctor npx tsx lib/tools/cli.ts doctor
    fi
    # 100 s: correctness first, so that a later timeout loses only figures. gpu.test.ts about 75 s (its
    # own 1.1B file, 25 s; tune's candidates, 20 s; a dozen loads, llama-simple and 64 tokens on the
    # CPU), engine.test.ts about 15 s (five loads of the 1.1B model; what it generates is a second's work
    # on the GPU), vitest itself 10 s.
    if ((rehearse)); then
      CUDA_LLAMA_GPU_TIER_ON_CPU=1 run gpu-suite npx vitest run test/gpu
    else
      CUDA_LLAMA_REQUIRE_GPU=1 run gpu-suite npx vitest run test/gpu
    fi
    # 60 s: single-stream tg128 against llama-bench's tg128 at the same depth, with generate() (tg128)
    # and with model.stream() timed by its for-await loop (tg128-stream), 6 rounds each (the fewest with
    # a 95% interval). A round is two fresh processes of about 2 s each (starting, CUDA's initialisation,
    # the load, then 4 x 128 tokens, the first unmeasured); before the rounds, tsc for dist/ and a CUDA
    # probe, 12 s.
    if ((rehearse)); then
      run tg npx tsx test/bench/paired.ts --metrics tg16,tg16-stream --rounds 1 --samples 1 --threads 2 --model "$model" --write-docs --docs "$OUT/paired-tg.md"
    else
      run tg npx tsx test/bench/paired.ts --gpu --metrics tg128,tg128-stream --rounds 6 --write-docs --docs "$OUT/paired-tg-gpu.md"
    fi
    # Arrivals and serving share what is left, at the same number of rounds: 6 where the time left holds
    # both at these estimates, else fewer (at least 2) so that serving still runs. A round of arrivals
    # is about 12 s (16 and 64 requests of 128 tokens in and 128 out, each on cuda-llama and on
    # llama-batched-bench: four fresh processes of 2 to 4 s), one of serving about 9 s (each server
    # starting in 2 to 3 s, 88 streamed requests of 32 tokens, stopping); each script spends about 15 s
    # before its rounds (tsc for dist/, a CUDA probe, the prompts or the served copy of the model).
    rounds=1
    if ((!rehearse)); then
      rounds=$(((budget - SECONDS - 15 - 15 - 10) / (12 + 9)))
      ((rounds > 6)) && rounds=6
      ((rounds < 2)) && rounds=2
    fi
    say "arrivals and serve: $rounds round(s) each, $((budget - SECONDS))s left"
    # 85 s at 6 rounds. node-llama-cpp is left out: it is not in .carry (the bench step compares it).
    if ((rehearse)); then
      run arrivals npx tsx test/bench/arrivals.ts --model tiny --requests 2,3 --prompt-tokens 8 --gen-tokens 8 --rounds 1 --threads 2 --no-node-llama-cpp --out "$OUT/arrivals" --write-docs --docs "$OUT/arrivals.md"
    else
      run arrivals npx tsx test/bench/arrivals.ts --gpu --requests 16,64 --rounds "$rounds" --no-node-llama-cpp --out "$OUT/arrivals" --write-docs --docs "$OUT/arrivals-gpu.md"
    fi
    # 70 s at 6 rounds: 16 slots of 256 tokens on both servers, 1, 16 and 64 closed-loop clients.
    if ((rehearse)); then
      run serve npx tsx test/bench/serve.ts --model tiny --clients 1,2 --parallel 2 --ctx 128 --max-tokens 4 --prompt-tokens 4 --requests 2 --rounds 1 --threads 2 --out "$OUT/serve"
    else
      run serve npx tsx test/bench/serve.ts --gpu --clients 1,16,64 --rounds "$rounds" --out "$OUT/serve"
    fi
    # 0 s. Every cuda-llama load above asks for gpu: 'cuda' with every layer, which refuses a placement
    # other than asked (layers, output or KV cache off the GPU, ops on the CPU that read GPU memory:
    # ERR_GPU_PLACEMENT, from the layer report's problems) and a missing device (ERR_CUDA_UNAVAILABLE),
    # so a fallback fails its command. This puts that in one line, from the benchmarks' logs, where no
    # refusal belongs (the GPU suite provokes some on purpose, and checks its layer reports itself).
    fallback_scan() {
      local logs found
      logs=$(cd "$1" && ls proof-tg.log proof-arrivals.log proof-serve.log 2>/dev/null)
      [ -n "$logs" ] || { echo "no benchmark log to scan"; return 1; }
      found=$(cd "$1" && grep -H -E "ERR_GPU_PLACEMENT|ERR_CUDA_UNAVAILABLE|CUDA_LLAMA_CPU_FALLBACK|NOT AS REQUESTED|partly on the CPU" $logs)
      [ -z "$found" ] || { echo "$found"; return 1; }
      echo "no CPU fallback refused or reported in:" $logs
    }
    export -f fallback_scan
    run fallback-check bash -c 'fallback_scan "$0"' "$OUT"
    # 30 s or more (not measured anywhere yet: the driver compiles the kernels the 1.1B model uses):
    # the first load from PTX against SASS (CUDA_FORCE_PTX_JIT=1, an empty JIT cache, then that cache
    # again), what a GPU newer than the release package's SASS pays. Last: a timeout loses only this.
    if ((rehearse)); then
      run jit npx tsx test/bench/jit.ts --model tiny --rehearse --rounds 1 --out "$OUT/jit"
    else
      run jit npx tsx test/bench/jit.ts --rounds 1 --out "$OUT/jit"
    fi
    ;;
esac

say "$step: done, $failures command(s) failed or were not run; logs in $OUT"
((failures == 0))
