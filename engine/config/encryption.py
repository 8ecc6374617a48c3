"""The ``[repository.encryption]`` section: encryption at rest and where its key is.

::

    [repository.encryption]
    key_file = "/etc/lifeboat/repository.key"    # 32 random bytes, base64 or hex, mode 0600
    # key_env = "LIFEBOAT_REPOSITORY_KEY"        # ... or from the environment (one of the two)
    old_key_files = ["/etc/lifeboat/repository.key.1"]   # earlier keys, to rotate from

The key itself is never in this file, nor in the settings cache the WAL path reads (only
where it is). How keys are used: :mod:`engine.repository.encryption`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from engine.config.sections import _Section


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]


class EncryptionConfig(_Section):
    """AES-256-GCM of every object holding data, keyed names; the user's key is read from
    ``key_file`` or ``key_env``. Setting a new ``key_file`` and listing the previous one in
    ``old_key_files`` rotates: new objects are sealed under the new key's data key."""

    key_file: AbsolutePath | None = None
    key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    old_key_files: list[AbsolutePath] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> EncryptionConfig:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("give the repository's key as exactly one of key_file (a path) and "
                             "key_env (an environment variable's name)")
        if self.key_file is not None and self.key_file in self.old_key_files:
            raise ValueError("key_file is also in old_key_files: the old keys are the earlier ones")
        return self
