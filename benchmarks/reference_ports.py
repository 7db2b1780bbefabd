"""Derive ports of the original speed-run scripts: each original with the fewest changes that
let the GPU suite run it (data folder, number of runs, a JSON of every run), every change
listed with its reason.

    python benchmarks/reference_ports.py --out .ref/gpu --data .data/cifar10-jpeg.tar.gz
    python benchmarks/reference_ports.py --out .ref/rehearsal --rehearsal --data PATH
    python benchmarks/reference_ports.py --out .ref/gpu --frontier   # frontier_ports.py's
    python benchmarks/reference_ports.py --out .ref/cpu --frontier --cpu --data PATH

For each port it writes `<out>/<name>.py` and `<out>/<name>.changes.json` (where the
original came from, its sha256, every change). `--rehearsal` adds the changes that make a
port train a narrow net for two epochs on a few hundred images, so that a CPU under the
CUDA stand-in (tests/standin/) runs it in seconds; `--cpu` adds instead the changes that
let a port train at full size on a CPU under the stand-in (the frontier ports: compile off,
float32 for float16), for runs beside fastcifar's recipes on the CPU. `--data` writes the
data as the originals read it: `<out>/data/train.pt` and `test.pt`.

How a port is made: ports.py; the ports themselves: airbench_ports.py (the default) and
frontier_ports.py (--frontier).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from airbench_ports import AIRBENCH_PORTS
from fastcifar.data import load_dataset
from fastcifar.errors import InputError
from frontier_ports import FRONTIER_PORTS
from ports import REFERENCES, Port, derive_all, describe, write_data

ALL_PORTS: dict[str, Port] = {**AIRBENCH_PORTS, **FRONTIER_PORTS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True,
                        help="folder for the ports (a git-ignored one, e.g. .ref/gpu)")
    parser.add_argument("--references", default=str(REFERENCES),
                        help="the folder of original scripts (default: %(default)s)")
    parser.add_argument("--data", help="also write this data set (an archive, a folder or a "
                                       "name, as fastcifar train's --data) as OUT/data/*.pt")
    parser.add_argument("--rehearsal", action="store_true",
                        help="narrow nets, batch 64, 2 epochs: a run in seconds on a CPU under "
                             "the CUDA stand-in")
    parser.add_argument("--cpu", action="store_true",
                        help="full-size ports for a CPU under the CUDA stand-in (compile off, "
                             "float32); the frontier ports have them")
    parser.add_argument("--frontier", action="store_true",
                        help="the ports of hiverge's and Fulcrum's scripts (frontier_ports.py) "
                             "instead of airbench's")
    args = parser.parse_args(argv)
    ports = FRONTIER_PORTS if args.frontier else AIRBENCH_PORTS
    try:
        for name, path in derive_all(ports, args.out, args.references, args.rehearsal,
                                     args.cpu).items():
            print(describe(ports[name], path, args.rehearsal, args.cpu))
        if args.data:
            dataset = load_dataset(args.data)
            folder = write_data(dataset, Path(args.out) / "data")
            print(f"data: {dataset.name} ({len(dataset.train_labels)} training images, "
                  f"shuffled with seed 0; {len(dataset.test_labels)} test images) written to "
                  f"{folder / 'train.pt'} and {folder / 'test.pt'}; give the ports "
                  f"--data-dir {folder}")
    except InputError as e:
        print(f"reference_ports: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
