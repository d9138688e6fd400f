"""Paired comparison of two systems on the same utterances: per attribute (and split) the CCC of each with its
interval, the difference A - B with a paired speaker-bootstrap interval and a two-sided paired permutation p-value
(metrics.paired_difference; docs/ssl.md, "Comparing two systems"). The intervals are withheld, with the reason,
below metrics.MIN_SPEAKERS speakers (their measured coverage: bench/results/coverage.json).

    python compare.py runs/testing_seq2seq runs/testing_ssl --corpus ROOT
    python compare.py A/Act_Test_predictions.csv B/Act_Test_predictions.csv --bootstrap utterances

A and B: prediction CSVs (FileName, Label, Pred; testing.py writes <Emo>_<Split>_predictions.csv) or folders
searched recursively for them; files of one name in several sub-folders (e.g. the folds of a cross-validation)
are pooled. Tables are compared by file name (Act_Test, ...); the two sides must hold exactly the same utterances
with the same labels, else the comparison is refused with the difference. Speakers for the speaker bootstrap come
from --corpus (its label file), or a Speaker/SpkrID column of the CSVs. Output: the printed table and
--out (default runs/compare/compare.csv) naming both inputs.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import cli
import metrics as M
from checkpoints import display_path
from errors import ToolkitError
from utils import atomic_write_text

SPEAKER_COLS = ('Speaker', 'SpkrID')


def get_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument('a', help='system A: a prediction CSV or a folder of them')
    p.add_argument('b', help='system B: a prediction CSV or a folder of them')
    p.add_argument('--corpus', default=None, help='corpus root: speaker IDs for the speaker bootstrap')
    M.add_bootstrap_args(p)
    p.add_argument('--permutations', type=cli.positive_int, default=M.N_PERM,
                   help=f'paired permutations for the p-value (default {M.N_PERM})')
    p.add_argument('--out', default=str(cli.REPO / 'runs' / 'compare' / 'compare.csv'), help='table CSV')
    return p.parse_args(argv)


def read_side(path):
    """{table name (e.g. 'Act_Test'): DataFrame FileName, Label, Pred[, Speaker]} of a file or a folder."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob('*_predictions.csv')) if path.is_dir() else []
    if not files:
        raise ToolkitError(f'{path}: no prediction CSV (a file, or a folder holding <Emo>_<Split>_predictions.csv)')
    out = {}
    for f in files:
        df = pd.read_csv(f, dtype={c: str for c in SPEAKER_COLS})
        if not {'FileName', 'Label', 'Pred'} <= set(df.columns):
            raise ToolkitError(f'{f}: needs columns FileName, Label, Pred (found {list(df.columns)[:6]})')
        key = f.name.removesuffix('.csv').removesuffix('_predictions') if path.is_dir() else 'predictions'
        out.setdefault(key, []).append(df.assign(_file=str(f)))
    tables = {}
    for key, parts in out.items():
        df = pd.concat(parts, ignore_index=True)
        dup = df.FileName[df.FileName.duplicated()]
        if len(dup):
            raise ToolkitError(f'{path}: {dup.iloc[0]} appears {int((df.FileName == dup.iloc[0]).sum())} times in the '
                               f'{key} predictions ({", ".join(sorted(set(df._file)))[:300]}); one prediction per '
                               f'utterance is needed')
        tables[key] = df.set_index('FileName')
    return tables


def pair_tables(A, B, a, b):
    """[(name, A table, B table)] matched by name; a single file on each side is one pair."""
    if len(A) == 1 and len(B) == 1:
        return [(next(iter(A)) if next(iter(A)) == next(iter(B)) else next(iter(A)), *A.values(), *B.values())]
    common = sorted(set(A) & set(B))
    if not common:
        raise ToolkitError(f'{a} holds {sorted(A)}, {b} holds {sorted(B)}: no prediction table in common')
    for k in sorted(set(A) ^ set(B)):
        print(f'note: {k} only in {a if k in A else b}; left out', file=sys.stderr)
    return [(k, A[k], B[k]) for k in common]


def check_same(name, ta, tb, a, b):
    """Stop unless both tables hold the same utterances with the same labels."""
    only_a, only_b = ta.index.difference(tb.index), tb.index.difference(ta.index)
    if len(only_a) or len(only_b):
        raise ToolkitError(f'{name}: the utterance sets differ ({len(only_a)} only in {a}, e.g. '
                           f'{list(only_a[:2])}; {len(only_b)} only in {b}, e.g. {list(only_b[:2])}); a paired '
                           f'comparison needs the same utterances: test both systems on the same split and fold')
    la, lb = ta.Label.to_numpy(float), tb.loc[ta.index].Label.to_numpy(float)
    if not np.allclose(la, lb, atol=1e-6, equal_nan=True):
        k = int(np.argmax(~np.isclose(la, lb, atol=1e-6)))
        raise ToolkitError(f'{name}: the labels differ ({ta.index[k]}: {la[k]} in {a}, {lb[k]} in {b}); were the '
                           f'two systems tested on the same label file?')


def speakers_of(ta, corpus, resample):
    if resample == 'utterances':
        return None
    if corpus is not None:
        return M.corpus_speakers(corpus, list(ta.index))
    col = next((c for c in SPEAKER_COLS if c in ta.columns), None)
    return ta[col].where(ta[col].notna(), None).tolist() if col else [None] * len(ta)


def compare(args):
    corpus = cli.open_corpus(args.corpus) if args.corpus else None
    A, B = read_side(args.a), read_side(args.b)
    rows = []
    for name, ta, tb in pair_tables(A, B, args.a, args.b):
        check_same(name, ta, tb, args.a, args.b)
        tb = tb.loc[ta.index]
        spk = speakers_of(ta, corpus, args.bootstrap)
        unit, note = (args.bootstrap, '') if spk is None else M.bootstrap_unit(args.bootstrap, spk)
        if spk is None and args.bootstrap == 'speakers':
            unit, note = 'utterances', 'no speaker IDs (pass --corpus): utterances resampled instead'
        r = M.paired_difference(ta.Pred, tb.Pred, ta.Label, spk if unit == 'speakers' else None, unit,
                                args.bootstrap_n, args.permutations)
        rows.append({'Table': name, 'N': r['n'], 'CCC_A': r['a']['value'], 'A_lo': r['a']['ci'][0],
                     'A_hi': r['a']['ci'][1], 'CCC_B': r['b']['value'], 'B_lo': r['b']['ci'][0],
                     'B_hi': r['b']['ci'][1], 'Diff_A_minus_B': r['diff']['value'], 'Diff_lo': r['diff']['ci'][0],
                     'Diff_hi': r['diff']['ci'][1], 'p_value': r['p_value'],
                     'interval': M.describe_bootstrap(r['bootstrap']) + (f' ({note})' if note else ''),
                     'test': f'two-sided paired permutation, {args.permutations} swaps of whole {unit}',
                     'A': display_path(args.a), 'B': display_path(args.b)})
    df = pd.DataFrame(rows)
    atomic_write_text(args.out, df.to_csv(index=False))
    show = df[['Table', 'N', 'CCC_A', 'CCC_B', 'Diff_A_minus_B', 'Diff_lo', 'Diff_hi', 'p_value']]
    print(f'A = {display_path(args.a)}\nB = {display_path(args.b)}')
    print(show.to_string(index=False, float_format='%.4f'))
    print(f'{rows[0]["interval"]}; p: {rows[0]["test"]}\ntable: {args.out}')
    return df


def main(argv=None):
    return compare(get_args(argv))


if __name__ == '__main__':
    sys.exit(cli.run_script(main))
