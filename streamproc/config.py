"""Settings: one frozen object, read once from ``STREAMPROC_*`` env vars and CLI flags.

``load_settings()`` is called once by each entry point (the CLI, ``agents/app.py``) and the
object is passed down; nothing else reads the environment. A CLI flag overrides the env var of
the same setting (``--bootstrap-servers`` and ``STREAMPROC_BOOTSTRAP_SERVERS`` are one setting).
Every field is documented in README.md ("Configuration").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamproc.errors import ConfigError

__all__ = [
    "OutputFormat",
    "SaslMechanism",
    "SchemaCompatibility",
    "SecurityProtocol",
    "Settings",
    "env_var_name",
    "load_settings",
    "prefixed",
    "secret_fields",
    "security_problems",
    "settings_markdown",
]

OutputFormat = Literal["avro", "json"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
SchemaCompatibility = Literal["BACKWARD_TRANSITIVE", "FULL_TRANSITIVE"]


class Settings(BaseSettings):
    """Every setting of streamproc; the env var is ``STREAMPROC_`` + the upper-cased name."""

    model_config = SettingsConfigDict(env_prefix="STREAMPROC_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        description="Kafka bootstrap servers (host:port,...). Set it to use an existing cluster "
        "instead of the local launcher.",
    )
    kafka_home: Path | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_HOME", "STREAMPROC_KAFKA_HOME"),
        description="An unpacked Apache Kafka release whose libs/ the local launcher uses "
        "instead of the jars it resolves with Maven.",
    )
    kafka_data_dir: Path = Field(
        Path(".streamproc/kafka"),
        description="Where the local launcher keeps broker data, logs and its process file.",
    )
    kafka_cache_dir: Path = Field(
        Path.home() / ".cache" / "streamproc" / "kafka",
        description="Cache of the Kafka jars resolved from Maven Central.",
    )
    kafka_port: int = Field(9092, description="First client port of the local launcher.")

    # --- Kafka security (every client: producers, consumers, admin, lag, the workers) ---------
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="How clients connect to Kafka: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or "
        "SASL_SSL (SASL over TLS).",
    )
    sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512",
        description="SASL mechanism with SASL_*: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (PLAIN "
        "sends the password itself: use it over SASL_SSL only).",
    )
    sasl_username: str | None = Field(None, description="SASL user name (SASL_* protocols).")
    sasl_password: SecretStr | None = Field(None, description="SASL password (SASL_* protocols).")
    ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA certificates that verify the brokers (SSL, SASL_SSL); "
        "default: the system's CAs.",
    )
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate, for brokers that require TLS client auth."
    )
    ssl_keyfile: Path | None = Field(None, description="PEM private key of ssl_certfile.")
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted ssl_keyfile."
    )
    ssl_check_hostname: bool = Field(
        True,
        description="Check that the broker certificate names the host connected to "
        "(turn off only for brokers whose certificates lack their addresses).",
    )

    # --- topics ------------------------------------------------------------------------------
    topic_input: str = Field("viewing-events", description="Input topic (raw events).")
    topic_valid: str = Field("viewing-events-valid", description="Validated canonical events.")
    topic_dlq: str = Field("viewing-events-dlq", description="Dead letters.")
    topic_predictions: str = Field("predictions", description="Model predictions.")
    topic_drift: str = Field("drift-signals", description="Drift signals and lifecycle events.")
    topic_snapshots: str = Field("model-snapshots", description="Model snapshots (compacted).")
    partitions: int = Field(6, ge=1, description="Partitions of each topic created.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of each topic.")
    retention_ms: int = Field(
        7 * 24 * 3600 * 1000, description="Retention of the event and output topics, ms."
    )
    dlq_retention_ms: int = Field(
        30 * 24 * 3600 * 1000, description="Retention of the dead-letter topic, ms."
    )

    # --- formats -----------------------------------------------------------------------------
    schemas_dir: Path | None = Field(
        None, description="Folder of Avro schemas; default: the schemas/ shipped with streamproc."
    )
    schema_compatibility: SchemaCompatibility = Field(
        "BACKWARD_TRANSITIVE", description="Evolution rule `streamproc schemas check` enforces."
    )
    schema_registry_url: str | None = Field(
        None,
        description="Confluent Schema Registry URL; when set, producers write the Confluent "
        "wire format and the ingest agent resolves its schema ids there.",
    )
    output_format: OutputFormat = Field(
        "avro", description="Encoding of the output topics: avro (single-object) or json."
    )
    producer_format: OutputFormat = Field(
        "avro", description="Encoding `produce` and `simulate` write: avro or json."
    )

    # --- data quality ------------------------------------------------------------------------
    max_message_bytes: int = Field(
        65536, ge=64, description="Records larger than this are dead-lettered as too_large."
    )
    max_future_skew_s: float = Field(
        300.0, description="event_time may be at most this far in the future, seconds."
    )
    max_event_age_s: float = Field(
        30 * 24 * 3600.0, description="event_time may be at most this old, seconds."
    )
    position_slack_s: float = Field(
        5.0, description="playback.position_s may exceed duration_s by this much, seconds."
    )
    max_bandwidth_kbps: float = Field(
        10_000_000.0, description="Upper bound of network.bandwidth_kbps."
    )
    max_rtt_ms: float = Field(60_000.0, description="Upper bound of network.rtt_ms.")
    max_bitrate_kbps: int = Field(200_000, description="Upper bound of playback.bitrate_kbps.")
    max_duration_s: float = Field(
        6 * 3600.0, description="Upper bound of playback.duration_s (6 hours)."
    )
    dedupe_window_s: float = Field(
        3600.0, gt=0, description="An event_id seen again within this window is a duplicate."
    )
    dedupe_max_ids: int = Field(
        1_000_000,
        ge=1_000,
        description="Most event ids the de-duplication table keeps per worker (about 170 bytes "
        "each); beyond it the oldest are forgotten first, even within the window.",
    )

    # --- worker ------------------------------------------------------------------------------
    app_id: str = Field("streamproc", description="Faust app id: consumer group and state prefix.")
    agents: str = Field(
        "ingest,model", description="Agents a worker runs (comma list of ingest, model)."
    )
    consumer_session_timeout_ms: int = Field(
        15_000,
        ge=6_000,
        description="Consumer group session timeout, ms: how long a crashed "
        "worker keeps its partitions before the others take over.",
    )
    consumer_fetch_wait_ms: int = Field(
        100,
        ge=1,
        le=30_000,
        description="Longest time the broker holds a worker's fetch request open when it has "
        "no new records, ms.",
    )
    consumer_fetch_min_bytes: int = Field(
        1,
        ge=1,
        le=52_428_800,
        description="Bytes the broker gathers before it answers a worker's fetch request (or "
        "the fetch wait passes); larger values cost less CPU per record at moderate rates "
        "and add latency at low rates.",
    )
    consumer_partition_fetch_bytes: int = Field(
        524_288,
        ge=1024,
        le=52_428_800,
        description="Most bytes a worker's consumer fetches per partition in one request; "
        "a fetch is handed to the agents whole, so this bounds the records a worker holds "
        "(at 1 MiB its memory grew by a fifth over 2,000,000 events).",
    )
    malloc_arenas: int = Field(
        1,
        ge=0,
        le=64,
        description="glibc malloc arenas of a worker process (0 = glibc's default, 8 per core); "
        "fewer arenas hold less freed memory (one: every thread reuses what another freed).",
    )
    malloc_mmap_threshold: int = Field(
        131_072,
        ge=0,
        le=33_554_432,
        description="glibc mmap and trim threshold of a worker process, bytes (0 = glibc's "
        "default, which rises as large blocks are freed): larger blocks are returned to the "
        "system when freed.",
    )
    malloc_trim_interval_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Seconds between two glibc malloc_trim calls in a worker process (0 = "
        "never): free memory inside the heaps is returned to the system, not kept resident.",
    )
    batch_size: int = Field(
        6000,
        ge=0,
        description=(
            "Most records a worker's consumer hands on per fetch, all partitions together "
            "(0: all it fetched, up to STREAMPROC_CONSUMER_PARTITION_FETCH_BYTES per partition); "
            "each topic's records of a fetch reach its agent as one batch, round-robin over "
            "the partitions. It bounds the records a worker holds: without it the worker's "
            "memory grew by up to a fifth over 2,000,000 events."
        ),
    )
    producer_linger_ms: int = Field(5, ge=0, description="Producer linger of the workers, ms.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the worker and CLI."
    )

    # --- operators ---------------------------------------------------------------------------
    metrics_host: str = Field(
        "127.0.0.1", description="Address the worker's /metrics, /health, /ready, /status bind."
    )
    metrics_port: int = Field(
        9100, ge=0, le=65535, description="Port of the worker's metrics endpoints (0 = off)."
    )
    lag_interval_s: float = Field(
        5.0, gt=0, description="How often a worker measures its consumer lag, seconds."
    )
    stall_after_s: float = Field(
        60.0,
        gt=0,
        description="A partition whose lag grows while its committed offset does "
        "not move for this long is reported stalled, seconds.",
    )

    # --- models ------------------------------------------------------------------------------
    models: str = Field(
        "engagement,qoe,affinity", description="Model specs the model agent runs (comma list)."
    )
    model_namespace: str = Field(
        "live", description="Namespace of model snapshots (a replay writes to another one)."
    )
    completion_threshold: float = Field(
        0.9, gt=0, le=1, description="Watched fraction at or above which a session completed."
    )
    session_timeout_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="A session with no stop/complete for this long (event "
        "time) is resolved by the timeout policy, seconds.",
    )
    session_timeout_policy: Literal["abandon", "drop"] = Field(
        "abandon",
        description="abandon: learn the timed-out session as not completed; "
        "drop: forget its pending predictions without learning.",
    )
    snapshot_keys: SecretStr | None = Field(
        None,
        description="HMAC keys for model snapshots, 'key-id:secret[,key-id:secret...]'; "
        "the first signs, any verifies. Required by the model agent.",
    )
    snapshot_every_events: int = Field(
        20_000, ge=1, description="Snapshot a partition's models after this many events."
    )
    snapshot_every_s: float = Field(
        60.0, gt=0, description="...or after this many seconds, whichever comes first."
    )
    seed: int = Field(42, description="Seed of the models' random initialisation.")

    # --- drift -------------------------------------------------------------------------------
    drift_enabled: bool = Field(
        True,
        description="Watch every partition's models for concept, label and data drift and "
        "put each detection on the drift-signals topic.",
    )
    drift_respond: bool = Field(
        True,
        description="Respond to concept and label drift: start a challenger, promote it when "
        "it wins, roll back when the promotion does worse (false: detect only).",
    )
    drift_detector: str = Field(
        "adwin",
        description="Concept-drift detector of the error stream: adwin, page_hinkley, ddm, "
        "eddm, hddm_a or hddm_w; per model as model:name pairs (e.g. adwin,qoe:ddm).",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _strip_scheme(cls, value: str) -> str:
        # Accept Faust-style "kafka://host:port" too; store plain host:port lists.
        parts = [p.strip().removeprefix("kafka://") for p in value.split(",") if p.strip()]
        if not parts:
            raise ValueError("must name at least one host:port")
        return ",".join(parts)

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        # sasl_ssl and scram-sha-512 are the same settings as SASL_SSL and SCRAM-SHA-512.
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        problems = security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def uses_sasl(self) -> bool:
        """Whether clients authenticate with SASL (SASL_PLAINTEXT or SASL_SSL)."""
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """Whether client connections are encrypted (SSL or SASL_SSL)."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def schemas_path(self) -> Path:
        """The folder the Avro schemas are read from."""
        if self.schemas_dir is not None:
            return self.schemas_dir
        here = Path(__file__).resolve().parent
        packaged = here / "_schemas"
        return packaged if packaged.is_dir() else here.parent / "schemas"

    def to_env(self) -> dict[str, str]:
        """The ``STREAMPROC_*`` variables that reproduce these settings in another process.

        Only settings that differ from their defaults are listed; secrets are included in
        clear, so pass the result to a child process, never to a log.
        """
        env: dict[str, str] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value == info.default:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[env_var_name(name)] = "" if value is None else str(value)
        return env

    @property
    def topics(self) -> dict[str, str]:
        """Role -> topic name, for every topic the project uses."""
        return {
            "input": self.topic_input,
            "valid": self.topic_valid,
            "dlq": self.topic_dlq,
            "predictions": self.topic_predictions,
            "drift": self.topic_drift,
            "snapshots": self.topic_snapshots,
        }


