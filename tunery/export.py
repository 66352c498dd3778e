"""Export a finished run as a standalone model: the adapter merged into the base weights.

The merged directory loads with plain `AutoModelForCausalLM.from_pretrained`, needs neither peft
nor tunery, and carries the tokenizer, chat template and the run's manifest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunery.errors import TuneryError


def final_dir(run: str | Path) -> Path:
    """Accept a run directory (uses its final/) or a model/adapter directory itself."""
    run = Path(run)
    if (run / "final" / "tunery.json").is_file():
        return run / "final"
    if (run / "tunery.json").is_file() or (run / "adapter_config.json").is_file():
        return run
    raise TuneryError(
        f"{run} is not a finished tunery run (no final/tunery.json)",
        hint="pass the run directory given to `tunery train --output`, after the run succeeded",
    )


def merge(run: str | Path, output: str | Path) -> Path:
    """Write base + adapter merged into `output` (atomically). Full fine-tunes are copied as they are."""
    import torch
    from peft import PeftModel

    from tunery.models import load_model, resolve_model
    from tunery.train.checkpoint import TOKENIZER_FILES, publish

    source = final_dir(run)
    manifest = json.loads((source / "tunery.json").read_text()) if (source / "tunery.json").is_file() else {}
    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if (source / "adapter_config.json").is_file():
        # The manifest's path first (fast), then its reference, then what peft recorded.
        base_ref = manifest.get("base_model") or json.loads((source / "adapter_config.json").read_text())[
            "base_model_name_or_path"
        ]
        base_dir = Path(manifest.get("base_model_path", ""))
        if not (base_dir / "config.json").is_file():
            base_dir = resolve_model(base_ref)
        model = PeftModel.from_pretrained(load_model(base_dir, dtype=torch.float32), str(source))
        merged = model.merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        for name in (*TOKENIZER_FILES, "generation_config.json"):
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
    else:
        shutil.copytree(source, tmp)
    (tmp / "tunery.json").write_text(json.dumps({**manifest, "merged_from": str(source)}, indent=2))
    output.parent.mkdir(parents=True, exist_ok=True)
    publish(tmp, output)
    return output
