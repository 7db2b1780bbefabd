"""fastcifar: CIFAR-10 speed-run recipes and the tools to measure them honestly."""

__version__ = "0.1.0"
