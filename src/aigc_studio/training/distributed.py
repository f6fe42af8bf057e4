"""Data-parallel training on several processes and machines, started by ``torchrun``.

Every process (a *rank*) holds a full replica of the model and trains on its own rows of each global batch
(``TrainingTask.batch(index, rank, world_size)``); DistributedDataParallel (DDP) averages the gradients
across ranks during the backward pass, so every replica takes the same optimiser step and stays equal to the
others. Processes talk through gloo on CPU and NCCL on CUDA GPUs.

This module holds the pieces the Trainer and the launcher share:

- :func:`read_torchrun_env` reads and checks the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ...);
- :func:`process_group` joins the group and always leaves it (``destroy_process_group``), errors included;
- :func:`wrap_networks` puts DDP around each network a task trains (a GAN's generator and discriminator);
- small collectives (:func:`all_reduce_sum`, :func:`any_rank`, :func:`all_gather_objects`, :func:`barrier`)
  that do nothing in a single process, so the Trainer has one code path;
- :func:`torchrun_command` builds the ``torchrun`` command ``aigc train --nproc N`` re-launches itself with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from aigc_studio.errors import AigcError

_LAUNCH_HINT = "start distributed runs with `aigc train --nproc N` or `torchrun --nproc-per-node N -m aigc_studio.training ...`"
# Long enough for rank 0 to write a sample grid or a checkpoint while the others wait at the next collective.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process stands among the processes of one run.

    Attributes:
        rank: this process among all processes (0 writes files).
        local_rank: this process among those on its machine (picks its GPU).
        world_size: all processes.
        local_world_size: processes on this machine.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def read_torchrun_env(environ: Mapping[str, str] | None = None) -> DistributedEnv:
    """The process's place in the run, from the variables torchrun sets; a single process without them.

    Args:
        environ: the environment (default: ``os.environ``).

    Raises:
        AigcError: a variable is missing, not an integer, or inconsistent with the others
            (``RANK`` outside ``[0, WORLD_SIZE)``, ``LOCAL_RANK`` outside ``[0, LOCAL_WORLD_SIZE)``, ...).
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ and "RANK" not in environ:
        return DistributedEnv()

    def integer(name: str, default: int | None = None) -> int:
        text = environ.get(name)
        if text is None:
            if default is not None:
                return default
            raise AigcError(f"torchrun variable {name} is not set; {_LAUNCH_HINT}")
        try:
            return int(text)
        except ValueError:
            raise AigcError(f"torchrun variable {name}={text!r} is not an integer; {_LAUNCH_HINT}") from None

    world_size = integer("WORLD_SIZE")
    rank = integer("RANK")
    local_rank = integer("LOCAL_RANK", default=rank if world_size == 1 else None)
    local_world_size = integer("LOCAL_WORLD_SIZE", default=world_size)
    if world_size < 1:
        raise AigcError(f"WORLD_SIZE={world_size} must be >= 1; {_LAUNCH_HINT}")
    if not 0 <= rank < world_size:
        raise AigcError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size}); {_LAUNCH_HINT}")
    if not 1 <= local_world_size <= world_size:
        raise AigcError(f"LOCAL_WORLD_SIZE={local_world_size} must be in [1, WORLD_SIZE={world_size}]; {_LAUNCH_HINT}")
    if not 0 <= local_rank < local_world_size:
        raise AigcError(f"LOCAL_RANK={local_rank} is outside [0, LOCAL_WORLD_SIZE={local_world_size}); {_LAUNCH_HINT}")
    if world_size > 1:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not environ.get(name):
                raise AigcError(f"torchrun variable {name} is not set; {_LAUNCH_HINT}")
    return DistributedEnv(rank=rank, local_rank=local_rank, world_size=world_size, local_world_size=local_world_size)