def security_problems(settings: Settings) -> list[str]:
    """What is wrong with the combination of the security settings (empty when all is well).

    Each message names the env vars involved and never the value of a secret.
    """
    problems: list[str] = []
    protocol = settings.security_protocol
    given = f"STREAMPROC_SECURITY_PROTOCOL={protocol}"
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    if settings.uses_sasl:
        missing = [
            env_var_name(name)
            for name, value in (
                ("sasl_username", settings.sasl_username),
                ("sasl_password", password),
            )
            if not value
        ]
        if missing:
            problems.append(
                f"{given} needs STREAMPROC_SASL_USERNAME and STREAMPROC_SASL_PASSWORD; "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"
            )
    else:
        stray = [
            env_var_name(name)
            for name, value in (
                ("sasl_username", settings.sasl_username),
                ("sasl_password", password),
            )
            if value
        ]
        if stray:
            problems.append(
                f"{' and '.join(stray)} {'is' if len(stray) == 1 else 'are'} set, but {given} "
                "does not use SASL: set STREAMPROC_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            )
    files = {
        "ssl_cafile": settings.ssl_cafile,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
    }
    if not settings.uses_tls:
        stray = [env_var_name(name) for name, value in files.items() if value is not None]
        if settings.ssl_key_password is not None:
            stray.append(env_var_name("ssl_key_password"))
        if stray:
            problems.append(
                f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} set, but {given} does "
                "not use TLS: set STREAMPROC_SECURITY_PROTOCOL=SASL_SSL (or SSL)"
            )
        return problems
    for name, path in files.items():
        if path is not None and not path.is_file():
            problems.append(f"{env_var_name(name)}: no such file: {path}")
    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        have, lack = (
            ("ssl_certfile", "ssl_keyfile")
            if settings.ssl_keyfile is None
            else ("ssl_keyfile", "ssl_certfile")
        )
        problems.append(
            f"{env_var_name(have)} is set but {env_var_name(lack)} is not: a client certificate "
            "needs its private key and the other way round"
        )
    if settings.ssl_key_password is not None and settings.ssl_keyfile is None:
        problems.append(
            "STREAMPROC_SSL_KEY_PASSWORD is set but STREAMPROC_SSL_KEYFILE is not: the password "
            "only opens an encrypted key file"
        )
    return problems


