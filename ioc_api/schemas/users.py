"""User schemas: what an admin sends, what anyone may see, and the one response that carries a key."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["Role", "UserCreate", "UserCreated", "UserPublic"]

Role = Literal["admin", "operator", "technician", "developer"]


class UserBase(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$", examples=["ops-hai-chau"])
    role: Role
    zones: list[str] = Field(default_factory=list, description="zone codes, e.g. hai-chau")


class UserCreate(UserBase):
    pass


class UserPublic(UserBase):
    created_at: datetime
    revoked_at: datetime | None


class UserCreated(UserPublic):
    key: str = Field(description="the API key; shown this once and never again")
