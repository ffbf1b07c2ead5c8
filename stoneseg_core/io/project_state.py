"""The project's state file (``stoneseg.json``) saved by two windows at once: the three-way
merge of what this window changed with what another window or program wrote since."""

from __future__ import annotations


def merge_state(base: dict, ours: dict, theirs: dict) -> dict:
    """Three-way merge of the project state: ``base`` as this window read it, ``ours`` as it
    is now, ``theirs`` as the file is now (another window may have written it).

    Each top-level key that we changed takes our value, else theirs. Tables keyed by photo
    (dicts) merge entry by entry the same way, and the list of predicted photos as a set
    (what we added or removed, on top of theirs), so two windows working on different
    photos never undo each other's work.
    """
    merged = dict(theirs)
    for key in set(base) | set(ours):
        b, o = base.get(key, _MISSING), ours.get(key, _MISSING)
        if o == b:
            continue  # not ours to change: theirs stands
        t = theirs.get(key, _MISSING)
        if isinstance(o, dict) and isinstance(t, dict) and (b is _MISSING or isinstance(b, dict)):
            merged[key] = merge_state(b if isinstance(b, dict) else {}, o, t)
        elif key == "predicted" and all(isinstance(v, list) for v in (o, t)):
            b_set = set(b) if isinstance(b, list) else set()
            merged[key] = sorted((set(t) | (set(o) - b_set)) - (b_set - set(o)))
        elif o is _MISSING:
            merged.pop(key, None)
        else:
            merged[key] = o
    return merged


_MISSING = object()  # a key that is not there (None is a value)
