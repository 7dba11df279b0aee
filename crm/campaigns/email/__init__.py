"""E-mail campaigns: templates, signed tracking links, MIME, SMTP sending with throttling,
bounces and replies fed back in, opens, clicks and unsubscribes (docs/campaigns.md).

``template``  personal fields (fa/en), RTL-safe HTML, tracked links, the text part
``tokens``    signed ids in tracking and unsubscribe links
``mime``      the message as sent (headers, List-Unsubscribe, Message-ID)
``throttle``  the pace of sending, with an injectable clock and sleeper
``transport`` SMTP through aiosmtplib, errors sorted into permanent and transient
``sender``    planning recipients (opt-outs, suppressions) and the sending loop
``inbound``   DSN bounces, auto-replies and replies parsed and matched to messages/customers
``tracking``  opens, clicks and unsubscribes recorded
``maildir``   a poller that feeds a maildir of bounces and replies to ``inbound``
"""
