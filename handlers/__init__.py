"""Channel-neutral conversations: what the bot answers, whatever the messenger."""
