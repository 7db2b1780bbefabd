"""The lending machine's limits (the device tool's: a lease, a command, what comes back), as
command-line options whose defaults are today's values: a script plans within them, and a
change of the limits is an option, not an edit.

    --lease-seconds 900   device time a session is lent, every call together
    --call-seconds 600    one command
    --files-back 8        the files of $OUT that come back
    --file-mib 16         the largest file that comes back
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

LEASE_SECONDS = 15 * 60
CALL_SECONDS = 10 * 60
FILES_BACK = 8
FILE_MIB = 16
# Of a call's seconds, what its command cannot use: the machine's start (when warm) and the
# transfers of the working tree and of $OUT.
CALL_OVERHEAD = 60.0


@dataclass(frozen=True)
class Limits:
    lease_seconds: float = LEASE_SECONDS
    call_seconds: float = CALL_SECONDS
    files_back: int = FILES_BACK
    file_mib: int = FILE_MIB

    @property
    def file_bytes(self) -> int:
        return self.file_mib * 2 ** 20

    def budget(self) -> float:
        """The seconds a command may plan for: a call's, or what a lease has if less, less
        the call's overhead (600 s a call: 540)."""
        return min(self.call_seconds, self.lease_seconds) - CALL_OVERHEAD

    def left_behind(self, out: Path) -> list[str]:
        """What of `out` would not come back: each file over the size, and files past the
        count."""
        files = sorted(p for p in Path(out).rglob("*") if p.is_file())
        notes = [f"{p.relative_to(out)}: {p.stat().st_size / 2 ** 20:.1f} MiB, over the "
                 f"{self.file_mib} MiB that come back" for p in files
                 if p.stat().st_size > self.file_bytes]
        if len(files) > self.files_back:
            notes.append(f"{len(files)} files, over the {self.files_back} that come back")
        return notes


def add_options(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group("the lending machine's limits")
    limits.add_argument("--lease-seconds", type=float, default=LEASE_SECONDS,
                        help="device time a lease has left, every call together (default "
                             "%(default)s)")
    limits.add_argument("--call-seconds", type=float, default=CALL_SECONDS,
                        help="the longest command (default %(default)s)")
    limits.add_argument("--files-back", type=int, default=FILES_BACK,
                        help="the files of the output folder that come back (default "
                             "%(default)s)")
    limits.add_argument("--file-mib", type=int, default=FILE_MIB,
                        help="the largest file that comes back, MiB (default %(default)s)")


def from_options(args: argparse.Namespace) -> Limits:
    return Limits(args.lease_seconds, args.call_seconds, args.files_back, args.file_mib)
