"""Static checks of docker-compose.yml, deploy/Dockerfile and .dockerignore.

No Docker engine runs where the tests do, so these read the files and check that the pieces
agree with each other and with the code: commands, ports, settings fields, URLs, topics, paths.
"""

import fnmatch
import functools
import json
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from contracts.topics import ALL_TOPICS
from kefu.kafka import DEFAULT_PARTITIONS
from kefu.settings import ServiceSettings
from services.channels.config import ChannelsSettings
from services.escalation.config import EscalationSettings
from services.router.config import RouterSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"

SETTINGS: dict[str, type[ServiceSettings]] = {
    "migrate": ServiceSettings,
    "channels": ChannelsSettings,
    "router": RouterSettings,
    "escalation": EscalationSettings,
}
"""Every service that runs the kefu image, with the settings class its command reads."""

KEFU_SERVICES = tuple(SETTINGS)
HTTP_SERVICES = ("channels", "router", "escalation")
DATABASE_SERVICES = ("migrate", "channels", "router", "escalation")
INFRASTRUCTURE = ("kafka", "kafka-init", "postgres")


# ---- reading the compose file -------------------------------------------------------------------


@functools.cache
def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), "docker-compose.yml must be a mapping"
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _service(name: str) -> dict[str, Any]:
    services = _services()
    assert name in services, f"service {name!r} missing from docker-compose.yml"
    return services[name]


def _env(name: str) -> dict[str, str]:
    """The service's environment as strings, from either the mapping or the KEY=VALUE list form."""
    raw = _service(name).get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {pair[0]: pair[1] if len(pair) == 2 else "" for pair in pairs}
    assert isinstance(raw, dict)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def _command(name: str) -> list[str]:
    command = _service(name).get("command")
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), f"{name} has no command"
    return [str(part) for part in command]


