"""How operations talk to the person running the deploy: progress lines, and failures
said in one line without a traceback."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api.command import FunctionCommand


def progress(message: str, on=host) -> None:
    logger.info(f"{on.print_prefix}{message}")


def fail(on, message: str) -> bool:
    """Log ``message`` in red for host ``on``; returning False fails the operation."""
    on.log_styled(message, fg="red", log_func=logger.error)
    return False


def refusal(message: str) -> FunctionCommand:
    """A command that fails its operation with ``message``. Raising instead would escape as
    a greenlet traceback when pyinfra generates operations while executing (``-y``)."""
    return FunctionCommand(lambda state, host: fail(host, message), (), {})
