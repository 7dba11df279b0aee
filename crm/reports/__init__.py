"""Reports for managers (docs/reports.md): agent, queue, pipeline, campaign and adoption
figures as SQL aggregates over the call log, the deals and the audit log, on SQLite and
PostgreSQL alike, with Jalali or Gregorian periods in the call centre's time zone."""

from crm.reports.service import KINDS, filters_from_query, run

__all__ = ["KINDS", "filters_from_query", "run"]
