"""The ``[console]`` section: where the ops console listens, who may log in, and as what.

Passwords are stored as hashes made by ``lifeboat console hash-password`` (scrypt, in the
form ``scrypt$N$r$p$salt$hash`` with base64 salt and hash); a plain password in the file is
an error. An identity provider (Streamlit's OIDC login) is the alternative: a claim of the
signed-in user maps to a role.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from engine.config.units import parse_duration
from engine.vocabulary import Role

Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
PASSWORD_HASH = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ConsoleUser(_Section):
    role: Role
    password_hash: str

    @field_validator("password_hash")
    @classmethod
    def _hashed(cls, value: str) -> str:
        if not PASSWORD_HASH.match(value):
            raise ValueError("must be a hash made by 'lifeboat console hash-password' "
                             "(scrypt$N$r$p$salt$hash), never a plain password")
        return value


class OidcSettings(_Section):
    """Log in through an identity provider configured in Streamlit's ``secrets.toml``
    (``[auth]`` / ``[auth.<provider>]``); ``roles`` maps a value of ``role_claim`` to a role."""

    enabled: bool = False
    provider: str | None = None  # the [auth.<provider>] section; None: the default [auth]
    role_claim: str = "groups"
    roles: dict[str, Role] = Field(default_factory=dict)
    default_role: Role | None = None  # for a signed-in user no mapping matches (None: refused)


class ConsoleSettings(_Section):
    address: str = "127.0.0.1"
    port: int = Field(default=8501, ge=1, le=65535)
    session_timeout: Duration = 3600.0  # idle time after which a login expires
    max_failed_logins: int = Field(default=5, ge=1, le=1000)  # per user and per client, in `lockout`
    lockout: Duration = 300.0
    prometheus_url: str | None = None  # default: [alerts] prometheus_url
    users: dict[Annotated[str, Field(pattern=USER_NAME)], ConsoleUser] = Field(default_factory=dict)
    oidc: OidcSettings = OidcSettings()
