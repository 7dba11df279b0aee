"""What a customer's response to a campaign is, in one place.

Campaign results count customers and segment filters select them by the same conditions,
so "reached 120" in a campaign's results is the same 120 customers a segment
``{"campaign": {"id": 7, "response": "reached"}}`` holds (for the same entity type).

E-mail (one ``email_messages`` row per recipient):

* targeted: a message was planned and not skipped (no address, opted out, ...)
* reached: accepted by the mail server and not bounced (status ``sent``)
* opened / clicked / replied / bounced / unsubscribed: what the row records
* responded: clicked a link or replied

Calls (``activities`` of kind ``call`` with the campaign's id):

* targeted: called at least once
* reached: a call was answered
* responded: an answered call has a disposition that is not a refusal or a failure
  (``NON_RESPONSE_DISPOSITIONS``)

Converted: a won deal linked to the campaign (``deals.campaign_id``; lead conversion copies
the lead's campaign onto the deal).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, true

from crm.models import Activity, Deal, EmailMessage, Lead

RESPONSES = (
    "targeted",
    "reached",
    "responded",
    "opened",
    "clicked",
    "replied",
    "bounced",
    "unsubscribed",
    "converted",
)

# Dispositions that record a failure or a refusal, not a response.
NON_RESPONSE_DISPOSITIONS = frozenset(
    {
        "no_answer",
        "busy",
        "failed",
        "congestion",
        "voicemail",
        "not_interested",
        "wrong_number",
        "do_not_call",
        "refused",
        "hangup",
        "invalid_number",
    }
)


def email_condition(response: str) -> ColumnElement[bool] | None:
    """The condition on an ``email_messages`` row for ``response`` (None: not e-mail's)."""
    m = EmailMessage
    conds: dict[str, ColumnElement[bool]] = {
        "targeted": m.status != "skipped",
        "reached": m.status == "sent",
        "opened": m.opened_at.is_not(None),
        "clicked": m.clicked_at.is_not(None),
        "replied": m.replied_at.is_not(None),
        "responded": or_(m.clicked_at.is_not(None), m.replied_at.is_not(None)),
        "bounced": m.status == "bounced",
        "unsubscribed": m.unsubscribed_at.is_not(None),
    }
    return conds.get(response)


def call_condition(response: str) -> ColumnElement[bool] | None:
    """The condition on a campaign call activity for ``response`` (None: not calls')."""
    a = Activity
    answered = a.answered_at.is_not(None)
    if response == "targeted":
        return true()
    if response == "reached":
        return answered
    if response == "responded":
        return and_(
            answered,
            a.disposition.is_not(None),
            a.disposition.not_in(sorted(NON_RESPONSE_DISPOSITIONS)),
        )
    return None


def campaign_calls(campaign_id: int | None) -> ColumnElement[bool]:
    """Live call activities of one campaign (any campaign when ``campaign_id`` is None)."""
    cid = (
        Activity.campaign_id.is_not(None)
        if campaign_id is None
        else Activity.campaign_id == campaign_id
    )
    return and_(Activity.kind == "call", Activity.deleted_at.is_(None), cid)


def won_deals(campaign_id: int | None) -> ColumnElement[bool]:
    """Live won deals linked to one campaign (any campaign when None)."""
    cid = Deal.campaign_id.is_not(None) if campaign_id is None else Deal.campaign_id == campaign_id
    return and_(Deal.status == "won", Deal.deleted_at.is_(None), cid)


_ACTIVITY_FK = {"contact": "contact_id", "lead": "lead_id", "account": "account_id"}


def customer_responded(
    entity_type: str, model: Any, response: str, campaign_id: int | None
) -> ColumnElement[bool]:
    """True for a customer row of ``model`` that gave ``response`` to the campaign."""
    conds: list[ColumnElement[bool]] = []
    email = email_condition(response)
    if email is not None:
        cid = (
            EmailMessage.campaign_id == campaign_id
            if campaign_id is not None
            else EmailMessage.campaign_id.is_not(None)
        )
        conds.append(
            exists().where(
                EmailMessage.entity_type == entity_type,
                EmailMessage.entity_id == model.id,
                cid,
                email,
            )
        )
    call = call_condition(response)
    if call is not None:
        fk = getattr(Activity, _ACTIVITY_FK[entity_type])
        conds.append(exists().where(fk == model.id, campaign_calls(campaign_id), call))
    if response == "converted":
        if entity_type == "lead":
            link = Deal.id == Lead.converted_deal_id
            conds.append(exists().where(link, won_deals(campaign_id)).correlate(Lead))
        else:
            fk = Deal.contact_id if entity_type == "contact" else Deal.account_id
            conds.append(exists().where(fk == model.id, won_deals(campaign_id)))
    return or_(*conds)
