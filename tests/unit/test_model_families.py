"""Each supported causal-LM family trains, evaluates, serves and packs for LMI.

The models are tiny configs built here (hidden 32, 2 layers, the byte-level tokenizer of
``tiny_models``): no download. Per family, one LoRA run through ``train.py`` feeds every
test of that family; an unsupported model type fails with the supported ones named.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from tiny_models import make_tiny_tokenizer, set_training_job_env

from training_containers.train import main
from tuneloop.evaluation.benchmarks import MultipleChoiceItem
from tuneloop.evaluation.runner import score_multiple_choice
from tuneloop.models.families import (
    FAMILIES,
    UnsupportedModelError,
    family_of,
    lora_targets,
    supported_model_types,
)
from tuneloop.models.loading import load_model_dir
from tuneloop.release.lmi import LmiArtifactError, check_lmi_adapter, read_metadata, repack_for_lmi
from tuneloop.serving.engine import Generator, parse_request
from tuneloop.training.batching import collate, collate_packed
from tuneloop.training.data import IGNORE_INDEX, Example, encode_record
from tuneloop.training.loop import _loss_sum
from tuneloop.training.model_setup import attention_for

TRAINED = "abcabcabc abcabcabc abcabcabc"
MODEL_TYPES = [t for family in FAMILIES for t in family.model_types]
# The Llama-style config of each family (all in transformers 5.23, the version installed).
CONFIG_CLASSES: dict[str, Any] = {
    "llama": transformers.LlamaConfig,
    "mistral": transformers.MistralConfig,
    "qwen2": transformers.Qwen2Config,
    "qwen3": transformers.Qwen3Config,
    "gemma2": transformers.Gemma2Config,
    "gemma3_text": transformers.Gemma3TextConfig,
    "phi3": transformers.Phi3Config,
}


def tiny_config(model_type: str, tokenizer: Any) -> Any:
    """A 2-layer, hidden-32 config of ``model_type`` (wide init, so a few LoRA steps show)."""
    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if model_type == "gpt2":
        return transformers.GPT2Config(
            vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=512,
            initializer_range=0.2, bos_token_id=tokenizer.eos_token_id, **ids,
        )  # fmt: skip
    if model_type == "gpt_neox":  # not a supported family
        return transformers.GPTNeoXConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512,
            initializer_range=0.2, bos_token_id=tokenizer.eos_token_id, **ids,
        )  # fmt: skip
    config_class = CONFIG_CLASSES[model_type]
    extra: dict[str, Any] = {}
    if model_type in ("qwen3", "gemma2", "gemma3_text"):
        extra["head_dim"] = 8
    if model_type in ("gemma2", "gemma3_text"):
        # A window shorter than the packed rows, so the sliding-window layers matter.
        extra |= {"sliding_window": 16, "query_pre_attn_scalar": 8}
    return config_class(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        initializer_range=0.2, bos_token_id=None, **ids, **extra,
    )  # fmt: skip


def make_tiny_model(path: Path, model_type: str) -> Path:
    tokenizer = make_tiny_tokenizer()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(model_type, tokenizer))
    assert model.config.model_type == model_type
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@dataclass(frozen=True)
class Run:
    """One family's tiny base model and the training job run over it."""

    model_type: str
    base: Path
    root: Path
    exit_code: int

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    def report(self) -> dict[str, Any]:
        return json.loads((self.root / "output/data/training_report.json").read_text())

    def failure(self) -> str:
        return (self.root / "output/failure").read_text()


def run_training(root: Path, base: Path, *extra: str) -> int:
    """``train.py`` over ``base`` on repetitive data, with the SageMaker paths under ``root``."""
    with pytest.MonkeyPatch.context() as env:
        set_training_job_env(env, root)
        channel = root / "input/data/train"
        channel.mkdir(parents=True, exist_ok=True)
        (channel / "train.jsonl").write_text(json.dumps({"text": TRAINED}) + "\n")
        return main(
            [
                "--base_model", str(base), "--max_steps", "6", "--learning_rate", "0.01",
                "--per_device_batch_size", "2", "--max_seq_length", "64", "--precision", "fp32",
                "--num_threads", "1", "--checkpoint_dir", str(root / "checkpoints"), *extra,
            ]
        )  # fmt: skip


