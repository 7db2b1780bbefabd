"""The two ways a command can fail, and the exit code each one gives."""


class InputError(Exception):
    """Bad input from the user: a path, an archive, an option value. Exit code 2."""

    exit_code = 2


class RunFailed(Exception):
    """The input was fine but the run went wrong (a NaN loss, say). Exit code 1."""

    exit_code = 1
