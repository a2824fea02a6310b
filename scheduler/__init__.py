"""Campaign jobs (milestones, reminders, digests); they queue messages, never send them."""
