"""A CUDA stand-in for machines without a GPU: CI runs fastcifar's CUDA paths through it.

Installed, `torch.cuda.is_available()` is true with `devices` stand-in GPUs, and every
`torch.cuda` call fastcifar and the reference ports make is answered on the CPU after its
arguments are checked as torch checks them (torch's own `_get_device_index` where torch
uses it), so a call that would raise on a GPU raises here too. Tensors asked for on a
CUDA device (`device=` of a factory, `.to("cuda:1")`, `.cuda()`, `torch.load`'s
`map_location`) are made on the CPU; the code under test still holds its
`torch.device("cuda", i)` and takes every branch it would take on a GPU.

What it cannot rehearse: kernels (the numbers are the CPU's: CUDA autocast leaves CPU
tensors in their dtype), streams and CUDA graphs. `torch.compile` compiles with the
`aot_eager` backend whatever the mode asked (Dynamo's capture, graph breaks and recompiles
are the same; no code is generated), since inductor's max-autotune takes minutes on a CPU.
NCCL process groups are Gloo ones.

In a test: the `cuda_standin` fixture of tests/conftest.py. In a subprocess (the command
line, torchrun's ranks, the GPU suite and the ports it starts): this folder on PYTHONPATH
and FASTCIFAR_CUDA_STANDIN=N (the number of GPUs), which sitecustomize.py here acts on at
interpreter start.
"""

from __future__ import annotations

import functools
import os
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.cuda._utils import _get_device_index
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

ENV = "FASTCIFAR_CUDA_STANDIN"  # the number of stand-in GPUs; unset or 0: no stand-in
NAME = "CUDA stand-in (CPU)"
MEMORY = 16 * 2 ** 30  # what mem_get_info reports free and in total


def _cpu(device):
    """A CUDA device (a torch.device, "cuda[:i]", or an int as torch reads it) as the CPU."""
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        return torch.device("cpu")
    return device


class _OnTheCPU(TorchFunctionMode):
    """Every tensor asked for on a CUDA device is made on the CPU, once the device's index
    is found to be one of the stand-in GPUs' (`cuda:7` of two raises, as on a GPU).

    Such a tensor is remembered as on the GPU, and so is a parameter whose data is set to
    one (what `Module.to` does): its `is_cuda` is true, so that code that branches on it
    takes the GPU's side. Its `device` stays the CPU's, and a tensor computed from it is
    not remembered: fastcifar branches on `is_cuda` for parameters only."""

    def __init__(self):
        super().__init__()
        self.on_gpu = WeakIdKeyDictionary()

    def placed(self, device):
        if _cpu(device) is not device:  # a CUDA device
            self.standin.check_index(device, optional=True)
        return _cpu(device)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        to_gpu = False
        if "device" in kwargs:
            to_gpu = _cpu(kwargs["device"]) is not kwargs["device"]
            kwargs["device"] = self.placed(kwargs["device"])
        name = getattr(func, "__name__", "")
        if func == torch.Tensor.is_cuda.__get__:
            return args[0] in self.on_gpu or func(*args)
        if func == torch.Tensor.data.__set__ and args[1] in self.on_gpu:
            self.on_gpu[args[0]] = True
        elif name == "to":
            to_gpu = to_gpu or any(_cpu(a) is not a for a in args
                                   if isinstance(a, (str, torch.device)))
            args = tuple(self.placed(a) if isinstance(a, (str, torch.device)) else a
                         for a in args)
        elif name == "cuda":  # Tensor.cuda(device=None, ...): check the index, stay put
            device = args[1] if len(args) > 1 else kwargs.get("device")
            self.standin.check_index(device, optional=True)
            self.on_gpu[args[0]] = True
            return args[0]
        result = func(*args, **kwargs)
        if to_gpu and isinstance(result, torch.Tensor):
            self.on_gpu[result] = True
        return result


