"""Re-planning: adopted plans and their history, switching-aware re-plans, triggers, schedules, webhooks."""
