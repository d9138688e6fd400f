"""Command-line pieces shared by every script: flag groups (one spelling per flag) and the wrapper that
turns a `ToolkitError` into a one-line message and exit code 2."""
import sys

from errors import ToolkitError


def run_script(main, argv=None):
    """Call `main(argv)`; a ToolkitError becomes `error: <message>` on stderr and exit code 2."""
    try:
        return main(argv)
    except ToolkitError as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(2) from None


# ================================================================ common flags (data, device, normalisation)


# ================================================================ MSCR flags (training.py / testing.py --model mscr)
MSCR_NORM_LEVELS = ('utterance', 'frame')
MSCR_CHUNKINGS = ('dynamic', 'words')
MSCR_MISSING_MODES = ('frames', 'chunks', 'tokens', 'modality')
# flags of training.py / testing.py that have no meaning for --model mscr: dest -> spelling in the error message
NOT_FOR_MSCR = {'epochs': '-ep', 'emo_attr': '-emo', 'features': '--features (use --audio-store)',
                'norm': '--norm (MSCR computes its statistics from the Train split, see --mscr-norm)',
                'feature_norm': '--feature-norm (use --mscr-norm)', 'label_norm': '--label-norm',
                'rankseq': '--rankseq', 'init_from': '--init-from', 'freeze': '--freeze', 'pretrained': '--pretrained'}
NOT_FOR_MSCR_TRAINING = {'out': '--out (use --save-dir)'}


def add_mscr_args(parser, train=True):
    """Add the "MSCR" argument group (used with --model mscr) to a training.py (train=True) or testing.py
    parser. Batch, learning rate, resume, checkpoint, corpus, device, seed, workers, limit, -set and (testing)
    --out are the host parser's own flags. Returns the dests of the added flags."""
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
        g.add_argument('--iters', type=int, default=5000, help='training iterations (part of the checkpoint name)'),
        g.add_argument('--save-dir', default='trained_mscr_model', help='folder of the MSCR checkpoints'),
        g.add_argument('--name', default=None, help='checkpoint stem (default MSCR_iter{iters}_batch{batch}_'
                       '{audio feature}_scales{scales}[_words])'),
    ]
    if train:
        acts += [
            g.add_argument('--val-every', type=int, default=100, help='validate and keep the best model every N '
                           'iterations (the last model is kept too, as <name>.last.pth.tar)'),
            g.add_argument('--mscr-norm', default='utterance', choices=MSCR_NORM_LEVELS,
                           help='feature statistics of the Train split: utterance = mean/std of the utterance '
                                'means (as published), frame = over all frames and tokens'),
            g.add_argument('--hidden', type=int, default=256, help='model width d'),
            g.add_argument('--heads', type=int, default=4, help='attention heads'),
            g.add_argument('--ff', type=int, default=None, help='feed-forward width (default 2 x --hidden)'),
            g.add_argument('--self-layers', type=int, default=3, help='self-attention layers per modality'),
            g.add_argument('--co-layers', type=int, default=2, help='co-attention layers per direction'),
            g.add_argument('--dropout', type=float, default=0.3, help='transformer dropout'),
            g.add_argument('--max-seq-len', type=int, default=128, help='positions per sequence incl. the global '
                           'token; longer ones are capped with a warning'),
        ]
    else:
        acts += [
            g.add_argument('--missing-audio', type=float, default=0.0, help='missing audio fraction p'),
            g.add_argument('--missing-text', type=float, default=0.0, help='missing text fraction q'),
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
    import argparse
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
        return
    wrong = ['--' + d.replace('_', '-') for d in mscr_dests(train) if given(d)]
    if wrong:
        raise ToolkitError(f'{", ".join(wrong)}: MSCR flag(s), used only with --model mscr')
