"""Evaluation metrics with confidence intervals (docs/protocols.md, docs/metrics.md).

    from metrics import evaluate
    r = evaluate(pred, label, speakers=spk, categories=cat)          # speakers resampled (cluster bootstrap)
    r['ccc'] -> {'value': .71, 'ci': [.64, .77], ...}; r['pearson_r'], r['auc_arousal'], r['category_means']

CCC (utils.ccc: population moments), Pearson's r and the arousal AUC come with a 95 % interval from 1000
bootstrap resamples. Resampling unit (`resample`): 'speakers' (default) draws the speakers with replacement and
keeps every utterance of a drawn speaker (cluster bootstrap: utterances of one speaker are not independent);
'utterances' draws utterances with replacement (it assumes independent utterances). A speaker drawn twice
counts twice. Both draws are vectorised: each resample is a vector of multiplicities, and the CCC/r of all
resamples come from weighted sums (moments per speaker, then one matrix product), so 1000 resamples of 10k
utterances take a few milliseconds. The seed is fixed (default 0): the same inputs give the same interval.

The interval (`_interval`, used by every printer): on the Fisher-z scale, value +- t(k-1) x bootstrap SD x
sqrt(k/(k-1)) for k resampled units. bench/bench_coverage.py measured its coverage by simulation
(bench/results/coverage.json): >= 0.90 for CCC, r, AUC and a paired difference from 2 test speakers on, where
the percentile bootstrap printed before covered 0.52 with 2 speakers and 0.88 with 10. Below MIN_SPEAKERS (one
speaker) the interval is withheld (ci [None, None]) and the record says why.

Arousal AUC: the probability that an utterance of a high-arousal category (anger, happiness, fear) gets a
higher predicted arousal than one of a low-arousal category (boredom, sadness); ties count 1/2
(Mann-Whitney). Other categories are left out. This is the definition bench/bench_released.py uses on
Emo-DB; category labels are read through `canonical_category` (MSP letters, Emo-DB letters via their
names, RAVDESS/IEMOCAP/CREMA-D names), and the interval is bootstrapped the same way.
"""
import numpy as np
import pandas as pd

from errors import ToolkitError
from utils import ccc

RESAMPLE = ('speakers', 'utterances')
N_BOOT, LEVEL, SEED = 1000, 0.95, 0
METHODS = ('z-t', 'percentile')
METHOD = 'z-t'
# fewest test speakers from which the printed 95 % speaker interval covered >= 0.90 in every simulated setting of
# bench/bench_coverage.py (CCC, r, AUC, paired difference; 2, 3, 4, 6, 10, 20, 30 speakers); below it the interval
# is withheld with that reason
MIN_SPEAKERS = 2
COVERAGE_JSON = 'bench/results/coverage.json'
BLOCK = 100          # resamples per block of the AUC bootstrap (bounds memory: BLOCK x n floats)
HIGH_AROUSAL = ('anger', 'happiness', 'fear')
LOW_AROUSAL = ('boredom', 'sadness')
# spellings seen in corpus labels -> one category name (lower case). MSP-Podcast letters: A angry, H happy,
# S sad, C contempt, U surprise, F fear, D disgust, N neutral, O other, X no agreement.
_CATEGORY = {
    'anger': ['a', 'ang', 'angry', 'anger', 'wut', 'frustrated', 'fru'],
    'happiness': ['h', 'hap', 'happy', 'happiness', 'joy', 'freude', 'exc', 'excited'],
    'fear': ['f', 'fea', 'fear', 'fearful', 'afraid', 'angst'],
    'sadness': ['s', 'sad', 'sadness', 'trauer'],
    'boredom': ['bored', 'boredom', 'langeweile'],
    'disgust': ['d', 'dis', 'disgust', 'ekel'],
    'neutral': ['n', 'neu', 'neutral'],
    'calm': ['calm'],
    'surprise': ['u', 'sur', 'surprise', 'surprised'],
    'contempt': ['c', 'contempt'],
    'other': ['o', 'oth', 'other'],
    'no agreement': ['x', 'xxx'],
}
_CANON = {s: name for name, spellings in _CATEGORY.items() for s in spellings}


