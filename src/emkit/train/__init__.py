"""Fine-tuning: LoRA / rs-LoRA / rank-1 / full SFT with TRL + PEFT, or the OpenAI fine-tuning API.

Public API::

    TrainConfig(model="smollm2-135m-instruct", data=[...], ...)   # pydantic, extra=forbid; paper defaults
    train(config: TrainConfig, progress: bool | ProgressHook = True) -> TrainResult
        # progress: True (bars), False, or hook(step, max_steps, info) (emkit._progress)
    merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None) -> Path
    load_train_config(path=None, overrides=None, base=None, betley=None) -> TrainConfig
    from_betley(path) -> dict            # the original repository's train.json -> TrainConfig keys

    TrainResult: adapter_dir (Path | None: final PEFT adapter; full model folder with full_finetune; None for
    backend openai), output_dir, steps, final_loss, resumed_from_step, base_model, backend,
    fine_tuned_model (openai), run_hash, skipped (already finished, nothing trained now), extra.

Mitigations (one optional field each, null = off; emkit.train._mitigations, docs/training.md):
    inoculation: InoculationSettings(system=, user_prefix=, user_suffix=)   # added to every training row
    kl: KLSettings(weight=, reference=[...], max_rows=256, batch_size=None, direction="forward", tokens="all",
                   reduction="token_vocab_mean")                            # penalty towards the adapter-less base
    interleave: InterleaveSettings(dataset=, ratio=)                        # safe rows mixed in (emkit.data.mix)

Behaviour:
- Loss on assistant tokens only: each row's last assistant turn is the completion (TRL prompt/completion
  format); every system/user/prompt token has label -100, the answer's end-of-turn token is trained, and no
  generation prompt is appended after the answer.
- Rerunning on a finished ``output_dir`` returns at once; after a kill it resumes from the newest complete
  checkpoint (adapter + optimizer + scheduler + RNG state). A folder holding another config is an error.
- Output: adapter/, checkpoints/, config.yaml (resolved), loss.csv, metadata.json, train_result.json.
- Load the result with ``emkit.models.load_model(base, adapter=result.adapter_dir)``.
- Multi-GPU: ``accelerate launch -m emkit train CONFIG.yaml`` (see docs/training.md).
"""

from emkit.train._config import LoraSettings, OpenAISettings, TrainConfig, from_betley, load_train_config
from emkit.train._merge import merge_adapter
from emkit.train._meta import TrainResult
from emkit.train._mitigations import InoculationSettings, InterleaveSettings, KLSettings
from emkit.train._run import train

__all__ = ["InoculationSettings", "InterleaveSettings", "KLSettings", "LoraSettings", "OpenAISettings", "TrainConfig",
           "TrainResult", "from_betley", "load_train_config", "merge_adapter", "train"]
