#!/usr/bin/env bash
# The real-model findings in docs/findings.md ("SmolLM2-135M-Instruct"): every command,
# timed. About 50 minutes of 2-core CPU (measured times land in OUT/times.txt). Needs the SmolLM2 install step (README) and the
# benchmark files for GSM8K.
#
#   bash experiments/smollm2_study.sh [OUT]        # OUT defaults to runs/smol-study
set -euo pipefail
OUT="${1:-runs/smol-study}"
A="${ATTRACTOR:-.venv/bin/attractor}"
TASK="synthetic:arith:hops=1,style=expr,seed=2026"
mkdir -p "$OUT"
timed() {  # timed NAME CMD...: run, append "NAME seconds" (or FAILED) to OUT/times.txt
  local name=$1 start status=ok
  shift
  start=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1 || status=FAILED
  echo "$name $(( $(date +%s) - start )) $status" | tee -a "$OUT/times.txt"
}
# 1. one-step arithmetic, 48 questions x 16 samples, T = 0.7, 192 tokens, flexible reading;
#    hidden states of all 31 layers at three positions
R="$OUT/arith_T0.7"
timed sample_arith_T0.7 "$A" sample --model smollm2 --task "$TASK,n=48" -n 16 \
  --temperature 0.7 --max-new-tokens 192 --reading flexible --out "$R"
timed capture_arith_T0.7 "$A" capture "$R" --layers all --positions frac:0.5,last:1,decisive
timed analyze_arith_T0.7 "$A" analyze "$R" --window 16
# 2. mechanism on 16 of the questions x 8 samples (depth's lens, attention, patching)
M="$OUT/mech"
timed sample_mech "$A" sample --model smollm2 --task "$TASK,n=16" -n 8 --temperature 0.7 \
  --max-new-tokens 128 --reading flexible --out "$M"
timed analyze_mech "$A" analyze "$M" --window 16
timed depth "$A" depth "$M" --positions decisive --skip off   # the skip sweep is 30x the lens
timed attention "$A" attention "$M" --ablate none
timed patch "$A" patch "$M"
# 3. probes; fractional steering from instruction prompts on 16 held-out questions (48..63)
timed probe_arith "$A" probe "$R" --layers every:10 --tokens 0,4,16 --refits 3
timed steer_build "$A" steer build "$R" --kind fractional --out "$OUT/frac.safetensors"
timed steer_sweep "$A" sweep --model smollm2 --task "$TASK,n=64" --offset 48 --limit 16 -n 8 \
  --temperature 0.7 --max-new-tokens 128 --reading flexible --steer "$OUT/frac.safetensors" \
  --alpha 0,0.05,0.2 --out "$OUT/steer"
timed vote_arith "$A" vote "$R"
# 4. the embedded model on the same questions, side by side
timed sample_tiny "$A" sample --model tiny --task "$TASK,n=48" -n 16 --temperature 0.7 \
  --max-new-tokens 192 --reading flexible --out "$OUT/tiny_arith"
timed capture_tiny "$A" capture "$OUT/tiny_arith" --layers all --positions frac:0.5,last:1,decisive
timed analyze_tiny "$A" analyze "$OUT/tiny_arith" --window 8
timed compare "$A" compare "$OUT/tiny_arith" "$R" --out "$OUT/compare" --position last:1
# 5. GSM8K test, first 16 questions x 8 samples, T = 0.7, 256 tokens; T = 1.0 on arithmetic
timed sample_gsm8k "$A" sample --model smollm2 --task gsm8k --limit 16 -n 8 --temperature 0.7 \
  --max-new-tokens 256 --reading flexible --out "$OUT/gsm8k"
timed analyze_gsm8k "$A" analyze "$OUT/gsm8k" --window 16
timed sample_arith_T1.0 "$A" sample --model smollm2 --task "$TASK,n=48" -n 16 \
  --temperature 1.0 --max-new-tokens 192 --reading flexible --out "$OUT/arith_T1.0"
timed analyze_arith_T1.0 "$A" analyze "$OUT/arith_T1.0" --window 16
