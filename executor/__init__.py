"""selfalign executor: run untrusted, model-written Python in resource-limited Docker sandboxes.

The client library is what the generator and trainer use::

    from executor import Program
    from executor.client import Client

    with Client("127.0.0.1:50051") as client:
        result = client.execute(Program("print(1 + 1)"))
"""

__version__ = "0.1.0"

from executor.jobs import ExecutionResult, Limits, Program, Status  # noqa: E402

__all__ = ["ExecutionResult", "Limits", "Program", "Status", "__version__"]
