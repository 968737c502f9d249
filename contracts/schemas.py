"""Generate the JSON Schema files of ``contracts/schemas/`` from the models."""

import json
from pathlib import Path

from pydantic import BaseModel

from contracts.contacts import ContactEvent
from contracts.escalations import EscalationEvent
from contracts.routing import RoutingCommand, RoutingEvent

SCHEMA_DIR = Path(__file__).parent / "schemas"

MODELS: dict[str, type[BaseModel]] = {
    "contact_event.v1.json": ContactEvent,
    "routing_event.v1.json": RoutingEvent,
    "routing_command.v1.json": RoutingCommand,
    "escalation_event.v1.json": EscalationEvent,
}


def render() -> dict[str, str]:
    """Return each schema file's name and its text, as it must be committed."""
    return {
        name: json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        for name, model in MODELS.items()
    }


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into ``directory`` and return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
