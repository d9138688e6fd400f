#!/usr/bin/env bash
# --max-chunks 0 reproduces the bytes of the code before issue 28 (revision 1aeb29a, extracted with
#   git archive 1aeb29a | tar -x -C /tmp/speed_base) on a small ranker (2 epochs x 64 pairs, batch 32), the ranking
#   sequences it gives and a Seq2Seq epoch (batch 64); the default --max-chunks 768 gives other bytes. Needs the demo
#   corpus, its LLDs, runs/demo/NormTerm and runs/demo/preference_labels (bash run_demo.sh). Prints one line per tree.
set -e
W=/work/wt-speed
C="--corpus $W/data/demo_corpus --features $W/features/demo_corpus/lld"
for tree in /tmp/speed_base $W; do
  for mc in 0 768; do
    [ $tree = /tmp/speed_base ] && [ $mc = 768 ] && continue
    MC=(); [ $tree = $W ] && MC=(--max-chunks $mc)
    o=/tmp/speed_legacy/$(basename $tree)_$mc
    (cd $tree && python chunk_emotion_rankers/training_ranker.py $C --threads 1 -ep 2 -batch 32 -emo Act --pairs-per-epoch 64 \
       --norm $W/runs/demo/NormTerm --pairs $W/runs/demo/preference_labels --out $o/rk --overwrite "${MC[@]}" > $o.log 2>&1)
    (cd $tree && python chunk_emotion_rankers/generate_ranking_seqence.py $C --threads 1 -ep 2 -batch 32 -emo Act -set Train \
       --checkpoint $o/rk --out $o/rs >> $o.log 2>&1)
    (cd $tree && python training.py $C --threads 1 -ep 1 -batch 64 -emo Act --norm $W/runs/demo/NormTerm --rankseq $o/rs --out $o/s2s --overwrite "${MC[@]}" >> $o.log 2>&1)
    echo "$(basename $tree) max_chunks=$mc ranker $(sha256sum $o/rk/*.pth.tar | cut -c1-16) rankseq $(sha256sum $o/rs/training_Act.json | cut -c1-16) s2s $(sha256sum $o/s2s/*.pth.tar | cut -c1-16)"
  done
done
