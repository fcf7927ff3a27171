"""The errors a task raises to say how it failed."""


class TerminalError(Exception):
    """Running the task again cannot help (bad input): no retry, the task is dead-lettered at once."""

    def __init__(self, message: str, code: str = "terminal"):
        super().__init__(message)
        self.code = code


class RetryableError(Exception):
    """Worth another attempt (a dependency was down): retried with the definition's backoff.

    Any other exception is retried the same way; this one lets the task name its code."""

    def __init__(self, message: str, code: str = "retryable"):
        super().__init__(message)
        self.code = code


class WorkerRefused(Exception):
    """The door refused the worker (unknown key, a subject the key may not serve, a bad hello)."""

    def __init__(self, status: str, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
