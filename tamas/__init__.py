"""Tamas: CTI gateway and CRM for call centers running Asterisk."""

__version__ = "0.1.0"