@pytest.fixture(scope="module", params=MODEL_TYPES)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    model_type = request.param
    root = tmp_path_factory.mktemp(model_type)
    base = make_tiny_model(root / "base", model_type)
    return Run(model_type, base, root / "job", run_training(root / "job", base))


def test_lora_training_lowers_the_loss_on_the_familys_modules(run: Run) -> None:
    # Given a tiny model of the family, When train.py runs with the default lora_target_modules
    assert run.exit_code == 0, run.failure()

    # Then the loss falls and the adapter targets the family's projections
    losses = run.report()["losses"]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]
    family = family_of(run.model_type)
    assert family is not None
    adapter = json.loads((run.model_dir / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == sorted(family.target_modules)
    assert adapter["fan_in_fan_out"] is family.fan_in_fan_out
    meta = json.loads((run.model_dir / "tuneloop_model.json").read_text())
    assert meta["model_type"] == run.model_type and meta["adapter"] is True
    # Every targeted module got a LoRA pair: r * (fan_in + fan_out) parameters each.
    base = transformers.AutoModelForCausalLM.from_pretrained(run.base)
    targeted = [
        module
        for name, module in base.named_modules()
        if name.rsplit(".", 1)[-1] in family.target_modules
    ]
    shapes = [module.weight.shape for module in targeted]
    assert run.report()["trainable_parameters"] == sum(8 * (a + b) for a, b in shapes)


def test_evaluation_scores_the_merged_adapter(run: Run) -> None:
    # Given a multiple-choice item whose right answer continues the trained text
    item = MultipleChoiceItem(id="abc", prompt="abcabc", choices=("abc", "xyz"), answer=0)

    def score(path: Path) -> dict[str, Any]:
        model, tokenizer = load_model_dir(path)  # an adapter folder is merged into its base
        return score_multiple_choice(model, tokenizer, [item], batch_size=2, log=lambda _: None)[0]

    # When the base and the trained adapter are scored
    before, after = score(run.base), score(run.model_dir)

    # Then the trained continuation became much likelier and the adapter picks it
    assert after["loglikelihoods"][0] > before["loglikelihoods"][0] + 2.0
    assert after["prediction"] == 0 and after["score"] == 1.0


def test_serving_generates_what_the_unmerged_adapter_generates(run: Run) -> None:
    # Given the serving engine over the adapter folder (merged at load)
    generator = Generator.from_model_dir(run.model_dir)
    request = parse_request({"prompt": "abcabc", "parameters": {"max_new_tokens": 6}})

    # When it answers greedily
    response = generator.generate(request)

    # Then it gives the tokens transformers' greedy generate gives with the live peft adapter
    adapter: Any
    adapter, tokenizer = load_model_dir(run.model_dir, merge=False)
    ids = tokenizer.encode("abcabc")
    with torch.no_grad():
        output = adapter.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
            do_sample=False,
            max_new_tokens=6,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = [t for t in output[0, len(ids) :].tolist() if t != tokenizer.eos_token_id]
    assert response["completion_tokens"] == len(new) > 0
    assert response["generated_text"] == tokenizer.decode(new, skip_special_tokens=True)


def test_packed_examples_do_not_attend_to_each_other(run: Run) -> None:
    # Given the family's base with the attention kernel training picks for it
    model, tokenizer = load_model_dir(run.base)
    model.set_attn_implementation(attention_for(type(model), "sdpa"))
    neighbours = [
        encode_record({"text": "the first example, long enough"}, tokenizer, 64),
        encode_record({"text": "a different one of equal size!"}, tokenizer, 64),
    ]
    watched = encode_record({"text": "the example whose loss we watch"}, tokenizer, 64)

    def loss(batch: Any) -> float:
        with torch.no_grad():
            return float(_loss_sum(model, None, batch.tensors))

    alone = loss(collate([watched], pad_id=0))
    for neighbour in neighbours:
        # When the watched example is packed after an unlabelled neighbour
        unlabelled = Example(neighbour.input_ids, [IGNORE_INDEX] * len(neighbour.labels))
        packed = loss(collate_packed([[unlabelled, watched]], pad_id=0))
        # Then its loss is what it is alone (the neighbour is 30+ tokens: past Gemma's window)
        assert packed == pytest.approx(alone, abs=1e-4)


def artifact(model_dir: Path) -> io.BytesIO:
    """``model.tar.gz`` as SageMaker uploads ``SM_MODEL_DIR``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(model_dir, arcname=".")
    buffer.seek(0)
    return buffer


def test_lmi_repacks_the_adapter_or_refuses_the_family(run: Run) -> None:
    # Given the trained artifact and its metadata as the Deploy Lambda reads them
    source = artifact(run.model_dir)
    metadata = read_metadata(source)
    family = family_of(run.model_type)
    assert family is not None
    if not family.lmi_lora:
        # Then a family vLLM has no LoRA support for fails naming it and the way out
        with pytest.raises(
            LmiArtifactError, match=rf"'{run.model_type}'.*serving_backend tuneloop"
        ):
            check_lmi_adapter(metadata)
        return
    check_lmi_adapter(metadata)

    # When it is repacked for LMI
    source.seek(0)
    target = io.BytesIO()
    repack_for_lmi(
        source, target, adapter_name="support", properties={"OPTION_ENABLE_LORA": "true"}
    )

    # Then the adapter's files sit under adapters/support/ with the family's target modules
    target.seek(0)
    with tarfile.open(fileobj=target, mode="r:gz") as archive:
        names = set(archive.getnames())
        config = archive.extractfile("adapters/support/adapter_config.json")
        assert config is not None
        adapter = json.load(config)
    assert {"serving.properties", "adapters/support/adapter_model.safetensors"} <= names
    assert not any(name.startswith("adapters/support/code/") for name in names)
    assert sorted(adapter["target_modules"]) == sorted(family.target_modules)


@pytest.fixture(scope="module")
def unsupported_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("neox") / "base", "gpt_neox")


def test_an_unsupported_model_type_fails_naming_it_and_the_supported_ones(
    unsupported_base: Path, tmp_path: Path
) -> None:
    # Given a GPT-NeoX model (not in the family table), When train.py runs with auto targets
    code = run_training(tmp_path, unsupported_base)

    # Then the job fails, naming the type, every supported type and the override
    assert code == 1
    failure = (tmp_path / "output/failure").read_text()
    assert "model type 'gpt_neox' is not a supported family" in failure
    assert all(model_type in failure for model_type in supported_model_types())
    assert "lora_target_modules" in failure
    assert not (tmp_path / "model/adapter_config.json").exists()


def test_explicit_target_modules_train_an_unsupported_model_type(
    unsupported_base: Path, tmp_path: Path
) -> None:
    # Given the same model with its module names set explicitly
    code = run_training(tmp_path, unsupported_base, "--lora_target_modules", "query_key_value")

    # Then it trains and the adapter targets those modules
    assert code == 0
    adapter = json.loads((tmp_path / "model/adapter_config.json").read_text())
    assert adapter["target_modules"] == ["query_key_value"]


def test_a_target_module_the_model_lacks_fails_listing_its_linear_modules(
    unsupported_base: Path, tmp_path: Path
) -> None:
    # Given a name the model does not have beside one it has
    code = run_training(
        tmp_path, unsupported_base, "--lora_target_modules", "query_key_value,q_proj"
    )

    # Then the job fails before training, naming the missing module and the ones there are
    assert code == 1
    failure = (tmp_path / "output/failure").read_text()
    assert "no module named q_proj" in failure
    assert "query_key_value" in failure and "dense_4h_to_h" in failure


def test_all_linear_and_explicit_names_pass_through_for_any_model_type() -> None:
    assert lora_targets("gpt_neox", "all-linear").target_modules == "all-linear"
    assert lora_targets("gpt_neox", ["query_key_value"]).target_modules == ("query_key_value",)
    # GPT-2's Conv1D layers keep fan_in_fan_out whatever names are given
    assert lora_targets("gpt2", ["c_attn"]).fan_in_fan_out is True
    with pytest.raises(UnsupportedModelError, match="'gpt_neox'"):
        lora_targets("gpt_neox", "auto")
