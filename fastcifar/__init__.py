"""fastcifar: CIFAR-10 speed-run recipes and the tools to measure them honestly.

    import fastcifar
    result = fastcifar.train("airbench94", data="path/or/archive", runs=5)
    result.accuracy.mean, result.runs[0].seconds, result.model

See the README's "Python API" for the rest.
"""

from .version import __version__  # noqa: E402
from .api import evaluate, load_model, lr_find  # noqa: E402
from .data import ImageData, load_dataset  # noqa: E402
from .errors import InputError, OddLabels, RunFailed  # noqa: E402
from .recipes import RECIPES  # noqa: E402
from .recipes.base import Recipe, Training  # noqa: E402 (what a recipe file subclasses)
from .report.example_scores import read_examples, score as score_examples  # noqa: E402
from .train.results import TrainResult  # noqa: E402
from .sessions.crossval import crossval  # noqa: E402
from .sessions.resume import resume  # noqa: E402
from .sessions.session import FINDER, train  # noqa: E402

__all__ = ["FINDER", "RECIPES", "ImageData", "InputError", "OddLabels", "Recipe", "RunFailed",
           "TrainResult", "Training", "__version__", "crossval", "evaluate", "load_dataset",
           "load_model", "lr_find", "read_examples", "resume", "score_examples", "train"]
