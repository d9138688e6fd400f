"""Command-line pieces shared by every script: flag groups (one spelling per flag), opening the corpus and
feature store they name, and the wrapper that turns a `ToolkitError` into a one-line message and exit code 2."""
import argparse
import math
import signal
import sys
from pathlib import Path

import checkpoints
import identity
import interrupts
import norm
from corpus import DEFAULT_CORPUS, Corpus
from dataloader import chunk_frames
from demo_corpus import ensure_demo_corpus
from errors import ToolkitError
from feature_store import FeatureStore, StoreError
from preference import SPLIT_FILE
from utils import MAX_CHUNKS, TRAIN_THREADS, get_device, set_seed

REPO = Path(__file__).resolve().parent
SPLITS = list(SPLIT_FILE)
PREF_DIR = REPO / 'chunk_emotion_rankers' / 'preference_labels'
RANKSEQ_DIR = REPO / 'chunk_emotion_rankers' / 'EmoChunkRankSeq'
NORM_SCOPES = ('published', 'train', 'speaker', 'corpus')


def run_script(main, argv=None):
    """Call `main(argv)` -> exit code (0 unless main returned an int); a ToolkitError becomes
    `error: <message>` on stderr and exit code 2. Ctrl-C and SIGTERM stop the run through the scripts'
    clean-up paths (interrupts.py) and give exit code 130 / 143. Scripts end with `sys.exit(run_script(main))`."""
    old = interrupts.install()
    try:
        r = main(argv)
    except ToolkitError as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as e:
        code = interrupts.exit_code(e)
        print(f'interrupted ({signal.Signals(code - 128).name}); exit code {code}', file=sys.stderr)
        raise SystemExit(code) from None
    finally:
        interrupts.restore(old)
    return r if isinstance(r, int) and not isinstance(r, bool) else 0


