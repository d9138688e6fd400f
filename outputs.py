"""Output paths that never clobber what a command reads or another of its outputs.

Every script that writes files checks its output paths with `check_outputs` before any work: an output may
not be a file or folder the command reads (a recording, a transcript or speaker table, a model, its record, a
NormTerm file, a feature store, a corpus, ...), and two outputs may not be the same path. Paths are compared after resolving symbolic links and `..`, so
`./a.wav`, `a.wav` and a link to it are one path.

The output policy, the same in every script: a built artefact (a converted corpus, a feature store, a NormTerm, a
model, a protocol run) is replaced only with --overwrite (`refuse_replace`); a result file the user names (a
predictions CSV) may be replaced, never an input; an output is written under a lock (`output_lock`: a second
run on it stops and names the first) and replaced atomically (utils.atomic_write); folders get the user's umask.
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


def check_not_inside(out, flag, sources):
    """An output folder that may not be, or lie inside, a folder the command reads (a feature store, a corpus's
    audio or labels folder): its files would mix with that artefact's. sources: [(path, what it is)]."""
    k = _key(out)
    for src, what in sources:
        if src is None:
            continue
        s = _key(src)
        if k == s or s in k.parents:
            rel = 'is' if k == s else 'lies inside'
            raise OutputClashError(f'{flag} {out} {rel} {what} {src}, which this command reads; its outputs would be '
                                   f'mixed into it: choose another {flag}')


def files_under(folder, pattern='*'):
    """Existing files under `folder` (recursive; empty for a missing folder)."""
    folder = Path(folder)
    return [q for q in folder.rglob(pattern) if q.is_file()] if folder.is_dir() else []


# ---------------------------------------------------------------- one output policy (docs/identity.md)
class OutputExistsError(OutputClashError):
    """A built artefact (corpus, feature store, NormTerm, model, protocol run) that a command would replace."""


def refuse_replace(path, what, overwrite, flag='--out', present=None):
    """A built artefact at `path` (`what`: 'a NormTerm', ...) is replaced only with --overwrite, the same flag for
    every script. present: the files that make it one (default: `path` exists, non-empty for a folder).
    Returns True when an existing artefact will be replaced."""
    p = Path(path)
    if present is None:
        present = [p] if p.is_file() or (p.is_dir() and any(p.iterdir())) else []
    present = [q for q in present if Path(q).exists()]
    if not present:
        return False
    if not overwrite:
        raise OutputExistsError(f'{flag} {p} already holds {what} ({", ".join(Path(q).name for q in present[:4])}'
                                f'{" ..." if len(present) > 4 else ""}); pass --overwrite to replace it, or another '
                                f'{flag}')
    return True


def lock_file(path):
    """Where the lock of an output lives: .<name>.lock beside it (a folder's lock is not inside what it guards)."""
    p = Path(path).expanduser().absolute()
    return p.parent / f'.{p.name}.lock'


def check_parent(path, flag='--out'):
    """Stop when a folder above output `path` is a file (the output could never be created)."""
    p = Path(path).expanduser().absolute()
    for q in p.parents:
        if q.exists():
            if not q.is_dir():
                raise OutputClashError(f'{flag} {path}: {q} is a file, not a folder, so {p.name} cannot be created '
                                       f'under it; pick another {flag}')
            return


def output_lock(path, what=None, flag='--out'):
    """A RunLock on output `path` (utils.RunLock: a second run on the same output stops, naming the first; a lock
    left by a killed run is taken over). Use as a context: `with output_lock(out): ...`."""
    from utils import RunLock
    check_parent(path, flag)
    return RunLock(lock_file(path), what or f'the output {path}')


def umask_mode(mode=0o777):
    """`mode` limited by the user's umask (what mkdir gives; mkdtemp gives 0700 whatever the umask)."""
    import os
    m = os.umask(0)
    os.umask(m)
    return mode & ~m
