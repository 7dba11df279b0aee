"""The campaign message as it goes over SMTP.

UTF-8 throughout (Persian subjects and names are RFC 2047 encoded by the ``email``
package), a text and an HTML alternative, our own Message-ID (replies and bounces name it),
``List-Unsubscribe`` with one-click POST (RFC 8058) so mail clients offer unsubscribing
themselves, and ``Precedence: bulk`` so autoresponders stay quiet.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import secrets
from email.headerregistry import Address
from email.message import EmailMessage

from crm.campaigns.email.template import RenderedEmail


def new_message_id(campaign_id: int, message_row_id: int, domain: str) -> str:
    """A unique Message-ID (without brackets) that names the campaign and the message."""
    return f"tamas.c{campaign_id}.m{message_row_id}.{secrets.token_hex(6)}@{domain}"


def address(addr: str, name: str | None = None) -> Address:
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def build_message(
    rendered: RenderedEmail,
    *,
    from_address: str,
    from_name: str | None,
    to_address: str,
    to_name: str | None,
    message_id: str,
    unsubscribe_url: str,
    reply_to: str | None = None,
    campaign_id: int | None = None,
    date: dt.datetime | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = address(from_address, from_name)
    msg["To"] = address(to_address, to_name)
    if reply_to:
        msg["Reply-To"] = address(reply_to)
    msg["Subject"] = rendered.subject
    msg["Date"] = email.utils.format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = f"<{message_id}>"
    msg["Content-Language"] = rendered.language
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Precedence"] = "bulk"
    if campaign_id is not None:
        msg["X-Tamas-Campaign"] = str(campaign_id)
    msg.set_content(rendered.text, subtype="plain", charset="utf-8")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return msg
