"""Where the Kafka broker's jars come from: ``KAFKA_HOME``, or Maven Central through ``mvn``, cached.

Resolution happens once per version into ``<cache>/kafka-<version>/lib`` (cache: ``EDGEBRIDGE_CACHE_DIR``,
else ``$XDG_CACHE_HOME/edgebridge``, else ``~/.cache/edgebridge``). Two things the published artifact
does not bring, learnt the hard way:

* the runtime scope has no logging binding, so a broker without one prints nothing at all; we add
  slf4j-simple 1.7.36, matching the slf4j-api 1.7 that kafka_2.13 4.x depends on;
* ``maven-dependency-plugin`` must be pinned (the default bound by old Maven is 2.x, which lacks
  options we use), so the generated pom pins a 3.x version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgebridge.devbrokers._process import require_tool
from edgebridge.errors import BrokerStartError

__all__ = ["DEFAULT_KAFKA_VERSION", "KafkaDist", "cache_dir", "resolve_kafka"]

DEFAULT_KAFKA_VERSION = "4.3.1"
_SLF4J_SIMPLE = "1.7.36"
_DEPENDENCY_PLUGIN = "3.8.1"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.edgebridge</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>{slf4j}</version>
    </dependency>
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId>
    <version>{plugin}</version>
  </plugin></plugins></build>
</project>
"""


@dataclass(frozen=True)
class KafkaDist:
    """A Kafka installation we can run: a classpath and, for a distribution, its log4j2 config."""

    version: str
    classpath: str
    log4j_config: Path | None
    origin: str  # "KAFKA_HOME" or "maven"


def cache_dir() -> Path:
    if os.environ.get("EDGEBRIDGE_CACHE_DIR"):
        return Path(os.environ["EDGEBRIDGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgebridge"


def resolve_kafka(version: str | None = None) -> KafkaDist:
    """The Kafka to run: ``KAFKA_HOME`` when set, otherwise jars from Maven Central (downloaded once)."""
    require_tool("java", "openjdk-17-jre-headless")
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not libs.is_dir():
            raise BrokerStartError("kafka", f"KAFKA_HOME={home} has no libs/ folder")
        jars = sorted(libs.glob("kafka_2.13-*.jar"))
        found = jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "unknown"
        log4j = next((p for p in (Path(home) / "config").glob("log4j2.*") if p.is_file()), None)
        return KafkaDist(found, f"{libs}/*", log4j, "KAFKA_HOME")
    version = version or os.environ.get("EDGEBRIDGE_KAFKA_VERSION") or DEFAULT_KAFKA_VERSION
    root = cache_dir() / f"kafka-{version}"
    lib = root / "lib"
    if not (lib / f"kafka_2.13-{version}.jar").exists():
        _download(version, root, lib)
    return KafkaDist(version, f"{lib}/*", None, "maven")


def _download(version: str, root: Path, lib: Path) -> None:
    mvn = require_tool("mvn", "maven")
    root.mkdir(parents=True, exist_ok=True)
    pom = root / "pom.xml"
    pom.write_text(_POM.format(version=version, slf4j=_SLF4J_SIMPLE, plugin=_DEPENDENCY_PLUGIN))
    staging = root / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").exists():
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise BrokerStartError("kafka", f"mvn could not resolve kafka_2.13 {version}: " + " | ".join(tail))
    # Rename last, so an interrupted download never looks like a complete one.
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