def canonical_category(c):
    """'A' / 'Angry' / 'ang' -> 'anger'; unknown spellings are returned lower-cased; NaN -> None."""
    if c is None or (isinstance(c, float) and np.isnan(c)):
        return None
    s = str(c).strip().lower()
    return _CANON.get(s, s) if s else None


def pearson(x, y):
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else float('nan')


def auc(scores, positive):
    """Area under the ROC curve of `scores` for the boolean `positive` (Mann-Whitney U, ties 1/2); NaN
    when one class is empty."""
    return float(_weighted_auc(np.asarray(scores, np.float64), np.asarray(positive, bool),
                               np.ones((1, len(scores))))[0])


# ---------------------------------------------------------------- bootstrap weights
def _groups(n, speakers, resample):
    """Cluster index of every utterance: speakers (codes 0..S-1) or one cluster per utterance."""
    if resample not in RESAMPLE:
        raise ToolkitError(f'unknown bootstrap resampling {resample!r}; use {" or ".join(RESAMPLE)}')
    if resample == 'utterances':
        return np.arange(n), n
    if speakers is None:
        raise ToolkitError("speaker bootstrap needs the speaker of every utterance (the label file's SpkrID); "
                           "use --bootstrap utterances for a corpus without speaker IDs")
    spk = pd.Series(np.asarray(speakers, dtype=object))
    if spk.isna().any() or (spk.astype(str).str.strip().isin(['', 'nan', 'Unknown', 'unknown'])).any():
        raise ToolkitError(f'speaker bootstrap: {int(spk.isna().sum() or 1)} utterance(s) have no speaker ID; '
                           f'use --bootstrap utterances')
    codes, uniq = pd.factorize(spk.astype(str))
    return codes, len(uniq)


def cluster_counts(n_clusters, n_boot=N_BOOT, seed=SEED):
    """(n_boot, n_clusters) multiplicities: each row draws n_clusters clusters with replacement."""
    rng = np.random.default_rng(seed)
    idx = np.int64 if n_boot * n_clusters >= 2 ** 31 else np.int32
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters), dtype=idx)
    draws += (np.arange(n_boot, dtype=idx) * n_clusters)[:, None]          # row offsets: one bincount for all
    return np.bincount(draws.ravel(), minlength=n_boot * n_clusters).reshape(n_boot, n_clusters).astype(np.float64)


def _moments(x, y, groups, counts):
    """CCC and Pearson r of every resample (a row of cluster multiplicities `counts` (B, S)) -> two (B,)
    arrays, from the clusters' sums (count, x, y, x^2, y^2, xy) and one matrix product."""
    sums = np.stack([np.bincount(groups, v, minlength=counts.shape[1])
                     for v in (np.ones_like(x), x, y, x * x, y * y, x * y)], 1)
    n, sx, sy, sxx, syy, sxy = (counts @ sums).T
    mx, my = sx / n, sy / n
    vx = sxx / n - mx ** 2
    vy = syy / n - my ** 2
    cxy = sxy / n - mx * my
    vx, vy = np.maximum(vx, 0), np.maximum(vy, 0)
    den = vx + vy + (mx - my) ** 2
    with np.errstate(invalid='ignore', divide='ignore'):
        c = np.where(den > 0, 2 * cxy / den, 0.0)
        r = np.where((vx > 0) & (vy > 0), cxy / np.sqrt(vx * vy), np.nan)
    return c, r