class _Event:
    """torch.cuda.Event on the host clock: the CPU runs everything as it is queued."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        self.enable_timing, self.when = enable_timing, None

    def record(self, stream=None):
        self.when = time.perf_counter()

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def wait(self, stream=None) -> None:
        pass

    def elapsed_time(self, end: "_Event") -> float:
        if not (self.enable_timing and end.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'.")
        if self.when is None or end.when is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return 1000 * (end.when - self.when)


class StandIn:
    """The stand-in's state (the current device, each device's generator) and its patches;
    `install()` puts them in place, `uninstall()` takes them away."""

    def __init__(self, devices: int = 2, compile_backend: str = "aot_eager"):
        if devices < 1:
            raise ValueError(f"a CUDA stand-in needs at least one device, got {devices}")
        self.devices, self.compile_backend = devices, compile_backend
        self.current = 0
        self.generators = [torch.Generator() for _ in range(devices)]
        self.calls: list[str] = []  # the torch.cuda functions called, in order
        self.saved: list[tuple[object, str, object]] = []
        self.mode = _OnTheCPU()
        self.mode.standin = self

    # Argument checks as torch makes them.
    def check_index(self, device, optional: bool = False) -> int:
        index = _get_device_index(device, optional=optional)
        if not 0 <= index < self.devices:
            raise RuntimeError(f"CUDA error: invalid device ordinal (device {index} of "
                               f"{self.devices} stand-in GPUs)")
        return index

    def _rng_index(self, device) -> int:
        if isinstance(device, str):
            device = torch.device(device)
        elif isinstance(device, int):
            device = torch.device("cuda", device)
        index = self.current if device.index is None else device.index
        return self.check_index(index)

    # The torch.cuda functions.
    def set_device(self, device) -> None:
        index = _get_device_index(device)
        if index >= 0:
            self.current = self.check_index(index)

    def synchronize(self, device=None) -> None:
        self.check_index(device, optional=True)

    def get_device_name(self, device=None) -> str:
        self.check_index(device, optional=True)
        return NAME

    def get_device_properties(self, device=None):
        self.check_index(device, optional=True)
        return SimpleNamespace(name=NAME, major=9, minor=0, total_memory=MEMORY,
                               multi_processor_count=132)

    def get_device_capability(self, device=None) -> tuple[int, int]:
        self.check_index(device, optional=True)
        return (9, 0)

    def mem_get_info(self, device=None) -> tuple[int, int]:
        self.check_index(device, optional=True)
        return MEMORY, MEMORY

    def manual_seed(self, seed) -> None:
        self.generators[self.current].manual_seed(int(seed))

    def manual_seed_all(self, seed) -> None:
        for g in self.generators:
            g.manual_seed(int(seed))

    def get_rng_state(self, device="cuda") -> torch.Tensor:
        return self.generators[self._rng_index(device)].get_state()

    def set_rng_state(self, new_state: torch.Tensor, device="cuda") -> None:
        self.generators[self._rng_index(device)].set_state(new_state)

    def _exchange_device(self, device: int) -> int:
        previous = self.current
        if device >= 0:
            self.current = self.check_index(device)
        return previous

    def compile(self, model=None, *, mode=None, options=None, backend=None, **kwargs):
        """torch.compile with the stand-in's backend, the mode and options dropped."""
        if model is None:
            return lambda m: self.compile(m, mode=mode, options=options, **kwargs)
        return self.original_compile(model, backend=self.compile_backend, **kwargs)

    def init_process_group(self, backend=None, *args, **kwargs):
        if backend == "nccl":
            backend = "gloo"
        return self.original_init_process_group(backend, *args, **kwargs)

    def load(self, f, map_location=None, *args, **kwargs):
        if isinstance(map_location, (str, torch.device)):
            map_location = _cpu(map_location)
        return self.original_load(f, map_location, *args, **kwargs)

    def _patches(self):
        cuda = torch.cuda
        functions = {
            "is_available": lambda: True, "device_count": lambda: self.devices,
            "current_device": lambda: self.current, "is_initialized": lambda: True,
            "_lazy_init": lambda: None, "_exchange_device": self._exchange_device,
            "_maybe_exchange_device": self._exchange_device,
            "is_bf16_supported": lambda including_emulation=True: True,
            "Event": _Event, "empty_cache": lambda: None,
            "max_memory_allocated": lambda device=None: 0,
            "memory_allocated": lambda device=None: 0,
            "reset_peak_memory_stats": lambda device=None: None,
        }
        for name in ("set_device", "synchronize", "get_device_name", "get_device_properties",
                     "get_device_capability", "mem_get_info", "manual_seed",
                     "manual_seed_all", "get_rng_state", "set_rng_state"):
            functions[name] = getattr(self, name)
        patches = [(cuda, name, self._counted(name, f)) for name, f in functions.items()]
        self.original_compile = torch.compile
        self.original_init_process_group = dist.init_process_group
        self.original_load = torch.load
        patches += [(torch, "compile", self.compile), (torch, "load", self.load),
                    (dist, "init_process_group", self.init_process_group),
                    (dist, "is_nccl_available", lambda: True)]
        return patches

    def _counted(self, name, function):
        @functools.wraps(function)
        def counted(*args, **kwargs):
            self.calls.append(name)
            return function(*args, **kwargs)
        return counted

    def install(self) -> "StandIn":
        for owner, name, value in self._patches():
            self.saved.append((owner, name, getattr(owner, name, None)))
            setattr(owner, name, value)
        self.mode.__enter__()
        return self

    def uninstall(self) -> None:
        self.mode.__exit__(None, None, None)
        for owner, name, value in reversed(self.saved):
            setattr(owner, name, value)
        self.saved.clear()


def environment(devices: int = 2) -> dict[str, str]:
    """The variables that put a subprocess's Python under the stand-in."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, ENV: str(devices)}
