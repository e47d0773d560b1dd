"""What a kubeconfig asks of a login, read without logging in (no `kubernetes` client needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def exec_user(path: str | None) -> dict[str, Any] | None:
    """The `exec` credential plugin of the current context's user (e.g. `aws eks get-token`), if any. Only
    the first file of a colon-separated $KUBECONFIG is read: a plugin defined elsewhere is not found."""
    if not path:
        return None
    try:
        config = yaml.safe_load(Path(path.split(":")[0]).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    context = next((c for c in config.get("contexts") or [] if c.get("name") == config.get("current-context")), None)
    user_name = ((context or {}).get("context") or {}).get("user")
    user = next((u for u in config.get("users") or [] if u.get("name") == user_name), None)
    plugin = ((user or {}).get("user") or {}).get("exec")
    return dict(plugin) if isinstance(plugin, dict) else None
