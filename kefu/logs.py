"""Logging: one JSON object per line on stderr, for the service and for uvicorn alike."""

import logging.config
from typing import Any


def logging_config(*, level: str, json: bool) -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` dict, also handed to uvicorn."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if json
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.access": {"level": "WARNING"},
            "aiokafka": {"level": "WARNING"},
        },
    }


def configure(*, level: str, json: bool) -> None:
    """Configure the root logger."""
    logging.config.dictConfig(logging_config(level=level, json=json))
