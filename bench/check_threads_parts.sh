#!/usr/bin/env bash
# The LSTM training steps in parts (--max-chunks 768, several parts per step) on 1 and 2 threads, and twice on 1:
# the same bytes? A small ranker (2 epochs x 64 pairs, batch 32: 1,408 chunks per step = 2 parts), its ranking
# sequences and a Seq2Seq epoch (batch 64: 2 parts, the re-run path). Needs what bash run_demo.sh builds.
set -e
W=$(cd "$(dirname "$0")/.." && pwd)
C="--corpus $W/data/demo_corpus --features $W/features/demo_corpus/lld"
D=${1:-/tmp/check_threads_parts}
for run in t1a t1b t2; do
  th=1; [ $run = t2 ] && th=2
  o=$D/$run
  (cd "$W" && python chunk_emotion_rankers/training_ranker.py $C --threads $th -ep 2 -batch 32 -emo Act --pairs-per-epoch 64 \
     --norm runs/demo/NormTerm --pairs runs/demo/preference_labels --out $o/rk --overwrite > $o.log 2>&1
   python chunk_emotion_rankers/generate_ranking_seqence.py $C --threads $th -ep 2 -batch 32 -emo Act -set Train \
     --checkpoint $o/rk --out $o/rs >> $o.log 2>&1
   python training.py $C --threads $th -ep 1 -batch 64 -emo Act --norm runs/demo/NormTerm --rankseq $o/rs --out $o/s2s --overwrite >> $o.log 2>&1)
  echo "$run threads=$th ranker $(sha256sum $o/rk/*.pth.tar | cut -c1-16) rankseq $(sha256sum $o/rs/training_Act.json | cut -c1-16) s2s $(sha256sum $o/s2s/*.pth.tar | cut -c1-16)"
done
