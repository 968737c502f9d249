"""Settings every service reads from ``KEFU_*`` environment variables."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "deploy" / "examples" / "kefu.yaml"


class ServiceSettings(BaseSettings):
    """What every kefu service needs; each service's ``config.py`` extends it."""

    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore")

    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/kefu",
        description="SQLAlchemy URL of PostgreSQL; postgresql:// URLs are used through asyncpg.",
    )
    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    config_path: Path = Field(default=EXAMPLE_CONFIG, description="The routing/channel configuration YAML.")
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the HTTP server binds.")
    log_level: str = Field(default="INFO", description="Python log level name.")
    log_json: bool = Field(default=True, description="Write logs as one JSON object per line.")
    publish_timeout_seconds: float = Field(
        default=5.0, gt=0, description="How long to wait for a broker ack before giving up."
    )
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="Largest request head (request line and headers); beyond it 431."
    )
    max_header_count: int = Field(default=100, ge=8, description="Most header fields in one request; beyond it 431.")
    max_body_bytes: int = Field(
        default=256 * 1024,
        gt=0,
        description="Largest request body; a longer one is refused with 413 before it is read (channels: an e-mail "
        "inbox may allow more).",
    )
    header_timeout_seconds: float = Field(
        default=10, gt=0, description="Time for a request head to arrive, from its first byte or the connect; 408."
    )
    body_timeout_seconds: float = Field(
        default=30, gt=0, description="Time for a request body to arrive, from the end of its head; 408."
    )
    idle_timeout_seconds: int = Field(
        default=5, ge=1, description="How long an idle keep-alive connection is kept open between requests."
    )