# ================================================================ typed numbers (every numeric flag is range-checked)
def _number(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An argparse `type` that parses an int (kind=int) or a finite float and checks its range; a bad value is
    a usage error naming the flag (argparse: exit code 2), never a silent clamp or a traceback later."""
    rng = ([f'> {lo:g}' if lo_open else f'>= {lo:g}'] if lo is not None else []) + \
          ([f'< {hi:g}' if hi_open else f'<= {hi:g}'] if hi is not None else [])
    what = ('a whole number' if kind is int else 'a finite number') + (f' {" and ".join(rng)}' if rng else '')

    def parse(text):
        try:
            v = kind(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {what}, got {text!r}') from None
        if not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or \
                (hi is not None and (v >= hi if hi_open else v > hi)):
            raise argparse.ArgumentTypeError(f'expected {what}, got {text!r}')
        return v
    parse.__name__ = f'{kind.__name__} {" ".join(rng)}'.strip()
    return parse


positive_int = _number(int, 1)                          # epochs, batch, iterations, counts
nonneg_int = _number(int, 0)                            # workers, list lengths
seed_int = _number(int, 0, 2 ** 31 - 1)                 # numpy takes < 2**32; headroom for seed + rank
positive_float = _number(float, 0, lo_open=True)        # learning rates, seconds, hops
nonneg_float = _number(float, 0)
finite_float = _number(float)
fraction = _number(float, 0, 1)                         # [0, 1]
open_fraction = _number(float, 0, 1, lo_open=True)      # (0, 1]
dropout_float = _number(float, 0, 1, hi_open=True)      # [0, 1)


def file_stem(text):
    """An argparse `type` for a file-name stem (--name): no folder part, so the files stay in their folder."""
    t = str(text).strip()
    if not t or t in ('.', '..') or '/' in t or '\\' in t or '\0' in t:
        raise argparse.ArgumentTypeError(f'expected a file name without a folder (no / or ..), got {text!r}; the '
                                         f'folder is set by --out/--report')
    return t


def available_memory():
    """Bytes of memory available now (MemAvailable of /proc/meminfo; physical memory where that is unknown)."""
    try:
        for line in open('/proc/meminfo'):
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def check_bootstrap(n_boot, n_items, flag='--bootstrap-n'):
    """Stop before any work when `n_boot` resamples of up to `n_items` utterances cannot fit in memory (the
    bootstrap holds about 24 bytes per resample and utterance at once, metrics.cluster_counts)."""
    need, have = 24 * int(n_boot) * max(int(n_items), 1), available_memory()
    if need > have // 2:
        most = max(1, (have // 2) // (24 * max(int(n_items), 1)))
        raise ToolkitError(f'{flag} {n_boot}: {n_boot} bootstrap resamples of up to {n_items} utterances need about '
                           f'{need / 2 ** 30:.1f} GiB, {have / 2 ** 30:.1f} GiB is available; use at most {flag} '
                           f'{min(most, n_boot - 1)} (the default 1000 is the usual choice)')


def parser(doc):
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_sets(s, corpus=None):
    """'-set Train|Validation|Test|all' or release split names (Test1, Test2, Development, ...; case-insensitive,
    comma lists) -> list of split names. 'all' is Train, Validation and Test; Test is the published test set
    (Test1 where the release has it). With `corpus`, a release name is checked against its Split_Set values and
    becomes the user split it is the whole of (Development -> Validation, Test1 -> Test), else its release spelling."""
    if s.strip().lower() == 'all':
        return list(SPLITS)
    out = []
    for x in (x.strip() for x in s.split(',')):
        m = [k for k in SPLITS if k.lower() == x.lower()]
        if m:
            out.append(m[0])
        elif corpus is None:
            if not x:
                raise ToolkitError(f"empty split name in '{s}'; use Train, Validation, Test, all or a release name")
            out.append(x)
        else:
            out.append(corpus_split(corpus, x))
    return out


def corpus_split(corpus, name):
    """A release split name of `corpus` as parse_sets returns it (see there); unknown names are an error."""
    found = corpus.splits_found()
    rel = {str(n).lower(): str(n) for v in found.values() for n in v}
    rel.update({n.lower(): n for n in corpus.unmapped_splits()})
    n = rel.get(name.strip().lower())
    if n is None:
        raise ToolkitError(f"unknown split '{name}' for {corpus.consensus_path}; use Train, Validation, Test (the "
                           f"published test set), all, or a release name: {sorted(rel.values())}")
    whole = [u for u, v in found.items() if v == [n]]
    return whole[0] if whole else n


def split_file(split):
    """File-name stem of a split's outputs: training / validation / testing, or the release name (Test2)."""
    return SPLIT_FILE.get(split, split)


# ================================================================ common flags (data, device, normalisation)
def add_run_args(p, epochs, batch, what='training epochs', batch_help='utterances per step', emo_required=True,
                 emo_default=None):
    """-ep / -batch (alias --batch) / -emo, the published spellings; emo_default makes -emo optional."""
    p.add_argument('-ep', '--epochs', type=positive_int, default=epochs, help=f'{what} (published: {epochs})')
    p.add_argument('-batch', '--batch', '--batch_size', dest='batch_size', type=positive_int, default=batch,
                   help=f'{batch_help} (published: {batch})')
    if emo_default:
        p.add_argument('-emo', '--emo_attr', default=emo_default,
                       help=f'Act, Dom, Val, a comma list or all (default {emo_default})')
    else:
        p.add_argument('-emo', '--emo_attr', required=emo_required, default=None, help='Act, Dom, Val or all')


def add_data_args(p, amp='fp16'):
    """amp: the --amp default (training: fp16; evaluation scripts: off, so a GPU test gives the CPU's numbers)."""
    p.add_argument('--corpus', default=None, help='corpus root in MSP-Podcast layout (default: the demo corpus '
                   'data/demo_corpus, built on first use)')
    p.add_argument('--features', default=None, help='LLD feature store folder (default features/<corpus name>/lld; '
                   'build it with extract_features.py)')
    add_fold_arg(p)
    p.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: CUDA when available)')
    p.add_argument('--amp', default=amp, choices=['fp16', 'bf16', 'off'],
                   help='mixed precision: fp16 on CUDA only (ignored on CPU), with a gradient scaler; bf16 on '
                   'CUDA and CPU (the LSTMs stay float32); off = float32 (default %(default)s)')
    p.add_argument('--seed', type=seed_int, default=0, help='random seed (sampling, init, dropout)')
    p.add_argument('--workers', type=nonneg_int, default=2, help='DataLoader worker processes (0 = load in the main process)')
    p.add_argument('--threads', type=nonneg_int, default=TRAIN_THREADS, help='CPU threads for the model (default '
                   f'{TRAIN_THREADS}: the same weights and outputs whatever the core count or load; 0 = all cores, '
                   'faster on an idle many-core machine, but results then depend on the core count)')
    p.add_argument('--limit', type=positive_int, default=None, help='quick runs: use at most N utterances (or pairs) per split')


