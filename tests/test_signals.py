"""Ctrl-C (SIGINT) and SIGTERM on real runs: each command is started as a subprocess, the signal is sent once
the run shows progress (stored utterances, predicted files, a finished epoch -- never a fixed sleep), and the
run must stop cleanly: exit code 130 / 143, the work done so far kept intact, the item in progress not stored,
and a rerun continuing where it stopped.

openSMILE hands each frame to a Python callback; ctypes used to print and swallow a KeyboardInterrupt raised
there, so an interrupted extraction went on with one utterance cut short (124 frames instead of 125) and the
run ended with exit code 0. Long recordings keep the runs inside openSMILE most of the time, so the signals
land there.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures import make_tiny_corpus, synth_voice  # noqa: E402

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1', 'MPLBACKEND': 'Agg'}
SECONDS = 6.0     # per recording: about 0.2-1 s of openSMILE each on a loaded 2-core machine
N = 5


def start(args, log):
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=ENV, stdout=log,
                            stderr=subprocess.STDOUT)


def wait_for(proc, ready, what, timeout=180):
    """Poll until ready() is true; fail when the process ends first or the time runs out."""
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, f'the run ended (exit code {proc.returncode}) before {what}'
        assert time.time() - t0 < timeout, f'no {what} after {timeout} s'
        time.sleep(0.02)


def signal_mid_item(proc, count, sig, what):
    """Send `sig` halfway through the third item: wait for the first two (their spacing is the time per item,
    however loaded the machine), then half that time. Most of an item's time is spent inside openSMILE, where
    the signal used to be swallowed; right after an item is stored the run is elsewhere."""
    wait_for(proc, lambda: count() >= 1, f'a first {what}')
    t1 = time.time()
    wait_for(proc, lambda: count() >= 2, f'a second {what}')
    time.sleep((time.time() - t1) / 2)
    proc.send_signal(sig)


def stop(proc, sig, log_path):
    proc.send_signal(sig)
    try:
        rc = proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f'the run did not stop after {signal.Signals(sig).name}') from None
    return rc, Path(log_path).read_text(errors='replace')


def test_deferred_holds_a_signal_until_the_block_ends():
    """In-process: a signal inside `deferred()` lets the block finish, then raises Interrupted with the signal's
    exit code; run_script's handlers are put back afterwards."""
    import interrupts
    from cli import run_script
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    old = interrupts.install()
    try:
        finished = []
        with pytest.raises(interrupts.Interrupted) as e, interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):      # the handler runs at the next bytecodes: here it only takes note
                time.sleep(0.001)
            finished.append(True)
        assert finished == [True] and e.value.exit_code == 143
    finally:
        interrupts.restore(old)
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before
    with pytest.raises(SystemExit) as e:
        run_script(lambda argv: os.kill(os.getpid(), signal.SIGTERM) or time.sleep(5))
    assert e.value.code == 143
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before


@pytest.fixture(scope='module')
def long_corpus(tmp_path_factory):
    """An MSP-layout corpus of N recordings of SECONDS each."""
    root = make_tiny_corpus(tmp_path_factory.mktemp('sig') / 'corpus', n=N, short=0, with_text=False)
    for i, wav in enumerate(sorted((root / 'Audios').glob('*.wav'))):
        sf.write(wav, synth_voice(SECONDS, arousal=2 + i % 5, seed=i), 16000, subtype='PCM_16')
    return root


def stored(store):
    """{name: (offset, length)} of a (possibly incomplete) feature store's index."""
    p = store / 'index.csv'
    if not p.exists():
        return {}
    df = pd.read_csv(p)
    return {n: (int(o), int(k)) for n, o, k in zip(df.FileName, df.offset, df.length)}


