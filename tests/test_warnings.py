"""Input checks measured where they matter: the level of the speech (ITU-T P.56 active speech level), not of
the whole file; band-limited audio (sampled below 16 kHz, or 8 kHz content upsampled). Small generated WAVs
and one RAVDESS file (skipped without ../shared)."""
import numpy as np
import pytest
import soundfile as sf
import soxr

import audio
from audio import active_speech_level, load_audio, note_kind
from tests.conftest import DATASETS
from tests.fixtures import synth_voice

RAVDESS_QUIET = DATASETS / 'ravdess' / 'Actor_01' / '03-01-02-02-01-01-01.wav'   # the quietest of actors 01-04


def kinds(path):
    notes = []
    load_audio(path, notes=notes)
    return {note_kind(n) for n in notes}, notes


def rms_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def at_level(x, sr, dbfs):
    """x scaled so that its active speech level is `dbfs`."""
    return (x * 10 ** ((dbfs - active_speech_level(x, sr)[0]) / 20)).astype(np.float32)


def test_active_speech_level_of_known_signals():
    sr = 16000
    t = np.arange(3 * sr) / sr
    sine = np.sin(2 * np.pi * 1000 * t)
    level, activity = active_speech_level(sine, sr)
    assert level == pytest.approx(-3.01, abs=0.05) and activity > 0.98
    assert active_speech_level(0.01 * sine, sr)[0] == pytest.approx(-43.01, abs=0.05)
    # 2 s of silence on each side: the RMS drops by 3.7 dB, the active level by < 0.5 dB; activity ~ (3 + 0.2) / 7
    padded = np.concatenate([np.zeros(2 * sr), 0.01 * sine, np.zeros(2 * sr)])
    level_p, activity_p = active_speech_level(padded, sr)
    assert rms_db(padded) < -46.5 and abs(level_p + 43.01) < 0.5
    assert activity_p == pytest.approx(3.2 / 7, abs=0.03)
    assert active_speech_level(np.zeros(sr), sr) == (float('-inf'), 0.0)
    # the level does not depend on the sample rate
    v = synth_voice(2.0, arousal=3, seed=3)
    v48 = soxr.resample(v, 16000, 48000)
    assert active_speech_level(v48, 48000)[0] == pytest.approx(active_speech_level(v, 16000)[0], abs=0.3)


def p56_literal(x, sr):
    """ITU-T P.56 method B written sample by sample as published: thresholds 6 dB apart, an activity count
    and a hangover counter per threshold, linear interpolation of the crossing of the 15.9 dB margin."""
    g, hang = np.exp(-1 / (0.03 * sr)), round(0.2 * sr)
    c = 2.0 ** np.arange(-16, 1)
    a, h, p, q = np.zeros(len(c)), np.full(len(c), hang), 0.0, 0.0
    for v in np.abs(x):
        p = g * p + (1 - g) * v
        q = g * q + (1 - g) * p
        above = q >= c
        a += above | (h < hang)
        h = np.where(above, 0, np.where(h < hang, h + 1, h))
    with np.errstate(divide='ignore'):
        level = 10 * np.log10(np.dot(x, x) / a)
    delta = level - 20 * np.log10(c)
    j = int(np.argmax(delta <= 15.9))
    f = (delta[j - 1] - 15.9) / (delta[j - 1] - delta[j])
    return level[j - 1] + f * (level[j] - level[j - 1])


def test_active_speech_level_matches_the_sample_by_sample_algorithm():
    sr, rng = 8000, np.random.default_rng(5)
    v = synth_voice(1.0, arousal=4, seed=5, sr=sr).astype(np.float64)
    gap = 1e-4 * rng.standard_normal(sr)
    for x in (np.concatenate([v, gap, 0.1 * v, gap]), np.concatenate([gap, v, gap, gap])):
        level = active_speech_level(x, sr)[0]
        assert level == pytest.approx(p56_literal(x, sr), abs=0.3) and level > rms_db(x) + 3


def test_quiet_clean_speech_with_long_silences_is_not_flagged(tmp_path):
    sr = 16000
    rng = np.random.default_rng(0)
    v = at_level(synth_voice(2.5, arousal=2, seed=4), sr, -52.0)       # quieter than any clean corpus file
    pad = (1e-5 * rng.standard_normal(3 * sr)).astype(np.float32)     # 3 s of room-noise floor each side
    x = np.concatenate([pad, v, pad])
    sf.write(tmp_path / 'calm.wav', x, sr)
    assert rms_db(x) < -55                                            # the old whole-file rule fired here
    found, notes = kinds(tmp_path / 'calm.wav')
    assert notes == [], notes
    sf.write(tmp_path / 'whisper.wav', np.concatenate([pad, at_level(v, sr, -70.0), pad]), sr, subtype='FLOAT')
    found, notes = kinds(tmp_path / 'whisper.wav')
    assert 'low_level' in found and 'active speech at -70 dBFS' in notes[0]


