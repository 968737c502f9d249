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
