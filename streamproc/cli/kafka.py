"""``streamproc kafka fetch|start|stop|status|add-user``: the local Apache Kafka launcher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from streamproc.cli._common import settings_from

if TYPE_CHECKING:
    from streamproc.kafka.localsecurity import SecurityMode

__all__ = ["command"]

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data, logs and process file of the local cluster "
    "[env STREAMPROC_KAFKA_DATA_DIR; default .streamproc/kafka].",
)


_SECURITY_MODES: dict[str, SecurityMode] = {"plaintext": "plaintext", "sasl_ssl": "sasl_ssl"}


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.group("kafka")
def command() -> None:
    """Run Apache Kafka locally (KRaft, no ZooKeeper) for development and tests.

    The jars are resolved once from Maven Central with `mvn` (or taken from $KAFKA_HOME/libs)
    and cached in ~/.cache/streamproc/kafka; Java 17+ runs the brokers. To use an existing
    cluster instead, set STREAMPROC_BOOTSTRAP_SERVERS (or --bootstrap-servers): every other
    command then talks to it and none of these are needed.
    """


@command.command("fetch")
@click.pass_context
def fetch(ctx: click.Context) -> None:
    """Resolve Apache Kafka's jars (cached) and check Java; print the jar folder.

    Needs `mvn` and network access to Maven Central the first time, unless KAFKA_HOME
    points at an unpacked Kafka release.
    """
    from streamproc.kafka.launcher import check_java, fetch_kafka_jars

    settings = settings_from(ctx)
    java = check_java()
    _echo_err(f"java {java.major}: {java.path}")
    click.echo(str(fetch_kafka_jars(settings, progress=_echo_err)))


@command.command("start")
@click.option(
    "--brokers",
    type=click.Choice(["1", "3"]),
    default="1",
    show_default=True,
    help="1 combined broker+controller, or 3 (a 3-voter quorum; topics get RF 3).",
)
@click.option(
    "--port",
    type=click.IntRange(1024, 65535),
    help="First client port; N brokers use PORT..PORT+N-1 for clients and the next N ports "
    "for the controller quorum [env STREAMPROC_KAFKA_PORT; default 9092].",
)
@DATA_DIR_OPTION
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="Seconds to wait until every broker answers.",
)
@click.option(
    "--security",
    type=click.Choice(sorted(_SECURITY_MODES)),
    help="plaintext, or sasl_ssl: TLS with a CA made for the data dir, SCRAM-SHA-512 / "
    "SCRAM-SHA-256 / PLAIN logins and ACLs; the admin's client settings go to "
    "DATA_DIR/client.env (mode 0600). Fixed when the data dir is made "
    "[default: the data dir's, plaintext for a new one].",
)
@click.pass_context
def start(
    ctx: click.Context,
    brokers: str,
    port: int | None,
    data_dir: Path | None,
    timeout: float,
    security: str | None,
) -> None:
    """Start a local Kafka cluster in the background and wait until it is ready.

    The brokers keep running after this command exits; stop them with `streamproc kafka
    stop`. Running it again while the cluster runs does nothing. The last line of output is
    `bootstrap servers: HOST:PORT[,...]`.

    This always starts the local launcher: to use an existing cluster, skip it and set
    STREAMPROC_BOOTSTRAP_SERVERS instead.

    With --security sasl_ssl, load the admin's settings with `set -a; . DATA_DIR/client.env;
    set +a`, and add users for the pipeline with `streamproc kafka add-user NAME`.
    """
    from streamproc.kafka.launcher import start_kafka

    settings = settings_from(ctx, kafka_port=port, kafka_data_dir=data_dir)
    info = start_kafka(
        settings,
        brokers=int(brokers),
        port=settings.kafka_port,
        data_dir=settings.kafka_data_dir,
        timeout=timeout,
        progress=_echo_err,
        security=_SECURITY_MODES.get(security or ""),
    )
    verb = "already running" if info.already_running else "started"
    click.echo(
        f"Apache Kafka {info.kafka_version} {verb}: {len(info.nodes)} broker(s), "
        f"data in {info.data_dir}"
    )
    for node in info.nodes:
        click.echo(f"node {node.node_id}: pid {node.pid}, log {node.log_file}")
    click.echo(f"stop with: streamproc kafka stop --data-dir {info.data_dir}")
    _echo_security(info.security, info.data_dir)
    click.echo(f"bootstrap servers: {info.bootstrap_servers}")


def _echo_security(security: str, data_dir: Path) -> None:
    from streamproc.kafka.localsecurity import CLIENT_ENV, protocol_of

    if security == "plaintext":
        click.echo("security: PLAINTEXT (no TLS, no login)")
        return
    env_file = data_dir / CLIENT_ENV
    click.echo(
        f"security: {protocol_of('sasl_ssl')} (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN; ACLs); "
        f"admin settings in {env_file}: set -a; . {env_file}; set +a"
    )


@command.command("stop")
@DATA_DIR_OPTION
@click.option("--wipe", is_flag=True, help="Also delete the cluster's data and logs.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds to wait after SIGTERM before sending SIGKILL.",
)
@click.pass_context
def stop(ctx: click.Context, data_dir: Path | None, wipe: bool, timeout: float) -> None:
    """Stop the local Kafka started from the data dir (only its own processes).

    The data is kept for the next start unless --wipe is given.
    """
    from streamproc.kafka.launcher import stop_kafka

    settings = settings_from(ctx, kafka_data_dir=data_dir)
    pids = stop_kafka(settings.kafka_data_dir, wipe=wipe, timeout=timeout)
    if pids:
        click.echo(f"stopped Kafka (pid {', '.join(map(str, pids))})")
    else:
        click.echo(f"no local Kafka was running from {settings.kafka_data_dir}")
    if wipe:
        click.echo(f"removed the data in {settings.kafka_data_dir}")


@command.command("status")
@DATA_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.pass_context
def status(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Show whether the local Kafka of the data dir runs: nodes, pids, logs, brokers answering.

    The state is running, degraded (some nodes down) or stopped; the exit code is 0 in all
    three cases.
    """
    from streamproc.kafka.launcher import kafka_status

    settings = settings_from(ctx, kafka_data_dir=data_dir)
    found = kafka_status(settings.kafka_data_dir)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
        return
    click.echo(f"local Kafka in {found.data_dir}: {found.state}")
    if found.info is None:
        return
    for node in found.info.nodes:
        state = "up" if found.alive.get(node.node_id) else "down"
        click.echo(
            f"node {node.node_id}: {state}, pid {node.pid}, port {node.client_port}, "
            f"log {node.log_file}"
        )
    if found.brokers_answering is not None:
        click.echo(f"brokers answering: {found.brokers_answering} of {len(found.info.nodes)}")
    _echo_security(found.info.security, found.data_dir)
    click.echo(f"bootstrap servers: {found.info.bootstrap_servers}")


@command.command("add-user")
@click.argument("name")
@DATA_DIR_OPTION
@click.option(
    "--acls/--no-acls",
    default=True,
    show_default=True,
    help="Grant the ACLs the pipeline needs on the topics and app id of the current settings "
    "(STREAMPROC_TOPIC_*, STREAMPROC_APP_ID).",
)
@click.pass_context
def add_user(ctx: click.Context, name: str, data_dir: Path | None, acls: bool) -> None:
    """Add a user NAME to the local secured Kafka (started with --security sasl_ssl).

    The user gets SCRAM-SHA-512 and SCRAM-SHA-256 credentials with a new random password
    (running it again for the same NAME sets a new one) and, unless --no-acls, the ACLs the
    pipeline needs: read, write, create and describe on its topics and on Faust's
    APP_ID-... topics, read on the APP_ID... and streamproc-... consumer groups. Its
    settings, password included, go to DATA_DIR/users/NAME.env (mode 0600); the password is
    never printed.
    """
    import secrets

    from pydantic import SecretStr

    from streamproc.config import env_var_name
    from streamproc.errors import LauncherError
    from streamproc.kafka.acls import create_scram_user, grant_acls, pipeline_acl_rules
    from streamproc.kafka.launcher import kafka_status
    from streamproc.kafka.localsecurity import (
        SECURITY_DIR,
        admin_settings,
        client_env,
        user_env_file,
    )
    from streamproc.kafka.secretfiles import render_env_file, write_private

    settings = settings_from(ctx, kafka_data_dir=data_dir)
    found = kafka_status(settings.kafka_data_dir)
    if found.info is None or found.state == "stopped":
        raise LauncherError(
            f"no local Kafka runs from {found.data_dir}; start it with `streamproc kafka start "
            f"--security sasl_ssl --data-dir {found.data_dir}`"
        )
    if found.info.security != "sasl_ssl":
        raise LauncherError(
            f"the local Kafka of {found.data_dir} is {found.info.security}: it has no users. "
            "Start a secured one in another data dir with `streamproc kafka start --security "
            "sasl_ssl --data-dir DIR`"
        )
    admin = admin_settings(found.data_dir, settings)
    password = SecretStr(secrets.token_urlsafe(24))
    create_scram_user(admin, name, password)
    rules = pipeline_acl_rules(settings) if acls else []
    if rules:
        grant_acls(admin, name, rules)
    ca_file = found.data_dir / SECURITY_DIR / "ca.pem"
    values = client_env(admin.bootstrap_servers, ca_file, name, password)
    values[env_var_name("app_id")] = settings.app_id
    for field in type(settings).model_fields:
        if field.startswith("topic_"):
            values[env_var_name(field)] = getattr(settings, field)
    path = user_env_file(found.data_dir, name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_private(
        path,
        render_env_file(
            values,
            header=f"User {name} of the local secured Kafka in {found.data_dir}.\n"
            f"Load with: set -a; . {path}; set +a\nSecret: mode 0600.",
        ),
    )
    click.echo(f"user {name}: SCRAM-SHA-512 and SCRAM-SHA-256 credentials set")
    for rule in rules:
        click.echo(f"  allowed {rule}")
    if not rules:
        click.echo("  no ACLs granted (--no-acls): the user can log in, but do nothing")
    click.echo(f"settings: {path} (load with: set -a; . {path}; set +a)")
