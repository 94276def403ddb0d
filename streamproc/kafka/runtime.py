"""The Kafka runtime: the pinned Kafka version, the Java check, the jars and Kafka's Java tools.

The jars come from Maven Central (``mvn`` against the project's ``kafka/pom.xml``, cached in
``settings.kafka_cache_dir``) or from ``$KAFKA_HOME/libs``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import streamproc
from streamproc.config import Settings
from streamproc.errors import LauncherError

__all__ = [
    "COMPLETE_MARKER",
    "LOG_TAIL_LINES",
    "MIN_JAVA",
    "JavaInfo",
    "Progress",
    "check_java",
    "fetch_kafka_jars",
    "kafka_version",
    "libs_version",
    "parse_java_version",
    "pom_path",
    "run_kafka_tool",
    "say",
    "tail",
]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

MIN_JAVA = 17
COMPLETE_MARKER = ".complete"
LOG_TAIL_LINES = 30


def pom_path() -> Path:
    """The pom that pins the Kafka runtime: packaged ``_kafka/pom.xml``, else the repo's."""
    here = Path(streamproc.__file__).resolve().parent
    packaged = here / "_kafka" / "pom.xml"
    return packaged if packaged.is_file() else here.parent / "kafka" / "pom.xml"


def kafka_version(pom: Path | None = None) -> str:
    """The ``kafka.version`` property of the runtime pom (e.g. ``"4.0.0"``).

    Raises
    ------
    LauncherError
        If the pom is missing, unparsable or has no ``kafka.version`` property.
    """
    path = pom if pom is not None else pom_path()
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as exc:
        raise LauncherError(
            f"the Kafka runtime pom is missing: expected {path}; reinstall streamproc "
            "or run from a checkout that has kafka/pom.xml"
        ) from exc
    except ET.ParseError as exc:
        raise LauncherError(f"cannot parse the Kafka runtime pom {path}: {exc}") from exc
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "kafka.version" and (element.text or "").strip():
            return (element.text or "").strip()
    raise LauncherError(
        f"{path} has no <kafka.version> property; expected e.g. "
        "<kafka.version>4.0.0</kafka.version>"
    )


@dataclass(frozen=True, slots=True)
class JavaInfo:
    """The ``java`` the launcher runs and its major version."""

    path: str
    major: int
    version_line: str


_JAVA_VERSION = re.compile(r'version "(?P<version>[^"]+)"')


def parse_java_version(text: str) -> int:
    """The major version in ``java -version`` output (``"1.8.0_392"`` is 8, ``"17.0.15"`` 17).

    Raises
    ------
    LauncherError
        If the text holds no ``version "..."``.

    Examples
    --------
    >>> parse_java_version('openjdk version "17.0.15" 2025-04-15')
    17
    >>> parse_java_version('java version "1.8.0_392"')
    8
    >>> parse_java_version('openjdk version "21-ea" 2023-09-19')
    21
    """
    match = _JAVA_VERSION.search(text)
    numbers = re.findall(r"\d+", match.group("version")) if match else []
    if not numbers:
        raise LauncherError(
            "cannot read the Java version: expected a line like 'openjdk version \"17.0.15\"' "
            f"from `java -version`, got {text.strip()[:200]!r}"
        )
    major = int(numbers[0])
    if major == 1 and len(numbers) > 1:  # the pre-9 scheme: 1.8.0 is Java 8
        major = int(numbers[1])
    return major


_JAVA_CACHE: dict[str, JavaInfo] = {}


def check_java(environ: Mapping[str, str] | None = None) -> JavaInfo:
    """Find ``java`` (``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else PATH), check it is 17+.

    Parameters
    ----------
    environ
        The environment to read JAVA_HOME and PATH from; default ``os.environ`` (JAVA_HOME
        belongs to the Java installation, not to streamproc's settings).

    Raises
    ------
    LauncherError
        If ``java`` is not found or is older than Java 17.
    """
    env = os.environ if environ is None else environ
    java_home = env.get("JAVA_HOME")
    if java_home:
        java = str(Path(java_home) / "bin" / "java")
        if not os.access(java, os.X_OK):
            raise LauncherError(
                f"JAVA_HOME={java_home} has no executable bin/java; point JAVA_HOME at a JDK "
                f"{MIN_JAVA}+ or unset it to use the java on PATH"
            )
    else:
        found = shutil.which("java", path=env.get("PATH"))
        if found is None:
            raise LauncherError(
                f"`java` is not on PATH; Apache Kafka needs Java {MIN_JAVA} or newer: install a "
                "JDK (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
            )
        java = found
    if java in _JAVA_CACHE:
        return _JAVA_CACHE[java]
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LauncherError(f"cannot run `{java} -version`: {exc}") from exc
    output = proc.stderr + proc.stdout
    major = parse_java_version(output)
    line = next((ln for ln in output.splitlines() if "version" in ln), output.strip())
    if major < MIN_JAVA:
        raise LauncherError(
            f"Java {major} found at {java} ({line.strip()}); Apache Kafka 4 needs Java "
            f"{MIN_JAVA} or newer: install a JDK {MIN_JAVA}+ and put it first on PATH or set "
            "JAVA_HOME to it"
        )
    info = JavaInfo(path=java, major=major, version_line=line.strip())
    _JAVA_CACHE[java] = info
    return info


