#!/usr/bin/env bash
# The main job on the embedded demo corpus, end to end, on CPU or GPU:
#   demo corpus -> LLDs -> NormTerm -> preference labels -> chunk emotion rankers -> ranking sequences
#   -> Seq2Seq SER -> test CCC -> chunk-retrieval check -> prediction plot for one file
#   (+ the MSCR audio-text model and its missing-data sweep with MSCR=1).
#
#   bash run_demo.sh                         # arousal (Act) only, into runs/demo/ (untracked)
#   EMO=all MSCR=1 bash run_demo.sh          # all three attributes + MSCR, into runs/demo/
#   SHIP=1 EMO=all MSCR=1 bash run_demo.sh   # rebuild the demo artefacts shipped in the repository, in place
#                                            #   (NormTerm/, chunk_emotion_rankers/, trained_*_model/) and their
#                                            #   summary bench/results/demo.json
#   THREADS=1 bash run_demo.sh               # train and run the LSTM models (rankers, Seq2Seq) on 1 CPU thread
#                                            #   instead of 2 (default): the same weight bytes (bench/results/threads.json);
#                                            #   the MSCR steps stay on 1 thread, as their weights depend on the
#                                            #   thread count (docs/reproducibility.md)
#   MAX_CHUNKS=0 SAMPLING=uniform PAIRS=256 PATIENCE=0 SHIP=1 EMO=all MSCR=1 bash run_demo.sh
#                                            # the LSTM training steps as before --max-chunks existed: the whole
#                                            #   batch in one pass (about 8.4 GB per ranker), the code path of the
#                                            #   shipped demo artefacts (docs/reproducibility.md)
#   PARALLEL=1 EMO=all ...                   # the three attributes' steps 4-7 as three parallel processes
#                                            #   (each trains on its own fixed threads from its own seed: same bytes)
#
# Every python command runs under /usr/bin/time (where it exists): demo.json records each step's wall time and
# peak resident memory, and each step prints the elapsed time and an estimate of the time left. The LSTM
# training steps run at most MAX_CHUNKS (768) chunks at once (--max-chunks): peak memory stays under 2 GB.
#
# Without SHIP=1 nothing tracked is written: every output goes to $OUT (default runs/demo) and the later
# steps read the models from there. Training runs on a fixed number of CPU threads (--threads,
# docs/reproducibility.md), so the weights are the same bytes whatever the machine's load or core count. The run ends by writing
# $OUT/demo.json: the time of every step, the test CCCs, the rankers' validation macro-F1 and the retrieval check.
#
# Settings are the published ones (docs/method1.md) except: the ranker's pairs per epoch (PAIRS, published 100000),
# reduced so that a CPU finishes in minutes (on a GPU use PAIRS=100000); the ranker's pairs drawn grouped
# (SAMPLING=grouped: a step's pairs share utterances, each runs once for all of them; SAMPLING=uniform is the
# published draw; docs/method1.md, "Grouped pair sampling"); Seq2Seq stops 5 epochs after its best validation
# CCC (PATIENCE=5; 0 runs all 30 epochs; the best epoch is kept either way).
set -euo pipefail
cd "$(dirname "$0")"
EMO=${EMO:-Act}
PAIRS=${PAIRS:-384}
MSCR=${MSCR:-0}
MSCR_ITERS=${MSCR_ITERS:-150}
SHIP=${SHIP:-0}
PARALLEL=${PARALLEL:-0}
THREADS=${THREADS:-2}
MAX_CHUNKS=${MAX_CHUNKS:-768}
SAMPLING=${SAMPLING:-grouped}
PATIENCE=${PATIENCE:-5}
TH=(--threads "$THREADS")
MC=(--max-chunks "$MAX_CHUNKS")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# OpenMP threads spin ~0.3 s waiting for each other by default: when another job holds a core, the two torch threads
# then mostly spin (a Seq2Seq epoch 4-5x slower). A short spin costs nothing on a quiet machine and halves the
# loaded time; scheduling only, the same bytes (docs/reproducibility.md).
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
if [ "$SHIP" = 1 ]; then
  OUT=.
  NORM=NormTerm PREF=chunk_emotion_rankers/preference_labels RK=chunk_emotion_rankers/trained_ranker_model
  RS=chunk_emotion_rankers/EmoChunkRankSeq S2S=trained_seq2seq_model MS=trained_mscr_model RES=runs/testing
  SUMMARY=bench/results/demo.json AUX=runs/ship   # the retrieval check and the prediction plot: untracked
