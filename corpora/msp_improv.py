"""MSP-IMPROV (Busso et al., IEEE TAC 2017) as its copies ship: the label file Evaluation.txt (some copies spell
it Evalution.txt) and the audio under sessionN/<sentence+target>/<type>/MSP-IMPROV-S01A-F01-S-FM01.wav, the
session folders at the root or under Audio/ (Audio/session1/S01A/S/...wav).

File name MSP-IMPROV-SxxE-GNN-T-...: sentence xx, target emotion E (A angry, H happy, S sad, N neutral), speaker
GNN (gender F/M, NN = the session), T the recording type letter, kept as ScenarioCode; Scenario spells it out as
R target read, S other improvised, T target improvised, P natural interaction (our reading of the corpus
documentation: check it against your release's readme; the letter itself is always kept).

Evaluation.txt: per utterance a consensus line
    UTD-IMPROV-S01A-F01-S-FM01.avi; A; A:3.0000; V:2.0000; D:3.0000 ; N:3.6667;
(category letter A/H/S/N/O/X, mean arousal, valence, dominance, naturalness on 1-5), then one line per rater
    <rater>; Angry; <other emotions>; A:3.0; V:2.0; D:3.0; N:4.0;
- Per-rater rows (LabelSource = raters): each rater's A/V/D mapped from 1-5 to 1-7 (1 + (x - 1) * 1.5), its
  category as EmoDetail class and its other emotions as secondary. A rater line with a missing, NaN or
  out-of-scale (not 1-5) value, or a repeated rater of the same utterance, is skipped and listed.
- Consensus: the distributed A/V/D mapped the same way; EmoClass the distributed letter (O other and X no
  agreement kept); Category the unified name; Naturalness (1-5) as distributed. An attribute that is NaN (the
  line format allows it in A, V, D and N) or outside 1-5 is left empty and noted; the others are kept.
- Accounting: a consensus block repeated identically is read once (noted); repeated with other values, the
  utterance is left out and listed (which block is right is not clear). A recording name found in two
  folders is listed and left out; one filed under another session folder than its speaker's is noted (the
  session of the name decides the folds).
- Columns: Session, Sentence, IntendedCategory (the target emotion), ScenarioCode, Scenario.
- Folds: leave one session out (6); fold k tests session k and validates on session k+1.
"""
import math
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


LABEL_FILES = ('Evaluation.txt', 'Evalution.txt')      # both spellings ship
AUDIO_GLOBS = ('session*/*/*/*.wav', 'Audio/session*/*/*/*.wav')   # sessions at the root or under Audio/
SCALE = (1.0, 5.0)


def check_layout(src):
    src = Path(src)
    names = {p.name.lower(): p for p in src.iterdir() if p.is_file()} if src.is_dir() else {}
    found = [names[n.lower()] for n in LABEL_FILES if n.lower() in names]
    sessions = [p for g in ('session*', 'Audio/session*') for p in src.glob(g) if p.is_dir()]
    if not found or not sessions:
        raise LayoutError(f'{src} is not MSP-IMPROV as distributed: expected Evaluation.txt (or Evalution.txt) and '
                          f'session1 ... session6 folders (at the root or under Audio/) holding '
                          f'<sentence>/<type>/MSP-IMPROV-S01A-F01-S-FM01.wav')
    if len(found) > 1:
        raise LayoutError(f'{src}: both {found[0].name} and {found[1].name}; which one holds the labels is not '
                          f'clear: move one away and convert again')
    return found[0]


def _values(tokens):
    """{'A': x, ...} of the key:value tokens of a line; NaN or not a number -> None."""
    vals = {}
    for t in tokens:
        m = KV_RE.match(t)
        if m:
            try:
                x = float(m.group(2))
            except ValueError:
                x = None
            vals[m.group(1)] = None if x is None or math.isnan(x) else x
    return vals


def _out_of_scale(vals):
    """The keys of `vals` whose value lies outside the 1-5 scale (None: no value, not out of scale)."""
    return [k for k, x in vals.items() if x is not None and not SCALE[0] <= x <= SCALE[1]]


def parse_evaluation(path, report):
    """Evaluation.txt -> {stem: {'code', 'vals', 'raters': [(rater, category, [others], vals, where)], 'where',
    'text'}}. A repeated block (the same utterance twice) is kept once when the two are identical (noted), and
    left out (value None) with both places listed when they differ."""
    out, cur, twice = {}, None, {}
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
            if len(plain) < 2 or plain[1] not in CODES or not all(k in vals for k in 'AVD'):
                report.skip(where, f'unparsable or truncated consensus line {line[:90]!r} (utterance left out)')
                cur = None
                continue
            cur = {'code': plain[1], 'vals': vals, 'raters': [], 'where': where, 'text': [line]}
            if stem in out:
                twice.setdefault(stem, [out[stem]]).append(cur)
            else:
                out[stem] = cur
            continue
        if cur is None:
            report.skip(where, f'rater line without a readable consensus line before it: {line[:60]!r}')
            continue
        cur['text'].append(line)
        if len(plain) < 2 or not any(KV_RE.match(t) for t in tokens):
            report.skip(where, f'unparsable rater line {line[:90]!r}')
            continue
        cur['raters'].append((plain[0], plain[1], [x.strip() for x in ','.join(plain[2:]).split(',') if x.strip()],
                              vals, where))
    for stem, blocks in twice.items():
        places = ', '.join(b['where'] for b in blocks)
        if all(b['text'] == blocks[0]['text'] for b in blocks):
            report.note(stem, f'consensus block repeated identically ({places}); read once')
        else:
            report.skip(stem, f'{len(blocks)} different consensus blocks ({places}): which one holds the labels is '
                              f'not clear, utterance left out')
            out[stem] = None
    return out


