"""Logs captured as the services write them: ``kefu.logs``'s configuration, its stream a buffer."""

import contextlib
import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

from kefu.logs import logging_config


@contextlib.contextmanager
def service_logs(*, json_lines: bool = True, level: str = "INFO") -> Iterator[io.StringIO]:
    """Configure logging exactly as ``tools.serve`` does, writing into the buffer yielded; then put back what was."""
    config = logging_config(level=level, json=json_lines)
    buffer = io.StringIO()
    config["handlers"]["stderr"]["stream"] = buffer
    root = logging.getLogger()
    before = root.level, root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in config["loggers"]}
    logging.config.dictConfig(config)
    try:
        yield buffer
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        root.setLevel(before[0])
        for handler in before[1]:
            root.addHandler(handler)
        for name, level_before in levels.items():
            logging.getLogger(name).setLevel(level_before)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Every JSON line written so far (each must be one JSON object)."""
    return [json.loads(line) for line in buffer.getvalue().splitlines()]