def test_band_limited_audio_is_flagged(tmp_path):
    v = synth_voice(3.0, arousal=5, seed=1)
    sf.write(tmp_path / 'wide.wav', v, 16000)
    sf.write(tmp_path / 'rate8k.wav', synth_voice(3.0, arousal=5, seed=1, sr=8000), 8000)
    sf.write(tmp_path / 'rate11k.wav', soxr.resample(v, 16000, 11025), 11025)
    up = soxr.resample(soxr.resample(v, 16000, 8000), 8000, 16000)
    sf.write(tmp_path / 'tel16k.wav', up, 16000)                       # telephone-band content in a 16-kHz file
    sf.write(tmp_path / 'tel48k.wav', soxr.resample(up, 16000, 48000), 48000)
    assert kinds(tmp_path / 'wide.wav') == (set(), [])
    for name, kind in (('rate8k', 'low_rate'), ('rate11k', 'low_rate'), ('tel16k', 'band_limited'),
                       ('tel48k', 'band_limited')):
        found, notes = kinds(tmp_path / f'{name}.wav')
        assert found == {kind}, (name, notes)
    assert 'sampled at 8000 Hz' in kinds(tmp_path / 'rate8k.wav')[1][0]
    assert audio.high_band_db(up, 16000) < audio.BAND_LIMIT_DB < audio.high_band_db(v, 16000)


@pytest.mark.skipif(not RAVDESS_QUIET.is_file(), reason='shared RAVDESS absent')
def test_silence_padded_ravdess_file_is_not_flagged(tmp_path):
    x, sr = sf.read(RAVDESS_QUIET, dtype='float32')
    lead = x[:int(0.3 * sr)]                                          # the recording's own room tone
    pad = np.tile(lead, 10)                                           # 3 s more on each side
    y = np.concatenate([pad, x, pad])
    sf.write(tmp_path / 'padded.wav', y, sr, subtype='PCM_16')
    assert rms_db(y) < -55 and sr == 48000
    assert kinds(tmp_path / 'padded.wav') == (set(), [])
    sf.write(tmp_path / 'quieter.wav', y * 10 ** (-20 / 20), sr, subtype='PCM_16')   # 20 dB quieter still: flagged
    assert 'low_level' in kinds(tmp_path / 'quieter.wav')[0]