else
  OUT=${OUT:-runs/demo}
  NORM=$OUT/NormTerm PREF=$OUT/preference_labels RK=$OUT/trained_ranker_model RS=$OUT/EmoChunkRankSeq
  S2S=$OUT/trained_seq2seq_model MS=$OUT/trained_mscr_model RES=$OUT/testing SUMMARY=$OUT/demo.json AUX=$OUT
fi
mkdir -p "$OUT" "$RES" "$AUX"
TIMES=$(mktemp) RSS=$(mktemp)
T0=$SECONDS
# Expected seconds of each step of the default run (EMO=Act PAIRS=384 MSCR=0 THREADS=2; bench/results/demo_default.json),
# scaled by this run's pace so far: the progress line's estimate of the time left.
EXPECT=(8 18 3 2 164 7 235 8 3)
[ "$MSCR" = 1 ] && EXPECT+=(560)
N_STEPS=${#EXPECT[@]} STEP_I=0
SUB=1   # steps 4-7 are timed one by one (not under PARALLEL=1)
step() {
  local now=$((SECONDS - T0)) done_exp=0 left_exp=0 i
  for ((i = 0; i < N_STEPS; i++)); do
    if ((i < STEP_I)); then done_exp=$((done_exp + EXPECT[i])); else left_exp=$((left_exp + EXPECT[i])); fi
  done
  local left=$left_exp
  left=$((left_exp * (now + 120) / (done_exp + 120)))   # this run's pace so far, damped over the first minutes
  STEP_I=$((STEP_I + 1))
  printf '\n=== %s\n    [%s elapsed, about %s left]\n' "$*" "$(printf '%dm%02ds' $((now / 60)) $((now % 60)))" \
      "$( [ "$*" = end ] && echo 0m00s || printf '%dm%02ds' $((left / 60)) $((left % 60)))"
  printf '%s\t%s\n' "$now" "$*" >> "$TIMES"
  CUR_STEP=$*
}
# every python command of a step: its peak resident memory (KB) is logged for the summary
if /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then
  py() { /usr/bin/time -f "%M	$CUR_STEP" -a -o "$RSS" python "$@"; }
else
  py() { python "$@"; }
fi

step "1/9 demo corpus (data/demo_corpus; built once, ~10 s)"
[ -d data/demo_corpus ] || py make_demo_corpus.py
py check_corpus.py data/demo_corpus --no-progress --max-list 5

step "2/9 openSMILE LLDs, published preset (resumable; skips what is done)"
py extract_features.py --feature lld

step "3/9 normalisation terms -> $NORM"
py norm_para.py --out "$NORM" --overwrite

attribute() {   # steps 4-7 for one attribute (or "all")
  local E=$1
  [ "$SUB" = 1 ] && step "4/9 preference labels -> $PREF"
  py chunk_emotion_rankers/generate_preference_labels.py -emo "$E" --out "$PREF"
  [ "$SUB" = 1 ] && step "5/9 chunk emotion rankers (20 epochs x $PAIRS pairs) -> $RK, and their test"
  py chunk_emotion_rankers/training_ranker.py "${TH[@]}" -ep 20 -batch 128 -emo "$E" --pairs-per-epoch "$PAIRS" \
      --pair-sampling "$SAMPLING" "${MC[@]}" --norm "$NORM" --pairs "$PREF" --out "$RK" --overwrite
  py chunk_emotion_rankers/testing_ranker.py "${TH[@]}" -ep 20 -batch 128 -emo "$E" --max-pairs 2000 --pairs "$PREF" \
      --checkpoint "$RK"
  [ "$SUB" = 1 ] && step "6/9 ranking sequences -> $RS"
  py chunk_emotion_rankers/generate_ranking_seqence.py "${TH[@]}" -ep 20 -batch 128 -emo "$E" -set all \
      --checkpoint "$RK" --out "$RS"
  [ "$SUB" = 1 ] && step "7/9 Seq2Seq (30 epochs) -> $S2S"
  py training.py "${TH[@]}" "${MC[@]}" --patience "$PATIENCE" -ep 30 -batch 128 -emo "$E" --norm "$NORM" --rankseq "$RS" --out "$S2S" --overwrite
}
if [ "$PARALLEL" = 1 ] && [ "$EMO" = all ]; then
  step "4-7/9 preference labels, rankers (20 epochs x $PAIRS pairs), ranking sequences -> $RS, Seq2Seq (30 epochs) -> $S2S"
  SUB=0 STEP_I=7
  pids=()
  for E in Act Dom Val; do attribute "$E" > "$AUX/demo_$E.log" 2>&1 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || { echo "an attribute failed: see $AUX/demo_*.log"; exit 1; }; done
else
  attribute "$EMO"
fi

step "8/9 test CCC (Test split) -> $RES"
py testing.py "${TH[@]}" -ep 30 -batch 128 -emo "$EMO" --checkpoint "$S2S" --out "$RES"
RETR=""
if [ -f "$RS/testing_Act.json" ]; then
  py evaluate_retrieval.py --corpus data/demo_corpus --split Test --rankseq "$RS/testing_Act.json" \
      --baseline loudness random --out "$AUX/retrieval.json" 2>/dev/null && RETR="$AUX/retrieval.json"
else
  echo "(retrieval check needs the Act ranker: EMO=Act or EMO=all)"
fi

step "9/9 predict one recording with the demo models -> $AUX/predict/"
WAVS=(data/demo_corpus/Audios/*.wav)   # a glob, not ls | head: under pipefail that can die of SIGPIPE
WAV=${WAVS[0]}
py predict.py "$WAV" --emo "$EMO" --checkpoint "$S2S" --out "$AUX/predict/demo.csv" --plot "$AUX/predict"

if [ "$MSCR" = 1 ]; then
  step "MSCR: text token features (offline MiniLM), audio-text model with and without multi-scale crops"
  py extract_features.py --feature text
  for SC in 0.2,0.4,0.6,0.8,1.0 1.0; do
    py training.py --threads 1 --model mscr --audio-feature lld --iters "$MSCR_ITERS" --val-every 50 \
        -batch 64 --hidden 64 --scales "$SC" --save-dir "$MS" --overwrite
    py testing.py --threads 1 --model mscr --audio-feature lld --iters "$MSCR_ITERS" -batch 64 --save-dir "$MS" \
        --scales "$SC" --sweep --missing-mode frames,chunks,tokens,modality --out "$RES/mscr"
  done
fi
step "end"
python bench/demo_summary.py --times "$TIMES" --metrics "$RES/metrics.csv" --rankers "$RK" --retrieval "$RETR" \
    --rss "$RSS" --out "$SUMMARY" --settings "EMO=$EMO PAIRS=$PAIRS MSCR=$MSCR MSCR_ITERS=$MSCR_ITERS SHIP=$SHIP PARALLEL=$PARALLEL THREADS=$THREADS MAX_CHUNKS=$MAX_CHUNKS SAMPLING=$SAMPLING PATIENCE=$PATIENCE OMP_NUM_THREADS=$OMP_NUM_THREADS GOMP_SPINCOUNT=$GOMP_SPINCOUNT"
rm -f "$TIMES" "$RSS"
printf '\nDone. Results: %s (summary), %s/metrics.csv, %s/predict/, %s/*.loss.png\n' "$SUMMARY" "$RES" "$AUX" "$S2S"
