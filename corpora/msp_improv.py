"""MSP-IMPROV (Busso et al., IEEE TAC 2017) as distributed: Evaluation.txt and the audio under
sessionN/<sentence+target>/<type>/MSP-IMPROV-S01A-F01-S-FM01.wav.

File name MSP-IMPROV-SxxE-GNN-T-...: sentence xx, target emotion E (A angry, H happy, S sad, N neutral), speaker
GNN (gender F/M, NN = the session), T the recording type letter, kept as ScenarioCode; Scenario spells it out as
R target read, S other improvised, T target improvised, P natural interaction (our reading of the corpus
documentation: check it against your release's readme; the letter itself is always kept).

Evaluation.txt: per utterance a consensus line
    UTD-IMPROV-S01A-F01-S-FM01.avi; A; A:3.0000; V:2.0000; D:3.0000 ; N:3.6667;
(category letter A/H/S/N/O/X, mean arousal, valence, dominance, naturalness on 1-5), then one line per rater
    <rater>; Angry; <other emotions>; A:3.0; V:2.0; D:3.0; N:4.0;
- Per-rater rows (LabelSource = raters): each rater's A/V/D mapped from 1-5 to 1-7 (1 + (x - 1) * 1.5), its
  category as EmoDetail class and its other emotions as secondary. A rater line with a missing or NaN value,
  or a repeated rater of the same utterance, is skipped and listed.
- Consensus: the distributed A/V/D mapped the same way; EmoClass the distributed letter (O other and X no
  agreement kept); Category the unified name; Naturalness (1-5) as distributed.
- Columns: Session, Sentence, IntendedCategory (the target emotion), ScenarioCode, Scenario.
- Folds: leave one session out (6); fold k tests session k and validates on session k+1.
"""
import re
from pathlib import Path

from corpora import common
from corpora.common import MSP_CLASS, LayoutError, Utt, five_to_seven, session_folds

NAME = 'msp-improv'
CODES = {'A': 'anger', 'H': 'happiness', 'S': 'sadness', 'N': 'neutral', 'O': 'other', 'X': 'no_agreement'}
RATER_CATS = {'angry': 'anger', 'happy': 'happiness', 'sad': 'sadness', 'neutral': 'neutral', 'other': 'other'}
SCENARIO = {'R': 'target read', 'S': 'other improvised', 'T': 'target improvised', 'P': 'natural interaction'}
STEM_RE = re.compile(r'^MSP-IMPROV-(S(\d\d)([A-Z]))-(([FM])(\d\d))-([A-Z])-(\w+)$')
KV_RE = re.compile(r'^([AVDN])\s*:\s*(.*)$')
EXTRA = ['Session', 'Sentence', 'IntendedCategory', 'ScenarioCode', 'Scenario', 'Naturalness']


def check_layout(src):
    src = Path(src)
    ev = next((src / n for n in ('Evaluation.txt', 'evaluation.txt') if (src / n).is_file()), None)
    if ev is None or not any(p.is_dir() for p in src.glob('session*')):
        raise LayoutError(f'{src} is not MSP-IMPROV as distributed: expected Evaluation.txt and session1 ... '
                          f'session6 folders holding <sentence>/<type>/MSP-IMPROV-S01A-F01-S-FM01.wav')
    return ev


def _values(tokens):
    vals = {}
    for t in tokens:
        m = KV_RE.match(t)
        if m:
            try:
                x = float(m.group(2))
                vals[m.group(1)] = x if x == x else None   # NaN -> None
            except ValueError:
                vals[m.group(1)] = None
    return vals