def add_max_chunks_arg(p):
    """--max-chunks of the LSTM training scripts (ranker, Seq2Seq)."""
    p.add_argument('--max-chunks', type=nonneg_int, default=MAX_CHUNKS,
                   help='at most this many chunks go through the LSTM at once (default %(default)s, about 1.5 MB of '
                        'memory each in training); a larger batch is run in parts and its gradients accumulated: the '
                        'same loss on the same batch, memory that does not grow with -batch. The dropout masks are '
                        'drawn per part, so the weights depend on this value (it is recorded with the model). 0 = the '
                        'whole batch in one pass, as before this option existed (the bytes of the shipped demo '
                        'artefacts; about 8 GB for a ranker batch of 128 pairs)')


def add_patience_arg(p, what):
    """--patience of the LSTM training scripts: an early stop on the validation score."""
    p.add_argument('--patience', type=nonneg_int, default=0,
                   help=f'stop when the validation {what} has not improved for this many epochs (the best epoch is kept '
                        'either way, so the saved model is the one a run to the last epoch would keep whenever no later '
                        'epoch beats it); 0 = run every epoch, as published (default)')


def patience_over(args, ep, best_ep, emo, what, is_main):
    """True when --patience ends training after epoch `ep` (not after the last epoch, which ends it anyway); the main
    process says so."""
    over = bool(args.patience) and ep - best_ep >= args.patience and ep < args.epochs - 1
    if over and is_main:
        print(f'{emo}: early stop after epoch {ep}: no better validation {what} for {args.patience} epochs (--patience)')
    return over


def add_layer_sum_arg(p):
    p.add_argument('--layer-sum', action='store_true', help='SSL stores of several layers: reduce each frame to a '
                   'learnt softmax-weighted sum of the layers (saved with the model, plotted as <name>.layers.png)')


def add_fold_arg(p):
    p.add_argument('--fold', default=None, metavar='K',
                   help='take the Train/Validation/Test split from fold K (1..K or fold3) of the corpus\'s '
                        'Labels/folds.csv (written by prepare_corpus.py) instead of its Split_Set column; '
                        'the model record names the fold')


def add_norm_args(p, train=True, labels=True):
    p.add_argument('--norm', default=None, metavar='DIR',
                   help='NormTerm folder ({feat,act,dom,val}_norm_{means,stds}.mat, e.g. from norm_para.py): its '
                        "statistics replace the computed (training) or stored (testing) ones; the authors' release "
                        "NormTerm is recognised and counts as 'published'")
    p.add_argument('--feature-norm', default=None, choices=NORM_SCOPES,
                   help="feature z-normalisation: 'published' (the authors' release NormTerm), 'train' (statistics "
                        "of the training corpus's Train split), 'speaker' (per-speaker statistics of the data "
                        "processed), 'corpus' (statistics of the data processed). Default: "
                        + ("'published' with --init-from the release or a release --norm, else 'train'" if train
                           else 'what the model was trained with'))
    if train and labels:
        p.add_argument('--label-norm', default=None, choices=['published', 'train'],
                       help="label z-normalisation: 'published' (the release NormTerm) or 'train' (consensus "
                            "labels of the Train split, or the --norm folder); default as --feature-norm")


