"""Bad-input and fault probe: user actions on small generated inputs, each with the behaviour it should have.

    nice python bench/probe_inputs.py                 # every case, -> bench/results/probe_inputs.{json,md}
    python bench/probe_inputs.py --area converters    # one area (no results written unless --out is given)
    python bench/probe_inputs.py --list               # the cases, not run

Every case is something a user does (a script run on an edited, copied, truncated or interrupted input, a bad
flag, an output over an existing artefact, a held lock, ...), run as the user would: the script's main() in this
process through cli.run_script (a ToolkitError becomes `error: ...` and exit code 2) or, for interrupts, the
script as its own process with SIGINT. Each case records the class it should get and the one it gets:

  handled             the correct result, or a clear refusal (exit code != 0, no traceback) whose message names
                      the file or flag and the fix
  silent-wrong        exit code 0 with a wrong result (a number from the wrong data, an item dropped unlisted, ...)
  data-loss           an existing file or artefact replaced or destroyed
  traceback           a Python traceback instead of a message
  misleading-message  a refusal whose message does not name what is wrong, or the refusal of a valid action

Inputs: the tiny corpus of tests/fixtures.py (24 utterances, 6 speakers, real WAVs), converter miniatures of
tests/test_prepare_corpus.py, and the RAVDESS copy under ../shared/datasets when present. Models are trained
1 epoch on CPU (`--workers 0 --device cpu`); fixtures are shared between cases. About 10 minutes on 2 cores.
"""
import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import soundfile as sf  # noqa: E402

CLASSES = ('handled', 'silent-wrong', 'data-loss', 'traceback', 'misleading-message')
SHARED = REPO.parent / 'shared' / 'datasets'


# ================================================================ running a user action
class R:
    """What a user sees of one action: exit code, stdout, stderr, the traceback (if any), main()'s return."""

    def __init__(self, code, out='', err='', tb='', ret=None):
        self.code, self.out, self.err, self.tb, self.ret = code, out, err, tb, ret

    @property
    def message(self):
        """The first line of the error message (or of the warnings of a run that succeeded)."""
        lines = [x.strip() for x in self.err.splitlines() if x.strip()]
        for pat in (r'^error: ', r': error: ', r'^Traceback', r'^(warning|note|PARTIAL|interrupted)'):
            hit = [x for x in lines if re.search(pat, x)]
            if hit:
                return (hit[-1] if pat == r'^Traceback' and self.tb else hit[0])[:300]
        return (lines[-1] if lines else '')[:300]

    @property
    def all(self):
        return self.out + '\n' + self.err


def call(module, argv, cwd=None):
    """Run `module`.main(argv) as its script would (cli.run_script), output captured."""
    import importlib

    import cli
    mod = importlib.import_module(module)
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    code, tb, ret = 0, '', None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                ret = mod.main([str(a) for a in argv])
                code = cli.run_script(lambda _: ret)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                from errors import ToolkitError
                e = sys.exc_info()[1]
                if isinstance(e, ToolkitError):
                    print(f'error: {e}', file=sys.stderr)
                    code = 2
                elif isinstance(e, KeyboardInterrupt):
                    code = 130
                else:
                    tb = traceback.format_exc()
                    print(tb, file=sys.stderr)
                    code = 1
    finally:
        os.chdir(old)
    return R(code, out.getvalue(), err.getvalue(), tb, ret)


def script(name, argv, cwd=None, interrupt_when=None, after=0.0, timeout=300, env=None):
    """Run `name`.py as its own process; with interrupt_when (a function -> bool, polled), send SIGINT `after`
    seconds after it first holds."""
    cmd = [sys.executable, str(REPO / f'{name}.py'), *map(str, argv)]
    e = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile('w+') as fo, tempfile.TemporaryFile('w+') as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=cwd or REPO, env=e)
        t0 = time.time()
        if interrupt_when is not None:
            while p.poll() is None and time.time() - t0 < timeout:
                if interrupt_when():
                    time.sleep(after)
                    p.send_signal(signal.SIGINT)
                    break
                time.sleep(0.05)
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    tb = err[err.index('Traceback'):] if 'Traceback (most recent call last)' in err else ''
    return R(code, out, err, tb)


# ================================================================ judging
class Obs:
    def __init__(self, cls, r=None, note=''):
        assert cls in CLASSES, cls
        self.cls, self.r, self.note = cls, r, note


def refused(r, *pats, kept=None, note=''):
    """Expected: a refusal (exit != 0, no traceback) whose message matches every regex of `pats`; `kept`: a
    (path, bytes/None) list that must be unchanged afterwards (else data-loss)."""
    lost = _lost(kept)
    if lost:
        return Obs('data-loss', r, f'{lost} replaced or removed; ' + note)
    if r.tb:
        return Obs('traceback', r, r.tb.strip().splitlines()[-1][:200])
    if r.code == 0:
        return Obs('silent-wrong', r, 'ran to the end (exit code 0) instead of refusing; ' + note)
    text = r.err + r.out
    miss = [p for p in pats if not re.search(p, text, re.S | re.I)]
    if miss:
        return Obs('misleading-message', r, f'message lacks {miss}; ' + note)
    return Obs('handled', r, note)


def succeeded(r, checks=(), kept=None, note=''):
    """Expected: exit code 0 and every (condition, what is wrong otherwise) of `checks` true."""
    lost = _lost(kept)
    if lost:
        return Obs('data-loss', r, f'{lost} replaced or removed')
    if r.tb:
        return Obs('traceback', r, r.tb.strip().splitlines()[-1][:200])
    if r.code != 0:
        return Obs('misleading-message', r, 'a valid action was refused; ' + note)
    for cond, wrong in checks:
        try:
            ok = cond() if callable(cond) else cond
        except Exception as e:          # a check that cannot be read is a wrong result
            ok, wrong = False, f'{wrong} ({type(e).__name__}: {e})'
        if not ok:
            return Obs('silent-wrong', r, wrong)
    return Obs('handled', r, note)


def either(r, ok_checks=(), refuse_pats=(), kept=None, note=''):
    """Expected: a correct result or a clear refusal, whichever the toolkit chooses."""
    if r.code == 0 and not r.tb:
        return succeeded(r, ok_checks, kept, note)
    return refused(r, *refuse_pats, kept=kept, note=note)


def snapshot(*paths):
    """[(path, content)] of files (every file under a folder) to check later with `kept=`."""
    out = []
    for p in paths:
        p = Path(p)
        files = sorted(q for q in p.rglob('*') if q.is_file()) if p.is_dir() else [p]
        out += [(q, q.read_bytes() if q.exists() else None) for q in files]
    return out


def _lost(kept):
    for p, b in kept or ():
        if b is not None and (not Path(p).exists() or Path(p).read_bytes() != b):
            return str(p)
    return ''


