"""Convert a GGUF checkpoint into a dense safetensors folder that vLLM can serve.

Run as `python -m serving.gguf_convert GGUF OUT_DIR`; base_weights.py calls it in a child
process so the memory of the dense load is returned when it ends.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    # transformers dequantizes GGUF to dense weights on load (it needs the `gguf` package).
    # bf16 is the dtype vLLM computes in on this CPU: saving it avoids a cast of every
    # tensor at each start (and a log warning per tensor) and halves the folder.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dense now, but the model still claims to be GGUF-quantized and
    # save_pretrained refuses ("not serializable") until that claim is dropped.
    # transformers sets hf_quantizer on the model without declaring it, so the type checker
    # sees torch's Module.__setattr__, typed for tensors and modules only.
    model.hf_quantizer = None  # type: ignore[assignment]
    del model.config.quantization_config
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m serving.gguf_convert GGUF OUT_DIR")
    convert_gguf(Path(sys.argv[1]), Path(sys.argv[2]))
