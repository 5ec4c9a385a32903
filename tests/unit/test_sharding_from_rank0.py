"""FSDP2's meta-device start (``sharding.shard(..., from_rank0=True)``): rank 0 alone holds
the weights, the other process builds the model on the meta device (no memory); after
sharding, every process's shards, buffers and RNG state are rank 0's."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from tiny_models import make_tiny_causal_lm
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from tuneloop.training import distributed, sharding
from tuneloop.training.config import TrainConfig
from tuneloop.training.model_setup import base_on_meta, load_base, trainable_model

WORLD = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _process(rank: int, model_dir: str, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    place = distributed.topology()
    distributed.start(place)
    config = TrainConfig(base_model=model_dir, sharding="fsdp", seed=0).validate()
    torch.manual_seed(0)
    if rank == 0:
        base, _ = load_base(config, torch.device("cpu"))
        expected = {k: v.clone() for k, v in base.state_dict().items()}
    else:
        on_meta = base_on_meta(config)
        assert on_meta is not None
        base = on_meta[0]
        meta = all(p.is_meta for p in base.parameters())
    model, _ = trainable_model(base, config, lambda _: None)
    if rank == 0:
        torch.manual_seed(1234)  # rank 0's RNG, as its real initialisation leaves it
    sharding.shard(model, lambda t: t["x"], torch.device("cpu"), place, from_rank0=True)
    full = StateDictOptions(full_state_dict=True)  # every process gets the full tensors
    weights = get_model_state_dict(model, options=full)
    draw = float(torch.rand(()))
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    distributed.stop(place)
    saved: dict[str, Any] = {"weights": weights, "buffers": buffers, "draw": draw}
    saved.update({"expected": expected} if rank == 0 else {"meta": meta})
    torch.save(saved, Path(out) / f"{rank}.pt")


def test_every_process_holds_rank_zeros_weights_buffers_and_rng(tmp_path: Path) -> None:
    model_dir = str(make_tiny_causal_lm(tmp_path / "tiny"))
    context = mp.get_context("spawn")
    port = _free_port()
    processes = [
        context.Process(target=_process, args=(rank, model_dir, port, str(tmp_path)))
        for rank in range(WORLD)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    first, second = (torch.load(tmp_path / f"{rank}.pt") for rank in range(WORLD))
    assert second["meta"], "rank 1 built the base without weights"
    expected = first["expected"]
    weights0, weights1 = first["weights"], second["weights"]
    buffers0, buffers1 = first["buffers"], second["buffers"]
    # Both processes' gathered weights are rank 0's loaded base (LoRA B starts at zero,
    # so the adapted model's base weights are compared by name under the peft prefix)
    base_names = [n for n in weights1 if "lora_" not in n]
    assert base_names
    for name in base_names:
        plain = name.replace("base_model.model.", "", 1).replace(".base_layer", "")
        assert torch.equal(weights1[name], expected[plain]), name
        assert torch.equal(weights0[name], weights1[name])
    for name in weights1:
        assert torch.equal(weights0[name], weights1[name]), name
    assert buffers0.keys() == buffers1.keys() and buffers1
    for name in buffers1:
        assert torch.equal(buffers0[name], buffers1[name]), name
    assert first["draw"] == second["draw"]  # the same RNG state from here on
