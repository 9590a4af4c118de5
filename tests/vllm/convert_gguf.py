"""Convert the packaged SmolLM2-135M GGUF into a safetensors model directory that vLLM serves.

vLLM's CPU build does not load this GGUF (Q4_1) directly; transformers can read it
(with the ``gguf`` package), dequantizing the weights on load.  The loaded model keeps
a GGUF quantizer attached, which ``save_pretrained`` would write back as a
``quantization_config``; it is cleared first so the directory holds plain tensors.

Runs in the vLLM virtualenv (``.venv-vllm``: transformers, gguf, accelerate), not in
voxbus's:

    .venv-vllm/bin/python tests/vllm/convert_gguf.py MODEL.gguf OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def convert(gguf: Path, out: Path) -> None:
    """Write ``gguf`` as a Hugging Face model directory (config, bfloat16 safetensors, tokenizer) at ``out``.

    Args:
        gguf: the ``.gguf`` file.
        out: directory to create; written under ``<out>.partial`` and renamed when complete.

    Raises:
        FileNotFoundError: ``gguf`` does not exist.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise FileNotFoundError(gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} MODEL.gguf OUT_DIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
