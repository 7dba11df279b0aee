"""Business logic of the CRM: plain async functions over a session, no HTTP."""
