"""Study-available notifications: outbox, triggers, senders, retry policy."""