def add_model_args(p, what='model', pretrained=True):
    """--checkpoint / --pretrained of the scripts that evaluate a model."""
    p.add_argument('--checkpoint', default=None, help=f"your own {what}: a file, a folder, or a path with '{{emo}}' "
                   f"(default: the repository's trained_* folder, the demo models unless you trained into it)")
    if pretrained:
        p.add_argument('--pretrained', default=None, metavar='DIR',
                       help="the root of a clone of the authors' repository (its v1.6 models and NormTerm, "
                            "checked by SHA-256)")
    add_unfinished_arg(p)
    add_seen_speakers_arg(p)


def add_seen_speakers_arg(p):
    p.add_argument('--allow-seen-speakers', action='store_true',
                   help='score even when the model or its normalisation statistics saw a tested speaker (refused '
                        'without this flag); every output row then names those speakers')


def add_unfinished_arg(p):
    p.add_argument('--allow-unfinished', action='store_true',
                   help='use a model whose training run did not finish (its record says finished: false; refused '
                        'without this flag); every output row then says UNFINISHED')


def ranker_eval_parser(doc, per_pass):
    """The parser of a script that runs a trained ranker (testing_ranker.py, generate_ranking_seqence.py):
    -ep/-batch name the checkpoint, then the data, normalisation and model flags."""
    p = parser(doc)
    add_run_args(p, 20, 128, 'epochs in the ranker checkpoint name', f'batch in the checkpoint name; also {per_pass} '
                 f'per forward pass')
    add_data_args(p, amp='off')
    add_norm_args(p, train=False)
    add_model_args(p, 'ranker')
    return p


# ================================================================ opening what the flags name
def open_eval_inputs(args):
    """Seed, then (device, corpus, LLD store, frames per one-second chunk) of a script that runs a model."""
    set_seed(args.seed, args.threads)
    device = get_device(args.device)
    corpus = open_corpus(args.corpus, args.fold)
    store = open_store(args.features, corpus)
    return device, corpus, store, chunk_frames(store.hop)


def open_corpus(root, fold=None):
    """The corpus at `root` (the demo corpus when None), its splits from folds.csv fold `fold` when given (checked
    by check_fold)."""
    c = Corpus(ensure_demo_corpus(root or DEFAULT_CORPUS), fold=fold)
    if c.fold:
        check_fold(c)
        print(f'{c.name}: splits of {c.fold} ({c.folds_path}): ' +
              ', '.join(f'{s} {len(c.files(s))}' for s in SPLITS))
    return c


def check_fold(c):
    """The fatal fold checks of check_corpus.py on a corpus opened with a fold, on the speakers of its labels file
    (a speaker column of folds.csv is not trusted): a speaker in two parts stops with the fold and the speakers
    named."""
    where = {}
    for part in SPLITS:
        for n in c.files(part):
            s = c.speaker(n)
            if s is not None:
                where.setdefault(s, set()).add(part)
    shared = {s: sorted(p, key=SPLITS.index) for s, p in where.items() if len(p) > 1}
    if shared:
        ex = '; '.join(f'speaker {s} in {" and ".join(p)}' for s, p in sorted(shared.items())[:5])
        raise ToolkitError(f'{c.folds_path}: {c.fold} is not speaker-disjoint by the speakers of {c.consensus_path} '
                           f'({ex}{" ..." if len(shared) > 5 else ""}); rebuild the folds (prepare_corpus.py) or '
                           f'check them with check_corpus.py')


