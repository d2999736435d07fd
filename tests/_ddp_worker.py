"""One process of the DistributedDataParallel test (tests/test_torch_distributed.py).

Usage: python tests/_ddp_worker.py RANK WORLD INIT_FILE OUT_DIR MODE
Each process seeds torch with its own rank (as data loading usually does), wraps a ReLU
``nn.RNN`` in DDP, trains its recurrent weight with ProjUNN (rank 2, generator=None) on its
own batches for a few steps, and saves the final weights to OUT_DIR/rank<RANK>.pt.
MODE "fsdp" instead shards the recurrent weight with fully_shard and expects ProjUNN to
refuse it by name.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist


def main() -> int:
    rank, world, init_file, out_dir, mode = sys.argv[1:6]
    rank, world = int(rank), int(world)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    from unitary_lowrank.torch import ProjUNN, orthogonal_, param_groups

    torch.manual_seed(100)  # the same model everywhere ...
    rnn = torch.nn.RNN(3, 12, nonlinearity="relu", batch_first=True)
    orthogonal_(rnn, "weight_hh_l0")
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        fully_shard(rnn)
        try:
            opt = ProjUNN(param_groups(rnn), lr=1e-2, rank=2)
            for p in rnn.parameters():
                p.grad = torch.zeros_like(p)
            opt.step()
        except ValueError as exc:
            print(f"refused: {exc}")
            dist.destroy_process_group()
            return 0
        print("not refused")
        dist.destroy_process_group()
        return 1
    model = torch.nn.parallel.DistributedDataParallel(rnn)
    torch.manual_seed(1000 + rank)  # ... then each process its own random state and data
    opt = ProjUNN(param_groups(rnn), lr=1e-2, rank=2)  # generator=None: torch's, per process
    for _ in range(8):
        x = torch.randn(4, 5, 3)
        opt.zero_grad()
        out, _ = model(x)
        out.square().mean().backward()
        opt.step()
    torch.save({k: v.detach().clone() for k, v in rnn.state_dict().items()},
               f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
