"""How a stage action sends a template e-mail: through an e-mail campaign.

The action names an e-mail campaign (crm/campaigns: template, sender, a static segment);
the record joins the campaign's segment and, once the run has committed, the campaign is
launched again, which plans only its new members and sends them the template. So a
template e-mail from automation gets what every campaign e-mail gets: opt-outs and
suppressed addresses skipped, an unsubscribe link honoured forever, opens and clicks
tracked. Without an e-mail sender the action is recorded as skipped, never silently lost.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger("tamas.automation")


class CampaignLauncher(Protocol):
    async def launch(self, campaign_id: int, principal: Any) -> Any:
        """Plan the campaign's audience members not planned yet and start sending."""
        ...


def campaign_launcher(app: Any) -> CampaignLauncher | None:
    """The gateway's e-mail campaign sender (crm/api/campaigns.py), when it has one."""
    try:
        from crm.api.campaigns import MAILER
    except ImportError:
        return None
    launcher: CampaignLauncher | None = app.get(MAILER)
    return launcher