def find_audio(src, report):
    """{stem: path} of every WAV in the session folders; a name found in two places is listed and left out."""
    found = {}
    for g in AUDIO_GLOBS:
        for p in Path(src).glob(g):
            found.setdefault(p.stem, []).append(p)
    audio = {}
    for stem, paths in found.items():
        if len(paths) > 1:
            report.skip(stem, f'the same recording name in {len(paths)} places '
                              f'({", ".join(str(p.relative_to(src)) for p in sorted(paths))}): left out')
        else:
            audio[stem] = paths[0]
    other = [p for g in ('session*/**/*', 'Audio/session*/**/*') for p in Path(src).glob(g)
             if p.is_file() and p.suffix.lower() != '.wav']
    if other:
        kinds = ', '.join(sorted({p.suffix.lower() or '(none)' for p in other}))
        report.note('session folders', f'{len(other)} files that are not WAV audio ({kinds}) not read')
    return audio, found


def read(src, report, speakers=None, **_):
    ev = check_layout(src)
    src = Path(src)
    audio, found = find_audio(src, report)
    labels = parse_evaluation(ev, report)
    utts, raters = [], []
    for stem, lab in labels.items():
        if lab is None:     # listed by parse_evaluation
            continue
        m = STEM_RE.match(stem)
        if not m:
            report.skip(stem, 'name is not MSP-IMPROV-SxxE-GNN-T-...')
            continue
        _, sent, target, spk, g, sess, code, _ = m.groups()
        if speakers and spk not in speakers:
            continue
        if stem not in audio:
            if stem not in found:
                report.skip(stem, f'audio file missing (looked for [Audio/]session{int(sess)}/*/*/{stem}.wav)')
            continue
        folder = audio[stem].relative_to(src).parts
        folder = folder[1] if folder[0] == 'Audio' else folder[0]
        if folder.lower() != f'session{int(sess)}':
            report.note(stem, f'filed under {folder} although speaker {spk} is of session {int(sess)}: the '
                              f'session of the name is used (folds)')
        v = dict(lab['vals'])
        for k in _out_of_scale(v):
            report.note(stem, f'consensus {k}:{v[k]:g} ({lab["where"]}) outside the 1-5 scale: left empty, not '
                              f'clipped')
            v[k] = None
        empty = [k for k in 'AVD' if v.get(k) is None]
        if len(empty) == 3:
            report.skip(stem, f'consensus line {lab["where"]} holds no A, V or D value (utterance left out)')
            continue
        nan = [k for k in 'AVD' if lab['vals'].get(k) is None]
        if nan:
            report.note(stem, f'consensus {", ".join(nan)} NaN ({lab["where"]}): left empty, the other '
                              f'attributes kept')
        seen = set()
        for rater, cat, others, vals, where in lab['raters']:
            missing = [k for k in 'AVD' if vals.get(k) is None]
            bad = _out_of_scale(vals)
            if missing or bad:
                why = f'without a value for {", ".join(missing)}' if missing else \
                    f'with {", ".join(f"{k}:{vals[k]:g}" for k in bad)} outside the 1-5 scale (not clipped)'
                report.skip(f'{stem} rater {rater}', f'rater line {where} {why} (rating left out)')
                continue
            if rater in seen:
                report.skip(f'{stem} rater {rater}', f'repeated rater line {where} (first kept)')
                continue
            seen.add(rater)
            cls = MSP_CLASS.get(RATER_CATS.get(cat.lower(), 'other'), 'Other')
            raters.append((stem, rater, cls, others, five_to_seven(vals['A']), five_to_seven(vals['V']),
                           five_to_seven(vals['D']), 'raters'))
        act, val, dom = (five_to_seven(v[k]) if v.get(k) is not None else None for k in 'AVD')
        utts.append(Utt(name=stem, audio=audio[stem], speaker=spk, gender='Female' if g == 'F' else 'Male',
                        emo_class=lab['code'], category=CODES[lab['code']], act=act, val=val, dom=dom,
                        source='raters',
                        extra={'Session': int(sess), 'Sentence': sent, 'IntendedCategory': CODES.get(target, target),
                               'ScenarioCode': code, 'Scenario': SCENARIO.get(code, 'unknown'),
                               'Naturalness': v.get('N') if v.get('N') is not None else ''}))
    for stem in sorted(set(audio) - set(labels)):
        m = STEM_RE.match(stem)
        if speakers and m and m.group(4) not in speakers:
            continue
        report.skip(stem, f'audio file without a consensus line in {ev.name}')
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