def test_bench_warnings_smoke(tiny_corpus, tmp_path, capsys):
    """The bench at a tiny size: every planted bad input flagged, predict.py's warning column equals the
    bench's findings, the counts add up."""
    import json

    from bench import bench_warnings
    res = bench_warnings.main(['--corpus', str(tiny_corpus), '--limit', '2', '--planted-per-corpus', '1',
                               '--near-per-corpus', '1', '--predict-check', '1', '--out', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'RESULT warnings:' in out and (tmp_path / 'warnings.md').is_file()
    saved = json.loads((tmp_path / 'warnings.json').read_text())
    assert saved['bench'] == 'warnings' and saved['planted']['hits'] == saved['planted']['files']
    p = res['planted']
    assert p['by_kind']['synthetic'] == {'files': 8, 'hits': 8}
    assert p['files'] == 8 + 6 * len(res['corpora']) and not p['misses']
    pc = res['predict_check']
    assert pc['files'] == 8 + len(res['corpora']) and pc['agree'] == pc['files'], pc['disagreements']
    o = res['out_of_sample']
    assert o['held_out_false_alarms_code'] == o['held_out_misses_code'] == 0
    with_held_out = sum(1 for p in o['parts'].values() if p['held_out'])
    assert o['near_files'] == 20 * with_held_out and o['near_misses'] == o['near_false_alarms'] == 0
    for s in res['corpora'].values():
        assert s['files'] == 2 and s['any_warning'] == len(s['flagged_files'])
        assert s['distributions']['level_dbfs']['n'] == 2


def test_one_file_just_on_each_side_of_every_threshold(tmp_path):
    """Each input check at its threshold: a generated file 2 dB (clip share: a factor 1.6; truncation: 5 ms)
    inside and one as far outside. The levels are written here, not read from audio.py, so a threshold moved
    by 5 dB or more (or a comparison turned around) fails."""
    from tests.fixtures import at_level, cut_wav, with_clip_share, with_high_band, with_quiet_channel
    sr = 16000
    v = synth_voice(3.0, arousal=4, seed=7).astype(np.float64)

    def found(name, x, subtype='FLOAT'):
        sf.write(tmp_path / name, np.asarray(x, dtype=np.float32), sr, subtype=subtype)
        return kinds(tmp_path / name)[0]

    # very low level: active speech level -58 / -62 dBFS around -60
    for db, flagged in ((-58.0, False), (-62.0, True)):
        x = at_level(v, sr, db)
        assert active_speech_level(x, sr)[0] == pytest.approx(db, abs=0.05)
        assert found(f'level{db:g}.wav', x) == ({'low_level'} if flagged else set()), db
    # band-limited: -38 / -42 dB of power above 4 kHz around -40
    for db, flagged in ((-38.0, False), (-42.0, True)):
        x = with_high_band(v, sr, db)
        assert audio.high_band_db(x, sr) == pytest.approx(db, abs=0.05)
        assert found(f'band{db:g}.wav', x) == ({'band_limited'} if flagged else set()), db
    # clipped: 0.0625 % / 0.1625 % of the samples at full scale around 0.1 %
    for share, flagged in ((0.000625, False), (0.001625, True)):
        x = with_clip_share(v, share)
        assert np.mean(np.abs(x) >= 0.999) == pytest.approx(share, abs=2 / len(x))
        assert found(f'clip{share:g}.wav', x) == ({'clipped'} if flagged else set()), share
    # silent channel: the second channel 58 / 62 dB below the first, around 60
    for db, flagged in ((-58.0, False), (-62.0, True)):
        got = found(f'channel{db:g}.wav', with_quiet_channel(at_level(v, sr, -30.0), db))
        assert got == ({'silent_channel'} if flagged else set()), db
    # cut short: 5 ms / 20 ms of the data chunk missing, around 10 ms
    sf.write(tmp_path / 'full.wav', at_level(v, sr, -30.0).astype(np.float32), sr, subtype='PCM_16')
    for ms, flagged in ((5, False), (20, True)):
        cut_wav(tmp_path / 'full.wav', tmp_path / f'cut{ms}.wav', ms / 1000)
        assert kinds(tmp_path / f'cut{ms}.wav')[0] == ({'truncated'} if flagged else set()), ms


def test_no_speech_threshold_on_each_side():
    """'no speech' at 0.25 s of voiced frames: 0.20 s of voiced 10-ms frames is flagged, 0.30 s is not; a frame
    counts as voiced above a voicing probability of 0.5 (0.45 does not count, 0.55 does)."""
    cols = ['pcm_loudness_sma', 'voicingFinalUnclipped_sma', 'F0final_sma']

    def lld(n_voiced, p=0.9, n=300):
        x = np.zeros((n, 3))
        x[:n_voiced, 1] = p
        return x

    assert audio.voiced_seconds(lld(20), cols, 0.01) == pytest.approx(0.20)
    assert audio.speech_note(lld(20), cols, 0.01).startswith('no speech found: 0.20 s')
    assert audio.speech_note(lld(30), cols, 0.01) is None
    assert audio.voiced_seconds(lld(30, p=0.45), cols, 0.01) == 0.0
    assert audio.voiced_seconds(lld(30, p=0.55), cols, 0.01) == pytest.approx(0.30)
    assert audio.speech_note(lld(30, p=0.45), cols, 0.01) is not None
    assert audio.voiced_seconds(lld(30), cols[::2], 0.01) is None and audio.speech_note(lld(30), cols[::2], 0.01) is None


def test_the_text_of_every_finding(tmp_path):
    """What predict.py writes into its `warning` column, word for word, for one generated file per check."""
    from tests.fixtures import at_level, cut_wav, with_clip_share, with_high_band, with_quiet_channel
    sr = 16000
    v = synth_voice(3.0, arousal=4, seed=7).astype(np.float64)
    files = {'clip': with_clip_share(v, 0.001625), 'quiet': at_level(v, sr, -62.0), 'tel': with_high_band(v, sr, -42.0),
             'dead': with_quiet_channel(at_level(v, sr, -30.0), -80.0), 'zero': np.zeros(sr)}
    for name, x in files.items():
        sf.write(tmp_path / f'{name}.wav', np.asarray(x, np.float32), sr, subtype='FLOAT')
    sf.write(tmp_path / 'rate8k.wav', synth_voice(3.0, arousal=4, seed=7, sr=8000), 8000)
    sf.write(tmp_path / 'full.wav', at_level(v, sr, -30.0).astype(np.float32), sr, subtype='PCM_16')
    cut_wav(tmp_path / 'full.wav', tmp_path / 'cut.wav', 0.5)
    got = {n: kinds(tmp_path / f'{n}.wav')[1] for n in ('clip', 'quiet', 'tel', 'dead', 'zero', 'rate8k', 'cut')}
    assert got['clip'] == ['clipped audio: 0.16 % of the samples at full scale']
    assert got['quiet'] == ['very low level: active speech at -62 dBFS (ITU-T P.56; below -60 dBFS; clean recordings '
                            'measure about -50 to -10 dBFS)']
    assert got['tel'] == ['band-limited audio: -42 dB of energy above 4 kHz (below -40 dB: telephone or 8 kHz audio '
                          'upsampled? predictions may shift)']
    assert got['dead'] == ['silent channel 2 of 2: used channel 1 only']
    assert got['zero'] == ['digital silence (all samples zero)']
    assert got['rate8k'] == ['band-limited audio: sampled at 8000 Hz, nothing above 4 kHz (the models expect 16 kHz '
                             'audio; predictions may shift)']
    assert got['cut'] == ['file shorter than its header claims: 2.50 s of 3.00 s present (truncated copy?)']
    assert [note_kind(n[0]) for n in got.values()] == ['clipped', 'low_level', 'band_limited', 'silent_channel',
                                                        'digital_silence', 'low_rate', 'truncated']
    assert note_kind('something else') is None


def test_wav_header_reader(tmp_path):
    """The data-chunk length a WAV header claims, past an odd-sized chunk (padded to even), for 16-bit stereo at
    8 kHz; files that are not RIFF/WAVE, a streaming header (size 0xFFFFFFFF) and a header without data: None."""
    import struct
    fmt = struct.pack('<HHIIHH', 1, 2, 8000, 8000 * 4, 4, 16)
    data = np.zeros(8000, np.int16).tobytes()                          # 16000 bytes: 0.5 s present
    body = b'WAVE' + b'fmt ' + struct.pack('<I', 16) + fmt + b'junk' + struct.pack('<I', 3) + b'abc\x00'

    def write(name, claimed_bytes, payload=data):
        b = body + b'data' + struct.pack('<I', claimed_bytes) + payload
        (tmp_path / name).write_bytes(b'RIFF' + struct.pack('<I', len(b)) + b)
        return audio.wav_claimed_seconds(tmp_path / name)

    assert write('ok.wav', len(data)) == (0.5, 0.5)
    assert write('cut.wav', 2 * len(data)) == (1.0, 0.5)
    assert write('stream.wav', 0xFFFFFFFF) is None and write('empty.wav', 0) is None
    (tmp_path / 'nodata.wav').write_bytes(b'RIFF' + struct.pack('<I', len(body)) + body)
    (tmp_path / 'aiff.wav').write_bytes(b'FORM\x00\x00\x00\x10AIFF' + bytes(16))
    assert audio.wav_claimed_seconds(tmp_path / 'nodata.wav') is None
    assert audio.wav_claimed_seconds(tmp_path / 'aiff.wav') is None
    assert audio.wav_claimed_seconds(tmp_path / 'missing.wav') is None


def test_measurements_at_their_edges():
    """The level follows the gain to a hundredth of a dB between the 0.1-dB thresholds of the P.56 search; a
    4 kHz tone counts above the 4 kHz edge only (Hann-window bins: 1 + 1/4 above, 1/4 below, a 1 kHz tone 1.5
    below); samples at exactly 0.999 count as full scale; present_seconds of a signal without a file."""
    sr = 16000
    v = synth_voice(2.0, arousal=4, seed=3).astype(np.float64)
    base = active_speech_level(v, sr)[0]
    for k in range(1, 9):
        assert active_speech_level(v * 10 ** (0.013 * k / 20), sr)[0] - base == pytest.approx(0.013 * k, abs=0.004)
    t = np.arange(sr) / sr
    tones = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 4000 * t)
    assert audio.high_band_db(tones, sr) == pytest.approx(10 * np.log10(1.25 / 1.75), abs=0.05)
    x = np.zeros((sr, 1), np.float32)
    x[:40, 0] = np.float32(0.999)                                     # 0.25 % of the samples at exactly 0.999
    m = audio.measure(x, sr)
    assert m['clip_share'] == pytest.approx(40 / sr) and m['present_seconds'] == 1.0
    assert audio.measure_notes(m)[0].startswith('clipped audio: 0.25 %')