# ================================================================ shared inputs
class Ctx:
    """Shared, lazily built inputs under one scratch folder. Cases copy what they edit."""

    def __init__(self, work):
        self.work = Path(work)
        self._n = 0
        os.environ['SER_HASH_CACHE'] = str(self.work / 'hashes.sqlite')
        os.environ.setdefault('MPLBACKEND', 'Agg')
        self._cache = {}
        for d in ('cases', 'folded', 'minis', 'cc', 'compare', 'unfinished', 'cvbase'):
            shutil.rmtree(self.work / d, ignore_errors=True)

    def tmp(self, stem='x'):
        self._n += 1
        p = self.work / 'cases' / f'{self._n:03d}_{stem}'
        p.mkdir(parents=True)
        return p

    def get(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # ---- the tiny corpus, its store, constant ranking sequences and a 1-epoch model
    @property
    def base(self):
        def build():
            from tests.fixtures import make_tiny_corpus
            d = self.work / 'base'
            done = d / 'done.json'             # a --work folder kept from an earlier probe run: reused
            if done.exists():
                return {k: Path(v) for k, v in json.loads(done.read_text()).items()}
            shutil.rmtree(d, ignore_errors=True)
            root = make_tiny_corpus(d / 'tiny', n=24)
            r = call('extract_features', ['--corpus', root, '--out', d / 'lld', '--workers', 1])
            assert r.code == 0, r.err[-2000:]
            rs = constant_rs(root, d / 'rs')
            r = call('training', ['-emo', 'Act', '-ep', 1, '-batch', 8, '--corpus', root, '--features', d / 'lld',
                                  '--rankseq', rs, '--out', d / 'model', '--device', 'cpu', '--workers', 0])
            assert r.code == 0, r.err[-2000:]
            out = dict(root=root, lld=d / 'lld', rs=rs, ck=Path(r.ret[0]))
            done.write_text(json.dumps({k: str(v) for k, v in out.items()}))
            return out
        return self.get('base', build)

    def copy(self, stem='c', folds=False):
        """A copy of the tiny corpus (with a 3-fold folds.csv when `folds`)."""
        d = self.tmp(stem) / 'tiny'
        shutil.copytree(self.base['root'], d)
        if folds:
            write_folds(d)
        return d

    @property
    def folded(self):
        """A read-only copy of the tiny corpus with 3 speaker-disjoint folds."""
        return self.get('folded', lambda: write_folds(shutil.copytree(self.base['root'], self.work / 'folded' / 'tiny')))

    @property
    def other(self):
        """Another corpus in a folder of the same name (tiny), other voices and labels, its own store."""
        def build():
            from tests.fixtures import make_tiny_corpus
            d = self.work / 'other'
            if (d / 'done').exists():
                return dict(root=d / 'tiny', lld=d / 'lld')
            shutil.rmtree(d, ignore_errors=True)
            root = make_tiny_corpus(d / 'tiny', n=24, seed=5)
            r = call('extract_features', ['--corpus', root, '--out', d / 'lld', '--workers', 1])
            assert r.code == 0, r.err[-2000:]
            (d / 'done').write_text('')
            return dict(root=root, lld=d / 'lld')
        return self.get('other', build)

    @property
    def unfinished(self):
        """A training run stopped with Ctrl-C (SIGINT) after its first saved epoch (of 40)."""
        def build():
            b = self.base
            out = self.work / 'unfinished'
            ck = out / 'LSTM_epoch40_batch8_EmoRankerSeq_Act.pth.tar'
            r = script('training', ['-emo', 'Act', '-ep', 40, '-batch', 8, '--corpus', b['root'], '--features',
                                    b['lld'], '--rankseq', b['rs'], '--out', out, '--device', 'cpu', '--workers', 0],
                       interrupt_when=ck.exists, after=0.5)
            return dict(r=r, ck=ck)
        return self.get('unfinished', build)

    def wav(self, i=0):
        return sorted((self.base['root'] / 'Audios').glob('*.wav'))[i]

    def test_args(self, out, *extra, corpus=None):
        b = self.base
        return ['-emo', 'Act', '--checkpoint', b['ck'], '--features', b['lld'], '--out', out, '--corpus',
                corpus or b['root'], '--device', 'cpu', '--bootstrap-n', 50, '--workers', 0, *extra]

    def train_args(self, out, *extra, corpus=None, features=None):
        b = self.base
        return ['-emo', 'Act', '-ep', 1, '-batch', 8, '--corpus', corpus or b['root'], '--features',
                features or b['lld'], '--rankseq', b['rs'], '--out', out, '--device', 'cpu', '--workers', 0, *extra]

    def cv_args(self, corpus, out, *extra, features=None):
        return ['--corpus', corpus, '--features', features or self.base['lld'], '--curves', 'constant', '-emo', 'Act',
                '-ep', 1, '-batch', 8, '--device', 'cpu', '--workers', 0, '--bootstrap-n', 50, '--out', out, *extra]


def constant_rs(root, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = pd.read_csv(Path(root) / 'Labels' / 'labels_consensus.csv').FileName
    (out / 'training_Act.json').write_text(json.dumps({n: {'ChunkRankSeq': [1] * 22} for n in names}))
    return out


FOLD_TEST = {1: ('5', '6'), 2: ('1', '2'), 3: ('3', '4')}
FOLD_VAL = {1: ('3', '4'), 2: ('5', '6'), 3: ('1', '2')}


def write_folds(root, k=3):
    root = Path(root)
    lab = pd.read_csv(root / 'Labels' / 'labels_consensus.csv', dtype=str)
    df = lab[['FileName', 'SpkrID']].copy()
    for f in range(1, k + 1):
        df[f'fold{f}'] = ['Test' if s in FOLD_TEST[f] else 'Validation' if s in FOLD_VAL[f] else 'Train'
                          for s in lab.SpkrID]
    df.to_csv(root / 'Labels' / 'folds.csv', index=False)
    return root


def labels(root):
    return Path(root) / 'Labels' / 'labels_consensus.csv'


def edit_labels(root, fn, **to_csv):
    p = labels(root)
    df = pd.read_csv(p, dtype={'SpkrID': str})
    df = fn(df) if fn else df
    df.to_csv(p, index=False, **to_csv)
    return df


def preds(folder, split='Test'):
    return pd.read_csv(Path(folder) / f'Act_{split}_predictions.csv')


def ccc_of(rec):
    return rec['pooled']['Act']['ccc']['value']


def hold_lock(path, proc):
    """The lock of output `path` as a running other process would hold it."""
    from outputs import lock_file
    from utils import _proc_start
    lf = lock_file(path)
    lf.parent.mkdir(parents=True, exist_ok=True)
    lf.write_text(json.dumps({'pid': proc.pid, 'host': socket.gethostname(), 'start': _proc_start(proc.pid),
                              'command': 'the first run (probe)', 'time': 'now'}))
    return lf


@contextlib.contextmanager
def other_process():
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


@contextlib.contextmanager
def umask(m):
    old = os.umask(m)
    try:
        yield
    finally:
        os.umask(old)


def truncate(path):
    b = Path(path).read_bytes()
    Path(path).write_bytes(b[:len(b) // 2])


def silent(path, seconds=0.5, sr=16000):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * sr), np.float32), sr, subtype='PCM_16')


# ================================================================ the cases
CASES = []


def case(area, action, expect):
    def deco(fn):
        CASES.append(dict(area=area, action=action, expect=expect, fn=fn))
        return fn
    return deco


# ---------------------------------------------------------------- converters (prepare_corpus.py)
def mini(ctx, kind):
    """A fresh copy of a converter miniature (built once)."""
    import tests.test_prepare_corpus as T
    makers = {'iemocap': lambda d: T.make_iemocap(d, sessions=3), 'msp-improv': lambda d: T.make_msp_improv(d, sessions=3),
              'crema-d': T.make_crema_d, 'ravdess': T.make_ravdess, 'emodb': T.make_emodb}
    src = ctx.get(f'mini-{kind}', lambda: makers[kind](ctx.work / 'minis' / kind))
    d = ctx.tmp(kind) / Path(src).name
    shutil.copytree(src, d, symlinks=True)
    return d


def convert(kind, src, out, *flags):
    return call('prepare_corpus', [kind, src, out, *flags])


def conv_tables(out):
    lab = pd.read_csv(Path(out) / 'Labels' / 'labels_consensus.csv', dtype={'SpkrID': str})
    sk = Path(out) / 'skipped.csv'
    skipped = pd.read_csv(sk) if sk.is_file() and sk.stat().st_size else pd.DataFrame(columns=['Item', 'Reason'])
    return lab, skipped


def listed(out, item_pat, reason_pat=''):
    """Does skipped.csv hold a row whose Item matches item_pat and Reason reason_pat?"""
    _, sk = conv_tables(out)
    return bool(((sk.Item.astype(str).str.contains(item_pat, regex=True)) &
                 (sk.Reason.astype(str).str.contains(reason_pat, regex=True, case=False))).any())


def converted(out, stem):
    lab, _ = conv_tables(out)
    return (lab.FileName.str[:-4] == stem).any()


def conv_case(kind, action, expect, edit, checks):
    """A converter case: copy the miniature, `edit(src)`, convert, then every (lambda out: bool, what) check."""
    @case('converters', f'{kind}: {action}', expect)
    def run(ctx):
        src = mini(ctx, kind)
        edit(src)
        out = src.parent / 'out'
        r = convert(kind, src, out)
        return succeeded(r, [(lambda c=c: c(out), w) for c, w in checks])
    return run


def ev(src, n):
    f = sorted((src / f'Session{n}' / 'dialog' / 'EmoEvaluation').glob('*.txt'))
    return f[0]


def _iem_repeat_same(src):
    e = ev(src, 1)
    b = e.read_text().split('\n\n')
    e.write_text('\n\n'.join(b + [b[1]]) + '\n')


def _iem_repeat_diff(src):
    e = ev(src, 1)
    b = e.read_text().split('\n\n')
    e.write_text('\n\n'.join(b + [re.sub(r'\t\[[\d.]+', '\t[4.5', b[2])]) + '\n')


def _iem_two_dialogs(src):
    e = ev(src, 2)
    e.write_text(e.read_text() + '[5.0000 - 6.2000]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n')


def _iem_wrong_session(src):
    w = 'Ses02F_impro02'
    (src / 'Session3' / 'dialog' / 'EmoEvaluation' / f'{w}.txt').write_text(
        f'[1.0000 - 2.2000]\t{w}_F000\tsad\t[1.5000, 2.0000, 2.5000]\nA-E3:\tval 1; act 2; dom 3;\t()\n')
    import tests.test_prepare_corpus as T
    T.wav(src / 'Session3' / 'sentences' / 'wav' / w / f'{w}_F000.wav')


def _iem_cons_out(src):
    e = ev(src, 2)
    e.write_text(re.sub(r'(_M001\tang\t\[[\d.]+, [\d.]+, )[\d.]+', r'\g<1>5.5000', e.read_text()))


def _iem_rater_out(src):
    e = ev(src, 2)
    e.write_text(re.sub(r'(A-E4:\tval \d; act )\d', r'\g<1>6', e.read_text(), count=1))


def _iem_rater_twice(src):
    e = ev(src, 2)
    e.write_text(re.sub(r'(A-E3:.*\n)', r'\1A-E3:\tval 1; act 1; dom  1;\t()\n', e.read_text(), count=1))


def _iem_trunc_wav(src):
    truncate(next((src / 'Session3' / 'sentences' / 'wav').rglob('*_M001.wav')))


def _iem_silent(src):
    silent(next((src / 'Session3' / 'sentences' / 'wav').rglob('*_F000.wav')))


def _iem_audio_no_block(src):
    import tests.test_prepare_corpus as T
    T.wav(src / 'Session3' / 'sentences' / 'wav' / 'Ses03F_impro01' / 'Ses03F_impro01_F009.wav')


def _iem_block_no_audio(src):
    next((src / 'Session2' / 'sentences' / 'wav').rglob('*_F000.wav')).unlink()


def _iem_trunc_line(src):
    e = ev(src, 3)
    e.write_text(e.read_text() + '[9.0000 - 10.2000]\tSes03F_impro01_F010\tneu\t[2.5, 3.\n')


def _iem_crlf(src):
    e = ev(src, 1)
    e.write_bytes(e.read_bytes().replace(b'\n', b'\r\n'))


conv_case('iemocap', 'a consensus block repeated identically', 'converted once, the repeat listed', _iem_repeat_same,
          [(lambda o: converted(o, 'Ses01F_impro01_F000') and listed(o, 'Ses01F_impro01_F000', 'repeat'), 'not listed')])
conv_case('iemocap', 'a consensus block repeated with other values', 'refused for that turn, listed',
          _iem_repeat_diff, [(lambda o: not converted(o, 'Ses01F_impro01_M001') and listed(o, 'Ses01F_impro01_M001',
                                                                                        'different'), 'one kept silently')])
conv_case('iemocap', 'one turn name in two dialog files', 'listed, not kept at random', _iem_two_dialogs,
          [(lambda o: listed(o, 'Ses01F_impro01_F000', '2 dialog'), 'not listed')])
conv_case('iemocap', 'a dialog filed under the wrong session', 'listed, folds intact', _iem_wrong_session,
          [(lambda o: listed(o, 'Ses02F_impro02_F000', 'Session3') and not converted(o, 'Ses02F_impro02_F000'),
            'converted into the wrong session')])
conv_case('iemocap', 'a consensus value outside 1-5', 'that value empty, listed', _iem_cons_out,
          [(lambda o: listed(o, 'Ses02M_script01_1_M001', '1-5'), 'clipped or unlisted'),
           (lambda o: pd.isna(conv_tables(o)[0].set_index('FileName').loc['Ses02M_script01_1_M001.wav', 'EmoDom']),
            'out-of-scale value clipped into a rating')])
conv_case('iemocap', 'a rater value outside 1-5', 'rating listed', _iem_rater_out,
          [(lambda o: listed(o, 'rater E4', '1-5'), 'not listed')])
conv_case('iemocap', 'a rater listed twice for one turn', 'second line listed', _iem_rater_twice,
          [(lambda o: listed(o, 'Ses02M_script01_1', 'second'), 'not listed')])
conv_case('iemocap', 'a truncated WAV', 'listed (shorter than its header)', _iem_trunc_wav,
          [(lambda o: listed(o, 'Ses03F_impro01_M001', 'shorter than'), 'truncated file converted unnoticed')])
conv_case('iemocap', 'an all-zero WAV', 'listed (digital silence)', _iem_silent,
          [(lambda o: listed(o, 'Ses03F_impro01_F000', 'silence'), 'not listed')])
conv_case('iemocap', 'a WAV without a consensus block', 'listed', _iem_audio_no_block,
          [(lambda o: listed(o, 'Ses03F_impro01_F009', 'without a block'), 'not listed')])
conv_case('iemocap', 'a consensus block whose WAV is missing', 'listed', _iem_block_no_audio,
          [(lambda o: listed(o, 'Ses02M_script01_1_F000', 'missing'), 'not listed')])
conv_case('iemocap', 'a truncated consensus line', 'listed with its line', _iem_trunc_line,
          [(lambda o: listed(o, r'Ses03F_impro01\.txt', 'truncated'), 'not listed')])
conv_case('iemocap', 'EmoEvaluation file with CRLF line ends', 'converted as with LF', _iem_crlf,
          [(lambda o: converted(o, 'Ses01F_impro01_F000') and converted(o, 'Ses01F_impro01_M001'), 'turns dropped')])


def _msp_lines(src):
    return src / 'Evaluation.txt'


def _msp_edit(fn):
    def edit(src):
        p = _msp_lines(src)
        b = p.read_text().strip().split('\n\n')
        p.write_text('\n\n'.join(fn(b)) + '\n')
    return edit


conv_case('msp-improv', 'a consensus block repeated with other values', 'refused for it, listed',
          _msp_edit(lambda b: b + [b[1].replace('D:', 'D:1', 1)]),
          [(lambda o: listed(o, 'MSP-IMPROV-S01H-M01-R-FM01', 'different'), 'one replaced the other silently')])
conv_case('msp-improv', 'a consensus block repeated identically', 'converted once, listed',
          _msp_edit(lambda b: b + [b[0]]),
          [(lambda o: listed(o, 'MSP-IMPROV-S01A-F01-S-FM01', 'repeat') and converted(o, 'MSP-IMPROV-S01A-F01-S-FM01'),
            'not listed')])
conv_case('msp-improv', 'a consensus value outside 1-5', 'value empty, listed',
          _msp_edit(lambda b: [b[0]] + [re.sub(r'V:[\d.]+', 'V:6.5', b[1], count=1)] + b[2:]),
          [(lambda o: listed(o, 'MSP-IMPROV-S01H-M01-R-FM01', '1-5'), 'clipped silently')])
conv_case('msp-improv', 'NaN consensus values', 'listed',
          _msp_edit(lambda b: [re.sub(r'A:[\d.]+; V:[\d.]+; D:[\d.]+', 'A:NaN; V:NaN; D:NaN', b[0], count=1)] + b[1:]),
          [(lambda o: listed(o, 'MSP-IMPROV-S01A-F01-S-FM01', 'no A, V or D'), 'NaN utterance converted')])


def _msp_two_places(src):
    import tests.test_prepare_corpus as T
    T.wav(src / 'session3' / 'S02A' / 'S' / 'MSP-IMPROV-S02A-F02-S-FM01.wav')


conv_case('msp-improv', 'one recording name in two session folders', 'listed, not one at random', _msp_two_places,
          [(lambda o: listed(o, 'MSP-IMPROV-S02A-F02-S-FM01', '2 places'), 'one copy kept silently')])
conv_case('msp-improv', 'a truncated WAV', 'listed', lambda s: truncate(next(s.rglob('MSP-IMPROV-S02H-*.wav'))),
          [(lambda o: listed(o, 'MSP-IMPROV-S02H', 'shorter than'), 'converted unnoticed')])


def _crema_resp(fn):
    def edit(src):
        p = src / 'finishedResponses.csv'
        d = pd.read_csv(p, index_col=0)
        fn(d).to_csv(p)
    return edit


conv_case('crema-d', 'a response level outside 0-100', 'listed, not clipped (in the miniature: 150)', lambda s: None,
          [(lambda o: listed(o, r'row', '0-100|outside'), 'out-of-scale level clipped silently')])
conv_case('crema-d', 'one participant answering one clip twice', 'second answer listed',
          _crema_resp(lambda d: pd.concat([d, d.iloc[[0]]], ignore_index=True)),
          [(lambda o: listed(o, ' rater ', 'second'), 'repeated participant counted twice')])


def _crema_case(src):
    import tests.test_prepare_corpus as T
    T.wav(src / 'AudioWAV' / '1004_WSI_NEU_XX.WAV')


conv_case('crema-d', 'one clip as .wav and .WAV', 'listed', _crema_case,
          [(lambda o: listed(o, '1004_WSI_NEU_XX', '2 files'), 'one kept at random')])
conv_case('crema-d', 'a truncated clip', 'listed', lambda s: truncate(s / 'AudioWAV' / '1005_MTI_FEA_MD.wav'),
          [(lambda o: listed(o, '1005_MTI_FEA_MD', 'shorter than'), 'converted unnoticed')])
conv_case('crema-d', 'a tabulated row repeated (miniature: row 8)', 'listed', lambda s: None,
          [(lambda o: listed(o, 'tabulatedVotes.csv row', 'repeated'), 'not listed')])


def _rav_two_actors(src):
    import tests.test_prepare_corpus as T
    T.wav(src / 'Actor_04' / '03-01-05-02-01-01-02.wav', sr=48000)


conv_case('ravdess', 'one file name under two actor folders', 'both listed', _rav_two_actors,
          [(lambda o: listed(o, 'Actor_04/03-01-05-02-01-01-02', 'Actor_04|2 places'), 'kept one silently')])
conv_case('ravdess', 'a truncated WAV', 'listed', lambda s: truncate(s / 'Actor_03' / '03-01-05-02-01-01-03.wav'),
          [(lambda o: listed(o, '03-01-05-02-01-01-03', 'shorter than'), 'converted unnoticed')])
conv_case('ravdess', 'a WAV not named MM-VV-EE-II-SS-RR-AA', 'listed',
          lambda s: shutil.copy(s / 'Actor_02' / '03-01-05-02-01-01-02.wav', s / 'Actor_02' / 'take2.wav'),
          [(lambda o: listed(o, 'take2', 'MM-VV'), 'not listed')])
conv_case('ravdess', 'a file whose actor code disagrees with its folder', 'listed',
          lambda s: shutil.move(s / 'Actor_02' / '03-01-01-01-01-01-02.wav', s / 'Actor_03' / '03-01-01-01-01-01-02.wav'),
          [(lambda o: listed(o, '03-01-01-01-01-01-02', 'Actor_03|actor'), 'converted under the wrong actor')])
conv_case('ravdess', 'a readme.txt among the WAVs', 'listed',
          lambda s: (s / 'Actor_01' / 'readme.txt').write_text('x'),
          [(lambda o: listed(o, 'readme', 'not a WAV'), 'not listed')])


def _emodb(fn):
    def edit(src):
        fn(src / 'wav')
    return edit


conv_case('emodb', '.WAV and .flac files', 'converted (not left out unlisted)', _emodb(lambda w: (
    (w / '10a01Na.wav').rename(w / '10a01Na.WAV'),
    sf.write(w / '11a01La.flac', *sf.read(w / '11a01La.wav')[::1]), (w / '11a01La.wav').unlink())),
    [(lambda o: converted(o, '10a01Na') and converted(o, '11a01La'), 'left out without a line')])
conv_case('emodb', 'one name as .wav and .flac', 'listed', _emodb(lambda w: sf.write(w / '12a01Ea.flac',
                                                                                    *sf.read(w / '12a01Ea.wav'))),
          [(lambda o: listed(o, '12a01Ea', '2 files'), 'one kept silently')])
conv_case('emodb', 'a truncated WAV', 'listed', _emodb(lambda w: truncate(w / '09a01Ta.wav')),
          [(lambda o: listed(o, '09a01Ta', 'shorter than'), 'converted unnoticed')])
conv_case('emodb', 'a file that is not audio, named .wav', 'listed (unreadable)',
          _emodb(lambda w: (w / '13a01Fa.wav').write_bytes(b'RIFF\x00\x00garbage')),
          [(lambda o: listed(o, '13a01Fa', 'unreadable'), 'not listed')])
conv_case('emodb', 'an all-zero WAV', 'listed', _emodb(lambda w: silent(w / '13a01Fa.wav', sr=22050)),
          [(lambda o: listed(o, '13a01Fa', 'silence'), 'not listed')])
conv_case('emodb', 'erkennung.txt in UTF-8 instead of Latin-1', 'read or named',
          lambda s: (s / 'erkennung.txt').write_text((s / 'erkennung.txt').read_text(encoding='latin-1'),
                                                     encoding='utf-8'),
          [(lambda o: len(conv_tables(o)[0]) == 6, 'utterances lost')])


@case('converters', 'emodb: erkennung.txt missing', 'converted (the file is optional) or a message naming it')
def _(ctx):
    src = mini(ctx, 'emodb')
    (src / 'erkennung.txt').unlink()
    out = src.parent / 'out'
    r = convert('emodb', src, out)
    return either(r, [(lambda: len(conv_tables(out)[0]) == 6, 'utterances lost')], [r'erkennung'])


@case('converters', 'ravdess: SRC is an empty folder', 'refused, naming SRC and what it should hold')
def _(ctx):
    d = ctx.tmp('empty')
    (d / 'src').mkdir()
    r = convert('ravdess', d / 'src', d / 'out')
    return refused(r, 'src', r'Actor|RAVDESS')


@case('converters', 'SRC does not exist', 'refused naming SRC')
def _(ctx):
    d = ctx.tmp('nosrc')
    return refused(convert('emodb', d / 'nothere', d / 'out'), 'nothere')


@case('converters', 'iemocap converter given an Emo-DB folder', 'refused naming the layout')
def _(ctx):
    src = mini(ctx, 'emodb')
    return refused(convert('iemocap', src, src.parent / 'out'), r'Session|IEMOCAP')


@case('converters', 'OUT holds an earlier conversion (no --overwrite)', 'refused naming --overwrite; old kept')
def _(ctx):
    src = mini(ctx, 'ravdess')
    out = src.parent / 'out'
    convert('ravdess', src, out)
    kept = snapshot(out / 'Labels')
    return refused(convert('ravdess', src, out), '--overwrite', kept=kept)


@case('converters', 'OUT holds an earlier conversion, --overwrite', 'replaced by the new conversion')
def _(ctx):
    src = mini(ctx, 'ravdess')
    out = src.parent / 'out'
    convert('ravdess', src, out)
    (src / 'Actor_04' / '03-01-01-01-01-01-04.wav').unlink()
    r = convert('ravdess', src, out, '--overwrite')
    return succeeded(r, [(lambda: not converted(out, '03-01-01-01-01-01-04'), 'old content left')])


@case('converters', 'OUT is SRC itself', 'refused; SRC untouched')
def _(ctx):
    src = mini(ctx, 'ravdess')
    kept = snapshot(src)
    return refused(convert('ravdess', src, src, '--overwrite'), r'SRC|source|reads', kept=kept)


@case('converters', 'OUT inside SRC with --overwrite', 'refused; SRC untouched')
def _(ctx):
    src = mini(ctx, 'ravdess')
    kept = snapshot(src)
    return refused(convert('ravdess', src, src / 'Actor_01', '--overwrite'), r'inside|holds|reads', kept=kept)


@case('converters', 'OUT is SRC\'s parent with --overwrite', 'refused; SRC untouched')
def _(ctx):
    src = mini(ctx, 'ravdess')
    kept = snapshot(src)
    return refused(convert('ravdess', src, src.parent, '--overwrite'), r'holds|reads|inside', kept=kept)


@case('converters', 'OUT below a file', 'refused naming the file')
def _(ctx):
    src = mini(ctx, 'ravdess')
    (src.parent / 'f').write_text('')
    return refused(convert('ravdess', src, src.parent / 'f' / 'out'), r'is a file')


@case('converters', 'a second conversion into OUT while the first runs (lock held)', 'refused naming the first')
def _(ctx):
    src = mini(ctx, 'ravdess')
    with other_process() as p:
        hold_lock(src.parent / 'out', p)
        r = convert('ravdess', src, src.parent / 'out')
    return refused(r, 'the first run|pid')


@case('converters', 'a lock left by a killed conversion', 'taken over, converted')
def _(ctx):
    src = mini(ctx, 'ravdess')
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    hold_lock(src.parent / 'out', p)
    p.wait()
    out = src.parent / 'out'
    return succeeded(convert('ravdess', src, out), [(lambda: len(conv_tables(out)[0]) == 8, 'not converted')])


@case('converters', 'convert under umask 022', 'corpus folders readable by others (drwxr-xr-x)')
def _(ctx):
    src = mini(ctx, 'ravdess')
    out = src.parent / 'out'
    with umask(0o022):
        r = convert('ravdess', src, out)
    modes = {p: p.stat().st_mode & 0o777 for p in [out, out / 'Labels', out / 'Audios']}
    return succeeded(r, [(all(m == 0o755 for m in modes.values()), f'modes {[oct(m) for m in modes.values()]}')])


@case('converters', 'convert under umask 077', 'folders private (drwx------), as the user asked')
def _(ctx):
    src = mini(ctx, 'ravdess')
    out = src.parent / 'out'
    with umask(0o077):
        r = convert('ravdess', src, out)
    return succeeded(r, [(lambda: (out.stat().st_mode & 0o777) == 0o700, oct(out.stat().st_mode & 0o777))])


@case('converters', '--speakers naming a speaker that does not exist', 'refused naming the speaker')
def _(ctx):
    src = mini(ctx, 'ravdess')
    return refused(convert('ravdess', src, src.parent / 'out', '--speakers', '99'), '99')


@case('converters', "--speakers ','", 'refused naming --speakers')
def _(ctx):
    src = mini(ctx, 'ravdess')
    return refused(convert('ravdess', src, src.parent / 'out', '--speakers', ','), '--speakers')


@case('converters', '--max-list -1', 'usage error naming --max-list')
def _(ctx):
    src = mini(ctx, 'ravdess')
    return refused(convert('ravdess', src, src.parent / 'out', '--max-list', '-1'), '--max-list')


@case('converters', '--seed abc', 'usage error naming --seed')
def _(ctx):
    src = mini(ctx, 'emodb')
    return refused(convert('emodb', src, src.parent / 'out', '--seed', 'abc'), '--seed')


@case('converters', 'the same source converted twice into two folders', 'identical labels and folds')
def _(ctx):
    src = mini(ctx, 'iemocap')
    a, b = src.parent / 'a', src.parent / 'b'
    r1, r2 = convert('iemocap', src, a), convert('iemocap', src, b)
    same = lambda: all((a / 'Labels' / f).read_bytes() == (b / 'Labels' / f).read_bytes()  # noqa: E731
                       for f in ('labels_consensus.csv', 'folds.csv', 'labels_detailed.csv'))
    return succeeded(r2 if r1.code == 0 else r1, [(same, 'two conversions differ')])


@case('converters', 'real RAVDESS copy (3 actors) converted, then check_corpus', 'converted, no fatal finding')
def _(ctx):
    src = SHARED / 'ravdess'
    if not src.is_dir():
        return Obs('handled', None, 'skipped: no RAVDESS copy')
    out = ctx.tmp('rav') / 'ravdess'
    r = convert('ravdess', src, out)
    if r.code:
        return succeeded(r)
    import check_corpus
    rep = check_corpus.check(out, progress=False)
    n = len(list(src.glob('Actor_*/*.wav')))
    lab, sk = conv_tables(out)
    return succeeded(r, [(not rep['fatal'], f'fatal: {rep["fatal"][:2]}'),
                         (len(lab) + (sk.Kind == 'skipped').sum() >= n, 'files unaccounted')])


@case('converters', 'real Emo-DB, --speakers 03', 'only speaker 03, resampled to 16 kHz')
def _(ctx):
    src = SHARED / 'emodb'
    if not src.is_dir():
        return Obs('handled', None, 'skipped: no Emo-DB copy')
    out = ctx.tmp('emodb') / 'emodb'
    r = convert('emodb', src, out, '--speakers', '03')
    return succeeded(r, [(lambda: set(conv_tables(out)[0].SpkrID) == {'3'} or set(conv_tables(out)[0].SpkrID) == {'03'},
                          'other speakers'),
                         (lambda: sf.info(str(next((out / 'Audios').glob('*.wav')))).samplerate == 16000, 'not 16k')])


# ---------------------------------------------------------------- corpus inputs (labels files, encodings)
def corpus_case(action, expect, edit, then='testing', pats=(), ok=None):
    """Edit a copy of the tiny corpus, then run testing.py (or check_corpus / training) on it: a refusal
    matching `pats` or, with `ok`, success whose checks hold."""
    @case('corpus-inputs', action, expect)
    def run(ctx):
        c = ctx.copy('ci')
        edit(c)
        out = c.parent / 't'
        if then == 'testing':
            r = call('testing', ctx.test_args(out, corpus=c))
        elif then == 'training':
            r = call('training', ctx.train_args(c.parent / 'm', corpus=c))
        else:
            r = call('check_corpus', [c, '--no-progress', '--workers', 1])
        if ok is not None:
            return either(r, [(lambda: ok(c, out, r), 'wrong result')], pats)
        return refused(r, *pats)
    return run


corpus_case('labels file in Latin-1', 'named with the fix (UTF-8)',
            lambda c: edit_labels(c, lambda d: d.assign(Gender=d.Gender.where(d.index > 0, 'Männlich')),
                                  encoding='latin-1'), pats=('labels_consensus', 'UTF-8'))
corpus_case('labels file in UTF-16', 'named with the fix',
            lambda c: edit_labels(c, None, encoding='utf-16'), pats=('labels_consensus', 'UTF-16'))
corpus_case('labels file with a UTF-8 BOM', 'read as usual',
            lambda c: edit_labels(c, None, encoding='utf-8-sig'), ok=lambda c, o, r: len(preds(o)) == 6)
corpus_case('labels file with CRLF line ends', 'read as usual',
            lambda c: labels(c).write_bytes(labels(c).read_bytes().replace(b'\n', b'\r\n')),
            ok=lambda c, o, r: len(preds(o)) == 6)
corpus_case('labels file separated by semicolons', 'named: columns not found',
            lambda c: edit_labels(c, None, sep=';'), pats=('labels_consensus', r'FileName|column'))
corpus_case('labels file empty (0 bytes)', 'named', lambda c: labels(c).write_text(''), pats=('labels_consensus',))
corpus_case('labels file with a header only', 'named: no utterances',
            lambda c: labels(c).write_text(labels(c).read_text().splitlines()[0] + '\n'),
            pats=(r'labels_consensus|no utterance|empty|0 utterances',))
corpus_case('labels file without the EmoAct column', 'named',
            lambda c: edit_labels(c, lambda d: d.drop(columns='EmoAct')), pats=('EmoAct',))
corpus_case('EmoAct on a 1-70 scale (one value 70)', 'value named or left out, never scored as is',
            lambda c: edit_labels(c, lambda d: d.assign(EmoAct=d.EmoAct.where(d.index != 20, 70.0))),
            ok=lambda c, o, r: preds(o).Label.max() <= 7 and ('70' in r.err or 'outside' in r.all),
            pats=('EmoAct',))
corpus_case('every EmoAct on a 0-100 scale', 'refused naming the scale',
            lambda c: edit_labels(c, lambda d: d.assign(EmoAct=d.EmoAct * 14)), pats=('EmoAct', 'scale'))
corpus_case('EmoAct "n/a" for one Test utterance', 'left out and counted',
            lambda c: edit_labels(c, lambda d: d.assign(EmoAct=d.EmoAct.astype(object).where(
                d.Split_Set != 'Test1', d.EmoAct.astype(object).where(d.index != d.index[d.Split_Set == 'Test1'][0],
                                                                       'n/a')))),
            ok=lambda c, o, r: len(preds(o)) == 5, pats=('EmoAct',))


def _dup_row(d):
    i = d.index[d.Split_Set == 'Test1'][0]
    return pd.concat([d, d.loc[[i]].assign(EmoAct=7.0)], ignore_index=True)


corpus_case('one FileName twice in the labels file, other values', 'refused naming the file',
            lambda c: edit_labels(c, _dup_row),
            pats=(r'MSP-PODCAST_\d+_\d+\.wav', r'twice|repeated|duplicate|more than once|several rows'))
corpus_case('one FileName twice in the labels file, same values', 'read once or refused',
            lambda c: edit_labels(c, lambda d: pd.concat([d, d.iloc[[20]]], ignore_index=True)),
            ok=lambda c, o, r: len(preds(o)) == 6 and preds(o).FileName.is_unique,
            pats=(r'twice|repeated|duplicate|more than once|several rows',))
corpus_case('a labelled Test recording deleted', 'named (missing audio) or listed',
            lambda c: next(f for f in sorted((c / 'Audios').glob('*.wav'))
                           if f.name in set(pd.read_csv(labels(c)).query("Split_Set == 'Test1'").FileName)).unlink(),
            ok=lambda c, o, r: len(preds(o)) == 5 and 'missing' in r.all.lower(), pats=('missing|not found',))
corpus_case('a Test recording replaced by another voice (store not re-extracted)', 'refused: store of other audio',
            lambda c: shutil.copy(sorted((c / 'Audios').glob('*.wav'))[0],
                                  c / 'Audios' / pd.read_csv(labels(c)).query("Split_Set == 'Test1'").FileName.iloc[0]),
            pats=('other audio', r'extract'))
corpus_case('a Test recording truncated (store not re-extracted)', 'refused: store of other audio',
            lambda c: truncate(c / 'Audios' / pd.read_csv(labels(c)).query("Split_Set == 'Test1'").FileName.iloc[0]),
            pats=('other audio',))
corpus_case('Split_Set values in lower case (test1)', 'read or named',
            lambda c: edit_labels(c, lambda d: d.assign(Split_Set=d.Split_Set.str.lower())),
            ok=lambda c, o, r: len(preds(o)) == 6, pats=('Split_Set|Test',))
corpus_case('SpkrID missing for one Test utterance', 'scored, the bootstrap says how it clusters, or named',
            lambda c: edit_labels(c, lambda d: d.assign(SpkrID=d.SpkrID.where(
                d.index != d.index[d.Split_Set == 'Test1'][0], None))),
            ok=lambda c, o, r: len(preds(o)) in (5, 6), pats=('SpkrID',))
corpus_case('check_corpus on labels with a repeated FileName', 'a fatal finding naming the file',
            lambda c: edit_labels(c, _dup_row),
            then='check', pats=(r'MSP-PODCAST', r'twice|repeated|duplicate|more than once|several rows'))


# ---------------------------------------------------------------- folds
def fold_edit(action, expect, edit, runner, pats=(), ok=None):
    @case('folds', action, expect)
    def run(ctx):
        c = ctx.copy('f', folds=True)
        edit(c)
        r = runner(ctx, c)
        if ok is not None:
            return either(r, [(lambda: ok(ctx, c, r), 'wrong result')], pats)
        return refused(r, *pats)
    return run


def folds_df(c):
    return pd.read_csv(Path(c) / 'Labels' / 'folds.csv', dtype=str, keep_default_na=False)


def edit_folds(c, fn, **kw):
    df = fn(folds_df(c))
    df.to_csv(Path(c) / 'Labels' / 'folds.csv', index=False, **kw)


def _train_fold(k=1):
    return lambda ctx, c: call('training', ctx.train_args(c.parent / 'm', '--fold', k, corpus=c))


def _test_fold(k=1):
    return lambda ctx, c: call('testing', ctx.test_args(c.parent / 't', '--fold', k, '-set', 'Test', corpus=c))


def _leak_fold(df):
    df.loc[df.index[df.SpkrID == '1'][0], 'fold1'] = 'Test'
    return df


def _lying_speaker_col(df):
    i = df.index[df.SpkrID == '1'][0]
    df.loc[i, 'fold1'], df.loc[i, 'SpkrID'] = 'Test', '9'
    return df


fold_edit('training --fold 1 where speaker 1 is in Train and Test', 'refused naming speaker and fold',
          lambda c: edit_folds(c, _leak_fold), _train_fold(), pats=('fold1', 'speaker 1'))
fold_edit('folds.csv speaker column disagrees with the labels (hides a leak)', 'refused by the labels\' speakers',
          lambda c: edit_folds(c, _lying_speaker_col), _train_fold(), pats=('fold1', 'speaker 1'))
fold_edit('testing --fold 1 on a leaking fold', 'refused', lambda c: edit_folds(c, _leak_fold), _test_fold(),
          pats=('fold1', 'speaker'))
fold_edit('check_corpus on a leaking fold', 'fatal finding', lambda c: edit_folds(c, _leak_fold),
          lambda ctx, c: call('check_corpus', [c, '--no-progress', '--workers', 1]),
          pats=('speaker 1',))
fold_edit('--fold 0', 'usage error naming --fold', lambda c: None, _train_fold(0), pats=('--fold',))
fold_edit('--fold 9 of 3 folds', 'refused naming the number of folds', lambda c: None, _train_fold(9),
          pats=(r'fold', r'3'))
fold_edit('--fold abc', 'usage error naming --fold', lambda c: None, _train_fold('abc'), pats=('--fold',))
fold_edit('--fold 1 without folds.csv', 'named with the fix (prepare_corpus.py / folds.csv)',
          lambda c: (c / 'Labels' / 'folds.csv').unlink(), _train_fold(), pats=('folds.csv',))
fold_edit("folds.csv part name misspelt ('Tset')", 'named', lambda c: edit_folds(c, lambda d: d.assign(
    fold1=d.fold1.replace('Test', 'Tset'))), _test_fold(), pats=('Tset|fold1',))
fold_edit('folds.csv without a row for 4 labelled utterances', 'named or listed, never scored as another part',
          lambda c: edit_folds(c, lambda d: d.iloc[4:]), _test_fold(),
          ok=lambda ctx, c, r: len(preds(c.parent / 't')) == 6 or 'folds.csv' in r.all, pats=('folds.csv',))
fold_edit('folds.csv with a FileName that is not in the labels', 'named or ignored with a note',
          lambda c: edit_folds(c, lambda d: pd.concat([d, d.iloc[[0]].assign(FileName='ghost.wav')])),
          _test_fold(), ok=lambda ctx, c, r: len(preds(c.parent / 't')) == 6, pats=('ghost',))
fold_edit('folds.csv with one FileName twice, in two parts', 'refused naming the file',
          lambda c: edit_folds(c, lambda d: pd.concat([d, d[d.fold1 == 'Test'].iloc[[0]].assign(fold1='Train')])),
          _test_fold(), pats=(r'MSP-PODCAST', r'twice|repeated|duplicate|more than once|several rows'))
fold_edit('folds.csv in Latin-1', 'named with the fix',
          lambda c: (c / 'Labels' / 'folds.csv').write_bytes(
              (c / 'Labels' / 'folds.csv').read_bytes().replace(b'FileName', b'FileName\xe9', 1)),
          _test_fold(), pats=('folds.csv',))
fold_edit('folds.csv with CRLF line ends', 'read as usual',
          lambda c: (c / 'Labels' / 'folds.csv').write_bytes((c / 'Labels' / 'folds.csv').read_bytes().replace(
              b'\n', b'\r\n')), _test_fold(), ok=lambda ctx, c, r: len(preds(c.parent / 't')) == 6)
fold_edit('folds.csv whose fold 1 has no Test part', 'named', lambda c: edit_folds(c, lambda d: d.assign(
    fold1=d.fold1.replace('Test', 'Validation'))), _test_fold(), pats=(r'fold1', r'no (utterance|Test)|empty'))
fold_edit('folds.csv with fold1 and fold3 only (gap)', 'fold 3 used as written, or named',
          lambda c: edit_folds(c, lambda d: d.drop(columns='fold2')),
          lambda ctx, c: call('testing', ctx.test_args(c.parent / 't', '--fold', 3, '-set', 'Test',
                                                       '--allow-seen-speakers', corpus=c)),
          ok=lambda ctx, c, r: len(preds(c.parent / 't')) == 6, pats=('fold',))
fold_edit('testing --fold 1 -set Test on a correct fold', 'scored on the Test speakers 5, 6', lambda c: None,
          _test_fold(), ok=lambda ctx, c, r: len(preds(c.parent / 't')) == 6)


# ---------------------------------------------------------------- protocols (crossval.py, crosscorpus.py)
def cv_fresh(ctx, stem):
    """A copy of the folded corpus and of one finished crossval run on it (fold 1, run once and shared)."""
    def build():
        c = shutil.copytree(ctx.folded, ctx.work / 'cvbase' / 'tiny')
        r = call('crossval', ctx.cv_args(c, ctx.work / 'cvbase' / 'cv', '--folds', '1'))
        assert r.code == 0, r.err[-3000:]
        return r
    r = ctx.get('cvbase', build)
    d = ctx.tmp(stem)
    c = shutil.copytree(ctx.work / 'cvbase' / 'tiny', d / 'tiny')
    out = shutil.copytree(ctx.work / 'cvbase' / 'cv', d / 'cv')
    return c, out, r


def skipped_msg(r):
    return 'done earlier' in r.out


@case('protocols', 'crossval rerun unchanged', 'fold skipped, same result')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1'))
    return succeeded(r2, [(skipped_msg(r2), 'redone'), (lambda: ccc_of(r2.ret) == ccc_of(r1.ret), 'other result')])


@case('protocols', 'crossval rerun after the labels were edited', 'fold redone, scored on the new labels')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    df = edit_labels(c, lambda d: d.assign(EmoAct=np.where(d.Split_Set == 'Test1', 8 - d.EmoAct, d.EmoAct)))
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1'))
    new = np.sort(df[df.Split_Set == 'Test1'].EmoAct.values)
    return succeeded(r2, [(not skipped_msg(r2), 'old fold kept'),
                          (lambda: np.allclose(np.sort(preds(out / 'fold1' / 'test').Label), new), 'old labels')])


@case('protocols', 'crossval rerun after folds.csv was edited', 'fold redone')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    edit_folds(c, lambda d: d.assign(fold1=d.fold1.replace({'Train': 'Validation', 'Validation': 'Train'})))
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1'))
    return succeeded(r2, [(not skipped_msg(r2), 'old fold kept')])


@case('protocols', 'crossval rerun with another --features store', 'fold redone')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    alt = c.parent / 'lld2'
    shutil.copytree(ctx.base['lld'], alt)
    m = json.loads((alt / 'meta.json').read_text())
    (alt / 'meta.json').write_text(json.dumps({**m, 'note_setting': 'other'}))
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1', features=alt))
    return succeeded(r2, [(not skipped_msg(r2), 'fold of the old store kept')])


@case('protocols', 'crossval rerun with other --bootstrap-n', 'fold redone')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1', '--bootstrap-n', 60))
    return succeeded(r2, [(not skipped_msg(r2), 'old fold kept')])


@case('protocols', 'crossval rerun with other -ep', 'fold redone')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1', '-ep', 2))
    return succeeded(r2, [(not skipped_msg(r2), 'old fold kept')])


@case('protocols', 'crossval rerun on the corpus moved to another folder', 'fold kept (same content)')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    moved = c.parent / 'moved' / 'tiny'
    moved.parent.mkdir()
    c.rename(moved)
    r2 = call('crossval', ctx.cv_args(moved, out, '--folds', '1'))
    return succeeded(r2, [(skipped_msg(r2), 'redone although nothing changed')])


@case('protocols', 'crossval on a same-named corpus with other content, same --out', 'fold redone')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    o = ctx.other
    oc = c.parent / 'x' / 'tiny'
    shutil.copytree(o['root'], oc)
    write_folds(oc)
    r2 = call('crossval', ctx.cv_args(oc, out, '--folds', '1', features=o['lld']))
    return succeeded(r2, [(not skipped_msg(r2), 'first corpus\'s fold kept')])


@case('protocols', 'crossval done marker corrupted (truncated JSON)', 'fold redone or named, no traceback')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    m = next((out / 'fold1').glob('.done_*.json'))
    m.write_text(m.read_text()[:20])
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1'))
    return either(r2, [(not skipped_msg(r2), 'corrupt marker trusted')], [r'\.done_'])


@case('protocols', 'crossval rerun after the fold\'s model was deleted (to save disk)', 'its Test predictions (the '
      'result) kept and pooled as before, or the fold redone')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    for p in (out / 'fold1').rglob('*.pth.tar'):
        p.unlink()
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1'))
    return either(r2, [(lambda: ccc_of(r2.ret) == ccc_of(r1.ret), 'another result')], [r'model|pth'])


@case('protocols', 'crossval rerun after the fold\'s Test predictions were deleted', 'fold redone')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    (out / 'fold1' / 'test' / 'Act_Test_predictions.csv').unlink()
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1'))
    return succeeded(r2, [(not skipped_msg(r2), 'marker trusted'), (lambda: ccc_of(r2.ret) == ccc_of(r1.ret),
                                                                     'another result')])


@case('protocols', 'crossval rerun after the fold\'s predictions were edited', 'redone or refused')
def _(ctx):
    c, out, r1 = cv_fresh(ctx, 'cv')
    p = out / 'fold1' / 'test' / 'Act_Test_predictions.csv'
    d = pd.read_csv(p)
    d['Pred'] = d['Label']
    d.to_csv(p, index=False)
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1'))
    return either(r2, [(lambda: ccc_of(r2.ret) < 0.99, 'edited predictions scored as the fold\'s')],
                  [r'predictions'])


@case('protocols', 'crossval interrupted (SIGINT) during fold 1, then rerun', 'fold redone to the end')
def _(ctx):
    c = ctx.copy('cvint', folds=True)
    out = c.parent / 'cv'
    r1 = script('crossval', ctx.cv_args(c, out, '--folds', '1', '-ep', 3),
                interrupt_when=lambda: any((out / 'fold1').rglob('*.pth.tar')), after=0.3)
    r2 = call('crossval', ctx.cv_args(c, out, '--folds', '1', '-ep', 3))
    if r1.tb:
        return Obs('traceback', r1, 'interrupted run: ' + r1.tb.strip().splitlines()[-1])
    return succeeded(r2, [(not skipped_msg(r2), 'the interrupted fold counted as done'),
                          (r1.code != 0, 'interrupted run exited 0')])


@case('protocols', "crossval --folds ','", 'refused naming --folds')
def _(ctx):
    c = ctx.folded
    return refused(call('crossval', ctx.cv_args(c, ctx.tmp('cv') / 'cv', '--folds', ',')), '--folds')


@case('protocols', 'crossval --folds 7 of 3', 'refused naming the folds there are')
def _(ctx):
    return refused(call('crossval', ctx.cv_args(ctx.folded, ctx.tmp('cv') / 'cv', '--folds', '7')), r'7', r'fold')


@case('protocols', 'crossval --folds 1,1', 'fold 1 once, or refused')
def _(ctx):
    out = ctx.tmp('cv') / 'cv'
    r = call('crossval', ctx.cv_args(ctx.folded, out, '--folds', '1,1'))
    return either(r, [(lambda: len(pd.concat([preds(p) for p in out.glob('fold*/test')])) == 6,
                       'Test utterances pooled twice'),
                      (lambda: r.ret['pooled']['Act']['n'] == 6 if 'n' in r.ret['pooled']['Act'] else True,
                       'pooled twice')], ['--folds'])


@case('protocols', 'crossval on a corpus without folds.csv', 'refused naming folds.csv and prepare_corpus.py')
def _(ctx):
    c = ctx.copy('cvnf')
    return refused(call('crossval', ctx.cv_args(c, c.parent / 'cv')), 'folds.csv')


@case('protocols', 'crossval --out is a file', 'refused naming --out')
def _(ctx):
    d = ctx.tmp('cvf')
    (d / 'f').write_text('keep')
    return refused(call('crossval', ctx.cv_args(ctx.folded, d / 'f')), '--out', kept=snapshot(d / 'f'))


@case('protocols', 'crossval --out equal to the corpus root', 'refused; corpus untouched')
def _(ctx):
    c = ctx.copy('cvroot', folds=True)
    kept = snapshot(c / 'Labels')
    return refused(call('crossval', ctx.cv_args(c, c, '--folds', '1')), r'corpus|--out', kept=kept)


@case('protocols', 'crossval --bootstrap-n 10**13', 'refused before any training')
def _(ctx):
    out = ctx.tmp('cvb') / 'cv'
    r = call('crossval', ctx.cv_args(ctx.folded, out, '--bootstrap-n', 10 ** 13))
    return refused(r, '--bootstrap-n', note='' if not any(out.rglob('*.pth.tar')) else 'trained first')


@case('protocols', 'crossval --bootstrap-n 0', 'usage error')
def _(ctx):
    return refused(call('crossval', ctx.cv_args(ctx.folded, ctx.tmp('cv') / 'cv', '--bootstrap-n', 0)),
                   '--bootstrap-n')


@case('protocols', 'crossval while another crossval holds --out (lock)', 'refused naming the first')
def _(ctx):
    out = ctx.tmp('cvl') / 'cv'
    with other_process() as p:
        hold_lock(out, p)
        r = call('crossval', ctx.cv_args(ctx.folded, out, '--folds', '1'))
    return refused(r, 'the first run|pid')


@case('protocols', 'crossval --name with a slash', 'refused naming --name, or written inside --report')
def _(ctx):
    c, out, _ = cv_fresh(ctx, 'cvn')
    r = call('crossval', ctx.cv_args(c, out, '--folds', '1', '--name', '../../escaped'))
    return either(r, [(lambda: not (out.parent.parent / 'escaped.json').exists(), 'report written outside --out')],
                  ['--name'])


def cc_setup(ctx):
    """Two corpora for crosscorpus.py: the tiny one (train) and the other (test), stores under features/."""
    def build():
        w = ctx.work / 'cc'
        a = shutil.copytree(ctx.base['root'], w / 'A' / 'tinyA')
        b = shutil.copytree(ctx.other['root'], w / 'B' / 'tinyB')
        for root, lld in ((a, ctx.base['lld']), (b, ctx.other['lld'])):
            shutil.copytree(lld, w / 'features' / root.name / 'lld')
        return dict(w=w, a=a, b=b)
    return ctx.get('cc', build)


def cc_args(cc, work, *extra, train=None, test=None):
    return ['--train', train or cc['a'], '--test', test or cc['b'], '--no-released', '--curves', 'constant', '-emo',
            'Act', '-ep', 1, '-batch', 8, '--device', 'cpu', '--workers', 0, '--bootstrap-n', 50, '--work', work,
            *extra]


@case('protocols', 'crosscorpus rerun unchanged', 'cells skipped, same matrix')
def _(ctx):
    cc = cc_setup(ctx)
    work = ctx.tmp('cc') / 'work'
    r1 = call('crosscorpus', cc_args(cc, work), cwd=cc['w'])
    r2 = call('crosscorpus', cc_args(cc, work), cwd=cc['w'])
    return succeeded(r2 if r1.code == 0 else r1, [(skipped_msg(r2), 'redone'),
                                                  (lambda: r2.ret['cells'] == r1.ret['cells'], 'other matrix')])


@case('protocols', 'crosscorpus rerun after the test corpus\'s labels were edited', 'cell redone on new labels')
def _(ctx):
    cc = cc_setup(ctx)
    d = ctx.tmp('cc')
    b = shutil.copytree(cc['b'], d / 'B' / 'tinyB')
    shutil.copytree(cc['w'] / 'features', d / 'features')
    work = d / 'work'
    r1 = call('crosscorpus', cc_args(cc, work, test=b), cwd=d)
    edit_labels(b, lambda x: x.assign(EmoAct=8 - x.EmoAct))
    r2 = call('crosscorpus', cc_args(cc, work, test=b), cwd=d)
    key = next(iter(r1.ret['cells'])) if r1.ret else None
    return succeeded(r2 if r1.code == 0 else r1, [
        (lambda: r2.ret['cells'][key]['metrics']['Act']['ccc'] != r1.ret['cells'][key]['metrics']['Act']['ccc'],
         'cell of the old labels kept')])


@case('protocols', 'crosscorpus: two test corpora in folders of the same name', 'refused naming both')
def _(ctx):
    cc = cc_setup(ctx)
    d = ctx.tmp('cc2')
    b2 = shutil.copytree(cc['a'], d / 'tinyB')
    return refused(call('crosscorpus', cc_args(cc, d / 'work', test=f"{cc['b']},{b2}"), cwd=cc['w']),
                   r'two corpora named|same name')


@case('protocols', 'crosscorpus: test corpus whose features/<name> store holds another corpus', 'refused or '
      'its own store')
def _(ctx):
    cc = cc_setup(ctx)
    d = ctx.tmp('cc3')
    b = shutil.copytree(cc['b'], d / 'B' / 'tinyA')           # other content, the training corpus's folder name
    r = call('crosscorpus', cc_args(cc, d / 'work', test=b), cwd=cc['w'])
    cells = (r.ret or {}).get('cells', {})
    return either(r, [(lambda: any(v['n'] == 24 for v in cells.values()), 'scored on the other corpus\'s features')],
                  ['other audio|extract'])


@case('protocols', 'crosscorpus --train a folder that does not exist', 'refused naming it')
def _(ctx):
    cc = cc_setup(ctx)
    d = ctx.tmp('cc4')
    return refused(call('crosscorpus', cc_args(cc, d / 'work', train=d / 'nothere'), cwd=cc['w']), 'nothere')


@case('protocols', 'crosscorpus --test empty', 'refused naming --test')
def _(ctx):
    cc = cc_setup(ctx)
    d = ctx.tmp('cc5')
    return refused(call('crosscorpus', cc_args(cc, d / 'work', test=','), cwd=cc['w']), '--test')


# ---------------------------------------------------------------- normalisation (norm_para.py, NormTerm use)
def norm_args(ctx, out, *extra, corpus=None, features=None):
    return ['--corpus', corpus or ctx.base['root'], '--features', features or ctx.base['lld'], '--out', out, *extra]


@case('normalisation', 'norm_para on the Train split', 'NormTerm with its record')
def _(ctx):
    out = ctx.tmp('n') / 'N'
    r = call('norm_para', norm_args(ctx, out))
    return succeeded(r, [(lambda: set(json.loads((out / 'normterm.json').read_text())['speakers']) == {'1', '2'},
                          'record lacks the speakers')])


@case('normalisation', 'norm_para --out over an existing NormTerm', 'refused naming --overwrite; old kept')
def _(ctx):
    out = ctx.tmp('n') / 'N'
    call('norm_para', norm_args(ctx, out))
    kept = snapshot(out)
    return refused(call('norm_para', norm_args(ctx, out, '--split', 'Validation')), '--overwrite', kept=kept)


@case('normalisation', 'norm_para --out over an existing NormTerm, --overwrite', 'replaced')
def _(ctx):
    out = ctx.tmp('n') / 'N'
    call('norm_para', norm_args(ctx, out))
    r = call('norm_para', norm_args(ctx, out, '--split', 'Validation', '--overwrite'))
    return succeeded(r, [(lambda: json.loads((out / 'normterm.json').read_text())['split'] == 'Validation', 'old')])


@case('normalisation', 'norm_para with the default --out (the released NormTerm/)', 'refused; release kept')
def _(ctx):
    rel = REPO / 'NormTerm'
    kept = snapshot(rel)
    backup = ctx.tmp('relnorm') / 'NormTerm'
    shutil.copytree(rel, backup)
    try:
        r = call('norm_para', ['--corpus', ctx.base['root'], '--features', ctx.base['lld']], cwd=REPO)
        return refused(r, '--overwrite', kept=kept)
    finally:
        if _lost(kept) or set(os.listdir(rel)) != set(os.listdir(backup)):
            shutil.rmtree(rel)
            shutil.copytree(backup, rel)


@case('normalisation', 'norm_para --out equal to the feature store', 'refused; store kept')
def _(ctx):
    s = ctx.tmp('n') / 'lld'
    shutil.copytree(ctx.base['lld'], s)
    kept = snapshot(s)
    return refused(call('norm_para', norm_args(ctx, s, features=s, corpus=ctx.base['root'])), 'feature store',
                   kept=kept)


@case('normalisation', 'norm_para --out equal to the corpus Labels folder', 'written beside the labels (kept) or '
      'refused')
def _(ctx):
    c = ctx.copy('n')
    kept = snapshot(c / 'Labels')
    r = call('norm_para', norm_args(ctx, c / 'Labels', corpus=c))
    return either(r, [(lambda: (c / 'Labels' / 'normterm.json').exists(), 'no NormTerm')], [r'corpus|reads|--out'],
                  kept=kept)


@case('normalisation', 'norm_para --out below a file', 'refused naming --out')
def _(ctx):
    d = ctx.tmp('n')
    (d / 'f').write_text('')
    return refused(call('norm_para', norm_args(ctx, d / 'f' / 'N')), '--out', 'is a file')


@case('normalisation', 'norm_para --split Bogus', 'refused naming the split')
def _(ctx):
    return refused(call('norm_para', norm_args(ctx, ctx.tmp('n') / 'N', '--split', 'Bogus')), 'Bogus')


@case('normalisation', 'norm_para while another holds --out (lock)', 'refused naming the first')
def _(ctx):
    out = ctx.tmp('n') / 'N'
    with other_process() as p:
        hold_lock(out, p)
        r = call('norm_para', norm_args(ctx, out))
    return refused(r, 'the first run|pid')


@case('normalisation', 'testing with a NormTerm of the Test speakers (copied corpus)', 'refused: seen speakers')
def _(ctx):
    c = ctx.copy('nleak')
    n = c.parent / 'N'
    call('norm_para', norm_args(ctx, n, '--split', 'Test', corpus=c))
    return refused(call('testing', ctx.test_args(c.parent / 't', '--norm', n)), 'saw tested speaker|split under test')


@case('normalisation', 'testing with a NormTerm of the Test speakers from a renamed copy', 'refused: seen speakers')
def _(ctx):
    c = ctx.tmp('nleak2') / 'renamed'
    shutil.copytree(ctx.base['root'], c)
    n = c.parent / 'N'
    call('norm_para', norm_args(ctx, n, '--split', 'Test', corpus=c))
    return refused(call('testing', ctx.test_args(c.parent / 't', '--norm', n)), r'saw tested speaker\(s\) 5, 6')


@case('normalisation', 'testing --fold 2 with the NormTerm of fold 1\'s Train part (holds speakers 1, 2)',
      'refused: statistics saw tested speakers')
def _(ctx):
    d = ctx.tmp('nfold')
    n = d / 'N'
    call('norm_para', norm_args(ctx, n, '--fold', 1, corpus=ctx.folded))
    r = call('testing', ctx.test_args(d / 't', '--fold', 2, '-set', 'Test', '--norm', n, '--allow-seen-speakers',
                                      corpus=ctx.folded)[:-1] if False else
             ctx.test_args(d / 't', '--fold', 2, '-set', 'Test', '--norm', n, corpus=ctx.folded))
    return refused(r, 'saw tested speaker')


@case('normalisation', 'NormTerm of fold 1 Train used for fold 1 Test', 'scored (no leak)')
def _(ctx):
    d = ctx.tmp('nok')
    n = d / 'N'
    call('norm_para', norm_args(ctx, n, '--fold', 1, corpus=ctx.folded))
    r = call('testing', ctx.test_args(d / 't', '--fold', 1, '-set', 'Test', '--norm', n, corpus=ctx.folded))
    return succeeded(r, [(lambda: len(preds(d / 't')) == 6, 'not 6 predictions')])


@case('normalisation', 'a NormTerm with one .mat file deleted', 'named with the file')
def _(ctx):
    d = ctx.tmp('nmat')
    n = d / 'N'
    call('norm_para', norm_args(ctx, n))
    (n / 'feat_norm_stds.mat').unlink()
    return refused(call('testing', ctx.test_args(d / 't', '--norm', n)), 'feat_norm_stds')


@case('normalisation', 'a NormTerm whose .mat was edited after norm_para', 'refused: differs from its record')
def _(ctx):
    d = ctx.tmp('nedit')
    n = d / 'N'
    call('norm_para', norm_args(ctx, n))
    import scipy.io as sio
    m = sio.loadmat(n / 'feat_norm_means.mat')
    k = [x for x in m if not x.startswith('__')][0]
    m[k] = m[k] + 1.0
    sio.savemat(n / 'feat_norm_means.mat', {k: m[k]})
    r = call('testing', ctx.test_args(d / 't', '--norm', n))
    return either(r, [(False, 'edited statistics used without a word')], ['feat_norm_means|record|SHA'])


@case('normalisation', 'a NormTerm of another feature set (ComParE 2016 store)', 'refused naming the dimension')
def _(ctx):
    def build():
        d = ctx.work / 'compare'
        r = call('extract_features', ['--corpus', ctx.base['root'], '--out', d / 'lld', '--workers', 1, '--preset',
                                      'ComParE_2016'])
        assert r.code == 0, r.err[-2000:]
        return d / 'lld'
    cmp_store = ctx.get('compare', build)
    d = ctx.tmp('ndim')
    call('norm_para', norm_args(ctx, d / 'N', features=cmp_store))
    return refused(call('testing', ctx.test_args(d / 't', '--norm', d / 'N')), r'dim|130|preset|ComParE')


@case('normalisation', 'testing --feature-norm speaker on a corpus without SpkrID', 'refused naming SpkrID')
def _(ctx):
    c = ctx.copy('nspk')
    edit_labels(c, lambda d: d.drop(columns='SpkrID'))
    return refused(call('testing', ctx.test_args(c.parent / 't', '--feature-norm', 'speaker', corpus=c)),
                   r'SpkrID|speaker')


@case('normalisation', 'norm_para on a store that lacks the Train utterances', 'named (missing utterances)')
def _(ctx):
    d = ctx.tmp('nsplit')
    s = d / 'lld'
    r = call('extract_features', ['--corpus', ctx.base['root'], '--out', s, '--workers', 1, '--split', 'Test'])
    assert r.code == 0, r.err[-1000:]
    r = call('norm_para', norm_args(ctx, d / 'N', features=s))
    return refused(r, r'Train|utterance', r'extract')


@case('normalisation', 'norm_para --fold 1 then training --fold 1 --norm', 'trained (statistics of its Train part)')
def _(ctx):
    d = ctx.tmp('ntr')
    call('norm_para', norm_args(ctx, d / 'N', '--fold', 1, corpus=ctx.folded))
    r = call('training', ctx.train_args(d / 'm', '--fold', 1, '--norm', d / 'N', corpus=ctx.folded))
    return succeeded(r)


@case('normalisation', 'training --fold 2 --norm of fold 1\'s Test speakers', 'refused or flagged in the record')
def _(ctx):
    d = ctx.tmp('ntr2')
    call('norm_para', norm_args(ctx, d / 'N', '--fold', 1, '--split', 'Test', corpus=ctx.folded))
    r = call('training', ctx.train_args(d / 'm', '--fold', 3, '--norm', d / 'N', corpus=ctx.folded))
    # fold 3 tests speakers 3, 4; fold 1's Test part is 5, 6 = fold 3's Train part: no leak, trained
    return succeeded(r)


# ---------------------------------------------------------------- training
@case('training', 'Ctrl-C after epoch 1 of 40', 'exit 130, the checkpoint recorded as unfinished')
def _(ctx):
    u = ctx.unfinished
    r = u['r']
    meta = u['ck'].with_name(u['ck'].name.replace('.pth.tar', '.meta.json'))
    return refused(r, 'interrupted') if r.code == 0 or r.tb else succeeded(
        R(0, r.out, r.err), [(lambda: json.loads(meta.read_text())['finished'] is False, 'recorded as finished')])


@case('training', 'testing.py on the interrupted run\'s checkpoint', 'refused: UNFINISHED, --allow-unfinished')
def _(ctx):
    u = ctx.unfinished
    a = ctx.test_args(ctx.tmp('tu') / 't')
    a[a.index('--checkpoint') + 1] = u['ck']
    return refused(call('testing', a), 'UNFINISHED', '--allow-unfinished')


@case('training', 'testing.py --allow-unfinished on it', 'scored, every row says model_finished false')
def _(ctx):
    u = ctx.unfinished
    out = ctx.tmp('tu') / 't'
    a = ctx.test_args(out, '--allow-unfinished')
    a[a.index('--checkpoint') + 1] = u['ck']
    r = call('testing', a)
    return succeeded(r, [(lambda: (preds(out).model_finished == False).all(), 'rows not marked')])  # noqa: E712


@case('training', 'training --resume of the interrupted run', 'continued to the end, marked finished')
def _(ctx):
    u = ctx.unfinished
    d = ctx.tmp('res')
    m = shutil.copytree(u['ck'].parent, d / 'm')
    b = ctx.base
    r = call('training', ['-emo', 'Act', '-ep', 2, '-batch', 8, '--corpus', b['root'], '--features', b['lld'],
                          '--rankseq', b['rs'], '--out', m, '--device', 'cpu', '--workers', 0, '--resume'])
    # -ep 2 instead of 40: either refused (other settings) or continued; both told
    return either(r, [(lambda: all(json.loads(p.read_text()).get('finished') for p in m.glob('*.meta.json')),
                       'not marked finished')], ['-ep|epochs|resume'])


@case('training', 'training --resume with nothing to resume', 'refused naming --resume')
def _(ctx):
    return refused(call('training', ctx.train_args(ctx.tmp('nr') / 'm', '--resume')), r'resume')


@case('training', '--out holding a finished model of the same name', 'refused naming --overwrite; model kept')
def _(ctx):
    d = ctx.tmp('ow')
    m = shutil.copytree(ctx.base['ck'].parent, d / 'm')
    kept = snapshot(m)
    return refused(call('training', ctx.train_args(m)), '--overwrite', kept=kept)


@case('training', '--out equal to the feature store', 'refused; store kept')
def _(ctx):
    s = ctx.tmp('ofs') / 'lld'
    shutil.copytree(ctx.base['lld'], s)
    kept = snapshot(s)
    return refused(call('training', ctx.train_args(s, features=s)), r'feature store|reads|--out', kept=kept)


@case('training', '--out below a file', 'refused naming --out')
def _(ctx):
    d = ctx.tmp('of')
    (d / 'f').write_text('')
    return refused(call('training', ctx.train_args(d / 'f' / 'm')), '--out', 'is a file')


@case('training', 'a second training on one --out while the first runs (lock)', 'refused naming the first')
def _(ctx):
    d = ctx.tmp('tl')
    (d / 'm').mkdir()
    lock = d / 'm' / ctx.base['ck'].name.replace('.pth.tar', '.lock')     # the run's lock (checkpoints.Run)
    with other_process() as p:
        from utils import _proc_start
        lock.write_text(json.dumps({'pid': p.pid, 'host': socket.gethostname(), 'start': _proc_start(p.pid),
                                    'command': 'the first run (probe)', 'time': 'now'}))
        r = call('training', ctx.train_args(d / 'm'))
    return refused(r, 'the first run|pid')


@case('training', '--rankseq folder without training_Act.json', 'refused naming the file')
def _(ctx):
    d = ctx.tmp('rs')
    (d / 'rs').mkdir()
    a = ctx.train_args(d / 'm')
    a[a.index('--rankseq') + 1] = d / 'rs'
    return refused(call('training', a), 'training_Act')


@case('training', '--rankseq JSON truncated', 'refused naming the file')
def _(ctx):
    d = ctx.tmp('rs')
    rs = shutil.copytree(ctx.base['rs'], d / 'rs')
    f = rs / 'training_Act.json'
    f.write_text(f.read_text()[:100])
    a = ctx.train_args(d / 'm')
    a[a.index('--rankseq') + 1] = rs
    return refused(call('training', a), 'training_Act')


@case('training', '--rankseq of another corpus (no entry for these utterances)', 'refused naming the utterances')
def _(ctx):
    d = ctx.tmp('rs')
    rs = constant_rs(ctx.other['root'], d / 'rs')
    f = rs / 'training_Act.json'
    f.write_text(json.dumps({k.replace('MSP-PODCAST', 'OTHER'): v for k, v in json.loads(f.read_text()).items()}))
    a = ctx.train_args(d / 'm')
    a[a.index('--rankseq') + 1] = rs
    return refused(call('training', a), r'training_Act|rank')


@case('training', '--features folder that does not exist', 'refused with the extract_features.py command')
def _(ctx):
    d = ctx.tmp('nf')
    return refused(call('training', ctx.train_args(d / 'm', features=d / 'nothere')), 'nothere', 'extract_features')


@case('training', '--corpus folder that does not exist', 'refused naming it')
def _(ctx):
    d = ctx.tmp('nc')
    return refused(call('training', ctx.train_args(d / 'm', corpus=d / 'nothere')), 'nothere')


@case('training', 'store of a same-named corpus with other audio', 'refused: other audio')
def _(ctx):
    d = ctx.tmp('sn')
    return refused(call('training', ctx.train_args(d / 'm', features=ctx.other['lld'])), 'other audio')


@case('training', 'store extracted from the Test split only', 'refused naming the missing Train utterances')
def _(ctx):
    d = ctx.tmp('ps')
    s = d / 'lld'
    call('extract_features', ['--corpus', ctx.base['root'], '--out', s, '--workers', 1, '--split', 'Test'])
    return refused(call('training', ctx.train_args(d / 'm', features=s)), r'Train|not in|missing', 'extract')


@case('training', '-emo Foo', 'refused naming -emo')
def _(ctx):
    a = ctx.train_args(ctx.tmp('e') / 'm')
    a[a.index('-emo') + 1] = 'Foo'
    return refused(call('training', a), r'Foo|-emo')


@case('training', '--init-from a checkpoint that does not exist', 'refused naming it')
def _(ctx):
    d = ctx.tmp('if')
    return refused(call('training', ctx.train_args(d / 'm', '--init-from', d / 'none.pth.tar')), 'none.pth.tar')


@case('training', '--init-from the interrupted (unfinished) checkpoint', 'refused: UNFINISHED, --allow-unfinished')
def _(ctx):
    d = ctx.tmp('ifu')
    return refused(call('training', ctx.train_args(d / 'm', '--init-from', ctx.unfinished['ck'])), 'UNFINISHED',
                   '--allow-unfinished')


@case('training', '--init-from the unfinished checkpoint, --allow-unfinished', 'trained; its record says the start '
      'was unfinished')
def _(ctx):
    d = ctx.tmp('ifu')
    r = call('training', ctx.train_args(d / 'm', '--init-from', ctx.unfinished['ck'], '--allow-unfinished'))
    return succeeded(r, [(lambda: all(json.loads(p.read_text())['init_from'].get('finished') is False
                                      for p in (d / 'm').glob('*.meta.json')), 'record does not say so')])


@case('training', '--init-from a truncated checkpoint file', 'refused naming the file')
def _(ctx):
    d = ctx.tmp('ift')
    ck = d / 'bad.pth.tar'
    ck.write_bytes(ctx.base['ck'].read_bytes()[:2000])
    return refused(call('training', ctx.train_args(d / 'm', '--init-from', ck)), 'bad.pth.tar')


def flag_case(area, module, flag, value, args_fn):
    @case(area, f'{module}.py {flag} {value}', f'usage error naming {flag}')
    def run(ctx):
        a = args_fn(ctx)
        if flag in a:
            a[a.index(flag) + 1] = value
        else:
            a += [flag, value]
        return refused(call(module, a), re.escape(flag))
    return run


for flag, vals in (('-ep', ('0', '-1', 'abc', '1.5')), ('-batch', ('0', '-8')), ('--lr', ('nan', 'inf', '-1', '0')),
                   ('--seed', ('-1', str(2 ** 40))), ('--limit', ('0',)), ('--workers', ('-1',)),
                   ('--threads', ('-1',))):
    for v in vals:
        flag_case('flags', 'training', flag, v, lambda ctx: ctx.train_args(ctx.tmp('fl') / 'm'))
for flag, vals in (('--bootstrap-n', ('0', '-5', 'x', str(10 ** 13))), ('-batch', ('0',)), ('--limit', ('-1',))):
    for v in vals:
        flag_case('flags', 'testing', flag, v, lambda ctx: ctx.test_args(ctx.tmp('fl') / 't'))


@case('training', 'a checkpoint whose record (.meta.json) was deleted', 'named or used as a model without record')
def _(ctx):
    d = ctx.tmp('nometa')
    m = shutil.copytree(ctx.base['ck'].parent, d / 'm')
    for p in m.glob('*.meta.json'):
        p.unlink()
    a = ctx.test_args(d / 't')
    a[a.index('--checkpoint') + 1] = m / ctx.base['ck'].name
    r = call('testing', a)
    return either(r, [(lambda: 'record' in r.all.lower() or 'meta' in r.all.lower(), 'no word about the record')],
                  [r'meta\.json|record'])


@case('training', 'a truncated .pth.tar', 'refused naming the file')
def _(ctx):
    d = ctx.tmp('trunc')
    m = shutil.copytree(ctx.base['ck'].parent, d / 'm')
    truncate(m / ctx.base['ck'].name)
    a = ctx.test_args(d / 't')
    a[a.index('--checkpoint') + 1] = m / ctx.base['ck'].name
    return refused(call('testing', a), ctx.base['ck'].name)


@case('training', 'a .pth.tar replaced by another run\'s weights (record kept)', 'refused: SHA-256 differs')
def _(ctx):
    d = ctx.tmp('swap')
    m = shutil.copytree(ctx.base['ck'].parent, d / 'm')
    import torch
    obj = torch.load(m / ctx.base['ck'].name, map_location='cpu', weights_only=False)
    sd = obj.get('state_dict', obj) if isinstance(obj, dict) else obj
    k = next(k for k, v in sd.items() if hasattr(v, 'add_'))
    sd[k].add_(0.01)                                     # other weights, same size
    torch.save(obj, m / ctx.base['ck'].name)
    a = ctx.test_args(d / 't')
    a[a.index('--checkpoint') + 1] = m / ctx.base['ck'].name
    return refused(call('testing', a), r'SHA|checksum|record')


@case('training', 'testing a model on its own Train speakers in a renamed copy', 'refused: seen speakers')
def _(ctx):
    c = ctx.copy('seen')
    return refused(call('testing', ctx.test_args(c.parent / 't', '-set', 'Train', corpus=c)), 'saw tested speaker')


@case('training', 'testing a model on a store with other extraction settings', 'refused naming the setting')
def _(ctx):
    d = ctx.tmp('set')
    s = shutil.copytree(ctx.base['lld'], d / 'lld')
    m = json.loads((s / 'meta.json').read_text())
    (s / 'meta.json').write_text(json.dumps({**m, 'upstream_sha256': 'f' * 64}))
    a = ctx.test_args(d / 't')
    a[a.index('--features') + 1] = s
    return refused(call('testing', a), 'upstream_sha256')


@case('training', 'testing --out equal to the model folder', 'refused or written beside the model, model kept')
def _(ctx):
    d = ctx.tmp('tom')
    m = shutil.copytree(ctx.base['ck'].parent, d / 'm')
    kept = snapshot(m)
    a = ctx.test_args(m)
    a[a.index('--checkpoint') + 1] = m / ctx.base['ck'].name
    return either(call('testing', a), [], ['--out'], kept=kept)


@case('training', 'testing --out equal to the feature store', 'refused; store kept')
def _(ctx):
    d = ctx.tmp('tos')
    s = shutil.copytree(ctx.base['lld'], d / 'lld')
    kept = snapshot(s)
    a = ctx.test_args(s)
    a[a.index('--features') + 1] = s
    return either(call('testing', a), [], ['--out'], kept=kept)


@case('training', 'testing twice into one --out', 'second replaces the result files (named by the user)')
def _(ctx):
    out = ctx.tmp('tt') / 't'
    call('testing', ctx.test_args(out))
    r = call('testing', ctx.test_args(out, '--bootstrap', 'utterances'))
    return succeeded(r, [(lambda: 'utterances' in (out / 'metrics.csv').read_text() if (out / 'metrics.csv').exists()
                          else True, 'metrics of the first run left')])


# ---------------------------------------------------------------- prediction (predict.py)
def pred_args(ctx, files, out, *extra, ck=None):
    return [*map(str, files), '-emo', 'Act', '--checkpoint', ck or ctx.base['ck'], '--out', out, '--device', 'cpu',
            *extra]


def pcsv(p):
    return pd.read_csv(p)


@case('prediction', 'one WAV', 'one row with a value in 1-7')
def _(ctx):
    out = ctx.tmp('p') / 'r.csv'
    r = call('predict', pred_args(ctx, [ctx.wav()], out))
    return succeeded(r, [(lambda: len(pcsv(out)) == 1 and 1 <= pcsv(out).filter(like='Act').iloc[0, 0] <= 7,
                          'no value')])


@case('prediction', 'the interrupted run\'s checkpoint', 'refused: UNFINISHED')
def _(ctx):
    out = ctx.tmp('p') / 'r.csv'
    return refused(call('predict', pred_args(ctx, [ctx.wav()], out, ck=ctx.unfinished['ck'])), 'UNFINISHED')


@case('prediction', 'the interrupted run\'s checkpoint, --allow-unfinished', 'rows marked unfinished')
def _(ctx):
    out = ctx.tmp('p') / 'r.csv'
    r = call('predict', pred_args(ctx, [ctx.wav()], out, '--allow-unfinished', ck=ctx.unfinished['ck']))
    return succeeded(r, [(lambda: (pcsv(out).model_finished == False).all(), 'rows not marked')])  # noqa: E712


for g in ('0', '100', 'nan', '-0.1'):
    flag_case('flags', 'predict', '--grid', g, lambda ctx: pred_args(ctx, [ctx.wav()], ctx.tmp('p') / 'r.csv'))
for flag, v in (('--window', '0'), ('--overlap', '-1'), ('--max-seconds', '-1'), ('-batch', '0'),
                ('--window', 'inf')):
    flag_case('flags', 'predict', flag, v, lambda ctx: pred_args(ctx, [ctx.wav()], ctx.tmp('p') / 'r.csv'))


@case('prediction', '--overlap larger than --window', 'refused naming both')
def _(ctx):
    out = ctx.tmp('p') / 'r.csv'
    return refused(call('predict', pred_args(ctx, [ctx.wav()], out, '--window', 4, '--overlap', 6)), '--overlap')


@case('prediction', 'a file that does not exist', 'named (error row or refusal)')
def _(ctx):
    d = ctx.tmp('p')
    out = d / 'r.csv'
    r = call('predict', pred_args(ctx, [d / 'nothere.wav'], out))
    return either(r, [(lambda: pcsv(out).error.astype(str).str.contains('nothere|not found|No such').any(),
                       'no error row')], ['nothere'])


@case('prediction', 'a text file named .wav', 'an error row naming it, others predicted')
def _(ctx):
    d = ctx.tmp('p')
    bad = d / 'bad.wav'
    bad.write_text('not audio')
    out = d / 'r.csv'
    r = call('predict', pred_args(ctx, [bad, ctx.wav()], out))
    return either(r, [(lambda: pcsv(out).error.notna().sum() == 1 and len(pcsv(out)) == 2, 'bad file not named')],
                  ['bad.wav'])


@case('prediction', 'a truncated WAV', 'predicted from what is there with a warning, or an error row')
def _(ctx):
    d = ctx.tmp('p')
    w = shutil.copy(ctx.wav(3), d / 'cut.wav')
    truncate(w)
    out = d / 'r.csv'
    r = call('predict', pred_args(ctx, [w], out))
    return either(r, [(lambda: 'cut.wav' in r.all and ('short' in r.all.lower() or 'truncat' in r.all.lower()
                                                       or pcsv(out).error.notna().any()),
                       'truncated file predicted without a word')], ['cut.wav'])


@case('prediction', 'an all-zero WAV', 'an error or warning row naming the silence')
def _(ctx):
    d = ctx.tmp('p')
    silent(d / 'zero.wav', 2.0)
    out = d / 'r.csv'
    r = call('predict', pred_args(ctx, [d / 'zero.wav'], out))
    return either(r, [(lambda: 'silen' in (r.all + pcsv(out).to_csv()).lower(), 'silence predicted without a word')],
                  ['zero.wav'])


@case('prediction', 'a 20 ms WAV', 'an error row naming it (too short), no traceback')
def _(ctx):
    d = ctx.tmp('p')
    sf.write(d / 'tiny.wav', np.random.default_rng(0).normal(0, 0.1, 320).astype(np.float32), 16000)
    out = d / 'r.csv'
    r = call('predict', pred_args(ctx, [d / 'tiny.wav'], out))
    return either(r, [(lambda: pcsv(out).error.notna().any() or 'short' in r.all.lower(), 'no word')],
                  ['tiny.wav'])


@case('prediction', 'a stereo 44.1 kHz WAV', 'predicted (mixed down, resampled)')
def _(ctx):
    d = ctx.tmp('p')
    y, sr = sf.read(ctx.wav(3))
    import scipy.signal as ss
    y2 = ss.resample_poly(y, 441, 160)
    sf.write(d / 'st.wav', np.stack([y2, y2], 1), 44100)
    out = d / 'r.csv'
    r = call('predict', pred_args(ctx, [d / 'st.wav', ctx.wav(3)], out))
    return succeeded(r, [(lambda: abs(pcsv(out).filter(like='Act').iloc[0, 0] - pcsv(out).filter(
        like='Act').iloc[1, 0]) < 0.2, 'resampled stereo gives another value')])


@case('prediction', 'a float WAV holding NaN samples', 'error row naming it, not a NaN value')
def _(ctx):
    d = ctx.tmp('p')
    y, sr = sf.read(ctx.wav(3), dtype='float32')
    y[1000:1100] = np.nan
    sf.write(d / 'nan.wav', y, sr, subtype='FLOAT')
    out = d / 'r.csv'
    r = call('predict', pred_args(ctx, [d / 'nan.wav'], out))
    return either(r, [(lambda: pcsv(out).error.notna().any() or pcsv(out).filter(like='Act').notna().all().all()
                       and 'nan' in r.all.lower(), 'NaN samples predicted without a word')], ['nan.wav'])


@case('prediction', 'a file name with spaces and umlauts', 'predicted, name kept')
def _(ctx):
    d = ctx.tmp('p')
    w = shutil.copy(ctx.wav(), d / 'Über die Brücke.wav')
    out = d / 'r.csv'
    r = call('predict', pred_args(ctx, [w], out))
    return succeeded(r, [(lambda: 'Über die Brücke.wav' in pcsv(out).iloc[0, 0], 'name mangled')])


@case('prediction', '--out equal to the input WAV', 'refused; WAV kept')
def _(ctx):
    d = ctx.tmp('p')
    w = shutil.copy(ctx.wav(), d / 'a.wav')
    kept = snapshot(w)
    return refused(call('predict', pred_args(ctx, [w], w)), '--out', kept=kept)


@case('prediction', '--out equal to the checkpoint', 'refused; model kept')
def _(ctx):
    d = ctx.tmp('p')
    m = shutil.copytree(ctx.base['ck'].parent, d / 'm')
    ck = m / ctx.base['ck'].name
    kept = snapshot(m)
    return refused(call('predict', pred_args(ctx, [ctx.wav()], ck, ck=ck)), '--out', kept=kept)


@case('prediction', '--json equal to --out', 'refused naming both')
def _(ctx):
    out = ctx.tmp('p') / 'r.csv'
    return refused(call('predict', pred_args(ctx, [ctx.wav()], out, '--json', out)), '--json')


@case('prediction', '--out below a file', 'refused naming --out')
def _(ctx):
    d = ctx.tmp('p')
    (d / 'f').write_text('')
    return refused(call('predict', pred_args(ctx, [ctx.wav()], d / 'f' / 'r.csv')), '--out', 'is a file')


@case('prediction', '--plot DIR that is a file', 'refused naming --plot')
def _(ctx):
    d = ctx.tmp('p')
    (d / 'f').write_text('keep')
    return refused(call('predict', pred_args(ctx, [ctx.wav()], d / 'r.csv', '--plot', d / 'f')), '--plot',
                   kept=snapshot(d / 'f'))


@case('prediction', 'a second predict on one CSV while the first runs (lock)', 'refused naming the first')
def _(ctx):
    d = ctx.tmp('p')
    with other_process() as p:
        hold_lock(d / 'r.csv', p)
        r = call('predict', pred_args(ctx, [ctx.wav()], d / 'r.csv'))
    return refused(r, 'the first run')


@case('prediction', 'predict twice on one CSV (one after the other)', 'the second replaces it (a named result file)')
def _(ctx):
    d = ctx.tmp('p')
    call('predict', pred_args(ctx, [ctx.wav(0)], d / 'r.csv'))
    r = call('predict', pred_args(ctx, [ctx.wav(1)], d / 'r.csv'))
    return succeeded(r, [(lambda: pcsv(d / 'r.csv').iloc[0, 0].endswith(ctx.wav(1).name), 'not replaced')])


@case('prediction', 'Ctrl-C during a predict run over 60 files', 'outputs marked partial with every file not '
      'processed, or nothing written and said so')
def _(ctx):
    d = ctx.tmp('pint')
    files = []
    for i in range(60):
        files.append(shutil.copy(ctx.wav(i % 24), d / f'f{i:02d}.wav'))
    out = d / 'r.csv'
    from outputs import lock_file
    r = script('predict', pred_args(ctx, files, out), interrupt_when=lock_file(out).exists, after=1.5)
    if r.tb:
        return Obs('traceback', r, r.tb.strip().splitlines()[-1])
    if not out.exists():
        return refused(r, r'nothing|not written|interrupted') if r.code else Obs('silent-wrong', r, 'exit 0, no CSV')
    df = pcsv(out)
    if len(df) == 60 and df.error.isna().all():
        return Obs('handled', r, 'finished before the interrupt')
    return (Obs('handled', r) if len(df) == 60 and df.partial.astype(str).str.contains('PARTIAL').all() and r.code
            else Obs('silent-wrong', r, f'{len(df)} rows; partial marks missing'))


@case('prediction', '--checkpoint folder without a model for -emo Val', 'refused naming -emo and the folder')
def _(ctx):
    out = ctx.tmp('p') / 'r.csv'
    a = pred_args(ctx, [ctx.wav()], out, ck=ctx.base['ck'].parent)
    a[a.index('-emo') + 1] = 'Val'
    return refused(call('predict', a), r'Val')


@case('prediction', '--norm NormTerm of a ComParE store (other dimension)', 'refused naming the dimension')
def _(ctx):
    cmp_store = ctx._cache.get('compare')
    d = ctx.tmp('p')
    if cmp_store is None:
        call('extract_features', ['--corpus', ctx.base['root'], '--out', d / 'lld', '--workers', 1, '--preset',
                                      'ComParE_2016'])
        cmp_store = ctx._cache['compare'] = d / 'lld'
    call('norm_para', norm_args(ctx, d / 'N', features=cmp_store))
    return refused(call('predict', pred_args(ctx, [ctx.wav()], d / 'r.csv', '--norm', d / 'N')),
                   r'dim|130|preset|ComParE')


@case('prediction', '--feature-norm speaker with a Latin-1 --speakers CSV', 'read or named with the fix')
def _(ctx):
    d = ctx.tmp('p')
    (d / 's.csv').write_bytes(b'file,speaker\n' + f'{ctx.wav()},Jürgen\n'.encode('latin-1'))
    r = call('predict', pred_args(ctx, [ctx.wav()], d / 'r.csv', '--feature-norm', 'speaker', '--speakers',
                                  d / 's.csv'))
    return either(r, [(lambda: len(pcsv(d / 'r.csv')) == 1, 'no row')], ['s.csv'])


@case('prediction', '--feature-norm speaker, --speakers lacking a file', 'refused naming the file')
def _(ctx):
    d = ctx.tmp('p')
    (d / 's.csv').write_text(f'file,speaker\n{ctx.wav(1)},a\n')
    r = call('predict', pred_args(ctx, [ctx.wav()], d / 'r.csv', '--feature-norm', 'speaker', '--speakers',
                                  d / 's.csv'))
    return either(r, [(lambda: pcsv(d / 'r.csv').error.notna().any(), 'predicted without its speaker')],
                  [ctx.wav().name])


@case('prediction', '-emo Foo', 'refused naming -emo')
def _(ctx):
    a = pred_args(ctx, [ctx.wav()], ctx.tmp('p') / 'r.csv')
    a[a.index('-emo') + 1] = 'Foo'
    return refused(call('predict', a), 'Foo')


# ---------------------------------------------------------------- outputs (extract_features.py and the policy)
def ex_args(ctx, out, *extra, corpus=None):
    return ['--corpus', corpus or ctx.base['root'], '--out', out, '--workers', 1, *extra]


@case('outputs', 'extract_features --out equal to the corpus root', 'refused; skipped.csv kept')
def _(ctx):
    c = ctx.copy('eo')
    (c / 'skipped.csv').write_text('Item,Reason\nx.wav,converter\n')
    kept = snapshot(c / 'skipped.csv', c / 'Labels')
    return refused(call('extract_features', ex_args(ctx, c, corpus=c)), 'corpus', kept=kept)


@case('outputs', 'extract_features --out equal to the Audios folder', 'refused; recordings kept')
def _(ctx):
    c = ctx.copy('eo')
    kept = snapshot(c / 'Audios')
    return refused(call('extract_features', ex_args(ctx, c / 'Audios', corpus=c)), 'corpus', kept=kept)


@case('outputs', 'extract_features into a store of a same-named corpus with other audio', 'refused, --overwrite')
def _(ctx):
    d = ctx.tmp('eo')
    s = shutil.copytree(ctx.base['lld'], d / 'lld')
    kept = snapshot(s)
    return refused(call('extract_features', ex_args(ctx, s, corpus=ctx.other['root'])), '--overwrite', kept=kept)


@case('outputs', '... then with --overwrite', 'store rebuilt from the new audio')
def _(ctx):
    d = ctx.tmp('eo')
    s = shutil.copytree(ctx.base['lld'], d / 'lld')
    r = call('extract_features', ex_args(ctx, s, '--overwrite', corpus=ctx.other['root']))
    import identity
    from corpus import Corpus
    from feature_store import FeatureStore
    return succeeded(r, [(lambda: identity.store_mismatch(FeatureStore(s), Corpus(ctx.other['root'])) == ([], True),
                          'old features left')])


@case('outputs', 'extract_features into a store of other settings (ComParE preset)', 'refused naming --overwrite')
def _(ctx):
    d = ctx.tmp('eo')
    s = shutil.copytree(ctx.base['lld'], d / 'lld')
    kept = snapshot(s)
    return refused(call('extract_features', ex_args(ctx, s, '--preset', 'ComParE_2016')), '--overwrite', kept=kept)


@case('outputs', 'extract_features rerun on an existing complete store', 'nothing redone, store kept')
def _(ctx):
    d = ctx.tmp('eo')
    s = shutil.copytree(ctx.base['lld'], d / 'lld')
    kept = snapshot(s / 'sources.csv')
    r = call('extract_features', ex_args(ctx, s))
    return succeeded(r, [(lambda: '0 to do' in r.all or '24 already' in r.all, 'redone')], kept=kept)


@case('outputs', 'extract_features after one recording was edited', 'that utterance redone or refused')
def _(ctx):
    c = ctx.copy('eo')
    s = shutil.copytree(ctx.base['lld'], c.parent / 'lld')
    w = sorted((c / 'Audios').glob('*.wav'))[5]
    y, sr = sf.read(w)
    sf.write(w, y * 0.3, sr)
    r = call('extract_features', ex_args(ctx, s, corpus=c))
    import identity
    from corpus import Corpus
    from feature_store import FeatureStore
    return either(r, [(lambda: identity.store_mismatch(FeatureStore(s), Corpus(c)) == ([], True),
                       'old features of the edited recording kept')], ['other audio', '--overwrite'])


@case('outputs', 'extract_features interrupted (SIGINT), then testing on the store', 'refused (incomplete store) '
      'or only after a rerun')
def _(ctx):
    d = ctx.tmp('eint')
    s = d / 'lld'
    from outputs import lock_file
    r1 = script('extract_features', ex_args(ctx, s), interrupt_when=lambda: (s / 'meta.json').exists(), after=0.8)
    if r1.tb:
        return Obs('traceback', r1, r1.tb.strip().splitlines()[-1])
    a = ctx.test_args(d / 't')
    a[a.index('--features') + 1] = s
    r = call('testing', a)
    lock_file(s).unlink(missing_ok=True)
    return either(r, [(lambda: len(preds(d / 't')) == 6, 'scored on part of the Test set without a word')],
                  ['incomplete|not complete|extract'])


@case('outputs', 'extract_features --out below a file', 'refused naming --out')
def _(ctx):
    d = ctx.tmp('eo')
    (d / 'f').write_text('')
    return refused(call('extract_features', ex_args(ctx, d / 'f' / 'lld')), '--out', 'is a file')


@case('outputs', 'extract_features while another holds --out (lock)', 'refused naming the first')
def _(ctx):
    d = ctx.tmp('eo')
    with other_process() as p:
        hold_lock(d / 'lld', p)
        r = call('extract_features', ex_args(ctx, d / 'lld'))
    return refused(r, 'the first run|pid')


@case('outputs', 'extract_features under umask 027', 'store readable by the group (drwxr-x---)')
def _(ctx):
    d = ctx.tmp('eo')
    with umask(0o027):
        r = call('extract_features', ex_args(ctx, d / 'lld', '--split', 'Test'))
    return succeeded(r, [(lambda: ((d / 'lld').stat().st_mode & 0o777) == 0o750,
                          oct((d / 'lld').stat().st_mode & 0o777))])


@case('outputs', 'norm_para under umask 022', 'NormTerm folder drwxr-xr-x, files -rw-r--r--')
def _(ctx):
    d = ctx.tmp('um')
    with umask(0o022):
        r = call('norm_para', norm_args(ctx, d / 'N'))
    modes = [(d / 'N').stat().st_mode & 0o777] + [p.stat().st_mode & 0o777 for p in (d / 'N').iterdir()]
    return succeeded(r, [(modes[0] == 0o755 and all(m == 0o644 for m in modes[1:]), [oct(m) for m in modes])])


@case('outputs', 'training under umask 022', 'model folder and files readable by others')
def _(ctx):
    d = ctx.tmp('um')
    with umask(0o022):
        r = call('training', ctx.train_args(d / 'm'))
    modes = [(d / 'm').stat().st_mode & 0o777] + [p.stat().st_mode & 0o777 for p in (d / 'm').iterdir()
                                                  if p.is_file() and not p.name.startswith('.')]
    return succeeded(r, [(modes[0] == 0o755 and all(m & 0o044 == 0o044 for m in modes[1:]), [oct(m) for m in modes])])


@case('outputs', 'predict under umask 022', 'CSV -rw-r--r--')
def _(ctx):
    d = ctx.tmp('um')
    with umask(0o022):
        r = call('predict', pred_args(ctx, [ctx.wav()], d / 'r.csv'))
    return succeeded(r, [(lambda: ((d / 'r.csv').stat().st_mode & 0o777) == 0o644,
                          oct((d / 'r.csv').stat().st_mode & 0o777))])


@case('outputs', 'testing --out below a file', 'refused naming --out')
def _(ctx):
    d = ctx.tmp('to')
    (d / 'f').write_text('')
    return refused(call('testing', ctx.test_args(d / 'f' / 't')), '--out', 'is a file')


@case('outputs', 'a lock left by a killed norm_para', 'taken over')
def _(ctx):
    d = ctx.tmp('lk')
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    hold_lock(d / 'N', p)
    p.wait()
    return succeeded(call('norm_para', norm_args(ctx, d / 'N')), [(lambda: (d / 'N' / 'normterm.json').exists(), '')])


@case('outputs', 'a lock file holding garbage', 'taken over or named')
def _(ctx):
    d = ctx.tmp('lk')
    from outputs import lock_file
    lock_file(d / 'N').write_text('{not json')
    r = call('norm_para', norm_args(ctx, d / 'N'))
    return either(r, [(lambda: (d / 'N' / 'normterm.json').exists(), 'no NormTerm')], [r'lock'])


@case('outputs', 'check_corpus --json over the labels file', 'refused; labels kept')
def _(ctx):
    c = ctx.copy('cj')
    kept = snapshot(labels(c))
    return refused(call('check_corpus', [c, '--no-progress', '--workers', 1, '--json', labels(c)]), '--json',
                   kept=kept)


@case('outputs', 'crossval --report equal to the corpus Labels folder', 'refused; labels kept')
def _(ctx):
    c = ctx.copy('cr', folds=True)
    kept = snapshot(c / 'Labels')
    r = call('crossval', ctx.cv_args(c, c.parent / 'cv', '--folds', '1', '--report', c / 'Labels', '--name',
                                     'labels_consensus'))
    return either(r, [], ['--report|--name'], kept=kept)


# ================================================================ running and writing
def run_cases(ctx, cases, log=print):
    rows = []
    for i, c in enumerate(cases, 1):
        t0 = time.time()
        try:
            o = c['fn'](ctx)
        except Exception:                    # the probe's own set-up failed: recorded, never hidden
            o = Obs('traceback', R(1, '', traceback.format_exc(), traceback.format_exc()), 'probe set-up failed: ' +
                    traceback.format_exc().strip().splitlines()[-1][:200])
        r = o.r
        row = dict(id=i, area=c['area'], action=c['action'], expected=c['expect'], expected_class='handled',
                   observed=o.cls, exit_code=None if r is None else r.code,
                   message='' if r is None else r.message, note=o.note.strip('; '), seconds=round(time.time() - t0, 2))
        rows.append(row)
        log(f'[{i:3d}/{len(cases)}] {row["observed"]:18s} {row["area"]:14s} {row["action"][:70]} '
            f'({row["seconds"]:.1f} s){"  <- " + row["note"][:120] if row["observed"] != "handled" else ""}')
        if o.cls != 'handled' and r is not None and r.tb:
            log('      ' + r.tb.strip().splitlines()[-1][:200])
    return rows


def table(rows):
    areas = sorted({r['area'] for r in rows}, key=[r['area'] for r in rows].index)
    head = '| area | cases | ' + ' | '.join(CLASSES) + ' |\n|---|---|' + '---|' * len(CLASSES) + '\n'
    lines = []
    for a in areas + ['**all**']:
        sel = [r for r in rows if a == '**all**' or r['area'] == a]
        lines.append(f'| {a} | {len(sel)} | ' + ' | '.join(str(sum(r['observed'] == k for r in sel)) for k in CLASSES)
                     + ' |')
    return head + '\n'.join(lines) + '\n'


def write(rows, out, meta):
    out.mkdir(parents=True, exist_ok=True)
    (out / 'probe_inputs.json').write_text(json.dumps({**meta, 'counts': {k: sum(r['observed'] == k for r in rows)
                                                                         for k in CLASSES}, 'cases': rows}, indent=1,
                                                      ensure_ascii=False) + '\n')
    bad = [r for r in rows if r['observed'] != 'handled']
    md = ['# Bad-input and fault probe', '',
          f'`python bench/probe_inputs.py` ({len(rows)} cases, {meta["seconds"]:.0f} s on {meta["machine"]}; '
          f'per case: `probe_inputs.json`). Every case is a user action on a small generated input; `handled` = the '
          'correct result, or a refusal with exit code != 0, no traceback, and a message naming the file or flag '
          'and the fix.', '', table(rows)]
    if bad:
        md += ['## Not handled', '', '| area | action | observed | message / note |', '|---|---|---|---|']
        md += [f"| {r['area']} | {r['action']} | {r['observed']} | {(r['note'] or r['message'])[:160]} |" for r in bad]
    md += ['', '## Cases', '', '| # | area | action | expected | observed | exit |', '|---|---|---|---|---|---|']
    md += [f"| {r['id']} | {r['area']} | {r['action']} | {r['expected']} | {r['observed']} | {r['exit_code']} |"
           for r in rows]
    (out / 'probe_inputs.md').write_text('\n'.join(md) + '\n')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--area', default=None, help='run only the cases of this area (converters, corpus-inputs, folds, '
                   'protocols, normalisation, training, flags, prediction, outputs)')
    p.add_argument('--match', default=None, help='run only the cases whose action contains this text')
    p.add_argument('--list', action='store_true', help='list the cases and stop')
    p.add_argument('--out', default=None, help='folder of probe_inputs.json/.md (default bench/results when every '
                   'case runs; nothing is written for a selection unless --out is given)')
    p.add_argument('--work', default=None, help='scratch folder (default: a temporary folder, removed at the end)')
    args = p.parse_args(argv)
    cases = [c for c in CASES if (args.area is None or c['area'] == args.area) and
             (args.match is None or args.match.lower() in c['action'].lower())]
    if args.list:
        for i, c in enumerate(cases, 1):
            print(f'{i:3d} {c["area"]:14s} {c["action"]}  ->  {c["expect"]}')
        print(f'{len(cases)} cases')
        return 0
    import torch
    torch.set_num_threads(1)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix='probe_inputs_'))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        rows = run_cases(Ctx(work), cases)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    secs = time.time() - t0
    import platform
    meta = dict(command='python bench/probe_inputs.py' + (' ' + ' '.join(argv or sys.argv[1:])).rstrip(),
                seconds=round(secs, 1), n_cases=len(rows),
                machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
                        f'load average {os.getloadavg()[0]:.1f} at the end', python=platform.python_version())
    print(table(rows))
    counts = {k: sum(r['observed'] == k for r in rows) for k in CLASSES}
    print(f'RESULT probe_inputs: {len(rows)} cases, ' + ', '.join(f'{v} {k}' for k, v in counts.items()) +
          f' ({secs:.0f} s)')
    out = Path(args.out) if args.out else (REPO / 'bench' / 'results' if args.area is None and args.match is None
                                           else None)
    if out:
        write(rows, out, meta)
        print(f'written: {out / "probe_inputs.json"}, {out / "probe_inputs.md"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
