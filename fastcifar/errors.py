"""The two ways a command can fail, the exit code each one gives, and the warnings for what
works but is unwise or goes on without something."""


class InputError(Exception):
    """Bad input from the user: a path, an archive, an option value. Exit code 2."""

    exit_code = 2


class RunFailed(Exception):
    """The input was fine but the run went wrong (a NaN loss, say). Exit code 1."""

    exit_code = 1


class FastcifarWarning(UserWarning):
    """What works but deserves a word; a command prints each as one line,
    `fastcifar: warning: ...`."""


class SlowChoice(FastcifarWarning):
    """A setting that works but is unwise here (bfloat16 emulated on a CPU, say)."""


class CacheNotWritten(FastcifarWarning):
    """The data cache could not be written (a full disk, a read-only folder): the run goes on
    from the decoded images in memory."""


class RecipeChanged(FastcifarWarning):
    """A run folder's network is rebuilt by a recipe source other than the one it trained
    with (fastcifar was changed or upgraded since)."""


class OddLabels(FastcifarWarning):
    """Labels that train, but probably not as meant: a class without training images (the
    network can never predict it right), or labels that do not start at 0."""