def _weighted_auc(s, pos, w):
    """AUC for every row of the utterance weights w (B, n): sum over (positive, negative) pairs of
    w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) / (W_pos W_neg)."""
    order = np.argsort(s, kind='mergesort')
    s, pos, w = s[order], pos[order], w[:, order]
    wn = np.where(pos, 0.0, w)                 # negative weights in score order
    wp = np.where(pos, w, 0.0)
    cum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(wn, 1)], 1)    # cum[:, i] = neg weight before i
    start = np.searchsorted(s, s, 'left')      # first index of each score's tie group
    end = np.searchsorted(s, s, 'right')
    below = cum[:, start]                      # negatives with a strictly lower score
    tied = cum[:, end] - cum[:, start]         # negatives with the same score
    num = (wp * (below + 0.5 * tied)).sum(1)
    den = wp.sum(1) * wn.sum(1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(den > 0, num / den, np.nan)


def t_quantile(level, df):
    """Two-sided Student-t quantile: t_{df}((1 + level) / 2)."""
    from scipy.stats import t
    return float(t.ppf((1 + level) / 2, df))


def _to_z(v, scale):
    """The scale the interval is symmetric on: Fisher z (atanh) of a CCC or r, atanh(2 AUC - 1) of an AUC
    (both bounded to (-1, 1)), the raw value of a difference."""
    v = np.asarray(v, np.float64)
    if scale == 'raw':
        return v
    return np.arctanh(np.clip(2 * v - 1 if scale == 'auc' else v, -1 + 1e-9, 1 - 1e-9))


def _from_z(z, scale):
    if scale == 'raw':
        return z
    v = np.tanh(z)
    return (v + 1) / 2 if scale == 'auc' else v


def _interval(value, samples, level, method, k, scale):
    """[lo, hi] from the bootstrap statistics `samples` of k resampled clusters. 'z-t' (the default): on the
    Fisher-z scale, value +- t_{k-1} * sd(z of the resamples) * sqrt(k / (k - 1)) (the bootstrap SD of a
    mean of k clusters is sqrt((k - 1) / k) of its SE; t with k - 1 df for the few-cluster uncertainty of that
    SE), mapped back. 'percentile': the (1 -+ level) / 2 quantiles of the resamples (covers far less than
    `level` with few clusters: bench/results/coverage.json)."""
    v = samples[np.isfinite(samples)]
    if len(v) < 2 or not np.isfinite(value) or k < 2:
        return [float('nan'), float('nan')]
    if method == 'percentile':
        a = (1 - level) / 2
        return [float(np.quantile(v, a)), float(np.quantile(v, 1 - a))]
    half = t_quantile(level, k - 1) * np.std(_to_z(v, scale), ddof=1) * np.sqrt(k / (k - 1))
    z = _to_z(value, scale)
    return [float(_from_z(z - half, scale)), float(_from_z(z + half, scale))]


def _stat(value, samples, b, scale='fisher'):
    """{value, ci, se} of one statistic; ci is [None, None] (JSON null) when the interval is withheld
    (b['withheld'])."""
    ci = [None, None] if b['withheld'] else _interval(value, samples, b['level'], b['method'],
                                                             b['n_clusters'], scale)
    return {'value': float(value), 'ci': ci, 'se': float(np.nanstd(samples, ddof=1))
            if np.isfinite(samples).sum() > 1 else float('nan')}


def interval_record(resample, n_clusters, n_boot=N_BOOT, seed=SEED, level=LEVEL, method=METHOD,
                    min_clusters=None):
    """The 'bootstrap' record of every result: resampling, method and, below `min_clusters` clusters
    (default MIN_SPEAKERS for speakers, 2 for utterances), the reason the interval is withheld."""
    if method not in METHODS:
        raise ToolkitError(f'unknown interval method {method!r}; use {" or ".join(METHODS)}')
    if min_clusters is None:
        min_clusters = MIN_SPEAKERS if resample == 'speakers' else 2
    unit = 'speaker' if resample == 'speakers' else 'utterance'
    withheld = ''
    if n_clusters < min_clusters:
        withheld = f'{n_clusters} test {unit}{"s" * (n_clusters != 1)}; ' + (
            f'the interval reached 90 % coverage from {min_clusters} speakers on ({COVERAGE_JSON}); below, none is '
            f'printed' + ('' if n_clusters != 1 else ' (one speaker leaves no spread between speakers to resample; '
                          '--bootstrap utterances assumes independent utterances)')
            if resample == 'speakers' and min_clusters == MIN_SPEAKERS else f'at least {min_clusters} needed')
    return {'resample': resample, 'n_boot': n_boot, 'seed': seed, 'level': level, 'n_clusters': n_clusters,
            'method': method, 'withheld': withheld}


# ---------------------------------------------------------------- the report
def add_bootstrap_args(p):
    from cli import positive_int  # range-checked type of the command line; the metrics need no cli
    p.add_argument('--bootstrap', default='speakers', choices=RESAMPLE,
                   help='95 %% confidence intervals of CCC and Pearson r: resample speakers (cluster bootstrap, '
                        'default; utterances when the label file lacks speaker IDs) or utterances')
    p.add_argument('--bootstrap-n', type=positive_int, default=N_BOOT, help=f'bootstrap resamples (default {N_BOOT}; '
                   f'fixed seed {SEED}, so the interval is reproducible)')


def evaluate(pred, label, speakers=None, categories=None, resample='speakers', n_boot=N_BOOT, seed=SEED,
             level=LEVEL, auc_scores=None, method=METHOD, min_clusters=None):
    """Metrics of predictions against labels with bootstrap intervals -> dict:
    n, n_speakers, bootstrap {resample, n_boot, seed, level, n_clusters, method, withheld}, ccc, pearson_r (each
    {value, ci: [lo, hi] ([None, None] when withheld), se: bootstrap SD}), auc_arousal (the same, or None without categories of both groups; the
    scores are `auc_scores` if given, else `pred`), category_means {category: {n, label, pred}}.
    The same resamples serve every statistic."""
    x = np.asarray(pred, np.float64).ravel()
    y = np.asarray(label, np.float64).ravel()
    if len(x) != len(y) or len(x) == 0:
        raise ToolkitError(f'evaluate: {len(x)} predictions for {len(y)} labels')
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ToolkitError('evaluate: predictions or labels hold NaN/inf; drop those utterances first')
    groups, n_clusters = _groups(len(x), speakers, resample)
    counts = cluster_counts(n_clusters, n_boot, seed)
    cb, rb = _moments(x - y.mean(), y - y.mean(), groups, counts)     # centred: no cancellation in the sums
    b = interval_record(resample, n_clusters, n_boot, seed, level, method, min_clusters)
    out = {'n': len(x), 'n_speakers': None if speakers is None else int(pd.Series(speakers).nunique()),
           'bootstrap': b, 'ccc': _stat(ccc(x, y), cb, b), 'pearson_r': _stat(pearson(x, y), rb, b),
           'auc_arousal': None, 'category_means': {}}
    if categories is not None:
        cat = pd.Series([canonical_category(c) for c in categories], dtype=object)
        if len(cat) != len(x):
            raise ToolkitError(f'evaluate: {len(cat)} categories for {len(x)} predictions')
        s = x if auc_scores is None else np.asarray(auc_scores, np.float64).ravel()
        keep = cat.isin(HIGH_AROUSAL + LOW_AROUSAL).to_numpy()
        pos = cat.isin(HIGH_AROUSAL).to_numpy()
        if pos[keep].any() and (~pos[keep]).any():
            value = _weighted_auc(s[keep], pos[keep], np.ones((1, keep.sum())))[0]
            boot = np.concatenate([_weighted_auc(s[keep], pos[keep], counts[b:b + BLOCK][:, groups[keep]])
                                   for b in range(0, n_boot, BLOCK)])
            out['auc_arousal'] = {**_stat(value, boot, b, 'auc'),
                                  'high': list(HIGH_AROUSAL), 'low': list(LOW_AROUSAL),
                                  'n_high': int(pos[keep].sum()), 'n_low': int((~pos[keep]).sum())}
        out['category_means'] = category_means(x, y, cat)
    return out


def category_means(pred, label, categories):
    """{category: {n, label, pred}}: mean label and mean prediction per (canonical) category."""
    cat = pd.Series([canonical_category(c) for c in categories], dtype=object).fillna('(none)')
    df = pd.DataFrame({'c': cat.values, 'x': np.asarray(pred, np.float64), 'y': np.asarray(label, np.float64)})
    return {c: {'n': int(len(g)), 'label': float(g.y.mean()), 'pred': float(g.x.mean())}
            for c, g in df.groupby('c', sort=True)}


def fmt_interval(value, lo, hi, digits=3):
    """'0.712 [0.640, 0.771]'; '0.712 [CI withheld]' without an interval; '–' without a value."""
    if value is None or not np.isfinite(value):
        return '–'
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f'{value:.{digits}f} [CI withheld]'
    return f'{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]'


def fmt_ci(stat, digits=3):
    """fmt_interval of a {value, ci} dict (or '–' for None)."""
    if not stat:
        return '–'
    return fmt_interval(stat['value'], *stat['ci'], digits=digits)


def describe_bootstrap(b):
    """One line naming the interval: '95 % CI: speaker bootstrap (1000 resamples of the 10 speakers with
    replacement, seed 0), Fisher z +- t(9) x bootstrap SD x sqrt(10/9) ...', or why it is withheld."""
    lvl = round(b['level'] * 100)
    if b.get('withheld'):
        return f"{lvl} % CI withheld: {b['withheld']}"
    k = b['n_clusters']
    unit = ('speaker' if b['resample'] == 'speakers' else 'utterance') + ('s' if k != 1 else '')
    what = f"{b['n_boot']} resamples of the {k} {unit} with replacement, seed {b['seed']}"
    if b.get('method', 'percentile') == 'percentile':
        out = f'{lvl} % CI: percentile bootstrap, {what}'
    else:
        out = (f"{lvl} % CI: {'paired ' * bool(b.get('paired'))}{b['resample'][:-1]} bootstrap ({what}); "
               f"{'the difference: raw, the CCCs: ' * bool(b.get('paired'))}Fisher z +- t({k - 1}) x bootstrap SD x "
               f"sqrt({k}/{k - 1})")
    if b['resample'] == 'utterances':
        return out + ('; assumes independent utterances: where utterances of a speaker are alike it covers far '
                      f'less than {lvl} % ({COVERAGE_JSON})')
    return out + f'; measured coverage >= 0.90 from {MIN_SPEAKERS} speakers on ({COVERAGE_JSON})'


def interval_columns(r):
    """The metrics-table columns of one evaluate(...) result, as testing.py and the MSCR test write them."""
    return {'CCC': r['ccc']['value'], 'CCC_lo': r['ccc']['ci'][0], 'CCC_hi': r['ccc']['ci'][1],
            'Pearson_r': r['pearson_r']['value'], 'r_lo': r['pearson_r']['ci'][0], 'r_hi': r['pearson_r']['ci'][1],
            'bootstrap': describe_bootstrap(r['bootstrap']) + (f" ({r['bootstrap']['note']})"
                                                               if r['bootstrap'].get('note') else '')}


# ---------------------------------------------------------------- reading speakers and categories of a corpus
CATEGORY_COLS = ('Category', 'Emotion', 'EmoCategory')


def corpus_categories(corpus, names):
    """Category of each utterance in `names` (canonical names, None where unknown): a full-name column of the
    consensus table (Category, Emotion, EmoCategory) or of a Labels/*_info.csv table with FileName (e.g.
    prepare_emodb.py's emodb_info.csv, which keeps 'boredom' that the MSP letter 'O' loses), else EmoClass."""
    lab = corpus.labels.set_index('FileName')
    col = next((c for c in CATEGORY_COLS if c in lab.columns and lab[c].notna().any()), None)
    src = lab[col] if col else None
    if src is None and corpus.labels_dir is not None:
        for p in sorted(corpus.labels_dir.glob('*_info.csv')):
            info = pd.read_csv(p, dtype=str)
            c = next((c for c in CATEGORY_COLS if c in info.columns), None)
            if c and 'FileName' in info.columns:
                src = info.assign(FileName=info.FileName.where(info.FileName.str.lower().str.endswith('.wav'),
                                                               info.FileName + '.wav')).set_index('FileName')[c]
                break
    if src is None:
        src = lab['EmoClass']
    src = src[~src.index.duplicated()]
    return [canonical_category(c) for c in src.reindex(list(names)).tolist()]


def evaluate_on(corpus, names, pred, label, resample, n_boot):
    """evaluate(...) of predictions on `names` of `corpus` with its speakers (utterances resampled, with a note
    in bootstrap['note'], where a speaker ID is missing): what testing.py prints for method 1 and MSCR."""
    spk = corpus_speakers(corpus, names)
    unit, note = bootstrap_unit(resample, spk)
    r = evaluate(pred, label, spk if unit == 'speakers' else None, resample=unit, n_boot=n_boot)
    r['bootstrap']['note'] = note
    return r


def print_table(rows, extra_head='', extra_key=None):
    """The table testing.py prints: one row per attribute and split (rows as interval_columns + Attr, Split,
    Release_splits, N), then each distinct interval description."""
    print(f'{"Attr":5s} {"Split":11s} {"release":11s} {"N":>6s} {"CCC [95 % CI]":>25s} {"r [95 % CI]":>25s}  '
          f'{extra_head}')
    for r in rows:
        print(f'{r["Attr"]:5s} {r["Split"]:11s} {r["Release_splits"]:11s} {r["N"]:6d} '
              f'{fmt_interval(r["CCC"], r["CCC_lo"], r["CCC_hi"], 4):>25s} '
              f'{fmt_interval(r["Pearson_r"], r["r_lo"], r["r_hi"], 4):>25s}  {r[extra_key] if extra_key else ""}')
    for b in dict.fromkeys(r['bootstrap'] for r in rows):
        print(b)


def corpus_speakers(corpus, names):
    """Speaker ID of each utterance (None where the label file has none)."""
    return [corpus.speaker(n) for n in names]


def bootstrap_unit(resample, speakers):
    """The resampling actually used: 'speakers' needs every speaker ID, else 'utterances' (with a note)."""
    if resample == 'speakers' and any(s is None for s in speakers):
        return 'utterances', 'some utterances have no speaker ID (SpkrID): utterances resampled instead'
    return resample, ''


def markdown_tables(results, per_fold=None):
    """Markdown of {emo: evaluate(...)}: one row per attribute (N, CCC and r with intervals, per-fold CCC when
    `per_fold` {emo: [ccc, ...]} is given), the arousal AUC, and the per-category means."""
    emos = list(results)
    head = ['Attribute', 'N', 'speakers', 'CCC [95 % CI]', 'Pearson r [95 % CI]'] + (['CCC per fold'] if per_fold else [])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for e in emos:
        r = results[e]
        row = [e, r['n'], r['n_speakers'] if r['n_speakers'] is not None else '–', fmt_ci(r['ccc']),
               fmt_ci(r['pearson_r'])]
        if per_fold:
            row.append(', '.join(f'{v:.3f}' for v in per_fold.get(e, [])))
        lines.append('| ' + ' | '.join(str(c) for c in row) + ' |')
    b = results[emos[0]]['bootstrap']
    lines += ['', describe_bootstrap(b) + (f"; {b['note']}" if b.get('note') else '') + '.']
    auc_ = results.get('Act', {}).get('auc_arousal')
    if auc_:
        lines += ['', f"Arousal AUC (predicted Act, {', '.join(auc_['high'])} vs {', '.join(auc_['low'])}; "
                      f"{auc_['n_high']} vs {auc_['n_low']} utterances): {fmt_ci(auc_)}"]
    cats = sorted({c for e in emos for c in results[e].get('category_means', {})})
    if cats:
        head = ['Category', 'N'] + [f'{e} label / predicted' for e in emos]
        lines += ['', 'Mean label and mean prediction per category:', '',
                  '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for c in cats:
            cm = [results[e]['category_means'].get(c) for e in emos]
            n = next(m['n'] for m in cm if m)
            lines.append('| ' + ' | '.join([c, str(n)] + [f"{m['label']:.2f} / {m['pred']:.2f}" if m else '–'
                                                         for m in cm]) + ' |')
    return '\n'.join(lines)


# ---------------------------------------------------------------- paired comparison of two systems (compare.py)
N_PERM = 10000


def _ccc_rows(P, y):
    """CCC (population moments) of every row of predictions P (B, n) against labels y (n,)."""
    mp, my = P.mean(1), y.mean()
    vp, vy = P.var(1), y.var()
    cov = ((P - mp[:, None]) * (y - my)).mean(1)
    den = vp + vy + (mp - my) ** 2
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(den > 0, 2 * cov / den, 0.0)


def paired_difference(pred_a, pred_b, label, speakers=None, resample='speakers', n_boot=N_BOOT, n_perm=N_PERM,
                      seed=SEED, level=LEVEL, method=METHOD, min_clusters=None):
    """CCC of two systems on the same utterances and their difference A - B -> dict:
    a, b (each as in `evaluate`: {value, ci, se}, intervals from the SAME resamples), diff {value, ci, se}: the
    paired bootstrap interval (each resample draws clusters, speakers or utterances, with replacement and scores
    both systems on it; the same method as `evaluate` on the raw difference, withheld likewise), p_value: two-sided paired permutation test (each of n_perm permutations swaps the two
    systems' predictions on a random half of the clusters; p = (1 + #|d_perm| >= |d|) / (1 + n_perm)), and
    bootstrap/permutation descriptions. Swapping whole speakers keeps the pairing and the dependence within a
    speaker, as the speaker bootstrap does."""
    a, b, y = (np.asarray(v, np.float64).ravel() for v in (pred_a, pred_b, label))
    if not (len(a) == len(b) == len(y)) or len(y) < 2:
        raise ToolkitError(f'paired_difference: {len(a)} and {len(b)} predictions for {len(y)} labels')
    if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(y).all()):
        raise ToolkitError('paired_difference: predictions or labels hold NaN/inf; drop those utterances first')
    groups, n_clusters = _groups(len(y), speakers, resample)
    counts = cluster_counts(n_clusters, n_boot, seed)
    m = y.mean()
    ca, _ = _moments(a - m, y - m, groups, counts)
    cb, _ = _moments(b - m, y - m, groups, counts)
    va, vb = ccc(a, y), ccc(b, y)
    rng = np.random.default_rng([seed, 1])
    perm = []
    for s in range(0, n_perm, BLOCK):
        swap = rng.random((min(BLOCK, n_perm - s), n_clusters)) < 0.5
        sw = swap[:, groups]
        perm.append(_ccc_rows(np.where(sw, b, a), y) - _ccc_rows(np.where(sw, a, b), y))
    perm = np.concatenate(perm)
    d = va - vb
    p = (1 + int((np.abs(perm) >= abs(d) - 1e-12).sum())) / (1 + n_perm)
    bt = interval_record(resample, n_clusters, n_boot, seed, level, method, min_clusters)
    return {'n': len(y), 'a': _stat(va, ca, bt), 'b': _stat(vb, cb, bt), 'diff': _stat(d, ca - cb, bt, 'raw'),
            'p_value': float(min(p, 1.0)), 'bootstrap': {**bt, 'paired': True},
            'permutation': {'n_perm': n_perm, 'unit': resample, 'seed': seed}}
