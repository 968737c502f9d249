"""The routing configuration through the API: read the current version, apply a new one (admins)."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from kefu.auth import Admin, Supervisor
from kefu.config_file import ConfigError
from kefu.ops import ApiError
from services.router import commands, queries
from services.router.domain.config import parse_routing
from services.router.entrypoints.deps import Service
from services.router.entrypoints.responses import ConfigApplied, ConfigVersion

router = APIRouter(prefix="/v1", tags=["configuration"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
MAX_CONFIG_BYTES = 1024 * 1024


@router.get(
    "/config",
    response_model=ConfigVersion,
    summary="The routing configuration in force, with its version (supervisors)",
)
async def get_config(service: Service, _: Supervisor) -> dict[str, Any]:
    current = await queries.current_config(service)
    return {
        "version": current.version,
        "source": current.source,
        "applied_by": current.applied_by,
        "applied_at": current.applied_at.isoformat(),
        "yaml": current.text,
    }


@router.put(
    "/config",
    response_model=ConfigApplied,
    summary="Apply a new routing configuration (admins)",
    description="The body is a YAML document with a top-level `routing:` section, as in the configuration file. "
    "It is validated like the file (422 naming line and field of every problem), then applied as a new version.",
    openapi_extra={"requestBody": {"content": {t: {"schema": {"type": "string"}} for t in YAML_TYPES}}},
)
async def put_config(request: Request, service: Service, who: Admin) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in YAML_TYPES:
        raise ApiError(415, "unsupported_media_type", f"send the configuration as application/yaml, not {media or '-'}")
    body = await request.body()
    if len(body) > MAX_CONFIG_BYTES:
        raise ApiError(413, "body_too_large", f"a configuration is at most {MAX_CONFIG_BYTES} bytes")
    try:
        text = body.decode("utf-8")
        config = parse_routing(text, Path("request body"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed_body", "the configuration is not UTF-8") from exc
    except ConfigError as exc:
        raise ApiError(422, "invalid_config", "; ".join(exc.errors)) from exc
    version = await commands.apply_config(service, config, text, who.name)
    return {"version": version, "warnings": [".".join(map(str, loc)) + f": {msg}" for loc, msg in config.warnings()]}