def open_store(path, corpus, frame_level=True):
    """The corpus's FeatureStore, or a clear message with the extract_features.py command to run."""
    path = Path(path) if path else identity.default_store(corpus)
    cmd = f'python extract_features.py --corpus {corpus.root} --feature lld --out {path}'
    if not (path / 'meta.json').exists():
        raise StoreError(f'no feature store at {path}; extract the LLDs first:\n  {cmd}')
    try:
        store = FeatureStore(path)
    except StoreError as e:
        raise StoreError(f'{e}\n  {cmd}') from None
    identity.check_store(store, corpus)       # extracted from the audio this corpus holds (identity.py)
    if frame_level and store.hop is None:
        raise StoreError(f'{path} holds {store.meta.get("feature")} features without a frame hop; method 1 needs '
                         f'frame-level LLDs:\n  {cmd}')
    return store


def open_model(args, kind, emo, corpus, store, device):
    """(model, Checkpoint, FeatNorm): the verified model that --pretrained/--checkpoint (or the default folder)
    name, checked against -emo and the features, and the feature normalisation to evaluate it with."""
    ck = checkpoints.resolve(kind, emo, args.pretrained, args.checkpoint, args.norm, args.epochs, args.batch_size)
    ck.check(kind, emo, store.meta.get('preset'), store.hop, store.dim)
    ck.require_finished(getattr(args, 'allow_unfinished', False))
    identity.check_features_settings(ck, store)
    ck.check_store(store)
    fnorm = norm.eval_norm(ck, args.feature_norm, store, corpus, args.norm)
    return checkpoints.load_model(ck, device), ck, fnorm


def parse_model_args(p, argv=None):
    """Parse the command line of training.py / testing.py (whose parsers carry the "MSCR" group); a flag that
    does not apply to the chosen --model is an error."""
    args = p.parse_args(argv)
    check_model_flags(p, args)
    return args


# ================================================================ MSCR flags (training.py / testing.py --model mscr)
# flags of training.py / testing.py that have no meaning for --model mscr: dest -> spelling in the error message
NOT_FOR_MSCR = {'epochs': '-ep', 'emo_attr': '-emo', 'features': '--features (use --audio-store)',
                'norm': '--norm (MSCR computes its statistics from the Train split, see --mscr-norm)',
                'feature_norm': '--feature-norm (use --mscr-norm)', 'label_norm': '--label-norm',
                'rankseq': '--rankseq', 'init_from': '--init-from', 'freeze': '--freeze', 'pretrained': '--pretrained',
                'layer_sum': '--layer-sum'}
NOT_FOR_MSCR_TRAINING = {'out': '--out (use --save-dir)'}