def secret_fields() -> frozenset[str]:
    """Names of the settings that hold secrets (``SecretStr``): never shown, logged or echoed."""
    return frozenset(
        name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
    )


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once: env vars, then ``overrides`` (CLI flags; ``None`` is ignored).

    Raises
    ------
    ConfigError
        When a setting has a bad value; the message names the env var.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        secrets = secret_fields()
        problems = []
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            loc = "_".join(str(p) for p in err["loc"])
            if not loc:  # a check across settings: its message names the env vars itself
                problems.append(msg)
            elif loc in secrets:
                problems.append(f"{env_var_name(loc)}: {msg} (value not shown: a secret)")
            else:
                problems.append(f"{env_var_name(loc)}: {msg} (got {err.get('input')!r})")
        # ``from None``: pydantic's own message shows every input, secrets included, and a
        # traceback would print it; this message already says what is wrong and where.
        raise ConfigError(f"invalid settings: {'; '.join(problems)}") from None


def prefixed(base: Settings, prefix: str, **overrides: Any) -> Settings:
    """``base`` with every topic and the app id under ``prefix`` (a run of its own).

    >>> s = prefixed(Settings(), "run1")
    >>> s.topic_input, s.topic_predictions, s.app_id
    ('run1-viewing-events', 'run1-predictions', 'run1-streamproc')
    """
    values: dict[str, Any] = {
        name: f"{prefix}-{Settings.model_fields[name].default}"
        for name in Settings.model_fields
        if name.startswith("topic_")
    }
    values["app_id"] = f"{prefix}-streamproc"
    values.update(overrides)
    return base.model_copy(update=values)


def env_var_name(field_name: str) -> str:
    """The environment variable of a setting (``KAFKA_HOME`` is read unprefixed too)."""
    return "STREAMPROC_" + field_name.upper()


def settings_markdown() -> str:
    """The configuration reference as a Markdown table (kept in README.md, checked by a test)."""
    lines = ["| env var | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        if name == "kafka_cache_dir":
            shown = "`~/.cache/streamproc/kafka`"
        elif name in secret_fields():
            shown = "unset (secret)"
        elif default is None:
            shown = "unset"
        else:
            shown = f"`{default}`"
        var = env_var_name(name)
        if name == "kafka_home":
            var = "KAFKA_HOME"
        lines.append(f"| `{var}` | {shown} | {info.description or ''} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - used to refresh README.md
    print(settings_markdown())
