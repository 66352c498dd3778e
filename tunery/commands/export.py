"""`tunery export`: turn a finished run into a standalone model directory, or into what vLLM serves."""

from __future__ import annotations

import argparse

HELP = "Export a finished run: a standalone merged model, or an adapter or model laid out for vLLM."
EXAMPLES = """\
  tunery export runs/my-run --merge --output models/my-model
  tunery export runs/my-run --format vllm --output exports/my-run            # base/ + adapter/ for --enable-lora
  tunery export runs/my-run --format vllm --merge --output exports/my-model  # one model directory
  tunery export runs/my-run --format gguf --quant q8_0 --output exports/gguf   # llama.cpp, LM Studio
  tunery export runs/my-run --format ollama --output exports/ollama            # + Modelfile, ollama create
  python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('models/my-model')"
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (or its final/ directory)")
    parser.add_argument(
        "--format",
        choices=("hf", "vllm", "gguf", "ollama"),
        default="hf",
        help="hf: a Hugging Face model directory (needs --merge); vllm: the layout `vllm serve` loads, "
        "and the command that serves it; gguf: one .gguf of the merged model (llama.cpp, LM Studio); "
        "ollama: the .gguf plus a Modelfile, and the `ollama create` command (default hf)",
    )
    parser.add_argument(
        "--quant",
        default="f16",
        choices=("f32", "f16", "q8_0", "q5_1", "q4_1", "q4_0"),
        help="gguf/ollama: the weights' type; norms stay f32 (default f16)",
    )
    parser.add_argument("--merge", action="store_true", help="merge the adapter into the base weights")
    parser.add_argument("--name", help="model name clients ask vLLM or Ollama for (default: the run directory's name)")
    parser.add_argument("--output", required=True, help="directory to write")


def run(args: argparse.Namespace) -> int:
    from tunery.api import export
    from tunery.errors import TuneryError

    if args.format == "hf" and not args.merge:
        raise TuneryError(
            "say how to export",
            hint="--merge writes a standalone merged model; --format vllm writes what vLLM serves",
        )
    if args.quant != "f16" and args.format not in ("gguf", "ollama"):
        raise TuneryError("--quant sets a GGUF's weight type", hint="use it with --format gguf or ollama")
    exported = export(args.run, args.output, format=args.format, merged=args.merge, quant=args.quant, name=args.name)
    if args.format in ("gguf", "ollama"):
        print(f"GGUF ({args.quant}) of the merged model written to {exported.path}")
        if args.format == "ollama":
            print(f"Modelfile written to {exported.path.parent / 'Modelfile'}; create the Ollama model with:")
        else:
            print("chat with it in llama.cpp:")
        print(f"  {exported.shell_command}")
        return 0
    if args.format == "vllm":
        what = "LoRA adapter and its base model" if exported.kind == "adapter" else "merged model"
        print(f"{what} for vLLM written to {exported.path}")
        print("serve it with (vLLM installed on a GPU machine; the paths as written here):")
        print(f"  {exported.shell_command}")
        return 0
    print(f"merged model written to {exported.path}")
    return 0