def add_mscr_args(parser, train=True):
    """Add the "MSCR" argument group (used with --model mscr) to a training.py (train=True) or testing.py
    parser. Batch, learning rate, resume, checkpoint, corpus, device, seed, workers, limit, -set and (testing)
    --out are the host parser's own flags. Returns the dests of the added flags."""
    # imported here: the scripts with an MSCR group import mscr anyway; the others need not load it
    from mscr import MSCR_CHUNKINGS, MSCR_MISSING_MODES, MSCR_NORM_LEVELS
    g = parser.add_argument_group('MSCR (--model mscr; docs/mscr.md)')
    acts = [
        g.add_argument('--audio-feature', default='wav2vec2', help='audio store name under features/<corpus>/ '
                       '(wav2vec2 as published, or lld)'),
        g.add_argument('--audio-store', default=None, help='audio frame store folder (default '
                       'features/<corpus>/<--audio-feature>)'),
        g.add_argument('--text-store', default=None, help='text token store folder (default features/<corpus>/text)'),
        g.add_argument('--chunking', default='dynamic', choices=MSCR_CHUNKINGS,
                       help='dynamic: one-second windows, one per aligned word (as published); words: each word\'s '
                            'own frames from the TextGrid start/end times (the fragile baseline of the paper)'),
        g.add_argument('--scales', default='0.2,0.4,0.6,0.8,1.0', help='multi-scale crop fractions of a chunk, '
                       'comma separated; 1.0 alone turns the regulariser off (part of the checkpoint name)'),
        g.add_argument('--iters', type=positive_int, default=5000, help='training iterations (part of the checkpoint name)'),
        g.add_argument('--save-dir', default='trained_mscr_model', help='folder of the MSCR checkpoints'),
        g.add_argument('--name', default=None, help='checkpoint stem (default MSCR_iter{iters}_batch{batch}_'
                       '{audio feature}_scales{scales}[_words])'),
    ]
    if train:
        acts += [
            g.add_argument('--val-every', type=positive_int, default=100, help='validate and keep the best model every N '
                           'iterations (the last model is kept too, as <name>.last.pth.tar)'),
            g.add_argument('--mscr-norm', default='utterance', choices=MSCR_NORM_LEVELS,
                           help='feature statistics of the Train split: utterance = mean/std of the utterance '
                                'means (as published), frame = over all frames and tokens'),
            g.add_argument('--hidden', type=positive_int, default=256, help='model width d'),
            g.add_argument('--heads', type=positive_int, default=4, help='attention heads'),
            g.add_argument('--ff', type=positive_int, default=None, help='feed-forward width (default 2 x --hidden)'),
            g.add_argument('--self-layers', type=positive_int, default=3, help='self-attention layers per modality'),
            g.add_argument('--co-layers', type=positive_int, default=2, help='co-attention layers per direction'),
            g.add_argument('--dropout', type=dropout_float, default=0.3, help='transformer dropout'),
            g.add_argument('--max-seq-len', type=_number(int, 2), default=128, help='positions per sequence incl. the global '
                           'token; longer ones are capped with a warning'),
        ]
    else:
        acts += [
            g.add_argument('--missing-audio', type=fraction, default=0.0, help='missing audio fraction p'),
            g.add_argument('--missing-text', type=fraction, default=0.0, help='missing text fraction q'),
            g.add_argument('--missing-mode', default='frames', help=f'{"|".join(MSCR_MISSING_MODES)} (a comma '
                           f'list with --sweep)'),
            g.add_argument('--sweep', action='store_true', help='CCC vs missing fraction for audio, text and both '
                           'missing: a CSV and a PNG per mode in --out'),
            g.add_argument('--sweep-fracs', default='0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1',
                           help='fractions evaluated by --sweep'),
        ]
    return [a.dest for a in acts]


def mscr_dests(train):
    """The dests `add_mscr_args` adds (for the flag check)."""
    return add_mscr_args(argparse.ArgumentParser(add_help=False), train)


def check_model_flags(parser, args):
    """A flag that does not apply to the chosen --model is an error, not silently ignored: MSCR flags with
    --model seq2seq, and the Seq2Seq-only flags with --model mscr. A flag counts as given when its value
    differs from its default."""
    train = hasattr(args, 'resume')
    given = lambda d: hasattr(args, d) and getattr(args, d) != parser.get_default(d)   # noqa: E731
    if getattr(args, 'model', 'seq2seq') == 'mscr':
        bad = {**NOT_FOR_MSCR, **(NOT_FOR_MSCR_TRAINING if train else {})}
        wrong = [flag for d, flag in bad.items() if given(d)]
        if wrong:
            raise ToolkitError(f'{", ".join(wrong)}: not used by --model mscr; leave it out')
        if train and args.hidden % args.heads:
            raise ToolkitError(f'--hidden {args.hidden} is not divisible by --heads {args.heads}: each attention head '
                               f'takes an equal share of the width; pick e.g. --heads {math.gcd(args.hidden, 4)}')
        return
    wrong = ['--' + d.replace('_', '-') for d in mscr_dests(train) if given(d)]
    if wrong:
        raise ToolkitError(f'{", ".join(wrong)}: MSCR flag(s), used only with --model mscr')