def backend_for(device_type: str) -> str:
    """``"nccl"`` for CUDA, ``"gloo"`` for CPU; checked to be built into this torch.

    Raises:
        AigcError: the backend is not available (say which device to use instead).
    """
    if not dist.is_available():
        raise AigcError("this torch build has no torch.distributed; install a standard torch wheel or train with one process")
    if device_type == "cuda":
        if not dist.is_nccl_available():
            raise AigcError("the NCCL backend is not available in this torch build; install a CUDA torch wheel or pass --device cpu (gloo)", param="device")
        return "nccl"
    if not dist.is_gloo_available():
        raise AigcError("the gloo backend is not available in this torch build; install a standard torch wheel or train with one process", param="device")
    return "gloo"


@contextlib.contextmanager
def process_group(env: DistributedEnv, device_name: str) -> Iterator[None]:
    """Join the run's process group for the duration of the block, and leave it however the block ends.

    With CUDA each process takes GPU ``LOCAL_RANK`` (``torch.cuda.set_device``), so that ``"cuda"`` means that
    GPU from here on. Does nothing for a single process.

    Args:
        env: from :func:`read_torchrun_env`.
        device_name: the run's ``device`` setting (``cpu``, ``cuda``, ``auto``).

    Raises:
        AigcError: the backend is missing, CUDA was asked for without enough GPUs on this machine, or the
            group cannot be formed (the message names the address the processes meet at).
    """
    if not env.is_distributed:
        yield
        return
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    backend = backend_for("cuda" if use_cuda else "cpu")
    if use_cuda:
        if env.local_rank >= torch.cuda.device_count():
            raise AigcError(
                f"process {env.local_rank} on this machine needs GPU {env.local_rank} but only {torch.cuda.device_count()} "
                "are visible; lower --nproc to the number of GPUs",
                param="nproc",
            )
        torch.cuda.set_device(env.local_rank)
    try:
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, timeout=COLLECTIVE_TIMEOUT)
    except (RuntimeError, ValueError) as error:
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AigcError(f"cannot form the {backend} process group at {where} ({first_line}); check --rdzv-endpoint and that every machine reaches it") from None
    try:
        yield
    finally:
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether this process is in an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class DataParallelNetwork(DistributedDataParallel):
    """DDP that also answers the wrapped network's own attributes (``model.null_label``, ``model.config``).

    Tasks written for a plain network then run unchanged on the wrapper: calling it goes through DDP (which
    synchronises gradients), anything else reaches the network itself.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)


def wrap_networks(networks: Mapping[str, nn.Module], device: torch.device) -> dict[str, nn.Module]:
    """Each network in DDP when distributed, else the networks as they are.

    DDP broadcasts rank 0's weights and buffers when it wraps, so the replicas start equal even if their
    initialisations differed.
    """
    if not is_distributed():
        return dict(networks)
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return {name: DataParallelNetwork(network, device_ids=device_ids) for name, network in networks.items()}


@contextlib.contextmanager
def skip_gradient_sync(networks: Mapping[str, nn.Module], skip: bool) -> Iterator[None]:
    """While ``skip``, backward passes through these DDP networks keep gradients local (``no_sync``).

    Gradient accumulation uses it on every micro-batch but the last: the last backward all-reduces the sum.
    """
    with contextlib.ExitStack() as stack:
        if skip:
            for network in networks.values():
                if isinstance(network, DistributedDataParallel):
                    stack.enter_context(network.no_sync())
        yield


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over all ranks (a new tensor; ``tensor`` itself when single-process)."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank (so that all ranks stop at the same step)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def all_gather_objects(value: Any) -> list[Any]:
    """``value`` from every rank, in rank order (``[value]`` when single-process); our own processes only."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    """Wait until every rank gets here."""
    if is_distributed():
        dist.barrier()


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A seed for rank ``rank`` (> 0) starting at ``step``, distinct from the run's ``seed`` and from other ranks.

    Rank 0 always uses the run's seed itself, so a single-process run is unchanged by this scheme.
    """
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


