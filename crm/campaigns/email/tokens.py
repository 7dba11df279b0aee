"""Signed ids for the links in campaign e-mails (open pixel, click redirect, unsubscribe).

A token is ``base64url(json payload) "." base64url(HMAC-SHA256(key, payload)[:16])``. The
key is derived from the gateway's secret key, so links stay valid across restarts (an
unsubscribe link must work forever) and nobody can forge one: a click link redirects only
to a URL the gateway itself signed (no open redirect), and ids cannot be guessed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

LABEL = b"tamas-email-links-v1"


class BadToken(Exception):
    """Malformed, tampered with, or signed with another key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        self._key = hmac.new(raw, LABEL, hashlib.sha256).digest()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:16])

    def sign(self, payload: list[Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str) -> list[Any]:
        body, dot, mac = token.partition(".")
        if not dot or not body or not hmac.compare_digest(mac, self._mac(body)):
            raise BadToken("bad signature")
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            raise BadToken("bad payload") from None
        if not isinstance(payload, list) or not payload or not isinstance(payload[0], str):
            raise BadToken("bad payload")
        return payload

    # -- the three kinds of link ----------------------------------------------------------

    def open_token(self, message_id: int) -> str:
        return self.sign(["o", message_id])

    def click_token(self, message_id: int, url: str) -> str:
        return self.sign(["c", message_id, url])

    def unsubscribe_token(self, message_id: int, entity_type: str, entity_id: int) -> str:
        return self.sign(["u", message_id, entity_type, entity_id])


def parse_open(payload: list[Any]) -> int:
    if len(payload) != 2 or payload[0] != "o" or not isinstance(payload[1], int):
        raise BadToken("not an open token")
    return payload[1]


def parse_click(payload: list[Any]) -> tuple[int, str]:
    ok = len(payload) == 3 and payload[0] == "c" and isinstance(payload[1], int)
    if (
        not ok
        or not isinstance(payload[2], str)
        or not payload[2].startswith(("http://", "https://"))
    ):
        raise BadToken("not a click token")
    return payload[1], payload[2]


def parse_unsubscribe(payload: list[Any]) -> tuple[int, str, int]:
    ok = len(payload) == 4 and payload[0] == "u" and isinstance(payload[1], int)
    if (
        not ok
        or payload[2] not in ("contact", "lead", "account")
        or not isinstance(payload[3], int)
    ):
        raise BadToken("not an unsubscribe token")
    return payload[1], payload[2], payload[3]