def parse_evaluation(path, report):
    """Evaluation.txt -> {stem: {'code', 'vals', 'raters': [(rater, category, [others], vals, where)]}}."""
    out, cur = {}, None
    for n, raw in enumerate(Path(path).read_text(encoding='utf-8', errors='replace').splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        where = f'{Path(path).name}:{n}'
        tokens = [t.strip() for t in line.split(';')]
        vals = _values(tokens)
        plain = [t for t in tokens if t and not KV_RE.match(t)]
        if tokens[0].startswith('UTD-IMPROV-'):
            stem = 'MSP-IMPROV-' + re.sub(r'\.avi$', '', tokens[0][len('UTD-IMPROV-'):])
            if len(plain) < 2 or plain[1] not in CODES or any(vals.get(k) is None for k in 'AVD'):
                report.skip(where, f'unparsable or truncated consensus line {line[:90]!r} (utterance left out)')
                cur = None
                continue
            cur = out[stem] = {'code': plain[1], 'vals': vals, 'raters': []}
            continue
        if cur is None:
            report.skip(where, f'rater line without a readable consensus line before it: {line[:60]!r}')
            continue
        if len(plain) < 2 or not any(KV_RE.match(t) for t in tokens):
            report.skip(where, f'unparsable rater line {line[:90]!r}')
            continue
        cur['raters'].append((plain[0], plain[1], [x.strip() for x in ','.join(plain[2:]).split(',') if x.strip()],
                              vals, where))
    return out


def read(src, report, speakers=None, **_):
    ev = check_layout(src)
    src = Path(src)
    audio = {p.stem: p for p in src.glob('session*/*/*/*.wav')}
    labels = parse_evaluation(ev, report)
    utts, raters = [], []
    for stem, lab in labels.items():
        m = STEM_RE.match(stem)
        if not m:
            report.skip(stem, 'name is not MSP-IMPROV-SxxE-GNN-T-...')
            continue
        _, sent, target, spk, g, sess, code, _ = m.groups()
        if speakers and spk not in speakers:
            continue
        if stem not in audio:
            report.skip(stem, f'audio file missing (looked for session{int(sess)}/*/*/{stem}.wav)')
            continue
        seen = set()
        for rater, cat, others, vals, where in lab['raters']:
            missing = [k for k in 'AVD' if vals.get(k) is None]
            if missing:
                report.skip(f'{stem} rater {rater}', f'rater line {where} without a value for {", ".join(missing)} '
                                                     f'(rating left out)')
                continue
            if rater in seen:
                report.skip(f'{stem} rater {rater}', f'repeated rater line {where} (first kept)')
                continue
            seen.add(rater)
            cls = MSP_CLASS.get(RATER_CATS.get(cat.lower(), 'other'), 'Other')
            raters.append((stem, rater, cls, others, five_to_seven(vals['A']), five_to_seven(vals['V']),
                           five_to_seven(vals['D']), 'raters'))
        v = lab['vals']
        utts.append(Utt(name=stem, audio=audio[stem], speaker=spk, gender='Female' if g == 'F' else 'Male',
                        emo_class=lab['code'], category=CODES[lab['code']], act=five_to_seven(v['A']),
                        val=five_to_seven(v['V']), dom=five_to_seven(v['D']), source='raters',
                        extra={'Session': int(sess), 'Sentence': sent, 'IntendedCategory': CODES.get(target, target),
                               'ScenarioCode': code, 'Scenario': SCENARIO.get(code, 'unknown'),
                               'Naturalness': v.get('N') if v.get('N') is not None else ''}))
    for stem in sorted(set(audio) - set(labels)):
        report.skip(stem, 'audio file without a consensus line in Evaluation.txt')
    folds = session_folds(utts, report)
    return utts, raters, folds


INFO = {'source': 'MSP-IMPROV (Busso et al. 2017)',
        'labels': 'raters\' A/V/D (1-5) mapped to 1-7 as 1 + (x - 1) * 1.5; consensus = the distributed A/V/D '
                  'mapped the same way',
        'per_rater': 'rater lines of Evaluation.txt',
        'folds': 'leave one session out (6); validate on the next session'}
README = __doc__


def convert(src, out, report=None, **kw):
    return common.convert(NAME, read, INFO, EXTRA, README, src, out, report, **kw)
