"""The per-epoch table printed while training, in airbench's style."""

from __future__ import annotations


class Table:
    def __init__(self, columns: list[tuple[str, str]], print_fn=print):
        """columns: (header, format spec) pairs, e.g. ("val_acc", ".4f")."""
        self.columns = columns
        self.print = print_fn
        self.widths = [max(len(h), 8) for h, _ in columns]

    def _line(self, cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, self.widths)) + " |"

    def header(self) -> None:
        rule = "-" * len(self._line([""] * len(self.columns)))
        self.print(rule)
        self.print(self._line([h for h, _ in self.columns]))
        self.print(rule)

    def row(self, values: dict) -> None:
        cells = []
        for header, spec in self.columns:
            value = values.get(header, "")
            cells.append(format(value, spec) if value != "" and not isinstance(value, str) else value)
        self.print(self._line(cells))


RUN_COLUMNS = [("run", "d"), ("epoch", ""), ("train_loss", ".4f"), ("train_acc", ".4f"),
               ("val_acc", ".4f"), ("val_top5", ".4f"), ("tta_val_acc", ".4f"),
               ("time_seconds", ".2f")]


def run_table(print_fn=print) -> Table:
    """A training session's table, its header printed: a row an epoch and one a run."""
    table = Table(RUN_COLUMNS, print_fn)
    table.header()
    return table
