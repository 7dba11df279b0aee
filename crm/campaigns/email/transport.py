"""SMTP through aiosmtplib, one connection reused for a run of messages.

Failures are sorted for the sender: ``Rejected`` (a 5xx for this recipient or message:
permanent, recorded as a hard bounce) and ``Unavailable`` (the server is unreachable, or
answered 4xx: try again later; nothing is lost).
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

log = logging.getLogger("tamas.campaigns.smtp")


class Rejected(Exception):
    """The server refused this message or recipient permanently."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class Unavailable(Exception):
    """The server could not take the message now (connection, 4xx)."""


class Transport(Protocol):
    async def send(self, message: EmailMessage, sender: str, recipient: str) -> None: ...

    async def close(self) -> None: ...


class SmtpTransport:
    """Sends over one SMTP connection, (re)connecting when needed."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._smtp: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.security == "tls",
            start_tls=True if self.security == "starttls" else False,
            username=self.username,
            password=self.password,
            local_hostname=self.local_hostname,
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise Unavailable(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._smtp = smtp
        return smtp

    async def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        smtp = await self._connect()
        try:
            errors, _ = await smtp.send_message(message, sender=sender, recipients=[recipient])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0] if exc.recipients else None
            code = first.code if first is not None else 550
            text = first.message if first is not None else str(exc)
            if code >= 500:
                raise Rejected(code, text) from exc
            raise Unavailable(f"{code} {text}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._drop()
            if exc.code >= 500 and not isinstance(exc, aiosmtplib.SMTPSenderRefused):
                raise Rejected(exc.code, exc.message) from exc
            raise Unavailable(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop()
            raise Unavailable(str(exc)) from exc
        refused = errors.get(recipient)
        if refused is not None:
            raise Rejected(refused.code, refused.message)

    async def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except Exception:  # already broken
                log.debug("closing a broken SMTP connection failed", exc_info=True)

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()
