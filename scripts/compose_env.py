"""Write the secrets docker-compose.yaml requires into ``.env`` beside it, generating what is missing.

docker-compose.yaml ships no secret: it refuses to start without ``AIRFLOW_FERNET_KEY`` (encrypts
connection passwords in the metadata DB), ``AIRFLOW_JWT_SECRET`` (signs the API tokens every Airflow
component trusts) and ``_AIRFLOW_WWW_USER_PASSWORD`` (the UI admin). Run once before the first
``docker compose up``: values already in ``.env`` are kept (changing the Fernet key would make the
stored connections unreadable), missing ones are generated, the file is readable by its owner only.

Usage: ``python3 scripts/compose_env.py [path/to/.env]``. Standard library only.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

GENERATORS = {
    # Fernet keys are 32 random bytes, url-safe base64 (cryptography.io, "Fernet.generate_key").
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "_AIRFLOW_WWW_USER_PASSWORD": lambda: secrets.token_urlsafe(18),
}


def ensure_env(path: Path) -> list[str]:
    """Add the missing secrets to ``path``; return the names generated (values are never printed)."""
    lines = path.read_text().splitlines() if path.exists() else []
    values = {
        name.strip(): value.strip()
        for name, _, value in (line.partition("=") for line in lines if not line.lstrip().startswith("#"))
    }
    added = [name for name in GENERATORS if not values.get(name)]
    lines = [line for line in lines if line.partition("=")[0].strip() not in added]  # drops empty assignments
    lines += [f"{name}={GENERATORS[name]()}" for name in added]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return added


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".env"
    generated = ensure_env(target)
    print(f"{target}: generated {', '.join(generated) or 'nothing (all set)'}; keep this file out of version control")
