"""Segments, campaigns and e-mail campaigns (docs/campaigns.md).

``filters``   the segment filter language: pure validation and compilation to SQL
``responses`` what "reached", "responded", "converted" mean, shared by results and filters
``segments``  segment evaluation (``segment_member_ids``), counts, previews, static members
``results``   campaign results, ROI and side-by-side comparison from the raw records
``email/``    templates, signed links, MIME, SMTP with throttling, bounces, replies, tracking
"""
