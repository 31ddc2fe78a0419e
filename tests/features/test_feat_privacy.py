"""Secret / PII detector: positives per kind, documented negatives, nothing echoed."""

from __future__ import annotations

import pytest

from router_rl.features import detect_sensitive, is_sensitive, redact

# Fake secrets are assembled at runtime so that no secret-shaped literal sits in the repository.
GH = "ghp_" + "A1b2C3d4" * 5
SK = "sk-" + "proj-" + "Zx9" * 10
JWT = "eyJ" + "hbGciOiJIUzI1NiJ9" + ".eyJ" + "zdWIiOiIxMjM0NTY3ODkwIn0" + "." + "dozjgNryP4J3jVmNHl0w5N"
PEM = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"

POSITIVES = [
    ("aws_access_key", "creds: AKIAIOSFODNN7EXAMPLE in the config"),
    ("aws_secret_key", "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("github_token", f"export GH={GH}"),
    ("api_key", f"client = OpenAI(api_key={SK})"),
    ("bearer_token", "curl -H 'Authorization: Bearer " + "abcDEF123456ghiJKL7890xyz" + "' https://api"),
    ("jwt", f"token {JWT} expired"),
    ("private_key", PEM),
    ("password", 'db = connect(password="hunter22")'),
    ("password", '{"passwd": "s3cr3t!!"}'),
    ("secret_assignment", 'STRIPE_SECRET = "' + "rk_live_" + "51HhQ2eKz8x7Y6w" + '"'),
    ("env_secret", "DATABASE_URL=postgres://db\nDB_PASSWORD=Sup3rS3cret\n"),
    ("url_credentials", "clone https://alice:pa55word@git.internal.corp/repo.git"),
    ("email", "contact jane.doe@acme-corp.io for access"),
    ("credit_card", "card 4111 1111 1111 1111 was declined"),
    ("credit_card", "card 5555-5555-5555-4444 was declined"),
]


@pytest.mark.parametrize(("kind", "text"), POSITIVES)
def test_positives(kind: str, text: str) -> None:
    found = detect_sensitive(text)
    assert kind in {f.kind for f in found}, found
    assert is_sensitive(text)


NEGATIVES = [
    "password_field = form.get('password')",  # decided: reading a password is not a secret
    "def check_password(password: str) -> bool:",
    'password = os.environ["DB_PASSWORD"]',
    'password = "${DB_PASSWORD}"',
    'password = "****"',
    'password = "<your password>"',
    "DB_PASSWORD=\nAPI_TOKEN=${API_TOKEN}\n",
    "token = get_token(user)",
    "Authorization: Bearer <token>",
    "send a mail to user@example.com in the test",
    "git clone git@github.com:org/repo.git",
    "order 1234567890123 was shipped",  # 13 digits, fails Luhn
    "card 4111 1111 1111 1112 is invalid",  # fails Luhn
    "version 1.2.3, port 8080, id 550e8400-e29b-41d4-a716-446655440000",
    "use the sk-learn style api; risk-averse tasks",
    "def test_login(client):\n    resp = client.post('/login', data={'user': 'bob'})\n    assert resp.ok",
    "",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_negatives(text: str) -> None:
    assert detect_sensitive(text) == []
    assert not is_sensitive(text)


def test_none_is_not_sensitive() -> None:
    assert detect_sensitive(None) == [] and not is_sensitive(None)


def test_findings_never_echo_the_secret_and_redact() -> None:
    text = f"key {GH} and mail jane@acme.io"
    found = detect_sensitive(text)
    assert [f.kind for f in found] == ["github_token", "email"]
    for f in found:
        assert GH not in repr(f) and "jane" not in repr(f) and "jane" not in str(f)
    assert text[found[0].start : found[0].end] == GH
    red = redact(text)
    assert GH not in red and "jane@acme.io" not in red
    assert red == "key [REDACTED:github_token] and mail [REDACTED:email]"


def test_overlapping_findings_redact_once() -> None:
    text = "DB_PASSWORD='hunter2222'"
    kinds = {f.kind for f in detect_sensitive(text)}
    assert {"password", "env_secret"} <= kinds
    assert "hunter2222" not in redact(text)
    assert redact(text).count("[REDACTED") == 1
