"""The server's loaded models are kept out of the garbage collector's full scans.

A full collection walks every tracked Python object with no other Python running meanwhile. With
SmolLM2 and eight adapters loaded that is about 500,000 objects and 260 ms, which showed up as
`/health` stalls of 260-300 ms in the serving benchmark. The engine freezes what it loads
(`gc.freeze`) and unfreezes when it unloads, so unloaded weights are still freed.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from tunery.serve.engine import ChatEngine


def test_loaded_models_are_frozen_out_of_collections_and_freed_on_unload(tiny_model_dir):
    path = Path(tiny_model_dir).resolve()
    engine = ChatEngine(device="cpu", threads=1)
    try:
        generator = engine._generator(path)
        scanned = {id(o) for o in gc.get_objects()}  # every generation but the frozen one
        layers = list(generator.model.modules())
        assert not any(id(m) in scanned for m in layers)
        model = weakref.ref(generator.model)
        del generator, layers
        engine._unload(path)
        assert model() is None
    finally:
        gc.unfreeze()
