"""Output paths that never clobber what a command reads or another of its outputs.

Every script that writes files checks its output paths with `check_outputs` before any work: an output may
not be a file or folder the command reads (a recording, a transcript or speaker table, a model, its record, a
NormTerm file, a feature store, a corpus, ...), and two outputs may not be the same path. Paths are compared after resolving symbolic links and `..`, so
`./a.wav`, `a.wav` and a link to it are one path.
"""
from pathlib import Path

from errors import ToolkitError


class OutputClashError(ToolkitError):
    """An output path that would replace an input or another output."""


def _key(path):
    return Path(path).expanduser().resolve()


def check_outputs(outputs, inputs=()):
    """Refuse output paths that would overwrite an input or another output (call it before any work).

    outputs: [(path or None, how it was given, e.g. '--out')]: the files (or folders) the command will write;
             None is skipped.
    inputs:  [(path, what it is)]: the files and folders the command reads; an output equal to one of them
             is refused.
    """
    given = [(_key(p), str(p), flag) for p, flag in outputs if p is not None and str(p) != '']
    seen = {}
    for k, p, flag in given:
        if k in seen:
            p2, flag2 = seen[k]
            raise OutputClashError(f'{flag} {p} is the same path as {flag2} {p2}: one output would overwrite the '
                                   f'other; give each output its own path')
        seen[k] = (p, flag)
    keys = {}
    for p, what in inputs:
        keys.setdefault(_key(p), (str(p), what))
    for k, p, flag in given:
        if k in keys:
            src, what = keys[k]
            same = '' if Path(src).expanduser().absolute() == Path(p).expanduser().absolute() else f' ({src})'
            raise OutputClashError(f'{flag} {p} is {what}{same}, which this command reads; writing there would '
                                   f'replace it: choose another {flag}')


def check_replaced_folder(out, flag, sources):
    """A folder an output replaces as a whole (a builder's --force) may not be, hold or lie inside a folder it
    reads. sources: [(path, what it is)]."""
    k = _key(out)
    for src, what in sources:
        s = _key(src)
        if k == s or k in s.parents or s in k.parents:
            rel = 'is' if k == s else 'holds' if k in s.parents else 'lies inside'
            raise OutputClashError(f'{flag} {out} {rel} {what} {src}, which this command reads; building there '
                                   f'(with --force: replacing it) would destroy it: choose another {flag}')


def files_under(folder, pattern='*'):
    """Existing files under `folder` (recursive; empty for a missing folder)."""
    folder = Path(folder)
    return [q for q in folder.rglob(pattern) if q.is_file()] if folder.is_dir() else []
