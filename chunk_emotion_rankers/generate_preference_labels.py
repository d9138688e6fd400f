"""Preference labels for the chunk emotion rankers with the QA approach (docs/method1.md, "Preference labels").

    python chunk_emotion_rankers/generate_preference_labels.py -emo Act -set Train
    python chunk_emotion_rankers/generate_preference_labels.py                  # -emo all -set all

For each utterance i of a split, 10 % of the split's other utterances are drawn without replacement as
partners j (seeded). Every annotator rating of i is compared with every rating of j; if the largest of
p_greater, p_lower, p_equal is >= 0.6, greater gives label 1, lower label 0, equal no pair.
Output: preference_labels/<training|validation|testing>_<Emo>.csv with Sentence1,Sentence2,PreferLabel.
The vectorised computation is preference.py; its speed against the published loop: bench/bench_preference.py.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from cli import PREF_DIR, SPLIT_FILE, add_fold_arg, open_corpus, parse_sets, run_script  # noqa: E402
from corpus import CorpusError  # noqa: E402
from dataloader import limit_names  # noqa: E402
from errors import ToolkitError  # noqa: E402
from preference import pad_ratings, preference_pairs, write_pairs  # noqa: E402
from utils import ensure_dir, parse_emos  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-emo', '--emo_attr', default='all', help='Act, Dom, Val or all')
    p.add_argument('-set', '--split_set', default='all', help='Train, Validation, Test or all (those present)')
    p.add_argument('--corpus', default=None, help='corpus root (default: the demo corpus data/demo_corpus)')
    add_fold_arg(p)
    p.add_argument('--out', default=str(PREF_DIR), help='output folder (default chunk_emotion_rankers/preference_labels)')
    p.add_argument('--ratio', type=float, default=0.1, help='fraction of the split drawn as partners per utterance')
    p.add_argument('--threshold', type=float, default=0.6, help='minimum fraction of the winning comparison')
    p.add_argument('--seed', type=int, default=31, help='random seed of the partner draw')
    p.add_argument('--method', default='auto', choices=['auto', 'table', 'hist', 'broadcast'],
                   help='comparison kernel (all give the same pairs): auto = a label table of the distinct rating '
                        'histograms when there are few, else histograms for <= 32 distinct rating values, else '
                        'broadcasting')
    p.add_argument('--limit', type=int, default=None, help='quick runs: at most N utterances per split')
    args = p.parse_args(argv)
    ensure_dir(args.out)
    corpus = open_corpus(args.corpus, args.fold)
    written, empty = [], []
    for emo in parse_emos(args.emo_attr):
        for split in parse_sets(args.split_set):
            try:
                lists = corpus.rating_lists(emo, split)
                names = [n for n in corpus.files(split) if n in lists]
            except CorpusError as e:
                raise ToolkitError(str(e)) from None
            missing = len(corpus.files(split)) - len(names)
            names = limit_names(names, args.limit, args.seed)
            if len(names) < 2:
                empty.append(f'{split}/{emo} ({len(names)} rated utterances)')
                continue
            t0 = time.time()
            i, j, lab = preference_pairs(pad_ratings([lists[n] for n in names]), args.ratio, args.threshold,
                                         args.seed, args.method)
            out = Path(args.out) / f'{SPLIT_FILE[split]}_{emo}.csv'
            write_pairs(out, names, i, j, lab)
            note = f'; {missing} without ratings skipped' if missing else ''
            print(f'{emo} {split}: {len(names)} utterances{note} -> {len(lab)} pairs '
                  f'({int(lab.sum())} label 1) in {time.time() - t0:.1f} s: {out}')
            written.append(out)
    if empty:
        print('no pairs for: ' + ', '.join(empty))
    if not written:
        raise ToolkitError(f'no preference labels written: no split of {corpus.root} has two rated utterances')
    return written


if __name__ == '__main__':
    sys.exit(run_script(main))
