"""The one place the environment is read: VDP_* variables, overridable by CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.errors import VdpError

DEFAULT_SOURCE_URL = "s3://de-tech-assessment-2022/data/"


class SettingsError(VdpError):
    """A VDP_* variable (or the flag that overrides it) holds a value the pipeline cannot use."""


class Settings(BaseSettings):
    """Pipeline settings. Secrets (the warehouse DSN) are SecretStr so they never print."""

    model_config = SettingsConfigDict(env_prefix="VDP_", extra="ignore")

    source_url: str = Field(DEFAULT_SOURCE_URL, description="bucket and prefix, or a directory")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint; unset = AWS")
    s3_anonymous: bool = Field(True, description="unsigned requests (public bucket)")
    s3_region: str = Field("us-east-1", description="region for signing and the client")
    aws_credentials_block: str | None = Field(
        None, description="name of a prefect-aws AwsCredentials block; unset = standard AWS chain"
    )
    lake_root: Path = Field(Path("./lake"), description="lake root directory")
    warehouse_url: SecretStr | None = Field(
        None, description="postgresql://… ; unset = embedded PostgreSQL under the lake root"
    )
    lookback_days: int = Field(
        3, ge=0, le=60, description="earlier source days a daily run re-lists for late objects"
    )
    fetch_concurrency: int = Field(8, ge=1, le=64, description="parallel S3 downloads")
    min_objects_per_day: int = Field(
        1, ge=0, description="a daily run whose own source day lists fewer objects fails; 0: off"
    )
    alert_webhook_url: SecretStr | None = Field(
        None, description="webhook `vdp alerts` notifies on failed or missing daily runs"
    )
    alert_block: str | None = Field(
        None, description="type/name of a Prefect notification block (instead of the webhook)"
    )
    duckdb_memory_limit: str = Field(
        "2GB",
        pattern=r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$",
        description="memory DuckDB may use per stage; beyond it, it spills under lake/_tmp/",
    )

    @field_validator(
        "s3_endpoint_url",
        "aws_credentials_block",
        "warehouse_url",
        "alert_webhook_url",
        "alert_block",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def source_is_s3(self) -> bool:
        return self.source_url.startswith("s3://")

    def with_overrides(self, **overrides: object) -> Settings:
        """A copy with the given non-None overrides (how CLI flags win over the environment)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return self.model_validate({**self.model_dump(), **given})


def get_settings(**overrides: object) -> Settings:
    try:
        return Settings().with_overrides(**overrides)
    except ValidationError as exc:  # never the value itself: it may be a secret
        problems = "; ".join(
            f"VDP_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def export_overrides(**overrides: object) -> None:
    """Put CLI overrides into this process's environment, so every flow, task and worker
    process started from here reads the same settings."""
    import os

    for name, value in overrides.items():
        if value is None:
            continue
        if name not in Settings.model_fields:
            raise KeyError(f"unknown setting {name}")
        os.environ[f"VDP_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
