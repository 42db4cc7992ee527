"""Promises the repository makes about itself: two README commands, CI runs one, pins, compose."""

import re

import yaml

from core.config import Settings
from tests.conftest import REPO


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert commands == ["./scripts/start.sh", "./scripts/test.sh"]
    ci = (REPO / ".ci/run").read_text()
    assert re.search(r"^\./scripts/test\.sh$", ci, flags=re.M), "CI must run the README test command verbatim"


def test_every_requirement_is_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-r "):
                continue
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+\-]+", line), f"{name}: unpinned {line!r}"


def test_compose_env_matches_settings_and_every_service_has_a_healthcheck():
    from core.config import SDK_KEY_NAMES

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    fields = {f"OPTIMUS_{name.upper()}" for name in Settings.model_fields}
    assert {"app", "api", "postgres", "qdrant", "prometheus"} <= set(compose["services"])
    for name, service in compose["services"].items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: image tag must be pinned"
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: use a mapping for environment"
        for key in env:
            if key.startswith("OPTIMUS_"):
                assert key in fields, f"{name}: {key} is not a setting in core/config.py"
            elif name in {"app", "api"}:
                assert key in SDK_KEY_NAMES, f"{name}: {key} is neither an OPTIMUS_ setting nor a provider key"
    for volume in compose["services"]["prometheus"].get("volumes", []):
        source = volume.split(":", 1)[0]
        if source.startswith("./"):
            assert (REPO / source).is_file(), f"prometheus mounts a missing file {source}"
    scrape = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"app:8501", "api:8000"}


def test_no_secrets_file_is_tracked():
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".streamlit/secrets.toml" in ignored and ".env" in ignored and "data/" in ignored


def test_core_never_imports_streamlit():
    for path in (REPO / "core").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+streamlit", path.read_text(), flags=re.M), path


def test_pages_holds_only_the_pages_app_py_navigates_to():
    routed = set(re.findall(r'st\.Page\("pages/(\w+)\.py"', (REPO / "app.py").read_text()))
    modules = {path.stem for path in (REPO / "pages").glob("*.py")} - {"__init__"}
    assert modules == routed, "shared page helpers belong in ui/, not pages/"


def _layout() -> tuple[str, str]:
    """README's layout block, and the prose right after it."""
    section = (REPO / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    block, after = section.split("```", 2)[1:]
    return block, after


def test_readme_layout_names_every_module_and_package():
    block, _ = _layout()
    names = set(re.findall(r"[A-Za-z_]\w*", block))
    prefixes = tuple(re.findall(r"(\w+_)\*", block))  # routes_* names every routes_ module
    missing = [str(path.relative_to(REPO)) for path in [*(REPO / "core").rglob("*.py"), *(REPO / "ui").glob("*.py")]
               if path.stem not in {"__init__", "__main__"} and path.stem not in names
               and not path.stem.startswith(prefixes)]
    assert not missing, f"README's layout does not mention {missing}"
    for package in (p for p in (REPO / "core").iterdir() if (p / "__init__.py").exists()):
        assert f"{package.name}/" in block, f"README's layout does not mention core/{package.name}/"


def test_no_module_is_over_500_lines_unless_the_layout_says_why():
    _, after = _layout()
    for path in [*(REPO / "core").rglob("*.py"), *(REPO / "ui").glob("*.py"), *(REPO / "pages").glob("*.py"),
                 REPO / "app.py"]:
        lines = len(path.read_text().splitlines())
        if lines > 500:
            assert str(path.relative_to(REPO)) in after and lines <= 550, f"{path.relative_to(REPO)}: {lines} lines"
