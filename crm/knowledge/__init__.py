"""Knowledge for agents: the knowledge base (versioned, approved articles with full-text
search) and call scripts filled in with the customer's fields (docs/knowledge.md)."""
