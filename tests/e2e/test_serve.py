"""`porter serve` as a user runs it: a real process, real uvicorn, a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import comment_payload, signed
from tests.e2e.server import ServerProcess
from tests.fakes.github import FakeGitHub

ADMIN = {"Authorization": "Bearer test-admin-token"}


def test_starts_with_no_settings_and_says_what_it_needs(tmp_path: Path) -> None:
    with ServerProcess({}, cwd=tmp_path) as server:
        assert "PORTER_GITHUB_WEBHOOK_SECRET" in server.first_line
        assert "listening on" in server.first_line
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert (tmp_path / "porter.db").exists()


def test_a_task_survives_kill_9_right_after_the_202(tmp_path: Path, env: dict[str, str]) -> None:
    server = ServerProcess(env, cwd=tmp_path).start()
    try:
        body = json.dumps(comment_payload(body="@porter fix the typo")).encode()
        response = httpx.post(f"{server.url}/webhooks/github", content=body,
                              headers=signed(body, "issue_comment"))
        assert response.status_code == 202
        task_id = response.json()["task_id"]
    finally:
        server.kill()
    with ServerProcess(env, cwd=tmp_path) as again:
        task = httpx.get(f"{again.url}/api/tasks/{task_id}", headers=ADMIN).json()
    assert task["state"] == "queued"
    assert task["instruction"] == "fix the typo"


def porter(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "porter.cli", *args], env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


def test_replay_signs_and_posts_a_payload_file(tmp_path: Path, env: dict[str, str]) -> None:
    payload_file = tmp_path / "comment.json"
    payload_file.write_text(json.dumps(comment_payload(body="@porter codex add a test")))
    with ServerProcess(env, cwd=tmp_path) as server:
        first = porter("replay", str(payload_file), "--event", "issue_comment",
                       "--url", f"{server.url}/webhooks/github", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("202") and '"queued"' in first.stdout
        again = porter("replay", str(payload_file), "--event", "issue_comment",
                       "--url", f"{server.url}/webhooks/github", env=env, cwd=tmp_path)
        assert '"duplicate"' in again.stdout
    listing = porter("tasks", "list", "--json", env=env, cwd=tmp_path)
    [task] = json.loads(listing.stdout)
    assert (task["agent"], task["instruction"], task["state"]) == ("codex", "add a test", "queued")
    table = porter("tasks", "list", env=env, cwd=tmp_path)
    assert "codex" in table.stdout and "queued" in table.stdout
    shown = porter("tasks", "show", str(task["id"]), env=env, cwd=tmp_path)
    assert "state.queued" in shown.stdout


def test_doctor_masks_secrets_and_fails_when_porter_cannot_work(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = porter("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "test-webhook-secret" not in result.stdout
    assert "test-admin-token" not in result.stdout
    assert "PORTER_GITHUB_APP_ID" in result.stdout
    bad_key = porter("doctor", env={**env, "PORTER_GITHUB_APP_ID": "1",
                                    "PORTER_GITHUB_PRIVATE_KEY": "pem"}, cwd=tmp_path)
    assert bad_key.returncode == 1 and "not a readable PEM private key" in bad_key.stdout
    # Ready: doctor's checks reach a GitHub (the fake) that accepts the App's key.
    fake = FakeGitHub(tmp_path / "github", private_key_pem=private_key_pem())
    fake.add_installation(42, account="octo")
    with fake.serve() as urls:
        ready = porter("doctor", env={**env, "PORTER_GITHUB_APP_ID": fake.app_id,
                                      "PORTER_GITHUB_PRIVATE_KEY": fake.private_key_pem,
                                      "PORTER_GITHUB_API_URL": urls.api_url,
                                      "PORTER_GITHUB_URL": urls.web_url}, cwd=tmp_path)
    assert ready.returncode == 0, ready.stdout
    assert "BEGIN" not in ready.stdout


def test_serve_refuses_a_bad_private_key_in_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    result = porter("serve", env={**env, "PORTER_GITHUB_APP_ID": "1",
                                  "PORTER_GITHUB_PRIVATE_KEY_FILE": str(key_file)}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "porter: the GitHub App private key is not a readable PEM private key "
        "(PORTER_GITHUB_PRIVATE_KEY or PORTER_GITHUB_PRIVATE_KEY_FILE)"]


def private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    result = porter("doctor", env={"PORTER_PORT": "eighty"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "porter: PORTER_PORT: expected a port number from 1 to 65535, got 'eighty'"]


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORTER_PORT=eighty\n")
    result = porter("doctor", env={}, cwd=tmp_path)
    assert result.returncode == 2 and "PORTER_PORT" in result.stderr


def test_migrate(tmp_path: Path) -> None:
    env = {"PORTER_DATABASE": str(tmp_path / "m.db")}
    first = porter("migrate", env=env, cwd=tmp_path)
    assert "applied 0001 initial" in first.stdout
    assert "up to date" in porter("migrate", env=env, cwd=tmp_path).stdout