@dataclass
class LaunchConfig:
    """How ``aigc train --nproc`` starts torchrun.

    Attributes:
        nproc_per_node: processes on this machine (GPUs on a GPU machine; 1-2 per few cores on CPU).
        nnodes: machines in the run (torchrun's ``--nnodes``, e.g. ``"2"``).
        node_rank: this machine among them (0 hosts the rendezvous); only for several machines.
        rdzv_endpoint: ``host:port`` of machine 0 where the processes meet; only for several machines.
    """

    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None

    def validate(self) -> None:
        """Raises AigcError for a count below 1 or a multi-machine run without a rendezvous endpoint."""
        if self.nproc_per_node < 1:
            raise AigcError(f"--nproc must be >= 1, got {self.nproc_per_node}", param="nproc")
        if self.nnodes < 1:
            raise AigcError(f"--nnodes must be >= 1, got {self.nnodes}", param="nnodes")
        if not 0 <= self.node_rank < self.nnodes:
            raise AigcError(f"--node-rank {self.node_rank} is outside [0, --nnodes {self.nnodes})", param="node_rank")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise AigcError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (machine 0's address, the same on every machine)", param="rdzv_endpoint")
        if self.rdzv_endpoint and (":" not in self.rdzv_endpoint or not self.rdzv_endpoint.rsplit(":", 1)[1].isdigit()):
            raise AigcError(f"--rdzv-endpoint {self.rdzv_endpoint!r} must be HOST:PORT, e.g. 10.0.0.1:29500", param="rdzv_endpoint")


def torchrun_arguments(launch: LaunchConfig, training_arguments: list[str]) -> list[str]:
    """torchrun's arguments that run ``python -m aigc_studio.training ARGS`` on every process of ``launch``.

    One machine without an endpoint uses ``--standalone`` (a rendezvous on a free local port). Several
    machines use torchrun's static rendezvous: machine ``--node-rank 0`` listens at ``--rdzv-endpoint``.

    Raises:
        AigcError: ``launch`` is inconsistent (see :meth:`LaunchConfig.validate`).
    """
    launch.validate()
    arguments = [f"--nproc-per-node={launch.nproc_per_node}", f"--nnodes={launch.nnodes}"]
    if launch.rdzv_endpoint:
        arguments += [f"--node-rank={launch.node_rank}", f"--rdzv-endpoint={launch.rdzv_endpoint}"]
    else:
        arguments.append("--standalone")
    # Time for the workers to save a checkpoint after Ctrl-C before torchrun kills them.
    arguments.append(f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}")
    return [*arguments, "-m", "aigc_studio.training", *training_arguments]


def torchrun_command(launch: LaunchConfig, training_arguments: list[str]) -> list[str]:
    """The same launch as a plain ``torchrun`` command line (what :func:`launch_torchrun` runs in-process)."""
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_arguments(launch, training_arguments)]


LAUNCH_FLAGS: tuple[str, ...] = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint")
SHUTDOWN_TIMEOUT_S = 120


def strip_launch_flags(arguments: list[str]) -> list[str]:
    """``arguments`` without the launcher's own flags (``--nproc 2`` or ``--nproc=2``, ...), for the workers."""
    kept: list[str] = []
    skip_value = False
    for argument in arguments:
        if skip_value:
            skip_value = False
            continue
        name = argument.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip_value = "=" not in argument
            continue
        kept.append(argument)
    return kept


def launch_torchrun(launch: LaunchConfig, training_arguments: list[str]) -> int:
    """Run ``python -m aigc_studio.training ARGS`` on ``launch.nproc_per_node`` processes through torchrun; wait.

    torchrun's agent runs in this process and starts the workers in sessions of their own, so a Ctrl-C
    reaches the agent once: it passes it to every worker, the workers agree on a step, save a checkpoint and
    stop (torchrun kills them after ``SHUTDOWN_TIMEOUT_S``).

    Returns:
        0 when every process finished, 130 after Ctrl-C, else the first failed process's exit status (its
        own message, e.g. a one-line ``error:``, is already on stderr).
    """
    # Imported here: the launcher needs torch.distributed.run, nothing else in the package does.
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # One thread per process unless the user chose otherwise: N processes on N cores, not N x N threads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run(parse_args(torchrun_arguments(launch, training_arguments)))
    except SignalException as error:
        return 130 if error.sigval == signal.SIGINT else 128 + int(error.sigval)
    except ChildFailedError as error:
        _, failure = error.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0