def _published_ports(name: str) -> list[tuple[int, int]]:
    """(host port, container port) of each published port, short or long syntax."""
    published: list[tuple[int, int]] = []
    for entry in _service(name).get("ports") or []:
        if isinstance(entry, dict):
            assert "published" in entry, f"{name}: port {entry} is not published on a fixed host port"
            published.append((int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        assert len(parts) in (2, 3), f"{name}: port {entry!r} is not published on a fixed host port"
        published.append((int(parts[-2]), int(parts[-1])))
    return published


def _depends_on(name: str) -> dict[str, str]:
    """Dependency name to its condition (``service_started`` when the list form is used)."""
    raw = _service(name).get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {dep: (spec or {}).get("condition", "service_started") for dep, spec in raw.items()}


def _has_healthcheck(name: str) -> bool:
    healthcheck = _service(name).get("healthcheck")
    return isinstance(healthcheck, dict) and not healthcheck.get("disable", False) and bool(healthcheck.get("test"))


def _kafka_advertised_plaintext() -> str:
    listeners = dict(entry.split("://", 1) for entry in _env("kafka")["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert "PLAINTEXT" in listeners, "the broker advertises no PLAINTEXT listener"
    return listeners["PLAINTEXT"]


# ---- reading the Dockerfile ---------------------------------------------------------------------


def _build_dockerfile(name: str) -> Path:
    build = _service(name).get("build")
    assert build is not None, f"{name} is not built from the repository"
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    return REPO / str(build.get("context", ".")) / str(build.get("dockerfile", "Dockerfile"))


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, f"{dockerfile} ends inside a continued line"
    return instructions


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    instructions = _instructions(dockerfile)
    starts = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, f"{dockerfile} has no FROM"
    return instructions[starts[-1] :]


def _words(arguments: str) -> list[str]:
    """Arguments of COPY/EXPOSE/USER-like instructions, JSON array or shell-word form."""
    if arguments.startswith("["):
        words = json.loads(arguments)
        assert isinstance(words, list)
        return [str(word) for word in words]
    return shlex.split(arguments)


def _context_copies(dockerfile: Path) -> list[tuple[list[str], PurePosixPath]]:
    """(sources in the build context, absolute destination) of the final stage's COPY/ADD lines."""
    copies: list[tuple[list[str], PurePosixPath]] = []
    workdir = PurePosixPath("/")
    for keyword, arguments in _final_stage(dockerfile):
        if keyword == "WORKDIR":
            workdir = workdir / arguments
        elif keyword in ("COPY", "ADD"):
            flags = [word for word in shlex.split(arguments) if word.startswith("--")]
            if any(flag.startswith("--from") for flag in flags):
                continue
            words = [word for word in _words(arguments) if not word.startswith("--")]
            destination = words[-1]
            resolved = workdir / destination
            # Keep a trailing slash: it makes the destination a directory.
            copies.append((words[:-1], PurePosixPath(str(resolved) + ("/" if destination.endswith("/") else ""))))
    return copies


def _repo_file_for_image_path(dockerfile: Path, image_path: PurePosixPath) -> Path | None:
    """The build-context file that the final stage copies to ``image_path``, if any."""
    found: Path | None = None
    for sources, destination in _context_copies(dockerfile):
        destination_is_directory = str(destination).endswith("/") or len(sources) > 1
        for source in sources:
            source_path = REPO / source
            if source_path.is_dir():
                if image_path.is_relative_to(destination):
                    found = source_path / image_path.relative_to(destination)
            elif destination_is_directory:
                if image_path == destination / PurePosixPath(source).name:
                    found = source_path
            elif image_path == destination:
                found = source_path
    return found


def _dockerignored(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` (or a folder holding it) out of the build context."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip()[:1] not in ("", "#")
    ]
    parts = PurePosixPath(relative).parts
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.lstrip("!").strip("/")
        for prefix in prefixes:
            name = prefix.rsplit("/", 1)[-1]
            if fnmatch.fnmatchcase(prefix, cleaned) or (
                cleaned.startswith("**/") and fnmatch.fnmatchcase(name, cleaned.removeprefix("**/"))
            ):
                ignored = not negated
    return ignored


# ---- the compose file ---------------------------------------------------------------------------


def test_compose_declares_the_whole_stack() -> None:
    missing = {*INFRASTRUCTURE, *KEFU_SERVICES} - set(_services())
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return [node] if isinstance(node, str) else []


def test_compose_has_no_accidental_interpolation() -> None:
    # Compose substitutes $VAR and ${VAR} in values from the host's environment; a literal `$` is `$$`.
    strings = _strings(_compose())
    assert any("$$" in text for text in strings), "kafka-init's shell loop variable should be escaped"
    interpolated = [text for text in strings if "$" in text.replace("$$", "")]
    assert not interpolated


def test_named_volumes_are_declared() -> None:
    declared = set(_compose().get("volumes") or {})
    used = set()
    for name, service in _services().items():
        for volume in service.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":", 1)[0]
            if source and not source.startswith(("/", ".", "~")):
                used.add(source)
                assert source in declared, f"{name} mounts undeclared volume {source!r}"
    assert {"kafka-data", "postgres-data"} <= used, "the broker's and the database's data must outlive containers"


@pytest.mark.parametrize("name", KEFU_SERVICES)
def test_kefu_service_runs_its_subcommand(name: str) -> None:
    assert _command(name) == ["kefu", name]


@pytest.mark.parametrize("name", KEFU_SERVICES)
def test_kefu_service_uses_the_broker_advertised_listener(name: str) -> None:
    bootstrap = _env(name).get("KEFU_KAFKA_BOOTSTRAP")
    assert bootstrap, f"{name} does not set KEFU_KAFKA_BOOTSTRAP"
    assert [server.strip() for server in bootstrap.split(",")] == [_kafka_advertised_plaintext()]


def test_broker_advertises_a_listener_it_binds_under_its_service_name() -> None:
    host, _, port = _kafka_advertised_plaintext().rpartition(":")
    assert host == "kafka" and "kafka" in _services()
    bound = dict(entry.split("://", 1) for entry in _env("kafka")["KAFKA_LISTENERS"].split(","))
    assert bound["PLAINTEXT"].rpartition(":")[2] == port
    voters = _env("kafka")["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == f"{_env('kafka')['KAFKA_NODE_ID']}@kafka:{bound['CONTROLLER'].rpartition(':')[2]}"
    assert _env("kafka")["CLUSTER_ID"], "the apache/kafka image refuses KRaft mode without CLUSTER_ID"


@pytest.mark.parametrize("name", DATABASE_SERVICES)
def test_database_url_points_at_the_postgres_service(name: str) -> None:
    raw = _env(name).get("KEFU_DATABASE_URL")
    assert raw, f"{name} does not set KEFU_DATABASE_URL"
    url = make_url(raw)
    postgres = _env("postgres")
    assert url.get_backend_name() == "postgresql"
    assert url.host == "postgres"
    assert url.port in (None, 5432)
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.database == postgres["POSTGRES_DB"]


@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_published_port_is_the_service_port(name: str) -> None:
    env = _env(name)
    default_port = SETTINGS[name].model_fields["port"].default
    assert isinstance(default_port, int)
    assert int(env["KEFU_PORT"]) == default_port
    published = _published_ports(name)
    assert len(published) == 1
    assert published[0][1] == default_port


@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_http_service_binds_all_interfaces_and_probes_readiness(name: str) -> None:
    assert _env(name)["KEFU_HOST"] == "0.0.0.0"
    assert _has_healthcheck(name)
    assert "/readyz" in " ".join(str(part) for part in _service(name)["healthcheck"]["test"])


def test_host_ports_are_unique() -> None:
    host_ports = [host for name in _services() for host, _ in _published_ports(name)]
    assert host_ports, "nothing is published"
    assert len(host_ports) == len(set(host_ports))


@pytest.mark.parametrize("name", KEFU_SERVICES)
def test_kefu_environment_names_settings_fields(name: str) -> None:
    settings_class = SETTINGS[name]
    kefu_env = {key: value for key, value in _env(name).items() if key.startswith("KEFU_")}
    unknown = {key for key in kefu_env if key.removeprefix("KEFU_").lower() not in settings_class.model_fields}
    assert not unknown, f"{name} sets {sorted(unknown)}, which {settings_class.__name__} does not read"
    # The values must validate too (model_validate reads nothing from the process environment).
    settings = settings_class.model_validate(
        {key.removeprefix("KEFU_").lower(): value for key, value in kefu_env.items()}
    )
    assert str(settings.config_path) == kefu_env["KEFU_CONFIG_PATH"]


def test_depends_on_names_existing_services_with_satisfiable_conditions() -> None:
    services = _services()
    checked = 0
    for name in services:
        for dependency, condition in _depends_on(name).items():
            checked += 1
            assert dependency in services, f"{name} depends on unknown service {dependency!r}"
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert _has_healthcheck(dependency), f"{name} waits for {dependency} to be healthy; it has no check"
            if condition == "service_completed_successfully":
                restart = services[dependency].get("restart", "no")
                assert restart in ("no", "on-failure"), f"{dependency} is waited on to exit but restarts: {restart}"
    assert checked


@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_services_start_after_migrations_and_topics(name: str) -> None:
    depends_on = _depends_on(name)
    assert depends_on.get("migrate") == "service_completed_successfully"
    assert depends_on.get("kafka-init") == "service_completed_successfully"


def test_migrate_waits_for_a_healthy_database() -> None:
    assert _depends_on("migrate").get("postgres") == "service_healthy"


def test_kafka_init_creates_every_topic_idempotently() -> None:
    service = _service("kafka-init")
    assert service["image"] == _service("kafka")["image"]
    assert _depends_on("kafka-init") == {"kafka": "service_healthy"}
    script = " ".join(str(part) for part in [*(service.get("entrypoint") or []), *(service.get("command") or [])])
    words = script.replace("\\", " ").split()
    missing = set(ALL_TOPICS) - set(words)
    assert not missing, f"kafka-init does not create {sorted(missing)}"
    assert "kafka-topics.sh" in script and "--create" in words and "--if-not-exists" in words
    assert words[words.index("--bootstrap-server") + 1] == _kafka_advertised_plaintext()
    assert words[words.index("--partitions") + 1] == str(DEFAULT_PARTITIONS)
    assert words[words.index("--replication-factor") + 1] == "1"


# ---- the image ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KEFU_SERVICES)
def test_build_uses_an_existing_dockerfile(name: str) -> None:
    dockerfile = _build_dockerfile(name)
    assert dockerfile.is_file(), f"{name} builds from {dockerfile}, which does not exist"
    assert dockerfile == REPO / "deploy" / "Dockerfile"


@pytest.mark.parametrize("name", KEFU_SERVICES)
def test_config_path_is_a_repo_file_the_image_copies(name: str) -> None:
    config_path = PurePosixPath(_env(name)["KEFU_CONFIG_PATH"])
    assert config_path.is_absolute()
    repo_file = _repo_file_for_image_path(_build_dockerfile(name), config_path)
    assert repo_file is not None, f"no COPY line of the final stage puts anything at {config_path}"
    assert repo_file.is_file(), f"{config_path} would come from {repo_file}, which does not exist"
    assert not _dockerignored(repo_file.relative_to(REPO).as_posix())
    assert isinstance(yaml.safe_load(repo_file.read_text(encoding="utf-8")), dict)


def test_image_runs_as_a_non_root_user() -> None:
    users = [arguments for keyword, arguments in _final_stage(REPO / "deploy" / "Dockerfile") if keyword == "USER"]
    assert users, "the final stage never switches away from root"
    user = users[-1].split(":", 1)[0]
    assert user not in ("root", "0")


def test_image_exposes_every_published_service_port() -> None:
    stage = _final_stage(REPO / "deploy" / "Dockerfile")
    exposed = {
        int(word.split("/", 1)[0]) for keyword, arguments in stage if keyword == "EXPOSE" for word in _words(arguments)
    }
    container_ports = {container for name in HTTP_SERVICES for _, container in _published_ports(name)}
    assert container_ports == {8000, 8001, 8002}
    assert container_ports <= exposed


def test_image_installs_the_project_without_dev_extras() -> None:
    runs = [arguments for keyword, arguments in _instructions(REPO / "deploy" / "Dockerfile") if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert installs, "the Dockerfile never pip-installs the project"
    assert any(run.rstrip().endswith("pip install .") for run in installs)
    assert not any("[dev]" in run for run in installs)


def test_dockerignore_keeps_sources_in_and_local_state_out() -> None:
    needed_files = (
        "pyproject.toml",
        "tools/cli.py",
        "tools/migrations/env.py",
        "services/router/config.py",
        "contracts/topics.py",
        "deploy/examples/kefu.yaml",
    )
    for needed in needed_files:
        assert (REPO / needed).exists()
        assert not _dockerignored(needed), f".dockerignore drops {needed}, which the image needs"
    unwanted_files = (
        ".venv/bin/python",
        ".kefu/pg/PG_VERSION",
        ".git/HEAD",
        "tests/unit/test_compose.py",
        "bench/run.py",
        "kefu/__pycache__/cli.cpython-311.pyc",
        ".mypy_cache/3.11/cache.db",
    )
    for unwanted in unwanted_files:
        assert _dockerignored(unwanted), f".dockerignore lets {unwanted} into the build context"