def say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
    else:
        logger.info("%s", message)


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def fetch_kafka_jars(settings: Settings, *, progress: Progress | None = None) -> Path:
    """The folder of Apache Kafka's jars, resolved with Maven on first use and cached.

    With ``settings.kafka_home`` set, ``$KAFKA_HOME/libs`` is used and Maven never runs.
    Otherwise the jars go to ``settings.kafka_cache_dir / <kafka.version> / libs``; a
    ``.complete`` marker written last makes later calls return at once.

    Parameters
    ----------
    settings
        Supplies ``kafka_home`` and ``kafka_cache_dir``.
    progress
        Called with one-line progress messages (e.g. ``click.echo``).

    Raises
    ------
    LauncherError
        If KAFKA_HOME has no jars, ``mvn`` is not on PATH, or Maven fails.
    """
    if settings.kafka_home is not None:
        libs = settings.kafka_home.expanduser() / "libs"
        if not any(libs.glob("kafka_*.jar")):
            raise LauncherError(
                f"KAFKA_HOME={settings.kafka_home} has no libs/kafka_*.jar; point KAFKA_HOME at "
                "an unpacked Apache Kafka release (e.g. kafka_2.13-4.0.0) or unset it to let "
                "streamproc resolve the jars with Maven"
            )
        return libs
    pom = pom_path()
    version = kafka_version(pom)
    base = settings.kafka_cache_dir.expanduser() / version
    libs = base / "libs"
    if (libs / COMPLETE_MARKER).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LauncherError(
            "`mvn` (Apache Maven) is not on PATH; it resolves Apache Kafka's jars from Maven "
            "Central once. Install Maven 3.6+ (e.g. apt-get install maven), or set KAFKA_HOME to "
            "an unpacked Apache Kafka release"
        )
    base.mkdir(parents=True, exist_ok=True)
    # Run Maven on a copy: the packaged pom may sit in a read-only site-packages.
    work_pom = base / "pom.xml"
    shutil.copyfile(pom, work_pom)
    partial = base / f"libs.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    say(progress, f"resolving Apache Kafka {version} jars with Maven into {libs} ...")
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(work_pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LauncherError(
            f"mvn did not finish resolving Apache Kafka {version}'s jars within 30 min; check "
            "network access to Maven Central (https://repo.maven.apache.org) and the proxy or "
            "mirror in ~/.m2/settings.xml"
        ) from exc
    if proc.returncode != 0 or not any(partial.glob("kafka_*.jar")):
        shutil.rmtree(partial, ignore_errors=True)
        raise LauncherError(
            f"mvn could not resolve Apache Kafka {version}'s jars (exit code {proc.returncode}; "
            f"command: {' '.join(command)}). Last lines of its output:\n"
            f"{tail(proc.stdout + proc.stderr, 20)}\n"
            "Check network access to Maven Central (https://repo.maven.apache.org) and the "
            "proxy/mirror settings in ~/.m2/settings.xml, or set KAFKA_HOME to an unpacked "
            "Apache Kafka release"
        )
    if libs.exists():  # an earlier interrupted run
        shutil.rmtree(libs, ignore_errors=True)
    try:
        partial.rename(libs)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
        if not (libs / COMPLETE_MARKER).is_file():
            raise
        return libs
    (libs / COMPLETE_MARKER).write_text(version + "\n", encoding="utf-8")
    say(progress, f"Apache Kafka {version} jars ready in {libs}")
    return libs


def libs_version(libs: Path) -> str:
    for jar in sorted(libs.glob("kafka_*.jar")):
        match = re.fullmatch(r"kafka_[\d.]+-(?P<v>\d[\w.\-]*?)\.jar", jar.name)
        if match:
            return match.group("v")
    return kafka_version()


def _tools_log4j2(settings: Settings) -> Path:
    """A log4j2 config for the Kafka tools: warnings and errors to stderr."""
    path = settings.kafka_cache_dir.expanduser() / "tools-log4j2.properties"
    text = (
        "status = error\n"
        "appender.stderr.type = Console\n"
        "appender.stderr.name = stderr\n"
        "appender.stderr.target = SYSTEM_ERR\n"
        "appender.stderr.layout.type = PatternLayout\n"
        "appender.stderr.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.stderr.ref = stderr\n"
    )
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def run_kafka_tool(
    settings: Settings, main_class: str, args: Sequence[str], *, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's Java tools with the cached jars; its output is captured as text.

    Parameters
    ----------
    settings
        Supplies the jars (see :func:`fetch_kafka_jars`).
    main_class
        E.g. ``org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`` or
        ``org.apache.kafka.tools.TopicCommand``.
    args
        The tool's arguments, e.g. ``["--bootstrap-server", "127.0.0.1:9092", "--list"]``.
    timeout
        Seconds before the tool is killed.

    Returns
    -------
    subprocess.CompletedProcess
        With ``returncode``, ``stdout`` and ``stderr``; a non-zero exit is not raised.

    Raises
    ------
    LauncherError
        If Java or the jars are unavailable, or the tool runs longer than ``timeout``.
    """
    java = check_java()
    libs = fetch_kafka_jars(settings)
    command = [
        java.path,
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={_tools_log4j2(settings)}",
        "-cp",
        f"{libs}{os.sep}*",
        main_class,
        *args,
    ]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LauncherError(
            f"the Kafka tool {main_class} did not finish within {timeout:g} s "
            f"(arguments: {' '.join(args)})"
        ) from exc