def test_extract_features_interrupted_keeps_whole_utterances_and_resumes(long_corpus, tmp_path):
    sig, code = signal.SIGINT, 130     # SIGTERM takes the same path (predict.py and training.py test it)
    from feature_store import FeatureStore
    from features import extract_lld
    store = tmp_path / 'lld'
    cmd = ['extract_features.py', '--corpus', long_corpus, '--out', store, '--workers', '1', '--flush-every', '1']
    with open(tmp_path / 'log', 'w') as log:
        p = start(cmd, log)
        signal_mid_item(p, lambda: len(stored(store)), sig, 'stored utterance')
        rc, out = stop(p, 0, tmp_path / 'log')    # signal 0: only waits
    assert rc == code, out[-3000:]
    assert 'interrupted' in out and 'Exception ignored' not in out, out[-3000:]
    meta = json.loads((store / 'meta.json').read_text())
    done = stored(store)
    assert not meta['complete'] and 1 <= len(done) < N, (meta, done)
    # every stored utterance is whole: its frames equal a fresh extraction of the file
    data = np.memmap(store / 'data.bin', '<f4', 'r').reshape(-1, 130)
    for name, (o, k) in done.items():
        ref = extract_lld(long_corpus / 'Audios' / name)
        assert k == len(ref), f'{name}: {k} frames stored, {len(ref)} in the file'
        np.testing.assert_array_equal(np.isnan(data[o:o + k]), np.isnan(ref))
        np.testing.assert_allclose(np.nan_to_num(data[o:o + k]), np.nan_to_num(ref), rtol=0, atol=0)
    # the same command resumes: the stored utterances are kept, the rest is added, the store is complete
    r = subprocess.run([sys.executable, *map(str, cmd)], cwd=REPO, env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f'{len(done)} already in' in r.stdout
    fs = FeatureStore(store)
    assert len(fs) == N and all(fs.index[n] == v for n, v in done.items())


def test_extract_features_pool_interrupted(long_corpus, tmp_path):
    """With worker processes Ctrl-C reaches the whole process group: the workers leave it to the main process,
    which stops the pool and keeps the stored utterances."""
    store = tmp_path / 'lld'
    cmd = ['extract_features.py', '--corpus', long_corpus, '--out', store, '--workers', '2', '--flush-every', '1']
    with open(tmp_path / 'log', 'w') as log:
        p = subprocess.Popen([sys.executable, *map(str, cmd)], cwd=REPO, env=ENV, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(p, lambda: len(stored(store)) >= 1, 'a stored utterance')
        os.killpg(p.pid, signal.SIGINT)           # as a terminal's Ctrl-C: every process of the group
        rc, out = stop(p, 0, tmp_path / 'log')    # signal 0: only waits
    assert rc == 130, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    assert 1 <= len(stored(store)) < N


@pytest.mark.parametrize('sig, code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_predict_interrupted_writes_finished_files(long_corpus, tmp_path, sig, code):
    """predict.py stops after the file in progress is dropped: the CSV holds the finished files with the same
    values as an uninterrupted run, and the exit code names the signal."""
    wavs = sorted((long_corpus / 'Audios').glob('*.wav'))
    out = tmp_path / 'r.csv'
    cmd = ['predict.py', *wavs, '-emo', 'Act', '--batch', '1', '--out', out]
    with open(tmp_path / 'log', 'w') as log:
        p = start(cmd, log)
        done = lambda: max([0] + [int(k) for k in re.findall(rf'\| (\d+)/{N}', (tmp_path / 'log').read_text(  # noqa: E731
            errors='replace'))])
        signal_mid_item(p, done, sig, 'predicted file')
        rc, text = stop(p, 0, tmp_path / 'log')
    assert rc == code, text[-3000:]
    assert 'interrupted: writing the' in text and 'Exception ignored' not in text, text[-3000:]
    allrows = pd.read_csv(out)
    # every file is listed: the finished ones with their values, the rest as not processed; every row says PARTIAL
    assert len(allrows) == N and allrows.partial.str.startswith('PARTIAL').all(), allrows
    todo = allrows.error.fillna('').str.startswith('not processed')
    got = allrows[~todo].reset_index(drop=True)
    assert 1 <= len(got) < N and (got.error.isna() | (got.error == '')).all(), got
    assert 'not processed' in text and f'{todo.sum()} of {N} files not processed' in text
    if sig != signal.SIGINT:
        return
    # the same files uninterrupted give the same values (no file cut short)
    ref = tmp_path / 'ref.csv'
    import predict
    assert predict.main([*map(str, wavs[:len(got)]), '-emo', 'Act', '--out', str(ref)]) == 0
    ref = pd.read_csv(ref)
    assert list(got.file) == list(ref.file)
    np.testing.assert_allclose(got.Act, ref.Act, atol=1e-4)


def test_training_sigterm_keeps_finished_epochs_and_resumes(tiny_corpus, tmp_path):
    """training.py stopped by SIGTERM after an epoch: exit code 143, the finished epochs' log rows, model and
    resume state agree, and --resume continues at the next epoch to the end."""
    import extract_features
    from corpus import Corpus
    extract_features.main(['--corpus', str(tiny_corpus), '--out', str(tmp_path / 'lld'), '--workers', '1'])
    rng = np.random.default_rng(0)
    (tmp_path / 'rs').mkdir()
    (tmp_path / 'rs' / 'training_Act.json').write_text(json.dumps(
        {n: {'ChunkRankSeq': [int(r) for r in 1 + np.argsort(np.argsort(-rng.standard_normal(22)))]}
         for n in Corpus(tiny_corpus).files('Train')}))
    out, epochs = tmp_path / 'run', 4
    cmd = ['training.py', '-ep', epochs, '-batch', '8', '-emo', 'Act', '--corpus', tiny_corpus, '--features',
           tmp_path / 'lld', '--rankseq', tmp_path / 'rs', '--out', out, '--device', 'cpu', '--workers', '0']
    log_csv = out / f'LSTM_epoch{epochs}_batch8_EmoRankerSeq_Act.log.csv'
    rows = lambda: log_csv.read_text().splitlines()[1:] if log_csv.exists() else []   # noqa: E731
    with open(tmp_path / 'log', 'w') as log:
        p = start(cmd, log)
        wait_for(p, lambda: len(rows()) >= 1, 'a finished epoch')
        rc, text = stop(p, signal.SIGTERM, tmp_path / 'log')
    assert rc == 143, text[-3000:]
    assert 'interrupted (SIGTERM)' in text and 'Traceback' not in text, text[-3000:]
    import torch
    done = rows()
    state = torch.load(log_csv.with_name(log_csv.name.replace('.log.csv', '.resume.pt')), weights_only=False)
    assert 1 <= len(done) < epochs and state['epoch'] == len(done) - 1, (done, state['epoch'])
    meta = log_csv.with_name(log_csv.name.replace('.log.csv', '.meta.json'))
    assert json.loads(meta.read_text())['finished'] is False      # the stopped run's model says so
    import testing
    with pytest.raises(Exception, match='UNFINISHED.*--allow-unfinished'):
        testing.main(['-emo', 'Act', '--checkpoint', str(out), '-ep', str(epochs), '-batch', '8', '--corpus',
                      str(tiny_corpus), '--features', str(tmp_path / 'lld'), '--out', str(tmp_path / 't'),
                      '--device', 'cpu', '--bootstrap-n', '50'])
    rows_t = testing.main(['-emo', 'Act', '--checkpoint', str(out), '-ep', str(epochs), '-batch', '8', '--corpus',
                           str(tiny_corpus), '--features', str(tmp_path / 'lld'), '--out', str(tmp_path / 't'),
                           '--device', 'cpu', '--bootstrap-n', '50', '--allow-unfinished'])
    assert all(r['model_finished'] is False and r['note'].startswith('UNFINISHED') for r in rows_t)
    assert (pd.read_csv(tmp_path / 't' / 'Act_Test_predictions.csv').model_finished == False).all()  # noqa: E712
    r = subprocess.run([sys.executable, *map(str, cmd), '--resume'], cwd=REPO, env=ENV, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f'resuming at epoch {len(done)}' in r.stdout
    assert [int(x.split(',')[0]) for x in rows()] == list(range(epochs))
    assert json.loads(meta.read_text())['finished'] is True
